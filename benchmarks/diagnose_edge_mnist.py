#!/usr/bin/env python
"""Why the SD prediction and the real network part near the stability edge (issue 12, validate_recommend_mnist.py):
the cells where they disagree most, trained three ways on the same problem (MNIST N = 10,000, width 1000):
the real network (nn regime), the linearized model with the same sampled batches (linearized regime), and the
SD prediction (theory.loss_at, the expected loss). If the linearized model follows SD, the gap is the network's
nonlinearity (its kernel moves at large learning rates); if it follows the network, the gap is in what SD
predicts: its approximation of the batch noise (tau), or the mean over noise against one path. --paths P
linearized paths per cell (seeds 0..P-1) give the mean (what SD predicts) and the median (a typical path).

    python benchmarks/diagnose_edge_mnist.py --data_root ../shared/data [--out runs/diagnose_edge_mnist]
Writes summary.json in --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gfsgd import problem_from_network  # noqa: E402
from gfsgd import theory as th  # noqa: E402
from gfsgd.data import load_dataset  # noqa: E402
from gfsgd.models import MLP  # noqa: E402
from gfsgd.regimes import linearized, nn  # noqa: E402

# (lr as a multiple of the SD critical lr at beta = 0, momentum, batch size): validate_recommend_mnist's cells
# 0.1 * 16^(i/7) for i = 4..7, where the prediction parts from the network, and two agreeing ones for reference
CELLS = [(0.1 * 16 ** (4 / 7), -0.5, 10), (0.1 * 16 ** (5 / 7), -0.25, 10), (0.1 * 16 ** (6 / 7), 0.0, 10),
         (0.1 * 16 ** (5 / 7), 0.5, 10), (0.1 * 16 ** (6 / 7), 0.25, 10), (0.1 * 16 ** (2 / 7), 0.0, 10),
         (0.1 * 16 ** (4 / 7), 0.25, 10)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data_root", required=True)
    ap.add_argument("--N", type=int, default=10000)
    ap.add_argument("--n_steps", type=int, default=2000)
    ap.add_argument("--paths", type=int, default=16, help="linearized sample paths per cell")
    ap.add_argument("--out", default="runs/diagnose_edge_mnist")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ds = load_dataset("mnist", args.N, seed=0, root=args.data_root)
    p = problem_from_network(MLP(784, width=1000, seed=0), ds.X, ds.y, device="cpu")
    print(f"problem {time.perf_counter() - t0:.0f} s", flush=True)
    T = args.n_steps
    rows = []
    for f, m, b in CELLS:
        a = float(f * th.critical_lr(p, 0.0, b))
        cfg = [(a, m, b)]
        pred = float(th.loss_at(p, a, m, b, T)) if th.is_convergent(p, a, m, b) else float("inf")
        lin = [linearized.run(p, cfg, T, log_steps=[0, T], seed=s, progress=False) for s in range(args.paths)]
        ends = np.array([c.loss[0, -1] if c.status[0] == "ok" else np.inf for c in lin])
        net = nn.run(p, cfg, T, log_steps=[0, T], seed=0, progress=False)
        row = dict(lr=a, lr_over_crit0=f, momentum=m, batch_size=b, sd_crit=float(th.critical_lr(p, m, b)),
                   predicted=pred, linearized=float(ends[0]), linearized_status=str(lin[0].status[0]),
                   linearized_mean=float(ends.mean()), linearized_se=float(ends.std(ddof=1) / np.sqrt(ends.size)),
                   linearized_median=float(np.median(ends)), linearized_paths=int(ends.size),
                   network=float(net.loss[0, -1]), network_status=str(net.status[0]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "summary.json").write_text(json.dumps(dict(N=args.N, n_steps=T, cells=rows,
                                                      seconds=time.perf_counter() - t0), indent=1))


if __name__ == "__main__":
    main()
