#!/usr/bin/env python
"""Predictions without an N x N matrix against the dense kernel (N = 8,000) and against the real network
trained on all of MNIST (N = 60,000). docs/theory.md#full-datasets.

    python benchmarks/validate_full_mnist.py dense --data_root ../shared/data
    python benchmarks/validate_full_mnist.py full --data_root ../shared/data [--problem FILE]

dense: MNIST N = 8,000, the paper's MLP (width 1000). The dense problem (NTK + eigh) against rank-k problems
    (top k by block Krylov + the power-law tail) for k in {100, 300, 1000}: top-k eigenvalues against eigh, and
    the max relative gap of the SD (tau = 1) and theory (renewal equation) curves over steps 1..10^4 for 6
    configs (b in {1, 10, 100}, beta in {0, -0.3}, alpha = 1). Writes results/full_mnist_dense.json.
full: all 60,000 MNIST training images, width 1000. The rank-1000 problem (from --problem, e.g. the file
    bench_spectrum.py mnist60k --save wrote, or computed here in float32); the real network trained with
    b in {10, 100} (--seeds batch-sampler seeds each, mean ± s.e.) for 10^4 steps and b = 1000 (one seed) for
    2,000 steps, beta in {0, -0.3}, alpha = half the predicted critical lr (SD, tau = 1) of each (beta, b).
    Prints per config the relative gap predicted/measured (median and max over logged steps >= 100) and the
    late-time loss exponents (predicted and fitted on the real curve, steps 10^3..10^4); writes
    results/full_mnist.json and results/full_mnist.png (the curves, with the tail band of the prediction).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gfsgd import Problem, problem_from_network, theory  # noqa: E402
from gfsgd.data import load_dataset  # noqa: E402
from gfsgd.models import MLP  # noqa: E402
from gfsgd.regimes import spectral_diagonal as sd  # noqa: E402
from gfsgd.spectrum import band_problems, spectrum_summary  # noqa: E402

OUT = Path(__file__).parent / "results"


def rel_gap(a, b):
    return np.abs(np.asarray(a) / np.asarray(b) - 1)


def dense_part(args):
    N = args.N or 8000
    ds = load_dataset("mnist", N, seed=0, root=args.data_root)
    model = MLP(ds.X.shape[1], width=args.width, seed=0)
    t = time.perf_counter()
    pd = problem_from_network(model, ds.X, ds.y, device="cpu")
    t_dense = time.perf_counter() - t
    print(f"dense: {pd} in {t_dense:.1f} s", flush=True)
    cfgs = [(1.0, beta, b) for b in (1, 10, 100) for beta in (0.0, -0.3)]
    n = 10 ** 4
    steps = np.unique(np.concatenate([np.arange(0, 11), np.round(np.logspace(1, 4, 150)).astype(int)]))
    a, m, bs = (np.array(x) for x in zip(*cfgs))
    ref_sd = sd.run(pd, cfgs, n, log_steps=steps, progress=False).loss
    ref_th = theory.loss_curve(pd, a, m, bs, n, log_steps=steps)
    out = dict(N=N, width=args.width, dense_seconds=t_dense, configs=cfgs, ranks={})
    for k in (100, 300, 1000):
        t = time.perf_counter()
        pk = problem_from_network(model, ds.X, ds.y, device="cpu", rank=k)
        tk = time.perf_counter() - t
        rel = float(((pk.eigvals[:k] - pd.eigvals[:k]).abs() / pd.eigvals[:k]).max())
        # the rank-k problem sorts its N modes: compare its exact top k (meta) with eigh
        top = torch.tensor(pk.meta["spectrum"]["top"]["eigvals"], dtype=torch.float64)
        rel_top = float(((top - pd.eigvals[:k]).abs() / pd.eigvals[:k]).max())
        g_sd = rel_gap(sd.run(pk, cfgs, n, log_steps=steps, progress=False).loss, ref_sd)[:, steps >= 1].max(1)
        g_th = rel_gap(theory.loss_curve(pk, a, m, bs, n, log_steps=steps), ref_th)[:, steps >= 1].max(1)
        spec = pk.meta["spectrum"]
        out["ranks"][k] = dict(seconds=tk, top_k_max_rel_err=rel_top, sorted_first_k_rel=rel,
                               sd_max_gap=g_sd.tolist(), theory_max_gap=g_th.tolist(),
                               sd_max_gap_all=float(g_sd.max()), theory_max_gap_all=float(g_th.max()),
                               nu=spec["tail"]["nu"], c_exponent=spec["tail"]["constraints"]["c_exponent"],
                               kappa_fit=spec["tail"]["kappa"], warnings=spec["warnings"], passes=spec["passes"])
        print(f"k={k}: {tk:.1f} s, top-k eigenvalues vs eigh max rel err {rel_top:.2e}; max rel gap over steps "
              f"1..1e4 per config  SD {np.round(g_sd, 4).tolist()}  theory {np.round(g_th, 4).tolist()}",
              flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "full_mnist_dense.json").write_text(json.dumps(out, indent=1, default=float))
    print(f"written {OUT / 'full_mnist_dense.json'}")


def late_exponent(steps, loss, lo=1000, hi=10000):
    sel = (steps >= lo) & (steps <= hi) & np.isfinite(loss) & (loss > 0)
    if sel.sum() < 5:
        return float("nan")
    return float(-np.polyfit(np.log(steps[sel]), np.log(loss[sel]), 1)[0])


def full_part(args):
    from gfsgd.ntk import NetworkProblem
    from gfsgd.regimes import nn
    N = args.N or 60000
    t0 = time.perf_counter()
    ds = load_dataset("mnist", N, seed=0, root=args.data_root)
    model = MLP(ds.X.shape[1], width=args.width, seed=0)
    if args.problem:
        p = Problem.load(args.problem)
        if p.N != N:
            raise SystemExit(f"--problem has N={p.N}, expected {N}")
    else:
        p = problem_from_network(model, ds.X, ds.y, device="cpu", dtype="float32", rank=args.rank, progress=True)
    print(spectrum_summary(p), flush=True)
    net = NetworkProblem(model=model, X=ds.X, y=ds.y, lambda_max_raw=p.lambda_max_raw, name=p.name)
    groups = [(b, args.seeds, args.n_steps) for b in (10, 100)] + [(1000, 1, args.n_steps_1000)]
    out = dict(N=N, width=args.width, problem=p.name, lambda_max_raw=p.lambda_max_raw,
               spectrum={k: v for k, v in p.meta["spectrum"].items() if k != "top"}, configs=[])
    lo, hi = band_problems(p)
    fig_rows = []
    for b, seeds, n in groups:
        betas = [0.0, -0.3]
        acrit = [float(theory.critical_lr(p, beta, b)) for beta in betas]
        cfgs = [(0.5 * ac, beta, b) for ac, beta in zip(acrit, betas)]
        steps = np.unique(np.concatenate([np.arange(0, 11), np.round(np.logspace(1, np.log10(n), args.n_log))]
                                         ).astype(int))
        t = time.perf_counter()
        cur = nn.run(p, cfgs, n, network=net, repeats=seeds, log_steps=steps, dtype="float32", device="cpu",
                     seed=0, progress=not args.no_progress)
        t_nn = time.perf_counter() - t
        pred = sd.run(p, cfgs, n, log_steps=steps, progress=False).loss
        a, m, bs = (np.array(x) for x in zip(*cfgs))
        pred_th = theory.loss_curve(p, a, m, bs, n, log_steps=steps)
        band = np.stack([sd.run(q, cfgs, n, log_steps=steps, progress=False).loss for q in (lo, hi)])
        for j, cfg in enumerate(cfgs):
            meas = cur.loss[j]
            sel = (steps >= 100) & np.isfinite(meas)
            gap = rel_gap(pred[j][sel], meas[sel])
            row = dict(lr=cfg[0], momentum=cfg[1], batch_size=b, seeds=seeds, n_steps=n, alpha_crit=acrit[j],
                       status=cur.status[j], gap_median=float(np.median(gap)), gap_max=float(gap.max()),
                       theory_vs_sd_max=float(rel_gap(pred_th[j], pred[j]).max()),
                       exponent_pred=late_exponent(steps, pred[j], hi=n),
                       exponent_real=late_exponent(steps, meas, hi=n), nn_seconds=t_nn,
                       final_pred=float(pred[j][-1]), final_real=float(meas[-1]),
                       final_real_se=float(cur.loss_se[j][-1]) if cur.loss_se is not None else 0.0)
            if n < 10 ** 4:  # b = 1000 runs 2,000 steps: its late window is 200..2000
                row["exponent_pred"] = late_exponent(steps, pred[j], lo=200, hi=n)
                row["exponent_real"] = late_exponent(steps, meas, lo=200, hi=n)
            out["configs"].append(row)
            fig_rows.append(dict(steps=steps, pred=pred[j], band=band[:, j], meas=meas,
                                 se=None if cur.loss_se is None else cur.loss_se[j], cfg=cfg, seeds=seeds))
            print(f"b={b:5d} beta={cfg[1]:+.1f} alpha={cfg[0]:.4g} (alpha_crit {acrit[j]:.4g}): gap median "
                  f"{row['gap_median']:.3f} max {row['gap_max']:.3f}; exponent predicted {row['exponent_pred']:.3f} "
                  f"measured {row['exponent_real']:.3f}; nn {t_nn:.0f} s", flush=True)
    out["wall_seconds"] = time.perf_counter() - t0
    OUT.mkdir(exist_ok=True)
    (OUT / "full_mnist.json").write_text(json.dumps(out, indent=1, default=float))
    np.savez(OUT / "full_mnist_curves.npz", **{f"{k}_{i}": (v if v is not None else np.zeros(0))
                                              for i, r in enumerate(fig_rows) for k, v in r.items()
                                              if k in ("steps", "pred", "band", "meas", "se")})
    plot(fig_rows, OUT / "full_mnist.png", N, p.meta["spectrum"]["rank"])
    print(f"written {OUT / 'full_mnist.json'} and full_mnist.png ({out['wall_seconds']:.0f} s)")


def plot(rows, path, N, rank):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    bs = sorted({r["cfg"][2] for r in rows})
    fig, axes = plt.subplots(1, len(bs), figsize=(4.6 * len(bs), 4.0), sharey=True)
    colors = {0.0: "C0", -0.3: "C3"}
    for ax, b in zip(np.atleast_1d(axes), bs):
        for r in (r for r in rows if r["cfg"][2] == b):
            s, col = r["steps"], colors[r["cfg"][1]]
            ok = s >= 1
            lab = f"β={r['cfg'][1]:+.1f}, α={r['cfg'][0]:.3g}"
            ax.fill_between(s[ok], r["band"].min(0)[ok], r["band"].max(0)[ok], color=col, alpha=0.15, lw=0)
            ax.plot(s[ok], r["pred"][ok], color=col, lw=1.6, label=f"predicted (SD, rank {rank} + tail), {lab}")
            ax.plot(s[ok], r["meas"][ok], color=col, lw=1.0, ls="--",
                    label=f"network ({r['seeds']} seed{'s' if r['seeds'] > 1 else ''}), {lab}")
            if r["se"] is not None and r["seeds"] > 1:
                ax.fill_between(s[ok], (r["meas"] - 2 * r["se"])[ok], (r["meas"] + 2 * r["se"])[ok], color=col,
                                alpha=0.3, lw=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"b = {b}")
        ax.set_xlabel("step t")
        ax.grid(alpha=0.3, which="both", lw=0.4)
        ax.legend(fontsize=6.5, loc="lower left")
    np.atleast_1d(axes)[0].set_ylabel("training loss  |f - y|² / (2N)")
    fig.suptitle(f"All of MNIST (N = {N}), width-1000 MLP: the network (dashed, mean of the seeds; shading ±2 s.e.) "
                 f"against the SD prediction from rank {rank} + tail, no N×N matrix (solid; its tail band is "
                 f"thinner than the line)", fontsize=8.5)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def redraw():
    """Redraw full_mnist.png from full_mnist.json and full_mnist_curves.npz (no training)."""
    info = json.loads((OUT / "full_mnist.json").read_text())
    z = np.load(OUT / "full_mnist_curves.npz")
    rows = []
    for i, c in enumerate(info["configs"]):
        se = z[f"se_{i}"] if f"se_{i}" in z and z[f"se_{i}"].size else None
        rows.append(dict(steps=z[f"steps_{i}"], pred=z[f"pred_{i}"], band=z[f"band_{i}"], meas=z[f"meas_{i}"], se=se,
                         cfg=(c["lr"], c["momentum"], c["batch_size"]), seeds=c["seeds"]))
    plot(rows, OUT / "full_mnist.png", info["N"], info["spectrum"]["rank"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=["dense", "full", "redraw"])
    ap.add_argument("--data_root", default=None)
    ap.add_argument("--N", type=int, default=None)
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--rank", type=int, default=1000)
    ap.add_argument("--problem", default=None, help="full: a saved rank-k Problem of this N (skips the eigenpairs)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n_steps", type=int, default=10 ** 4)
    ap.add_argument("--n_steps_1000", type=int, default=2000)
    ap.add_argument("--n_log", type=int, default=60, help="log-spaced logged steps beyond 10")
    ap.add_argument("--no_progress", action="store_true")
    args = ap.parse_args()
    if args.part == "redraw":
        return redraw()
    if not args.data_root:
        raise SystemExit("error: --data_root is required (the folder holding mnist/)")
    (dense_part if args.part == "dense" else full_part)(args)


if __name__ == "__main__":
    main()
