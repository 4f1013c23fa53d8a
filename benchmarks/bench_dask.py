#!/usr/bin/env python
"""Dask against serial sweeps, in one run: the wall time of an nn-regime grid and of a full-regime grid, run
serially (one process, torch on every core) and on a LocalCluster of 2 worker processes with 1 thread each
(execute(..., client=...)). Grids: nn (width 1000, b in {32, 128}: matmuls big enough for torch's two threads),
nn_small (width 256, b in {8, 32}: per-step work too small to split over threads), full (N = 300). Prints the ratios serial / dask; writes benchmarks/results/dask.json.

    python benchmarks/bench_dask.py [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gfsgd import Grid, Problem, execute, problem_from_network  # noqa: E402
from gfsgd.data import load_dataset  # noqa: E402
from gfsgd.grid import dask_client  # noqa: E402
from gfsgd.models import MLP  # noqa: E402
from gfsgd.regimes import full, nn  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ds = load_dataset("digits", 256, seed=0)
    net_problem = problem_from_network(MLP(ds.X.shape[1], width=1000, seed=0), ds.X, ds.y, device="cpu")
    nn_grid = Grid(lr=[0.25, 0.5, 1.0, 1.5], momentum=[0.0, -0.3], batch_size=[32, 128])
    small_problem = problem_from_network(MLP(ds.X.shape[1], width=256, seed=0), ds.X, ds.y, device="cpu")
    small_grid = Grid(lr=[0.25, 0.5, 1.0, 1.5], momentum=[0.0, -0.3], batch_size=[8, 32])
    full_problem = Problem.synthetic(300, 1.2, 0.5, seed=0)
    full_grid = Grid(lr=[0.1, 0.3, 0.6, 1.0], momentum=[0.0, -0.3], batch_size=[1, 10])
    jobs = dict(
        nn=lambda **kw: execute(nn, net_problem, nn_grid, 300, network=net_problem.network, progress=False,
                                device="cpu", **kw),
        nn_small=lambda **kw: execute(nn, small_problem, small_grid, 300, network=small_problem.network,
                                      progress=False, device="cpu", **kw),
        full=lambda **kw: execute(full, full_problem, full_grid, 1000, progress=False, device="cpu", **kw))
    client = dask_client(workers=2, threads_per_worker=1)
    out = dict(rounds=[])
    try:
        for r in range(args.rounds):
            row = {}
            for name, job in jobs.items():
                with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
                    t_serial = timed(lambda: job(save_dir=d1))
                    t_dask = timed(lambda: job(save_dir=d2, client=client))
                row[name] = dict(serial_s=t_serial, dask_s=t_dask, ratio=t_serial / t_dask)
                print(f"round {r} {name}: serial {t_serial:.1f} s, dask (2 workers x 1 thread) {t_dask:.1f} s, "
                      f"ratio {t_serial / t_dask:.2f}", flush=True)
            out["rounds"].append(row)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    for name in jobs:
        rs = sorted(x[name]["ratio"] for x in out["rounds"])
        out[f"{name}_median_ratio"] = rs[len(rs) // 2]
    print({k: round(v, 2) for k, v in out.items() if k.endswith("ratio")})
    res = Path(__file__).parent / "results"
    res.mkdir(exist_ok=True)
    (res / "dask.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
