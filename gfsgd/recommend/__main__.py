"""python -m gfsgd.recommend: the recommendation for a problem, as a table and two PNGs (see gfsgd.recommend)."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .. import theory as th
from ..spectrum.extrapolate import Extrapolation
from ..builder import add_model_args, add_problem_args, extrapolation_from_args, problem_from_args
from . import MOMENTA, predicted_loss, recommend
from ..errors import InputError

# ------------------------------------------------------------------------------------------ command line
def _parser():
    p = argparse.ArgumentParser(prog="python -m gfsgd.recommend", description=(
        "What to run: the (alpha, beta) that minimise the predicted loss at a budget for each batch size, the "
        "stability edges around them and the critical batch size. Learning rates are in normalised-kernel units "
        "(lambda_max = 1); lr_nn is the network's own."), formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_problem_args(p, rank_default=None, title="problem (a dataset through a network, a saved kernel, or a "
                                                  "synthetic power law)")
    add_model_args(p, network=False)
    p.add_argument("--seed", type=int, default=0, help="data, network and synthetic seed")
    p.set_defaults(N=256, basis="auto", rank_must_be_positive=True)
    r = p.add_argument_group("budget and search")
    r.add_argument("--budget_steps", type=int, default=None, help="SGD steps")
    r.add_argument("--budget_samples", type=int, default=None, help="samples processed (steps x batch size)")
    r.add_argument("--batch_size", type=int, nargs="+", default=None,
                   help="candidate batch sizes; None: the powers of ten 1, 10, 100, ... up to N")
    r.add_argument("--objective", choices=["train", "test"], default="train",
                   help="the loss to minimise at the budget (test: the predicted held-out loss, needs --n_test)")
    r.add_argument("--momentum", choices=list(MOMENTA), default="any",
                   help="momenta searched: any (negative ones too), nonnegative, or zero")
    r.add_argument("--tau", type=float, default=1.0, help="SD parameter of the predictions")
    r.add_argument("--probe_steps", type=int, default=0,
                   help="train the network on the best candidates for this many steps and choose from its "
                        "re-linearised predictions (network problems; 0: the prediction alone)")
    r.add_argument("--probe_top", type=int, default=4, help="candidates probed per batch size")
    r.add_argument("--schedules", action="store_true",
                   help="also design a schedule per batch size (gfsgd.design_schedule) and save each as JSON in --out "
                        "(schedule_b<b>.json: run it with --sched_file)")
    r.add_argument("--out", default=None, help="folder for the PNGs; None: runs/recommend-<time>")
    return p


def _problem_from_args(args):
    """The problem of the options (gfsgd.builder, the one problem builder); with --subset the Extrapolation (its
    central problem, and the band that the table's loss_low / loss_high columns show)."""
    if getattr(args, "subset", None):
        return extrapolation_from_args(args, progress=False)
    return problem_from_args(args, progress=False)


def main(argv=None):
    import datetime
    from pathlib import Path

    args = _parser().parse_args(argv)
    # the output folder first: a bad --out must not waste the whole computation
    out = Path(args.out or Path("runs") / f"recommend-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out} exists and is not a folder; give a folder for the table and the PNGs")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"error: --out {out} cannot be created: {exc.strerror}") from None
    try:
        given = _problem_from_args(args)
        problem = given.problem if isinstance(given, Extrapolation) else given  # its central problem
        sizes = args.batch_size or [10 ** j for j in range(len(str(problem.N))) if 10 ** j <= problem.N]
        df = recommend(given, budget_steps=args.budget_steps, budget_samples=args.budget_samples,
                       batch_sizes=sizes, objective=args.objective, momentum=args.momentum, tau=args.tau,
                       probe_steps=args.probe_steps, probe_top=args.probe_top, schedules=args.schedules)
    except (InputError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    cols = ["batch_size", "lr", "momentum", "loss", "loss_low", "loss_high", "horizon", "lr_crit_sd", "lr_crit_exact", "lr_margin",
            "steps_to_target", "samples_to_target", "lr_nn", "b_noise", "extrapolating", "kernel_change",
            "lr_unprobed", "momentum_unprobed", "loss_unprobed", "schedule_family", "schedule_lr",
            "schedule_momentum", "schedule_steps", "loss_schedule"]
    print(f"{problem.name}: N = {problem.N}, L0 = {problem.loss0:.4g}, objective {args.objective}, "
          f"budget {df.attrs['budget']}, target loss {df.attrs['target']:.4g}")
    print(df[[c for c in cols if c in df and df[c].notna().any()]].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    cb = df.attrs["critical_batch_size"]
    print(f"\ncritical batch size ({cb['definition']}): {cb['batch_size']}")
    mc = df.attrs["mccandlish"]
    print(f"McCandlish B_noise / B_simple at the start: {mc['at_start']['B_noise']:.4g} / "
          f"{mc['at_start']['B_simple']:.4g}; at the budget ({mc['along']}): {mc['at_budget']['B_noise']:.4g} / "
          f"{mc['at_budget']['B_simple']:.4g}")
    lsr = df.attrs["lsr"]
    devs = ", ".join(f"x{k}: {100 * v:.1f}%" for k, v in lsr["deviation"].items())
    verdict = (f"breaks at kappa = {lsr['breaks_at']:g}" if np.isfinite(lsr["breaks_at"]) else
               "holds for every kappa tried")
    print(f"linear scaling (kappa b, kappa alpha) from b = {lsr['baseline']['batch_size']}, alpha = "
          f"{lsr['baseline']['lr']:.4g}, beta = 0, within 5% of the loss against samples: {verdict} "
          f"(max deviations {devs})")
    if df.attrs["skipped"]:
        print(f"skipped (larger than N): {df.attrs['skipped']}")
    for w in df.attrs.get("warnings", []):
        print(f"warning: {w}")
    written = ""
    if "schedule" in df:
        for r in df.itertuples():
            r.schedule.save(out / f"schedule_b{int(r.batch_size)}.json")
        written = ", schedule_b<b>.json (the base lr and momentum are the schedule_lr, schedule_momentum columns)"
        df = df.drop(columns=["schedule"])
    df.to_csv(out / "recommendation.csv", index=False)
    _plots(problem, df, out, args.tau)
    print(f"\nwritten: {out}/recommendation.csv, loss_vs_batch.png, stability_map.png{written}")
    return df


def _plots(problem, df, out, tau):
    import matplotlib.pyplot as plt

    from .. import plots
    plots.style()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    d = df[np.isfinite(df["loss"])]
    ax.plot(d["batch_size"], d["loss"], "o-", color="C0", label=f"predicted {df.attrs['objective']} loss at the budget")
    if "loss_low" in d:  # a subset's extrapolation: its band
        ax.fill_between(d["batch_size"], d["loss_low"], d["loss_high"], color="C0", alpha=0.2, lw=0,
                        label="band (extrapolated from the subset)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size b")
    ax.set_ylabel("loss at the budget (at each b's optimum)")
    for r in d.itertuples():
        ax.annotate(f"α={r.lr:.3g}, β={r.momentum:+.2f}", (r.batch_size, r.loss), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    budget = ", ".join(f"{k.replace('budget_', '')} = {v:,}" for k, v in df.attrs["budget"].items())
    ax.set_title(f"{problem.name}\nbudget: {budget}", fontsize=8)
    ax.set_xlim(d["batch_size"].min() / 1.6, d["batch_size"].max() * 3.0)
    lo, hi = d.get("loss_low", d["loss"]).min(), d.get("loss_high", d["loss"]).max()
    ax.set_ylim(lo / 1.4, hi * 1.4)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    plots.save(fig, out / "loss_vs_batch", formats=("png",))
    plt.close(fig)
    r = d.iloc[int(np.argmin(d["loss"].to_numpy()))]
    b, T = int(r.batch_size), int(r.horizon)
    betas = np.linspace(-0.8, 0.9, 18)
    a_max = 1.3 * float(max(th.critical_lr(problem, betas, b, tau=tau).max(), r.lr))
    lrs = np.geomspace(a_max / 200, a_max, 24)
    predict = predicted_loss(problem, T, tau, df.attrs["objective"])
    vals = predict(lrs[:, None], betas[None, :], b)
    # the table's edge: the exact one of the full dynamics where the problem has it. Past it a config diverges,
    # whatever SD predicts, so those cells are coloured (and starred) as diverged, and the edge is drawn as a curve.
    exact_betas = edge = None
    if getattr(problem, "has_basis", False) and np.isfinite(r.lr_crit_exact):
        exact_betas = np.linspace(betas[0], betas[-1], 9)
        edge = np.asarray(th.critical_lr(problem, exact_betas, b, tau=tau, exact=True), dtype=float)
        vals = np.where(lrs[:, None] < np.interp(betas, exact_betas, edge)[None, :], vals, np.nan)
    fig = plots.alpha_beta_map(np.where(np.isfinite(vals), vals / problem.loss0, np.nan), lr=lrs, momentum=betas,
                               problem=problem, batch_size=b, tau=tau,
                               title=f"b = {b}, T = {T}: predicted (SD) loss / L0, cut at the "
                                     f"{'exact' if edge is not None else 'SD'} edge")
    ax = fig.axes[0]
    if edge is not None:
        ax.plot(exact_betas, edge, color="red", lw=2.2, ls="-", marker="o", ms=3, zorder=6,
                label="exact edge (full dynamics)")
    # the map's axes: momentum across, learning rate up
    ax.plot([r.momentum], [r.lr], marker="*", ms=15, color="red", mec="white", ls="none", label="recommended",
            zorder=5)
    ax.legend(fontsize=7, loc="lower right")
    plots.save(fig, out / "stability_map", formats=("png",))
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
