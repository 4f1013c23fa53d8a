#!/usr/bin/env python
"""Cost of the test loss in the full regime: per-config-step time with and without it, in the same run.

    python benchmarks/bench_test_loss.py [--N 1000] [--M 1000] [--configs 4] [--n_steps 30] [--repeats 5] [--json PATH]

Synthetic problem with a held-out set (Problem.synthetic(N, n_test=M)); the full regime logs every step (the
default), so the test loss (one matrix-vector pass over the [g, N, N] state plus the mean update) is
evaluated at every step. The two variants alternate, and the best and median of `repeats` runs are kept.
Target (issue 11): with the test loss at most 1.3x the time without it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gfsgd import Problem  # noqa: E402
from gfsgd.regimes import full  # noqa: E402
from _json_out import write_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--N", type=int, default=1000)
    ap.add_argument("--M", type=int, default=1000)
    ap.add_argument("--configs", type=int, default=4)
    ap.add_argument("--n_steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write what is printed to this JSON file")
    args = ap.parse_args()
    started = time.perf_counter()
    p = Problem.synthetic(args.N, 1.5, 1.0, seed=0, n_test=args.M)
    p.test_terms()  # the eigenbasis terms are set-up, computed once per problem: not part of the step time
    cfgs = [(0.5 + 0.1 * i, 0.0, 10) for i in range(args.configs)]
    full.run(p, cfgs[:1], 2, progress=False, device=args.device)  # warm-up
    times = {False: [], True: []}
    for _ in range(args.repeats):
        for test in (False, True):
            t = time.perf_counter()
            c = full.run(p, cfgs, args.n_steps, progress=False, device=args.device, test=test)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[test].append((time.perf_counter() - t) / (len(cfgs) * args.n_steps))
            assert (c.test_loss is not None) == test
    off, on = times[False], times[True]
    print(f"full regime, N = {args.N}, M = {args.M}, {args.configs} configs, {args.n_steps} steps, device "
          f"{args.device}, {torch.get_num_threads()} threads, {args.repeats} alternating repeats")
    print(f"without test loss: best {min(off) * 1e3:.2f} ms, median {statistics.median(off) * 1e3:.2f} ms per config-step")
    print(f"with test loss:    best {min(on) * 1e3:.2f} ms, median {statistics.median(on) * 1e3:.2f} ms per config-step")
    print(f"ratio with / without: best {min(on) / min(off):.3f}, median {statistics.median(on) / statistics.median(off):.3f}"
          f"  (target <= 1.3)")
    if args.json:
        write_json(args.json, "bench_test_loss", dict(
            N=args.N, M=args.M, configs=args.configs, n_steps=args.n_steps, repeats=args.repeats, device=args.device,
            without_best_ms=min(off) * 1e3, without_median_ms=statistics.median(off) * 1e3,
            with_best_ms=min(on) * 1e3, with_median_ms=statistics.median(on) * 1e3,
            ratio_best=min(on) / min(off), ratio_median=statistics.median(on) / statistics.median(off),
            without_ms=[t * 1e3 for t in off], with_ms=[t * 1e3 for t in on]), started=started)


if __name__ == "__main__":
    main()
