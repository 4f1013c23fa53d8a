#!/usr/bin/env python
"""The exact stability edge: Newton steps (the default) against the earlier bisection, in the same run.

    python benchmarks/bench_exact_edge_newton.py [--Ns 500 2000] [--bisection_Ns 500] [--json FILE]

Per N (a random-basis synthetic problem, nu = 1.5, kappa = 1) and (beta, b) in {(0, 1), (0.5, 10), (-0.4, 4),
(0.9, 1)}: the time of theory.exact_critical_lr with method="newton" and, where N is in --bisection_Ns, with
method="bisection" (rtol 1e-6), their ratio and the relative difference of the two edges. Targets (issue 24):
<= 1 s per (beta, b) at N = 500 and <= 10 s at N = 2,000 on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gfsgd import Problem  # noqa: E402
from gfsgd import theory as th  # noqa: E402

CASES = [(0.0, 1), (0.5, 10), (-0.4, 4), (0.9, 1)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--Ns", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--bisection_Ns", type=int, nargs="*", default=[500])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []
    started = time.perf_counter()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for N in args.Ns:
        p = Problem.synthetic(N, 1.5, 1.0, seed=0)
        for beta, b in CASES:
            t = time.perf_counter()
            e_new = float(th.exact_critical_lr(p, beta, b))
            t_new = time.perf_counter() - t
            row = dict(N=N, beta=beta, b=b, edge_newton=e_new, newton_s=t_new)
            if N in args.bisection_Ns:
                t = time.perf_counter()
                e_old = float(th.exact_critical_lr(p, beta, b, method="bisection", rtol=1e-6))
                row.update(edge_bisection=e_old, bisection_s=time.perf_counter() - t,
                           rel_diff=abs(e_new / e_old - 1))
                row["speedup"] = row["bisection_s"] / t_new
            rows.append(row)
            print(f"N={N:5d} beta={beta:+.1f} b={b:3d}: newton {t_new:6.2f} s (edge {e_new:.6g})"
                  + (f", bisection {row['bisection_s']:6.2f} s, speed-up {row['speedup']:5.1f}x, "
                     f"|diff| {row['rel_diff']:.1e}" if "speedup" in row else ""), flush=True)
    if args.json:
        from _json_out import write_json
        per_n = {}
        for N in args.Ns:
            rs = [r for r in rows if r["N"] == N]
            per_n[str(N)] = dict(newton_max_s=max(r["newton_s"] for r in rs),
                                 newton_median_s=float(sorted(r["newton_s"] for r in rs)[len(rs) // 2]))
            if all("speedup" in r for r in rs):
                per_n[str(N)].update(speedup_min=min(r["speedup"] for r in rs),
                                     rel_diff_max=max(r["rel_diff"] for r in rs))
        write_json(args.json, "bench_exact_edge_newton", dict(rows=rows, per_N=per_n), started=started,
                   argv=None if argv is None else ["bench_exact_edge_newton.py"] + list(argv))
    return rows


if __name__ == "__main__":
    main()
