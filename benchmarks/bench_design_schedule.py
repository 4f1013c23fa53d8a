#!/usr/bin/env python
"""The time of gfsgd.design_schedule on the MNIST 60,000-point problem (issue 25; docs/theory.md#design).

    python benchmarks/bench_design_schedule.py --problem FILE [--steps 10000] [--json PATH]

FILE: the rank-1000 + tail problem of all 60,000 MNIST images (benchmarks/bench_spectrum.py mnist60k --save FILE).
Times, in the same run:
  - design_schedule(problem, budget_steps=--steps, batch_sizes=(10, 100)), every family (the default rerun: the
    search's best row per batch size in the SD regime on the uncompressed spectrum);
  - the baseline: gfsgd.recommend on the same problem, budget and batch sizes (constant lr and momentum only);
  - the search's accuracy: every tuned row re-run in the SD regime on the uncompressed 60,000 modes (relative
    difference to the compressed search's loss), timed too.
Prints the seconds and the ratio design / recommend; the goal is the design in <= 60 s on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gfsgd import Problem, design_schedule, recommend  # noqa: E402
from gfsgd.regimes import spectral_diagonal as sd  # noqa: E402
from _json_out import write_json  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problem", required=True)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--batch_sizes", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    p = Problem.load(args.problem)
    print(p)
    t = time.perf_counter()
    d = design_schedule(p, budget_steps=args.steps, batch_sizes=args.batch_sizes, progress=False)
    t_design = time.perf_counter() - t
    t = time.perf_counter()
    rec = recommend(p, budget_steps=args.steps, batch_sizes=args.batch_sizes)
    t_rec = time.perf_counter() - t
    print(f"design_schedule: {t_design:.1f} s ({d.info['modes_searched']} modes searched of {d.info['modes']}); "
          f"recommend (constant lr, momentum): {t_rec:.1f} s; ratio {t_design / t_rec:.2f}")
    t = time.perf_counter()
    errs, rows = [], []
    for (b, fam), (sched, cfg, n) in d.schedules().items():
        full_loss = sd.run(p, [cfg], n, schedule=sched, progress=False, log_steps=[n]).loss[0, -1]
        row = d.table[(d.table.batch_size == b) & (d.table.family == fam)].iloc[0]
        err = abs(row.loss_search / full_loss - 1)
        errs.append(err)
        rows.append(dict(batch_size=b, family=fam, lr=float(cfg[0]), momentum=float(cfg[1]), n_steps=int(n),
                         loss_search=float(row.loss_search), loss_sd=float(full_loss), rel_diff=float(err),
                         edge_margin=float(row.edge_margin)))
        print(f"b={b:>4} {fam:>8}: search {row.loss_search:.5g}, SD on every mode {full_loss:.5g} "
              f"(rel. diff {err:.2e}), edge margin {row.edge_margin:.3f}")
    t_check = time.perf_counter() - t
    const = {r["batch_size"]: r["loss_sd"] for r in rows if r["family"] == "constant"}
    for b in args.batch_sizes:
        best = min(r["loss_sd"] for r in rows if r["batch_size"] == b)
        print(f"b = {b}: the best schedule's loss / the best constant lr's: {best / const[b]:.3f}; recommend's "
              f"constant: {float(rec.loc[rec.batch_size == b, 'loss'].iloc[0]):.5g}")
    res = dict(N=p.N, steps=args.steps, batch_sizes=args.batch_sizes, design_seconds=t_design,
               recommend_seconds=t_rec, ratio_design_to_recommend=t_design / t_rec,
               modes_searched=d.info["modes_searched"], modes=d.info["modes"], check_seconds=t_check,
               max_rel_diff=float(np.max(errs)), median_rel_diff=float(np.median(errs)),
               best_family=d.info["family"], rows=rows,
               best_over_constant={str(b): min(r["loss_sd"] for r in rows if r["batch_size"] == b) / const[b]
                                   for b in args.batch_sizes})
    print(f"search vs SD on every mode: max rel. diff {res['max_rel_diff']:.2e}, median {res['median_rel_diff']:.2e}")
    if args.json:
        write_json(args.json, "bench_design_schedule", res, started=t0)


if __name__ == "__main__":
    main()
