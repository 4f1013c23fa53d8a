#!/usr/bin/env python
"""The shipped CNN with 10 outputs on MNIST: the real network against the kernel predictions (issue 23).

    python benchmarks/validate_cnn_mnist.py mse --data_root ../shared/data          # squared loss, one-hot targets
    python benchmarks/validate_cnn_mnist.py ce --data_root ../shared/data           # cross-entropy
    python benchmarks/validate_cnn_mnist.py mse --N 2000 --n_test 1000 --lin_paths 32  # the issue's size (GPU)

mse: MNIST N training images and n_test held out, gfsgd.models.CNN(outputs=10), centred one-hot targets, squared
    loss |F - Y|^2 / (2N). The empirical NTK is the N C x N C kernel (dense, eigh). The grid: alpha = f x the
    C-output SD edge of each (beta, b), f in FRACTIONS, beta in {0, 0.5, 0.9}, b in {10, 100}: 4 x 3 x 2 = 24
    configs over --steps steps. The real network (nn regime) runs --paths sample paths of each config from one
    initialisation (mean over paths), against
      - the SD regime with the C-output coupling (what the theory's edge and the choice below use),
      - the linearized regime, --lin_paths sampled paths: the exact linearised dynamics whose expectation the full
        regime computes (the full regime itself costs O((N C)^3) per step: out of reach at N C = 10^4 on a CPU;
        tests/test_outputs.py checks it against this Monte Carlo at small N),
      - the class-diagonal approximation Theta ~ K (x) I_C (SD on it), with its measured error.
    Reported for the final train loss and the final test loss: the median |pred - real| / real over the configs
    where both converge, the Spearman rank correlation over all configs (a divergence ranks last), the fraction
    of configs whose divergence is predicted right, and the regret of the prediction's choice (the real loss of
    the predicted-best cell over the best real cell, minus 1); and the test accuracy, real against linearized.
ce: the same CNN on softmax cross-entropy (N smaller). The predicted edge (theory.critical_lr_loss: the SD edge of
    the Gauss-Newton kernel at initialisation) against the real network's divergence lr for b in {10, 100},
    beta in {0, 0.5}, found by two rounds of a vectorised bisection (13 factors from 1/16 to 16 of the
    prediction, then 8 points inside the bracket found): a config "diverges" when its loss leaves the run (1e6 L_0, non-finite) or ends above L_0 (no progress).
    Then a grid below the edge, the linearized regime on cross-entropy against the network: final train loss and
    test accuracy, median gaps.
Writes benchmarks/results/cnn_mnist.json (each part its own key) and results/cnn_mnist.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gfsgd import problem_from_network, theory  # noqa: E402
from gfsgd.classdiag import class_diagonal  # noqa: E402
from gfsgd.data import load_dataset  # noqa: E402
from gfsgd.models import CNN  # noqa: E402
from gfsgd.regimes import linearized, nn, spectral_diagonal as sd  # noqa: E402

OUT = Path(__file__).parent / "results"
FRACTIONS = (0.2, 0.45, 0.8, 1.25)
MOMENTA = (0.0, 0.5, 0.9)
BATCHES = (10, 100)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def compare(pred, real):
    """pred, real: final losses [G] (NaN or inf where diverged). Median relative gap where both converge,
    Spearman over all (a divergence ranks last), divergence agreement, regret of the predicted choice."""
    from scipy.stats import spearmanr
    pred, real = np.asarray(pred, float), np.asarray(real, float)
    pd_, rd = ~np.isfinite(pred), ~np.isfinite(real)
    both = ~pd_ & ~rd
    gap = np.abs(pred[both] - real[both]) / real[both]
    rho = spearmanr(np.where(pd_, np.inf, pred), np.where(rd, np.inf, real)).statistic
    out = dict(median_rel_gap=float(np.median(gap)) if gap.size else None,
               max_rel_gap=float(gap.max()) if gap.size else None, n_both_converge=int(both.sum()),
               spearman=float(rho), divergence_agreement=float(np.mean(pd_ == rd)),
               predicted_diverged=int(pd_.sum()), real_diverged=int(rd.sum()),
               false_divergence=int((pd_ & ~rd).sum()), missed_divergence=int((~pd_ & rd).sum()))
    if (~pd_).any() and (~rd).any():
        pick = int(np.nanargmin(np.where(pd_, np.inf, pred)))
        out.update(choice=pick, regret=float(real[pick] / real[~rd].min() - 1) if np.isfinite(real[pick]) else None)
    return out


def final(curves, test=False):
    x = (curves.test_loss if test else curves.loss)[:, -1].copy()
    x[[s == "diverged" for s in curves.status]] = np.inf
    return x


def mse_part(args):
    ds = load_dataset("mnist", args.N, seed=0, root=args.data_root, n_test=args.n_test, target="onehot")
    model = CNN(outputs=10, seed=args.seed, dtype=torch.float64)
    t = time.perf_counter()
    p = problem_from_network(model, ds.X, ds.y, X_test=ds.X_test, y_test=ds.y_test, device="cpu")
    t_kernel = time.perf_counter() - t
    log(f"{p} in {t_kernel:.0f} s")
    edges = {(beta, b): float(theory.critical_lr(p, beta, b)) for beta in MOMENTA for b in BATCHES}
    cfgs = [(f * edges[(beta, b)], beta, b) for b in BATCHES for beta in MOMENTA for f in FRACTIONS]
    T = args.steps
    steps = np.unique(np.round(np.logspace(0, np.log10(T), 40)).astype(int))
    steps = np.concatenate([[0], steps])
    out = dict(N=args.N, n_test=args.n_test, C=10, steps=T, paths=args.paths, lin_paths=args.lin_paths,
               params=sum(q.numel() for q in model.parameters()), kernel_seconds=t_kernel,
               edges={f"beta={k[0]},b={k[1]}": v for k, v in edges.items()}, fractions=FRACTIONS, configs=cfgs)
    t = time.perf_counter()
    pred_sd = sd.run(p, cfgs, T, log_steps=steps, progress=False)
    out["sd_seconds"] = time.perf_counter() - t
    log(f"SD: {out['sd_seconds']:.0f} s")
    approx, report = class_diagonal(p)
    cd_cfgs = [(a * report["lr_factor"], beta, b) for a, beta, b in cfgs]
    pred_cd = sd.run(approx, cd_cfgs, T, log_steps=steps, progress=False)
    t = time.perf_counter()
    pred_lin = linearized.run(p, cfgs, T, repeats=args.lin_paths, log_steps=steps, progress=False, seed=100,
                              chunk_size=len(cfgs) // len(BATCHES))  # one chunk per batch size (cfgs are b-major)
    out["linearized_seconds"] = time.perf_counter() - t
    log(f"linearized ({args.lin_paths} paths): {out['linearized_seconds']:.0f} s")
    t = time.perf_counter()
    real = nn.run(p, cfgs, T, repeats=args.paths, log_steps=steps, progress=args.progress, dtype=args.nn_dtype)
    out["nn_seconds"] = time.perf_counter() - t
    log(f"network ({args.paths} paths): {out['nn_seconds']:.0f} s")
    out["train"] = {name: compare(final(c), final(real)) for name, c in
                    (("sd", pred_sd), ("linearized", pred_lin), ("class_diagonal_sd", pred_cd))}
    out["test"] = {name: compare(final(c, True), final(real, True)) for name, c in
                   (("sd", pred_sd), ("linearized", pred_lin))}
    acc_real, acc_lin = real.test_accuracy[:, -1], pred_lin.test_accuracy[:, -1]
    ok = np.isfinite(acc_real) & np.isfinite(acc_lin)
    out["test_accuracy"] = dict(real=acc_real.tolist(), linearized=acc_lin.tolist(),
                                median_abs_gap=float(np.median(np.abs(acc_real[ok] - acc_lin[ok]))) if ok.any()
                                else None)
    rel = np.abs(final(pred_cd) - final(pred_sd)) / final(pred_sd)
    out["class_diagonal"] = dict(offdiag_rel=report["offdiag_rel"], diag_spread_rel=report["diag_spread_rel"],
                                 lr_factor=report["lr_factor"],
                                 median_rel_diff_final_loss_vs_sd=float(np.nanmedian(rel[np.isfinite(rel)])))
    out["finals"] = dict(real=final(real).tolist(), real_se=real.loss_se[:, -1].tolist(),
                         sd=final(pred_sd).tolist(), linearized=final(pred_lin).tolist(),
                         real_test=final(real, True).tolist(), sd_test=final(pred_sd, True).tolist(),
                         linearized_test=final(pred_lin, True).tolist())
    _figure(out, cfgs)
    return out


def _figure(out, cfgs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    f = out["finals"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, key, title in ((axes[0], "", "final train loss"), (axes[1], "_test", "final test loss")):
        real = np.asarray(f["real" + key])
        lo, hi = np.nanmin(real[np.isfinite(real)]) / 2, np.nanmax(real[np.isfinite(real)]) * 2
        for name, mk in (("sd", "o"), ("linearized", "s")):
            pred = np.asarray(f[name + key])
            ok = np.isfinite(pred) & np.isfinite(real)
            ax.scatter(real[ok], pred[ok], marker=mk, facecolors="none", edgecolors="C0" if name == "sd" else "C1",
                       label=f"{name} (both converge: {ok.sum()})")
            div = ~np.isfinite(real) | ~np.isfinite(pred)
            if div.any():
                ax.scatter(np.where(np.isfinite(real[div]), real[div], hi), np.where(np.isfinite(pred[div]),
                           pred[div], hi), marker="x", color="C0" if name == "sd" else "C1",
                           label=f"{name}: a divergence (drawn at the edge)")
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="real network (mean of paths)", ylabel="prediction", title=title)
        ax.legend(fontsize=8)
    fig.suptitle(f"CNN, 10 outputs, MNIST N = {out['N']} ({out['n_test']} held out), {out['steps']} steps, "
                 f"{len(cfgs)} configs", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT / "cnn_mnist.png", dpi=130)
    plt.close(fig)


def _diverges(c, loss0):
    fin = c.loss[:, -1]
    return np.array([s == "diverged" or not np.isfinite(v) or v > loss0 for s, v in zip(c.status, fin)])


def ce_part(args):
    N = args.N_ce
    ds = load_dataset("mnist", N, seed=0, root=args.data_root, n_test=args.n_test_ce, target="onehot")
    model = CNN(outputs=10, seed=args.seed, dtype=torch.float64)
    p = problem_from_network(model, ds.X, ds.y, X_test=ds.X_test, y_test=ds.y_test, device="cpu")
    log(f"CE: {p}")
    S = args.ce_steps
    out = dict(N=N, n_test=args.n_test_ce, bisection_steps=S, edges={})
    # theory.critical_lr_loss(p, beta, b, "cross_entropy"), with the Gauss-Newton kernel decomposed once
    gn, factor = theory.gauss_newton_problem(p, "cross_entropy")

    def ce_edge(beta, b):
        return float(theory.critical_lr(gn, beta, b)) / factor

    for beta in (0.0, 0.5):
        for b in BATCHES:
            pred = ce_edge(beta, b)
            lo_f, hi_f = None, None
            grid = np.geomspace(1 / 16, 16.0, 13)
            for rnd in range(2):
                c = nn.run(p, [(f * pred, beta, b) for f in grid], S, loss="cross_entropy", progress=False,
                           dtype=args.nn_dtype, log_steps=[0, S])
                div = _diverges(c, c.loss[0, 0])
                k = int(np.argmax(div)) if div.any() else None
                if k is None:
                    lo_f = grid[-1]
                    break
                if k == 0:
                    hi_f = grid[0]
                    break
                lo_f, hi_f = grid[k - 1], grid[k]
                grid = np.geomspace(lo_f, hi_f, 10)[1:-1]
            real = float(np.sqrt(lo_f * hi_f)) * pred if lo_f and hi_f else None
            out["edges"][f"beta={beta},b={b}"] = dict(predicted=pred, real_bracket=[None if lo_f is None else
                                                      lo_f * pred, None if hi_f is None else hi_f * pred],
                                                      real=real, ratio=None if real is None else real / pred)
            log(f"CE edge beta={beta} b={b}: predicted {pred:.3g}, real bracket "
                f"{out['edges'][f'beta={beta},b={b}']['real_bracket']}")
    cfgs = [(f * ce_edge(beta, b), beta, b) for b in BATCHES for beta in (0.0, 0.5) for f in (0.25, 0.5)]
    T = args.ce_grid_steps
    real = nn.run(p, cfgs, T, loss="cross_entropy", repeats=args.paths, progress=False, dtype=args.nn_dtype,
                  log_steps=[0, T])
    lin = linearized.run(p, cfgs, T, loss="cross_entropy", repeats=args.lin_paths, progress=False,
                         log_steps=[0, T], seed=100)
    fr, fl = final(real), final(lin)
    ok = np.isfinite(fr) & np.isfinite(fl)
    ar, al = real.test_accuracy[:, -1], lin.test_accuracy[:, -1]
    out["grid"] = dict(configs=cfgs, steps=T, real=fr.tolist(), linearized=fl.tolist(),
                       median_rel_gap_train=float(np.median(np.abs(fl[ok] - fr[ok]) / fr[ok])) if ok.any() else None,
                       accuracy_real=ar.tolist(), accuracy_linearized=al.tolist(),
                       median_abs_gap_accuracy=float(np.nanmedian(np.abs(ar - al))))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["mse", "ce"])
    ap.add_argument("--data_root", default=None)
    ap.add_argument("--N", type=int, default=1000)
    ap.add_argument("--n_test", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--paths", type=int, default=3, help="sample paths of the real network per config")
    ap.add_argument("--lin_paths", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="the CNN's initialisation")
    ap.add_argument("--nn_dtype", default="float32")
    ap.add_argument("--N_ce", type=int, default=500)
    ap.add_argument("--n_test_ce", type=int, default=500)
    ap.add_argument("--ce_steps", type=int, default=300, help="steps of each bisection probe")
    ap.add_argument("--ce_grid_steps", type=int, default=1000)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--json", default=str(OUT / "cnn_mnist.json"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    started = time.perf_counter()
    res = mse_part(args) if args.part == "mse" else ce_part(args)
    path = Path(args.json)
    prev = json.loads(path.read_text()) if path.exists() else {}
    parts = prev.get("results", {})
    parts[args.part] = dict(res, command=" ".join(["python", "benchmarks/validate_cnn_mnist.py"] + sys.argv[1:]),
                            seconds=time.perf_counter() - started)
    from _json_out import write_json
    write_json(path, "validate_cnn_mnist", parts, started=started)
    print(json.dumps({k: v for k, v in res.items() if k not in ("finals", "configs")}, indent=1, default=str))


if __name__ == "__main__":
    main()
