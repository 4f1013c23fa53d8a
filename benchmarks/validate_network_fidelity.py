#!/usr/bin/env python
"""The real network against the linear and the re-linearised predictions, on data sets no test tunes on (issue 24).

    python benchmarks/validate_network_fidelity.py                       # diabetes, breast_cancer (MLP), MNIST (CNN)
    python benchmarks/validate_network_fidelity.py --sets diabetes --steps 500   # a quick look

Per data set and network:
  - the grid: alpha = f x the SD edge of each (beta, b), f in --fractions (some above the edge, where the network
    may train on by the catapult), beta in {0, 0.5, 0.9}, b in {10, 100};
  - the real network (nn regime), --paths paths per config, with the kernel drift on a probe of examples
    (|K_t - K_0|_F / |K_0|_F and lambda_max(K_t) / lambda_max(K_0) at log-spaced steps);
  - the linear prediction: SD on the kernel at initialisation;
  - the re-linearised prediction (gfsgd.relinearize, SD after t0) for t0 = each of --t0_fractions x steps;
  - for each: the median |pred - real| / real of the final train and test loss where both converge, the Spearman
    correlation over all configs (a divergence ranks last), the divergence classification against the network,
    and the cost against the whole real grid.
Data: sklearn's bundled diabetes (regression, 442 points) and breast cancer (binary, targets +-1, 569 points),
standardised with the training split's statistics, 80% train / 20% held out; MNIST (--data_root) for the CNN
with 10 outputs (centred one-hot targets).
Writes benchmarks/results/network_fidelity.json and results/network_fidelity.png.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gfsgd import problem_from_network, relinearize, theory  # noqa: E402
from gfsgd.models import CNN, MLP  # noqa: E402
from gfsgd.regimes import nn, spectral_diagonal as sd  # noqa: E402

from validate_cnn_mnist import compare, final  # noqa: E402

OUT = Path(__file__).parent / "results"
MOMENTA = (0.0, 0.5, 0.9)
BATCHES = (10, 100)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def tabular(name, seed=0):
    """(X, y, X_test, y_test) float64 tensors: sklearn's bundled set, 80/20 split, standardised on the train part."""
    from sklearn import datasets
    if name == "diabetes":
        X, y = datasets.load_diabetes(return_X_y=True)
    else:
        X, t = datasets.load_breast_cancer(return_X_y=True)
        y = 2.0 * t - 1.0
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    n = int(0.8 * len(y))
    tr, te = idx[:n], idx[n:]
    mu, sdv = X[tr].mean(0), X[tr].std(0) + 1e-12
    X = (X - mu) / sdv
    if name == "diabetes":
        y = (y - y[tr].mean()) / y[tr].std()
    as_t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    return as_t(X[tr]), as_t(y[tr]), as_t(X[te]), as_t(y[te])


def build(name, args):
    if name in ("diabetes", "breast_cancer"):
        X, y, Xt, yt = tabular(name)
        model = MLP(X.shape[1], width=args.width, seed=args.seed, dtype=torch.float64)
        return "MLP", model, X, y, Xt, yt
    from gfsgd.data import load_dataset
    ds = load_dataset("mnist", args.N_cnn, seed=0, root=args.data_root, n_test=args.N_cnn, target="onehot")
    return "CNN", CNN(outputs=10, seed=args.seed, dtype=torch.float64), ds.X, ds.y, ds.X_test, ds.y_test


