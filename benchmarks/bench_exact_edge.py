#!/usr/bin/env python
"""Cost of the exact stability edge (theory.critical_lr(exact=True)) against the SD edge, by N.

    python benchmarks/bench_exact_edge.py [--Ns 200 500 1000] [--rtol 1e-3] [--json PATH]

Synthetic problem (nu = 1.5, kappa = 1, random basis), b = 1, beta = 0: wall time of one exact edge (bisection to
relative width rtol; each step: N(N+1)/2 4 x 4 eigenvalue problems and a Lanczos solve on products of two
N x N x N matmuls) and of the SD edge, the two edges and their ratio. Sets the N limit (exact_max_n) up to which
gfsgd.recommend computes the exact edge by default.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gfsgd import Problem  # noqa: E402
from gfsgd import theory as th  # noqa: E402
from _json_out import write_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--Ns", type=int, nargs="+", default=[200, 500, 1000])
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--json", default=None, metavar="PATH", help="also write what is printed to this JSON file")
    args = ap.parse_args()
    started, rows = time.perf_counter(), []
    print(f"{'N':>6}{'exact edge':>12}{'SD edge':>10}{'exact/SD':>10}{'exact time':>12}{'SD time':>10}")
    for N in args.Ns:
        p = Problem.synthetic(N, 1.5, 1.0, seed=0)
        t = time.perf_counter()
        ex = float(th.critical_lr(p, 0.0, 1, exact=True, rtol=args.rtol))
        t_ex = time.perf_counter() - t
        t = time.perf_counter()
        sd = float(th.critical_lr(p, 0.0, 1))
        t_sd = time.perf_counter() - t
        print(f"{N:>6}{ex:>12.4f}{sd:>10.4f}{ex / sd:>10.3f}{t_ex:>11.1f}s{t_sd:>9.3f}s", flush=True)
        rows.append(dict(N=N, exact_edge=ex, sd_edge=sd, ratio=ex / sd, exact_seconds=t_ex, sd_seconds=t_sd))
    if args.json:
        write_json(args.json, "bench_exact_edge", dict(rtol=args.rtol, b=1, beta=0.0, nu=1.5, kappa=1.0, rows=rows),
                   started=started)


if __name__ == "__main__":
    main()
