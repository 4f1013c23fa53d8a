#!/usr/bin/env python
"""Predicted against measured test loss on MNIST (issue 11): the full (exact) and SD (tau = 1) test-loss
predictions of the linearised network against the real network's held-out loss.

    python benchmarks/validate_test_loss_mnist.py --data_root ../shared/data [--N 2000] [--M 2000]
        [--width 1000] [--n_steps 2000] [--seeds 3] [--out runs/validate_test_loss_mnist]

N training and M held-out MNIST images (disjoint, stratified, standardised with the training statistics),
the paper's network (one hidden layer of `width` ReLU units, NTK parameterisation), alpha = 1,
b in {10, 100}, beta in {0, -0.3}. The network is trained `--seeds` times per config (independent batch
sequences from the same initialisation, vectorised: nn repeats), mean ± s.e. Writes a run folder (curves and
status with test_loss, config.json) and test_loss_mnist.png (train and test side by side), and prints per
config: the full-vs-network test gap (median and max over logged steps >= 10), SD's gap to full on the test
loss, and the predicted and measured best (early-stopping) steps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gfsgd import plots, problem_from_network  # noqa: E402
from gfsgd.data import load_dataset  # noqa: E402
from gfsgd.models import MLP  # noqa: E402
from gfsgd.regimes import full, nn  # noqa: E402
from gfsgd.regimes import spectral_diagonal as sd  # noqa: E402
from gfsgd.results import RunFolder, load  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data_root", required=True)
    ap.add_argument("--N", type=int, default=2000)
    ap.add_argument("--M", type=int, default=2000)
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--n_steps", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--n_log", type=int, default=80)
    ap.add_argument("--out", default="runs/validate_test_loss_mnist")
    args = ap.parse_args()
    t0 = time.perf_counter()
    ds = load_dataset("mnist", args.N, seed=0, root=args.data_root, n_test=args.M)
    model = MLP(ds.X.shape[1], width=args.width, depth=2, seed=0)
    p = problem_from_network(model, ds.X, ds.y, X_test=ds.X_test, y_test=ds.y_test, device="cpu",
                             name=f"MNIST N={args.N}, M={args.M}, width {args.width}")
    t_ntk = time.perf_counter() - t0
    print(f"{p}: NTK, cross-kernel and eigendecomposition {t_ntk:.0f} s; smallest eigenvalue "
          f"{float(p.eigvals[-1]):.3g}, modes cut from K^+: {p.test_terms()['n_cut']}", flush=True)
    cfgs = [(args.lr, 0.0, 10), (args.lr, -0.3, 10), (args.lr, 0.0, 100), (args.lr, -0.3, 100)]
    n = args.n_steps
    log = np.unique(np.concatenate([np.arange(0, 11), np.round(np.logspace(1, np.log10(n), args.n_log)).astype(int)]))
    folder = RunFolder(args.out)
    folder.write_config(dict(script="benchmarks/validate_test_loss_mnist.py", args=vars(args), problem=p.name,
                             N=p.N, M=p.M, loss0=p.loss0, test_loss0=p.test_loss0, ntk_seconds=t_ntk))
    runs = {}
    for name, call in (("full", lambda: full.run(p, cfgs, n, log_steps=log, device="cpu", progress=True)),
                       ("sd", lambda: sd.run(p, cfgs, n, log_steps=log, device="cpu", progress=True)),
                       ("nn", lambda: nn.run(p, cfgs, n, repeats=args.seeds, log_steps=log, device="cpu",
                                             progress=True))):
        t = time.perf_counter()
        runs[name] = call()
        folder.append(runs[name])
        print(f"{name}: {time.perf_counter() - t:.0f} s", flush=True)
    f, s, net = runs["full"], runs["sd"], runs["nn"]
    late = log >= 10
    rows = []
    for g, cfg in enumerate(cfgs):
        gap = np.abs(net.test_loss[g] - f.test_loss[g]) / f.test_loss[g]
        tgap = np.abs(net.loss[g] - f.loss[g]) / f.loss[g]
        sd_gap = np.abs(s.test_loss[g] - f.test_loss[g]) / f.test_loss[g]
        rows.append(dict(
            config=cfg, status=(f.status[g], s.status[g], net.status[g]),
            test_gap_median=float(np.nanmedian(gap[late])), test_gap_max=float(np.nanmax(gap[late])),
            train_gap_median=float(np.nanmedian(tgap[late])), train_gap_max=float(np.nanmax(tgap[late])),
            sd_vs_full_test_gap_max=float(np.nanmax(sd_gap[late])),
            final_test=dict(full=float(f.test_loss[g, -1]), sd=float(s.test_loss[g, -1]),
                            nn=float(net.test_loss[g, -1]), nn_se=float(net.test_loss_se[g, -1])
                            if net.test_loss_se is not None else None),
            best_step=dict(full=int(f.best_test()[0][g]), sd=int(s.best_test()[0][g]), nn=int(net.best_test()[0][g])),
            best_test=dict(full=float(f.best_test()[1][g]), sd=float(s.best_test()[1][g]),
                           nn=float(net.best_test()[1][g]))))
    for r in rows:
        print(json.dumps(r))
    (Path(args.out) / "summary.json").write_text(json.dumps(rows, indent=2))
    fig = plots.regime_comparison(load(args.out).curves, title=f"{p.name}: train and test loss, alpha = {args.lr}")
    plots.save(fig, Path(args.out) / "test_loss_mnist", formats=("png",))
    print(f"total {time.perf_counter() - t0:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