def one_set(name, args):
    kind, model, X, y, Xt, yt = build(name, args)
    t = time.perf_counter()
    p = problem_from_network(model, X, y, X_test=Xt, y_test=yt, device="cpu")
    t_kernel = time.perf_counter() - t
    log(f"{name}: {p} ({kind}) in {t_kernel:.1f} s")
    T = args.steps if kind == "MLP" else args.steps_cnn
    fractions = args.fractions if kind == "MLP" else args.fractions_cnn
    momenta = MOMENTA if kind == "MLP" else (0.0, 0.9)
    edges = {(beta, b): float(theory.critical_lr(p, beta, b)) for beta in momenta for b in BATCHES}
    cfgs = [(f * edges[(beta, b)], beta, b) for b in BATCHES for beta in momenta for f in fractions]
    steps = np.unique(np.concatenate([[0], np.round(np.geomspace(1, T, 40)).astype(int),
                                      [int(round(q * T)) for q in args.t0_fractions + args.t0_fractions_cnn]]))
    out = dict(network=kind, N=p.N, n_test=int(Xt.shape[0]), C=p.n_outputs, params=sum(q.numel() for q in
               model.parameters()), steps=T, paths=args.paths if kind == "MLP" else args.paths_cnn, kernel_seconds=t_kernel, fractions=list(fractions),
               configs=cfgs, edges={f"beta={k[0]},b={k[1]}": v for k, v in edges.items()})
    t = time.perf_counter()
    real = nn.run(p, cfgs, T, repeats=args.paths if kind == "MLP" else args.paths_cnn, log_steps=steps,
                  progress=args.progress, drift_probe=args.drift_probe if kind == "MLP" else args.drift_probe_cnn)
    out["nn_seconds"] = time.perf_counter() - t
    log(f"{name}: network {out['nn_seconds']:.0f} s")
    d = real.meta["kernel_drift"]
    out["drift"] = dict(steps=d["steps"], relative_change=d["relative_change"], lambda_max_ratio=d["lambda_max_ratio"])
    t = time.perf_counter()
    lin = sd.run(p, cfgs, T, log_steps=steps, progress=False)
    out["linear_seconds"] = time.perf_counter() - t + t_kernel
    preds = {"linear": lin}
    for q in (args.t0_fractions if kind == "MLP" else args.t0_fractions_cnn):
        t0 = int(round(q * T))
        c = relinearize.run(p, cfgs, T, t0=t0, log_steps=steps, seed=0)
        key = f"relinearized_t0={t0}"
        preds[key] = c
        out[key] = dict(t0=t0, seconds=c.meta["wall_time"], nn_seconds=c.meta["nn_seconds"],
                        kernel_seconds=float(np.nansum(c.meta["kernel_seconds"])),
                        lambda_ratio=c.meta["lambda_ratio"], kernel_change=c.meta["kernel_change"])
        log(f"{name}: re-linearised at t0 = {t0}: {c.meta['wall_time']:.0f} s")
    out["train"] = {k: compare(final(c), final(real)) for k, c in preds.items()}
    out["test"] = {k: compare(final(c, True), final(real, True)) for k, c in preds.items()}
    out["finals"] = dict(real=final(real).tolist(), real_test=final(real, True).tolist(),
                         **{k: final(c).tolist() for k, c in preds.items()},
                         **{k + "_test": final(c, True).tolist() for k, c in preds.items()})
    for k in preds:
        log(f"{name} {k}: train {out['train'][k]}")
    return out


def edges_and_recommend(name, prev, args):
    """The network's edge per (beta, b) and recommend's regret with and without probes, for a set already run."""
    from gfsgd import recommend
    kind, model, X, y, Xt, yt = build(name, args)
    p = problem_from_network(model, X, y, X_test=Xt, y_test=yt, device="cpu")
    T, cfgs = prev["steps"], [tuple(c) for c in prev["configs"]]
    S = max(1, int(round(args.probe_fraction * T)))
    real = np.asarray(prev["finals"]["real"], float)
    real_ok = np.isfinite(real) & (real < p.loss0)  # trains: finite and below the loss at initialisation
    out = dict(L0=p.loss0, probe_steps=S, edges={})
    t = time.perf_counter()
    net_ok, lin_ok = np.zeros(len(cfgs), bool), np.zeros(len(cfgs), bool)
    for key, lin_edge in prev["edges"].items():
        beta, b = float(key.split(",")[0].split("=")[1]), int(key.split(",")[1].split("=")[1])
        e = relinearize.network_edge(p, beta, b, probe_steps=S, seed=0)
        idx = [i for i, c in enumerate(cfgs) if c[1] == beta and c[2] == b]
        a = np.array([cfgs[i][0] for i in idx])
        net_ok[idx], lin_ok[idx] = a < e["edge"], a < lin_edge
        tr = [cfgs[i][0] for i in idx if real_ok[i]]
        fl = [cfgs[i][0] for i in idx if not real_ok[i]]
        out["edges"][key] = dict(network=e["edge"], bracket=e["bracket"], linear=lin_edge, probes=len(e["probes"]),
                                 real_bracket=[max(tr) if tr else None, min(fl) if fl else None])
        log(f"{name} {key}: network edge {e['edge']:.3g} (linear {lin_edge:.3g}), real grid bracket "
            f"{out['edges'][key]['real_bracket']}")
    out["edge_seconds"] = time.perf_counter() - t
    rel_key = [k for k in prev["finals"] if k.startswith("relinearized") and not k.endswith("_test")][-1]
    rel_ok = np.isfinite(np.asarray(prev["finals"][rel_key], float))
    out["classification"] = dict(network_edge=float(np.mean(net_ok == real_ok)),
                                 linear_edge=float(np.mean(lin_ok == real_ok)),
                                 relinearized=float(np.mean(rel_ok == real_ok)), relinearized_key=rel_key,
                                 real_trains=int(real_ok.sum()), configs=len(cfgs))
    if kind == "MLP":  # how the gap falls when the network is re-linearised later: does the kernel keep moving?
        out["late_t0"] = {}
        for q in args.late_t0_fractions:
            t0 = int(round(q * T))
            c = relinearize.run(p, cfgs, T, t0=t0, log_steps=[0, t0, T], seed=0)
            stats = compare(final(c), real)
            out["late_t0"][str(t0)] = dict(train=stats, seconds=c.meta["wall_time"])
            log(f"{name} re-linearised at t0 = {t0}: {stats}")
    out["recommend"] = {}
    if p.n_outputs > 1:  # the theory's loss (and so recommend) runs on one output per example
        out["recommend"] = "not run: recommend takes one output per example (the theory's loss has no C-output form)"
        return out
    for probe in (0, S):
        t = time.perf_counter()
        df = recommend(p, budget_steps=T, batch_sizes=list(BATCHES), momentum="nonnegative", probe_steps=probe)
        secs = time.perf_counter() - t
        rec = [(float(r.lr), float(r.momentum), int(r.batch_size)) for r in df.itertuples()]
        run = nn.run(p, rec, T, repeats=args.paths if kind == "MLP" else args.paths_cnn, log_steps=[0, T],
                     progress=False)
        got = final(run)
        rows = []
        for (a, beta, b), g, pred, ex in zip(rec, got, df["loss"], df["extrapolating"]):
            best = np.nanmin(np.where([c[2] == b for c in cfgs] & np.isfinite(real), real, np.nan))
            rows.append(dict(lr=a, momentum=beta, batch_size=b, predicted=float(pred), real=float(g),
                             best_grid=float(best), regret=float(g / best - 1) if np.isfinite(g) else None,
                             extrapolating=bool(ex)))
        out["recommend"]["probes" if probe else "no_probes"] = dict(rows=rows, seconds=secs)
        log(f"{name} recommend probe_steps={probe}: {rows} ({secs:.0f} s)")
    return out


