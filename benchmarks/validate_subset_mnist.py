#!/usr/bin/env python
"""The full MNIST run (N = 60,000) predicted from the kernel of a subset of n points (issue 26).

    python benchmarks/validate_subset_mnist.py --data_root ../shared/data [--ns 1000 2000 5000] [--seeds 0 1 2]

For each n and subset seed: MNIST n points (load_dataset("mnist", n, seed): a stratified random subset of the
60,000, the same preprocessing as benchmarks/validate_full_mnist.py), the paper's MLP (width 1000, seed 0), its
dense n x n NTK and eigendecomposition, gfsgd.spectrum.extrapolate to N = 60,000, and the SD curves of the six
configs of benchmarks/results/full_mnist.json (alpha, beta, b and steps as stored). Compared, at the logged
steps >= 100 of benchmarks/results/full_mnist_curves.npz:
  - against the SD prediction of the 60,000-point problem itself (rank 1,000 + tail, `pred_i`),
  - against the real network trained on all 60,000 (`meas_i`, mean of its seeds);
  median relative gap per config, then the median over configs; once with the subset alone and once with |d0|^2
  of all 60,000 points (one forward pass of the network, `extrapolate(..., energy=)`). The band of one subset:
  Extrapolation.band, per config and step the min and max over the central prediction, its ensemble and the
  central prediction scaled by each split-half check's error (docs/theory.md#subset); a config is covered when the
  real curve lies inside the band at >= 90% of its steps >= 100. Reported for each subset alone (what a user with
  one subset gets) and for the union of the subsets' bands. Time: the subset's kernel, eigendecomposition,
  extrapolation and SD,
  against the 445 s of the rank-1000 computation on all 60,000 points (bench_spectrum.py mnist60k).
Writes benchmarks/results/subset_mnist.json and results/subset_mnist.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gfsgd import problem_from_network  # noqa: E402
from gfsgd.data import load_dataset  # noqa: E402
from gfsgd.models import MLP  # noqa: E402
from gfsgd.ntk import network_output  # noqa: E402
from gfsgd.regimes import spectral_diagonal as sd  # noqa: E402
from gfsgd.spectrum import extrapolate  # noqa: E402

OUT = Path(__file__).parent / "results"
FULL_SECONDS = 445.0  # the rank-1000 problem on all 60,000 points: benchmarks/results/spectrum_mnist60k.json


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stored():
    info = json.loads((OUT / "full_mnist.json").read_text())
    z = np.load(OUT / "full_mnist_curves.npz")
    rows = []
    for i, c in enumerate(info["configs"]):
        rows.append(dict(cfg=(c["lr"], c["momentum"], c["batch_size"]), n_steps=c["n_steps"], steps=z[f"steps_{i}"],
                         pred=z[f"pred_{i}"], meas=z[f"meas_{i}"], band=z[f"band_{i}"]))
    return info, rows


def curves(problem, rows):
    """SD curves of every stored config on `problem`, at the stored steps."""
    out = []
    for r in rows:
        c = sd.run(problem, [r["cfg"]], int(r["n_steps"]), log_steps=r["steps"], progress=False)
        out.append(c.loss[0])
    return out


def flat(cs):
    return np.concatenate(cs)


def split(a, rows):
    """A flat prediction back into one array per stored config."""
    return np.split(np.asarray(a), np.cumsum([len(r["steps"]) for r in rows])[:-1])


def covered_fraction(meas, steps, lo, hi):
    sel = (steps >= 100) & np.isfinite(meas)
    inside = (meas[sel] >= lo[sel] * (1 - 1e-9)) & (meas[sel] <= hi[sel] * (1 + 1e-9))
    return float(inside.mean())


def gap(a, b, steps):
    sel = (steps >= 100) & np.isfinite(a) & np.isfinite(b)
    return float(np.median(np.abs(a[sel] / b[sel] - 1))) if sel.any() else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data_root", default=None)
    ap.add_argument("--ns", type=int, nargs="+", default=[1000, 2000, 5000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--N", type=int, default=60000)
    ap.add_argument("--json", default=str(OUT / "subset_mnist.json"))
    ap.add_argument("--scaling", action="store_true", help="add the data-scaling part to the stored --json")
    ap.add_argument("--scaling_n", type=int, default=2000)
    ap.add_argument("--scaling_Ns", type=int, nargs="+", default=[2000, 5000, 10000, 20000, 60000])
    ap.add_argument("--scaling_steps", type=int, default=10000)
    ap.add_argument("--scaling_seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--scaling_real_from", default=None,
                    help="take the real-network losses of the scaling part from this earlier JSON (same setting)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    if args.scaling:
        from _json_out import write_json
        stored_json = json.loads(Path(args.json).read_text())
        res = stored_json["results"]
        res["scaling"] = scaling_part(args)
        res["scaling"]["command"] = " ".join(["python", "benchmarks/validate_subset_mnist.py"] + sys.argv[1:])
        write_json(args.json, "validate_subset_mnist", res, started=started - stored_json["wall_seconds"],
                   argv=stored_json["command"].split()[1:])
        figure_scaling(res["scaling"])
        return
    info, rows = stored()
    if info["N"] != args.N:
        raise SystemExit(f"full_mnist.json holds N={info['N']}, not {args.N}")
    res = dict(N=args.N, configs=[list(r["cfg"]) for r in rows], full_seconds=FULL_SECONDS, subsets={})
    keep, keep_e = {}, {}
    # |d0|^2 over all N points: one forward pass of the network (no kernel), the `energy=` of extrapolate
    t = time.perf_counter()
    dsN = load_dataset("mnist", args.N, seed=0, root=args.data_root)
    mN = MLP(dsN.X.shape[1], width=args.width, seed=0)
    energy = float(((network_output(mN, dsN.X, device="cpu") - dsN.y.double()) ** 2).sum())
    res["energy_seconds"] = time.perf_counter() - t
    del dsN
    for n in args.ns:
        for s in args.seeds:
            t = time.perf_counter()
            ds = load_dataset("mnist", n, seed=s, root=args.data_root)
            model = MLP(ds.X.shape[1], width=args.width, seed=0)
            p = problem_from_network(model, ds.X, ds.y, device="cpu")
            t_kernel = time.perf_counter() - t
            ex = extrapolate(p, args.N)
            central = curves(ex.problem, rows)
            t_pred = time.perf_counter() - t
            bd = ex.band(lambda q: flat(curves(q, rows)))
            t_band = time.perf_counter() - t
            band = (split(bd["low"], rows), split(bd["high"], rows))
            ratio = [float(np.median(np.abs(np.log(r[np.isfinite(r)])))) for r in bd["check_ratio"]]
            g_sd = [gap(c, r["pred"], r["steps"]) for c, r in zip(central, rows)]
            g_real = [gap(c, r["meas"], r["steps"]) for c, r in zip(central, rows)]
            exe = extrapolate(p, args.N, energy=energy)
            bde = exe.band(lambda q: flat(curves(q, rows)))
            central_e = split(bde["central"], rows)
            key = f"n={n},seed={s}"
            keep_e[key] = (central_e, (split(bde["low"], rows), split(bde["high"], rows)))
            ge_sd = [gap(c, r["pred"], r["steps"]) for c, r in zip(central_e, rows)]
            ge_real = [gap(c, r["meas"], r["steps"]) for c, r in zip(central_e, rows)]
            res["subsets"][key] = dict(n=n, seed=s, kernel_seconds=t_kernel, prediction_seconds=t_pred,
                                       band_seconds=t_band, check_log_ratio_median=ratio,
                                       nu=ex.info["nu"], nu_ci=ex.info["nu_ci"], kappa=ex.info["kappa"],
                                       kappa_ci=ex.info["kappa_ci"], k_max=ex.info["k_max"],
                                       lambda_max_raw_ratio=ex.problem.lambda_max_raw / info["lambda_max_raw"],
                                       gap_vs_sd60k=g_sd, gap_vs_real=g_real, warnings=ex.info["warnings"],
                                       energy_gap_vs_sd60k=ge_sd, energy_gap_vs_real=ge_real,
                                       loss0_relative_se=ex.info["loss0_relative_se"],
                                       loss0_ratio=ex.problem.loss0 / exe.problem.loss0)
            keep[key] = (central, band)
            log(f"{key}: {t_pred:.1f} s (kernel {t_kernel:.1f} s); nu {ex.info['nu']:.3f}, kappa {ex.info['kappa']:.3f}; "
                f"gap vs SD(60k) {np.round(g_sd, 3).tolist()}, vs real {np.round(g_real, 3).tolist()}; with the "
                f"N points' |d0|^2: {np.round(ge_sd, 3).tolist()}, {np.round(ge_real, 3).tolist()}")
    res["summary"] = summarise(res, rows, keep, args, "")
    res["summary_energy"] = summarise(res, rows, keep_e, args, "energy_")
    from _json_out import write_json
    write_json(args.json, "validate_subset_mnist", res, started=started)
    figure(rows, keep_e, args)


def summarise(res, rows, keep, args, prefix):
    summary = {}
    for n in args.ns:
        keys = [f"n={n},seed={s}" for s in args.seeds]
        per_cfg_sd = np.median([res["subsets"][k][prefix + "gap_vs_sd60k"] for k in keys], axis=0)
        per_cfg_real = np.median([res["subsets"][k][prefix + "gap_vs_real"] for k in keys], axis=0)
        covered, one, width = [], [], []
        for j, r in enumerate(rows):
            lo = np.min([keep[k][1][0][j] for k in keys], axis=0)
            hi = np.max([keep[k][1][1][j] for k in keys], axis=0)
            covered.append(covered_fraction(r["meas"], r["steps"], lo, hi))
            # what one user with one subset gets: that subset's own band
            one.append([covered_fraction(r["meas"], r["steps"], keep[k][1][0][j], keep[k][1][1][j]) for k in keys])
            sel = r["steps"] >= 100
            width.append([float(np.median((keep[k][1][1][j] / keep[k][1][0][j])[sel] - 1)) for k in keys])
        one = np.asarray(one)
        secs = [res["subsets"][k]["prediction_seconds"] for k in keys]
        secs_band = [res["subsets"][k]["band_seconds"] for k in keys]
        summary[str(n)] = dict(median_gap_vs_sd60k=float(np.median(per_cfg_sd)),
                               median_gap_vs_real=float(np.median(per_cfg_real)),
                               per_config_gap_vs_sd60k=per_cfg_sd.tolist(), per_config_gap_vs_real=per_cfg_real.tolist(),
                               band_inside_fraction=covered, configs_covered=int(sum(c >= 0.9 for c in covered)),
                               single_subset_inside_fraction=one.tolist(),
                               single_subset_configs_covered=[int((one[:, i] >= 0.9).sum()) for i in range(len(keys))],
                               single_subset_band_width_median=float(np.median(width)),
                               band_seconds_median=float(np.median(secs_band)),
                               seconds_median=float(np.median(secs)), speedup=FULL_SECONDS / float(np.median(secs)))
        log(f"n={n} {prefix}: {summary[str(n)]}")
    return summary


def scaling_part(args):
    """theory.data_scaling from the n = 2,000 subset (seed 0) against the real network at each N: b = 100, two
    configs (beta = 0 at alpha = 0.5 and 1.0), --scaling_seeds paths, --scaling_steps steps; the network's step is
    the same at every N (alpha n / lambda_max_raw(n), the units of the extrapolated problems)."""
    from gfsgd import theory
    from gfsgd.ntk import NetworkProblem
    from gfsgd.regimes import nn
    started = time.perf_counter()
    ds = load_dataset("mnist", args.scaling_n, seed=0, root=args.data_root)
    model = MLP(ds.X.shape[1], width=args.width, seed=0)
    p = problem_from_network(model, ds.X, ds.y, device="cpu")
    cfgs = [(0.5, 0.0, 100), (1.0, 0.0, 100)]
    T = args.scaling_steps
    pred = theory.data_scaling(p, args.scaling_Ns, T, cfgs)
    real, real_se, secs = [], [], []
    if args.scaling_real_from:  # the real runs of an earlier run of this part (same Ns, configs, steps, seeds)
        old = json.loads(Path(args.scaling_real_from).read_text())["results"]["scaling"]
        same = all(old[k] == v for k, v in dict(n=args.scaling_n, Ns=args.scaling_Ns, steps=T,
                                               seeds=args.scaling_seeds).items())
        if not same or [tuple(c) for c in old["configs"]] != cfgs:
            raise SystemExit(f"--scaling_real_from {args.scaling_real_from} holds another setting")
        real, real_se, secs = old["real"], old["real_se"], old["nn_seconds"]
    for N in ([] if args.scaling_real_from else args.scaling_Ns):
        t = time.perf_counter()
        dsN = load_dataset("mnist", N, seed=0, root=args.data_root)
        mN = MLP(dsN.X.shape[1], width=args.width, seed=0)
        # the same network step at every N: lr_nn = alpha N / lambda_max_raw(N) with the prediction's
        # lambda_max_raw(N) = (N / n) lambda_max_raw(n), i.e. lr_nn = alpha n / lambda_max_raw(n)
        net = NetworkProblem(model=mN, X=dsN.X, y=dsN.y, lambda_max_raw=p.lambda_max_raw * N / p.N)
        run = nn.run(net, cfgs, T, repeats=len(args.scaling_seeds), seed=args.scaling_seeds[0],
                     log_steps=[0, T], dtype="float32", progress=False)
        real.append(run.loss[:, -1].tolist())
        real_se.append(run.loss_se[:, -1].tolist() if run.loss_se is not None else [0.0] * len(cfgs))
        secs.append(time.perf_counter() - t)
        log(f"N={N}: real {np.round(run.loss[:, -1], 4).tolist()}, predicted "
            f"{np.round(pred['loss'][len(real) - 1], 4).tolist()} ({secs[-1]:.0f} s)")
    real = np.asarray(real)
    gap = np.abs(pred["loss"] / real - 1)
    inside = (real >= pred["low"]) & (real <= pred["high"])
    return dict(n=args.scaling_n, Ns=args.scaling_Ns, configs=cfgs, steps=T, seeds=args.scaling_seeds,
                predicted=pred["loss"].tolist(), low=pred["low"].tolist(), high=pred["high"].tolist(),
                real=real.tolist(), real_se=real_se, gap=gap.tolist(), median_gap=float(np.median(gap)),
                max_gap=float(gap.max()), inside_band=int(inside.sum()), points=int(inside.size), nn_seconds=secs,
                real_from=args.scaling_real_from,
                seconds=time.perf_counter() - started)


def figure(rows, keep, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(13.5, 7.6))
    colors = {n: f"C{i + 2}" for i, n in enumerate(args.ns)}
    for j, (ax, r) in enumerate(zip(axes.ravel(), rows)):
        st = r["steps"]
        sel = st >= 1
        ax.plot(st[sel], r["meas"][sel], "k-", lw=1.6, label="real network, N = 60,000")
        ax.plot(st[sel], r["pred"][sel], "C0--", lw=1.3, label="SD, the 60,000-point problem")
        for n in args.ns:
            keys = [f"n={n},seed={s}" for s in args.seeds]
            lo = np.min([keep[k][1][0][j] for k in keys], axis=0)
            hi = np.max([keep[k][1][1][j] for k in keys], axis=0)
            ax.fill_between(st[sel], lo[sel], hi[sel], color=colors[n], alpha=0.18, lw=0)
            ax.plot(st[sel], np.median([keep[k][0][j] for k in keys], axis=0)[sel], color=colors[n], lw=1.0,
                    label=f"from n = {n:,} (median of {len(keys)} subsets; band)")
        a, beta, b = r["cfg"]
        ax.set_title(f"alpha = {a:.3g}, beta = {beta:g}, b = {b}", fontsize=9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("train loss")
        if j == 0:
            ax.legend(fontsize=6.5)
    fig.suptitle("MNIST, MLP width 1000: the 60,000-point run predicted from subsets' kernels (with the 60,000 "
                 "points' |d0|^2 from one forward pass)", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT / "subset_mnist.png", dpi=120)
    plt.close(fig)



def figure_scaling(s):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    Ns = np.asarray(s["Ns"])
    for j, cfg in enumerate(s["configs"]):
        pred, lo, hi = (np.asarray(s[k])[:, j] for k in ("predicted", "low", "high"))
        real, se = np.asarray(s["real"])[:, j], np.asarray(s["real_se"])[:, j]
        ax.fill_between(Ns, lo, hi, color=f"C{j}", alpha=0.2, lw=0)
        ax.plot(Ns, pred, "-", color=f"C{j}", label=f"predicted from n = {s['n']:,}: alpha = {cfg[0]:g}, b = {cfg[2]}")
        ax.errorbar(Ns, real, yerr=se, fmt="o", color=f"C{j}", ms=4, label=f"real network ({len(s['seeds'])} seeds)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(Ns)
    ax.set_xticklabels([f"{n:,}" for n in Ns])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("training points N")
    ax.set_ylabel(f"train loss after {s['steps']:,} steps")
    ax.set_title("MNIST, MLP width 1000: the loss at a fixed budget against N", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "subset_mnist_scaling.png", dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
