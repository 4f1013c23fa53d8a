#!/usr/bin/env python
"""The stepping engine before and after a change: per-config-step time of the SD and linearized regimes.

    python benchmarks/bench_engine.py [--before REV] [--repeats 5] [--n_steps 300] [--device cpu] [--json PATH]

REV (default: the commit before the sync-free engine, d45bcc7) is checked out into a temporary git worktree;
each measurement runs in a fresh subprocess with PYTHONPATH set to one of the two trees, alternating
before/after so that the load of a shared machine hits both alike. Workloads (50 x 50 (lr, momentum) grid,
N = 1000 synthetic problem, float64):
- sd: the SD regime, constant hyperparameters, and under a cosine lr schedule;
- linearized: b = 10, constant, and under a cosine schedule.
Prints the best and median time per config-step of each and the ratio after / before (< 1: faster).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _json_out import write_json  # noqa: E402

CHILD = r"""
import json, sys, time, torch
from gfsgd import Grid, Problem
from gfsgd.schedules import from_name
from gfsgd.regimes import linearized, spectral_diagonal as sd
regime, sched, n_steps, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
p = Problem.synthetic(1000, 1.5, 1.0, seed=0)
lrs = [0.02 * 1.1 ** i for i in range(50)]
moms = [-0.9 + 1.8 * i / 49 for i in range(50)]
grid = Grid(lrs, moms, 10)
schedule = from_name("cosine", n_steps) if sched == "cosine" else None
mod = sd if regime == "sd" else linearized
mod.run(p, grid.configs[:50], 5, schedule=schedule, progress=False, device=device)  # warm-up
t = time.perf_counter()
c = mod.run(p, grid, n_steps, schedule=schedule, progress=False, device=device)
if device.startswith("cuda"):
    torch.cuda.synchronize()
dt = time.perf_counter() - t
print(json.dumps(dict(per_config_step=dt / (len(grid) * n_steps), diverged=sum(s == "diverged" for s in c.status))))
"""


def measure(tree, regime, sched, n_steps, device):
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", CHILD, regime, sched, str(n_steps), device], env=env,
                         capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise SystemExit(f"measurement failed in {tree}:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default="d45bcc7", help="git revision of the 'before' engine")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n_steps", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write what is printed to this JSON file")
    args = ap.parse_args()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="gfsgd-before-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tmp), args.before], check=True,
                   capture_output=True)
    try:
        rows = []
        for regime in ("sd", "linearized"):
            for sched in ("constant", "cosine"):
                times = {"before": [], "after": []}
                div = {}
                for _ in range(args.repeats):
                    for name, tree in (("before", tmp), ("after", ROOT)):
                        r = measure(tree, regime, sched, args.n_steps, args.device)
                        times[name].append(r["per_config_step"])
                        div[name] = r["diverged"]
                b, a = times["before"], times["after"]
                rows.append((regime, sched, min(b), statistics.median(b), min(a), statistics.median(a),
                             min(a) / min(b), statistics.median(a) / statistics.median(b), div))
        print(f"device {args.device}, 50 x 50 grid, N = 1000, {args.n_steps} steps, {args.repeats} alternating repeats")
        print(f"{'regime':<11}{'schedule':<10}{'before best':>13}{'median':>10}{'after best':>13}{'median':>10}"
              f"{'ratio best':>12}{'median':>9}  diverged (before/after)")
        for regime, sched, bb, bm, ab, am, rb, rm, div in rows:
            print(f"{regime:<11}{sched:<10}{bb * 1e6:>11.3f}us{bm * 1e6:>8.3f}us{ab * 1e6:>11.3f}us"
                  f"{am * 1e6:>8.3f}us{rb:>12.3f}{rm:>9.3f}  {div['before']}/{div['after']}")
        if args.json:
            write_json(args.json, "bench_engine", dict(
                before=args.before, repeats=args.repeats, n_steps=args.n_steps, device=args.device, grid="50 x 50",
                N=1000, rows=[dict(regime=regime, schedule=sched, before_best_us=bb * 1e6, before_median_us=bm * 1e6,
                                   after_best_us=ab * 1e6, after_median_us=am * 1e6, ratio_best=rb, ratio_median=rm,
                                   diverged_before=div["before"], diverged_after=div["after"])
                              for regime, sched, bb, bm, ab, am, rb, rm, div in rows]), started=started)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp)], capture_output=True)


if __name__ == "__main__":
    main()