def forecast_check(name, prev, args):
    """The drift forecast (relinearize.drift_forecast's rule, docs/theory.md#drift) on the stored drift curves: the
    measured drift at the step nearest probe_fraction x steps (mean over the paths) carried along
    theory.weight_travel to the last step, against the measured drift there; and holding the probe's value."""
    kind, model, X, y, Xt, yt = build(name, args)
    p = problem_from_network(model, X, y, X_test=Xt, y_test=yt, device="cpu")
    cfgs = [tuple(c) for c in prev["configs"]]
    st = np.asarray(prev["drift"]["steps"])
    rc = np.asarray(prev["drift"]["relative_change"], float)
    S = max(1, int(round(args.probe_fraction * prev["steps"])))
    jS = int(np.argmin(np.abs(st - S)))
    t = time.perf_counter()
    a, beta, b = (np.array(x, float) for x in zip(*cfgs))
    W = theory.weight_travel(p, a, beta, b, [int(st[jS]), int(st[-1])])
    pairs = {(be, bb): float(theory.critical_lr(p, be, bb)) for be, bb in set(zip(beta.tolist(), b.tolist()))}
    edge = np.array([pairs[(be, bb)] for be, bb in zip(beta.tolist(), b.tolist())])
    conv = np.isfinite(W).all(1) & (a < edge)
    with np.errstate(all="ignore"):
        fc = np.where(conv, rc[:, jS] * np.sqrt(W[:, 1] / W[:, 0]), rc[:, jS])
    real = rc[:, -1]
    ok = np.isfinite(real) & np.isfinite(fc) & (rc[:, jS] > 0)
    err, hold = np.abs(fc[ok] / real[ok] - 1), np.abs(rc[ok, jS] / real[ok] - 1)
    out = dict(probe_step=int(st[jS]), last_step=int(st[-1]), configs=int(ok.sum()), of=len(cfgs),
               median_error=float(np.median(err)), median_error_hold=float(np.median(hold)),
               within_2x=float(np.mean(np.abs(np.log(fc[ok] / real[ok])) <= np.log(2))),
               past_linear_edge=int((~conv & ok).sum()), forecast=fc.tolist(), measured=real.tolist(),
               seconds=time.perf_counter() - t)
    log(f"{name}: drift forecast from step {out['probe_step']}: median error {out['median_error']:.3f} (hold "
        f"{out['median_error_hold']:.3f}), within 2x {out['within_2x']:.2f} of {out['configs']}")
    return out


