#!/usr/bin/env python
"""The recommendation against real training on MNIST (issue 12): a grid of the real network against the
predictions, and the recommended config trained for real.

    python benchmarks/validate_recommend_mnist.py --data_root ../shared/data [--N 10000] [--width 1000]
        [--n_steps 2000] [--out runs/validate_recommend_mnist]
    python benchmarks/validate_recommend_mnist.py --plot_only runs/validate_recommend_mnist/summary.json

The paper's network on N MNIST images; for b in {10, 100}: 8 learning rates (geometric, 0.1 to 1.6 x the SD
critical lr at beta = 0) x 5 momenta (-0.5 .. 0.5), trained with the nn regime for n_steps (one path per cell),
the loss evaluated at a few steps only. Reports (i) the real final loss of gfsgd.recommend's config against the
best cell's, (ii) the Spearman correlation of predicted and real final loss over the cells that converge in
both, (iii) predicted against observed divergence, away from the predicted boundary, (iv) a learning rate
stable at b = 128, the predicted largest stable learning rate at b = 2, and whether the network at b = 2 and
that learning rate diverges as predicted. Writes summary.json and predicted_vs_real.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gfsgd import problem_from_network, recommend  # noqa: E402
from gfsgd import theory as th  # noqa: E402
from gfsgd.data import load_dataset  # noqa: E402
from gfsgd.models import MLP  # noqa: E402
from gfsgd.regimes import nn  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data_root", required=True)
    ap.add_argument("--N", type=int, default=10000)
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--n_steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=1,
                    help="network paths per cell (seeds 0..R-1): the real loss is their mean, which is what the "
                         "SD prediction is (the expected loss); near the edge one path is a typical draw of a "
                         "heavy-tailed loss (benchmarks/diagnose_edge_mnist.py)")
    ap.add_argument("--batch_sizes", type=int, nargs="+", default=[10, 100], help="grid batch sizes")
    ap.add_argument("--out", default="runs/validate_recommend_mnist")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ds = load_dataset("mnist", args.N, seed=0, root=args.data_root)
    p = problem_from_network(MLP(784, width=args.width, seed=0), ds.X, ds.y, device="cpu",
                             name=f"MNIST N={args.N}, width {args.width}")
    print(f"{p}: NTK + eigendecomposition {time.perf_counter() - t0:.0f} s", flush=True)
    T = args.n_steps
    log = [0, T // 8, T // 4, T // 2, T]
    momenta = np.array([-0.5, -0.25, 0.0, 0.25, 0.5])
    cells, pred, conv = [], [], []
    for b in args.batch_sizes:
        a0 = float(th.critical_lr(p, 0.0, b))
        for a in np.geomspace(0.1, 1.6, 8) * a0:
            for m in momenta:
                cells.append((float(a), float(m), b))
    lr, mom, bs = (np.array(x) for x in zip(*cells))
    with np.errstate(all="ignore"):
        pred = th.loss_curve(p, lr, mom, bs, T, log_steps=[T])[:, 0]
    conv = th.is_convergent(p, lr, mom, bs)
    t = time.perf_counter()
    rec = recommend(p, budget_steps=T, batch_sizes=args.batch_sizes, exact=False)
    print(rec.to_string(), f"\nrecommend: {time.perf_counter() - t:.0f} s", flush=True)
    rec_cfgs = [(float(r.lr), float(r.momentum), int(r.batch_size)) for r in rec.itertuples()]
    a128_crit = float(th.critical_lr(p, 0.0, 128))
    a2_crit = float(th.critical_lr(p, 0.0, 2))
    a_mid = float(np.sqrt(a2_crit * a128_crit))  # between the two edges: predicted stable at 128, not at 2
    extra = rec_cfgs + [(a_mid, 0.0, 128), (a_mid, 0.0, 2), (0.8 * a2_crit, 0.0, 2)]
    t = time.perf_counter()
    run = nn.run(p, cells + extra, T, log_steps=log, device="cpu", progress=True, repeats=args.repeats)
    print(f"nn: {time.perf_counter() - t:.0f} s", flush=True)
    G = len(cells)
    real = run.final_loss[:G]
    diverged = np.array([s == "diverged" for s in run.status[:G]]) | ~np.isfinite(real)
    summary = dict(N=p.N, width=args.width, n_steps=T, repeats=args.repeats, seconds=time.perf_counter() - t0)
    for b in args.batch_sizes:
        sel = bs == b
        ok = sel & ~diverged & conv
        best = np.nanmin(np.where(sel & ~diverged, real, np.nan))
        j = [i for i, c in enumerate(rec_cfgs) if c[2] == b][0]
        rec_real = float(run.final_loss[G + j])
        from scipy.stats import spearmanr
        rho = float(spearmanr(pred[ok], real[ok]).correlation) if ok.sum() > 2 else float("nan")
        grid_pred = ~conv[sel].reshape(8, 5)
        adj = th.stability.boundary_adjacent(grid_pred).reshape(-1)
        agree = (~conv[sel]) == diverged[sel]
        summary[f"b={b}"] = dict(
            recommended=dict(lr=rec_cfgs[j][0], momentum=rec_cfgs[j][1], predicted=float(rec.loss.iloc[j]),
                             real=rec_real, status=run.status[G + j]),
            best_cell=dict(real=float(best)), ratio_recommended_to_best=rec_real / float(best),
            spearman=rho, converging_cells=int(ok.sum()),
            divergence_agreement_away_from_boundary=float(agree[~adj].mean()),
            cells_away_from_boundary=int((~adj).sum()), divergence_agreement_all=float(agree.mean()))
    k = G + len(rec_cfgs)
    summary["b=2 vs b=128"] = dict(lr=a_mid, predicted_largest_stable_lr_at_128=a128_crit,
                                    real_at_128=run.status[k], predicted_largest_stable_lr_at_2=a2_crit,
                                    predicted_at_2="diverges" if a_mid > a2_crit else "converges",
                                    real_at_2=run.status[k + 1], diverged_step_at_2=run.diverged_step[k + 1],
                                    real_at_2_with_0_8_x_edge=run.status[k + 2])
    summary["cells"] = [dict(lr=float(a), momentum=float(m), batch_size=int(b), predicted=float(pv), real=float(rv),
                             real_se=float(se), predicted_convergent=bool(cv), real_status=st)
                        for (a, m, b), pv, rv, se, cv, st in zip(cells, pred, real, run.loss_se[:G, -1], conv,
                                                                 run.status[:G])]
    print(json.dumps({k: v for k, v in summary.items() if k != "cells"}, indent=2))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(summary, out / "predicted_vs_real")


def plot(summary, path):
    """Predicted against real final loss per converging cell, and the recommended configs (stars)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    from gfsgd import plots
    plots.style()
    cells = summary["cells"]
    fig, ax = plt.subplots(figsize=(5.2, 4.3))
    shown = [x for x in cells if x["predicted_convergent"] and x["real_status"] == "ok" and np.isfinite(x["real"])
             and np.isfinite(x["predicted"])]
    for b, c in ((10, "C0"), (100, "C1")):
        if f"b={b}" not in summary:
            continue
        pts = np.array([(x["predicted"], x["real"]) for x in shown if x["batch_size"] == b])
        ax.scatter(pts[:, 0], pts[:, 1], s=14, color=c, label=f"grid cells, b = {b}")
        rec = summary[f"b={b}"]["recommended"]
        ax.scatter([rec["predicted"]], [rec["real"]], marker="*", s=160, color=c, edgecolor="black", lw=0.6,
                   zorder=4, label=f"recommended, b = {b} (β = {rec['momentum']:.2f})")
    vals = [v for x in shown for v in (x["predicted"], x["real"])]
    vals += [summary[f"b={b}"]["recommended"][k] for b in (10, 100) if f"b={b}" in summary
             for k in ("predicted", "real")]
    lim = [min(vals) / 1.25, max(vals) * 1.25]
    ax.plot(lim, lim, color="0.5", lw=1, ls="--", label="predicted = real")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [t for t in (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0) if lim[0] <= t <= lim[1]]
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers; minor labels of a short log range would overlap
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    T = summary["n_steps"]
    ax.set_xlabel(f"predicted loss at step {T} (SD, τ = 1)")
    R = summary.get("repeats", 1)
    ax.set_ylabel(f"real network's loss at step {T}" + (f" (mean of {R} paths)" if R > 1 else ""))
    ax.set_title(f"MNIST N = {summary['N']}, width {summary['width']}: 8 lr × 5 momenta per b", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    plots.save(fig, path, formats=("png",))
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--plot_only":  # redraw the figure from a summary.json
        src = Path(sys.argv[2])
        plot(json.loads(src.read_text()), src.with_name("predicted_vs_real"))
    else:
        main()