def figure(res):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sets = list(res)
    fig, axes = plt.subplots(2, len(sets), figsize=(4.6 * len(sets), 8.4), squeeze=False)
    for j, name in enumerate(sets):
        r = res[name]
        ax = axes[0, j]
        real = np.asarray(r["finals"]["real"], float)
        keys = ["linear"] + [k for k in r["finals"] if k.startswith("relinearized") and not k.endswith("_test")]
        top = np.nanmax(np.where(np.isfinite(real), real, np.nan))
        for k, (mk, col) in zip(keys, [("o", "C0"), ("s", "C1"), ("^", "C2")]):
            pred = np.asarray(r["finals"][k], float)
            ok = np.isfinite(pred) & np.isfinite(real)
            ax.scatter(real[ok], pred[ok], marker=mk, facecolors="none", edgecolors=col,
                       label=f"{k.replace('_', ' ')} (median gap {r['train'][k]['median_rel_gap']:.2f})")
            bad = ~np.isfinite(pred) & np.isfinite(real)
            ax.scatter(real[bad], np.full(bad.sum(), 3 * top), marker="x", color=col)
        lo = np.nanmin(np.where(np.isfinite(real) & (real > 0), real, np.nan))
        ax.plot([lo, 3 * top], [lo, 3 * top], "k--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("real network, final train loss (mean of paths)")
        ax.set_ylabel("prediction (x: predicted to diverge)")
        ax.set_title(f"{name}: {r['network']}, N = {r['N']}, {r['steps']} steps", fontsize=10)
        ax.legend(fontsize=7)
        ax = axes[1, j]
        st = np.asarray(r["drift"]["steps"], float)
        rel = np.asarray(r["drift"]["relative_change"], float)
        fr = np.asarray([c[0] for c in r["configs"]]) / np.asarray([r["edges"][f"beta={c[1]},b={c[2]}"]
                                                                     for c in r["configs"]])
        cmap = plt.get_cmap("viridis")
        for g in range(rel.shape[0]):
            ax.plot(st[1:], rel[g, 1:], color=cmap(min(fr[g] / max(fr), 1.0)), lw=0.9, alpha=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("|K_t - K_0|_F / |K_0|_F (probe block)")
        ax.set_title("kernel drift; colour: alpha / linear edge (yellow: largest)", fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT / "network_fidelity.png", dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["diabetes", "breast_cancer", "mnist_cnn"],
                    choices=["diabetes", "breast_cancer", "mnist_cnn"])
    ap.add_argument("--data_root", default=None)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--paths", type=int, default=3)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.8, 1.1, 1.5])
    ap.add_argument("--t0_fractions", type=float, nargs="+", default=[0.02, 0.05])
    ap.add_argument("--t0_fractions_cnn", type=float, nargs="+", default=[0.05])
    ap.add_argument("--drift_probe", type=int, default=64, help="probe examples of the drift record (MLP)")
    ap.add_argument("--drift_probe_cnn", type=int, default=16, help="probe examples of the drift record (CNN)")
    ap.add_argument("--N_cnn", type=int, default=200)
    ap.add_argument("--steps_cnn", type=int, default=1000)
    ap.add_argument("--paths_cnn", type=int, default=2)
    ap.add_argument("--fractions_cnn", type=float, nargs="+", default=[0.3, 0.8, 1.2])
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--edges", action="store_true", help="add the network edges and recommend's regrets to the "
                    "sets already in --json (run the grids first)")
    ap.add_argument("--forecast", action="store_true", help="add the drift forecast's check (from the stored drift "
                    "curves) to the sets already in --json")
    ap.add_argument("--probe_fraction", type=float, default=0.05, help="probe steps / steps (network edge, probes)")
    ap.add_argument("--late_t0_fractions", type=float, nargs="*", default=[0.25, 0.5],
                    help="with --edges: re-linearise the MLP sets this late too (the gap against t0)")
    ap.add_argument("--json", default=str(OUT / "network_fidelity.json"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    started = time.perf_counter()
    import json
    from _json_out import write_json
    if args.forecast:
        stored = json.loads(Path(args.json).read_text())
        res = stored["results"]
        for name in args.sets:
            if res.get(name, {}).get("drift"):
                res[name]["drift_forecast"] = forecast_check(name, res[name], args)
        res["forecast_command"] = " ".join(["python", "benchmarks/validate_network_fidelity.py"] + sys.argv[1:])
        write_json(args.json, "validate_network_fidelity", res, started=time.perf_counter() - stored["wall_seconds"],
                   argv=stored["command"].split()[1:])
        return
    if args.edges:
        stored = json.loads(Path(args.json).read_text())
        res = stored["results"]
        for name in args.sets:
            res[name]["edges_recommend"] = edges_and_recommend(name, res[name], args)
        res["edges_command"] = " ".join(["python", "benchmarks/validate_network_fidelity.py"] + sys.argv[1:])
        res["edges_seconds"] = time.perf_counter() - started
        grid_seconds = stored["wall_seconds"]
        write_json(args.json, "validate_network_fidelity", res, started=started - grid_seconds,
                   argv=stored["command"].split()[1:])
        return
    res = {}
    for name in args.sets:
        res[name] = one_set(name, args)
    write_json(args.json, "validate_network_fidelity", res, started=started)
    figure(res)


if __name__ == "__main__":
    main()
