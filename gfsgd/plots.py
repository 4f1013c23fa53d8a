"""Plots for papers: one consistent style; every function returns the Figure (save it with
`save(fig, path)` as PNG and/or PDF).

Inputs are the tidy tables of gfsgd.results (columns regime, lr, momentum, batch_size, tau, seed, step,
loss[, loss_se]) or Curves objects (converted with Curves.to_frame()).

    loss_curves(curves)              all configs of one or more regimes, log-log, ±2 s.e. bands
    regime_comparison(curves)        one column per config, one line per regime, a ratio-to-exact panel under
                                     each (theory_curves() adds the theory)
    alpha_beta_map(curves, step=t)   log10 L_t / L_0 over the (beta, alpha) grid of one batch size, with the
                                     theory lines U(1) = 1, alpha = 2(1 + beta) / lambda_max,
                                     alpha = 2(1 - beta) / (gamma lambda_crit) and the optimum marked
    budget_plot(curves)              L_t / L_0 against the number of samples processed t * b, one line per b
    phase_diagram()                  the (nu, kappa) phases of power-law problems, the transition line
                                     kappa = 2 nu - 1, optionally a field over (nu, kappa) and fitted points
    spectrum_plot(problem)           lambda_k and c_k against k (log-log) with power-law fits (theory.fit_power_law)
    exponent_plot(pred, meas)        measured against predicted exponents
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import matplotlib

if "MPLBACKEND" not in os.environ and "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # headless by default (scripts only save figures); Jupyter keeps its inline backend
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["style", "save", "saver", "loss_curves", "regime_comparison", "regime_label", "config_label",
           "theory_curves", "alpha_beta_map", "alpha_beta_maps", "map_values", "budget_plot", "phase_diagram",
           "spectrum_plot", "exponent_plot", "LR_LABEL"]

REGIME_ORDER = ["nn", "linearized", "full", "sd", "theory"]
REGIME_NAMES = {"nn": "network", "linearized": "linearized (sampled)", "full": "exact second moments",
                "sd": "spectral-diagonal", "theory": "theory (renewal)"}


def style():
    """The project's plot style (seaborn ticks, readable fonts)."""
    import seaborn as sns
    sns.set_theme(context="paper", style="ticks", font_scale=1.15,
                  rc={"axes.grid": True, "grid.alpha": 0.3, "legend.frameon": False, "figure.dpi": 110})


def save(fig, path, formats=("png", "pdf")) -> list:
    """Save `fig` at path (suffix replaced by each format); returns the written paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    if path.suffix.lower().lstrip(".") in ("png", "pdf", "svg", "jpg", "jpeg", "eps"):
        path = path.with_suffix("")  # a name with dots (e.g. "kappa1.5") keeps them
    for fmt in formats:
        target = path.with_name(path.name + "." + fmt)
        fig.savefig(target, dpi=150, bbox_inches="tight")
        out.append(target)
    return out


def saver(folder, prefix, formats=("png",)):
    """A function savefig(fig, name) that saves `fig` as folder/<prefix>_<name>.<format> (the notebooks use it)."""
    folder = Path(folder)

    def savefig(fig, name) -> None:  # returns nothing, so that a notebook cell ending with it prints nothing
        save(fig, folder / f"{prefix}_{name}", formats=formats)
    return savefig


def _frame(curves) -> pd.DataFrame:
    if isinstance(curves, pd.DataFrame):
        return curves
    if isinstance(curves, (list, tuple)):
        return pd.concat([c.to_frame() for c in curves], ignore_index=True)
    return curves.to_frame()


def config_label(lr, momentum, batch_size) -> str:
    return f"α={lr:g}, β={momentum:g}, b={int(batch_size)}"


def regime_label(regime, tau=math.nan, repeats=1) -> str:
    name = REGIME_NAMES.get(regime, regime)
    if regime == "sd" and tau == tau:
        name += f" τ={tau:g}"
    if regime in ("linearized", "nn") and repeats and repeats > 1:
        name += f", mean of {int(repeats)} paths ± 2 s.e."
    return name


def _rk(regime, tau):
    """Hashable regime key: (regime, tau or None)."""
    return (regime, None if tau is None or tau != tau else float(tau))


def _series(df):
    """Group a tidy table into curves: ((regime, tau, seed, repeats, lr, momentum, batch_size), frame)."""
    keys = [k for k in ("regime", "tau", "seed", "repeats", "lr", "momentum", "batch_size") if k in df]
    for key, sub in df.groupby(keys, dropna=False, sort=False):
        yield dict(zip(keys, key)), sub.sort_values("step")


def _normalized(sub):
    """A copy of one curve's rows with loss (and loss_se) divided by the loss at its first step."""
    sub = sub.copy()
    l0 = sub["loss"].iloc[0]
    for col in ("loss", "loss_se"):
        if col in sub:
            sub[col] = sub[col] / l0
    return sub


def _draw(ax, sub, color, ls, label, band=True, col="loss", marker=None, log_band=True):
    x = sub["step"].to_numpy()
    y = sub[col].to_numpy()
    keep = (x > 0) & np.isfinite(y)
    if not keep.any():
        return
    dashed = ls not in ("-", "solid")
    # dashed lines (the exact regime, the theory) are drawn on top, so that an approximation lying exactly
    # under them leaves them visible; markers (SD, theory) are spaced evenly on the log step axis
    marks = dict(marker=marker, markevery=max(1, int(keep.sum()) // 12), ms=4.5, mfc="none", mew=1.1) if marker \
        else {}
    ax.plot(x[keep], y[keep], color=color, ls=ls, lw=2.0 if dashed else 1.6, label=label, zorder=3 if dashed else 2,
            **marks)
    if band and f"{col}_se" in sub and sub[f"{col}_se"].notna().any():
        se = sub[f"{col}_se"].to_numpy()[keep]
        lo = y[keep] - 2 * se
        if log_band:
            lo = np.where(lo > 0, lo, 0.1 * y[keep])  # log axes: a band reaching 0 is cut a decade below the mean
        ax.fill_between(x[keep], lo, y[keep] + 2 * se, color=color, alpha=0.2, lw=0)


def loss_curves(curves, *, ax=None, title=None, normalize=False):
    """All configs of one or more regimes in one log-log panel: colour = config, line style = regime.

    normalize: plot L_t / L_0. Sampled regimes with repeats get a ±2 standard-error band.
    """
    style()
    df = _frame(curves)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 4.4))
    configs = list(dict.fromkeys(zip(df["lr"], df["momentum"], df["batch_size"])))
    palette = plt.get_cmap("viridis")(np.linspace(0.05, 0.9, max(len(configs), 1)))
    colors = {c: palette[i] for i, c in enumerate(configs)}
    styles = ["-", "--", ":", "-.", (0, (6, 2, 1, 2, 1, 2)), (0, (1, 3))]
    taus = df["tau"] if "tau" in df else [math.nan] * len(df)
    reg_keys = list(dict.fromkeys(_rk(r, t) for r, t in zip(df["regime"], taus)))
    ls_of = {k: styles[i % len(styles)] for i, k in enumerate(reg_keys)}
    for key, sub in _series(df):
        cfg = (key["lr"], key["momentum"], key["batch_size"])
        sub = _normalized(sub) if normalize else sub.copy()
        label = config_label(*cfg) + ("" if len(reg_keys) == 1 else
                                      " · " + regime_label(key["regime"], key.get("tau", math.nan),
                                                           key.get("repeats", 1)))
        _draw(ax, sub, colors[cfg], ls_of[_rk(key["regime"], key.get("tau"))], label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("loss $L_t/L_0$" if normalize else "loss $L_t = |f-y|^2/(2N)$")
    if title:
        ax.set_title(title, fontsize=10)
    if len(configs) * len(reg_keys) <= 16:
        ax.legend(fontsize=7, loc="best")
    else:  # too many curves for one entry each: a legend of colours (configs) and one of line styles (regimes)
        from matplotlib.lines import Line2D
        shown = configs if len(configs) <= 12 else configs[:: math.ceil(len(configs) / 12)]
        cfg_leg = ax.legend([Line2D([], [], color=colors[c], lw=1.6) for c in shown],
                            [config_label(*c) for c in shown], fontsize=6.5, loc="upper left",
                            bbox_to_anchor=(1.01, 1.0), title="config (colour)", title_fontsize=7)
        ax.add_artist(cfg_leg)
        ax.legend([Line2D([], [], color="0.3", ls=ls_of[k], lw=1.6) for k in reg_keys],
                  [regime_label(k[0], math.nan if k[1] is None else k[1]) for k in reg_keys], fontsize=6.5,
                  loc="lower left", bbox_to_anchor=(1.01, 0.0), title="regime (line style)", title_fontsize=7)
    fig.tight_layout()
    return fig


_MARKERS = {("sd", 1.0): "o", ("sd", -1.0): "s", ("theory", None): "x"}


def _reference_curve(df_cfg, reference, col):
    """The reference regime's curve of one config as a step -> value Series (None when absent)."""
    ref = df_cfg[df_cfg["regime"] == reference]
    if ref.empty or col not in ref:
        return None
    ref = ref.groupby("step")[col].first()
    return ref.where(np.isfinite(ref) & (ref > 0))


def regime_comparison(curves, *, reference="full", ratio=True, ncols=None, title=None, sharey=False):
    """One column per config, one line per regime (log-log), with a ratio-to-reference panel under it.

    Each config gets a loss panel and, when `ratio` and the `reference` regime ("full", the exact second
    moments, by default; "theory" when full is absent) are there, a panel of regime / reference on a linear
    axis, where curves lying on top of each other in the loss panel separate. Sampled regimes (linearized, the
    network with repeats) carry ±2 s.e. bands in both panels; SD and theory lines carry markers so that a line
    exactly under the dashed exact one stays visible. With a test loss in the curves, the test loss gets the
    same two panels below the training ones. More than four configs wrap onto further rows.
    """
    style()
    df = _frame(curves)
    configs = list(dict.fromkeys(zip(df["lr"], df["momentum"], df["batch_size"])))
    n = len(configs)
    with_test = "test_loss" in df and df["test_loss"].notna().any()
    cols = ["loss", "test_loss"] if with_test else ["loss"]
    regimes = set(df["regime"])
    if reference not in regimes:
        reference = "theory" if "theory" in regimes else None
    ratio = bool(ratio and reference is not None and len(regimes) > 1)
    per_cfg = [(col, kind) for col in cols for kind in (("curve", "ratio") if ratio else ("curve",))]
    ncols = ncols or (n if n <= 4 else math.ceil(n / math.ceil(n / 4)))
    blocks = math.ceil(n / ncols)
    heights = [3.2 if kind == "curve" else 1.8 for _ in range(blocks) for _, kind in per_cfg]
    fig, axes = plt.subplots(len(heights), ncols, figsize=(4.3 * ncols, sum(heights) + 0.8), squeeze=False,
                             gridspec_kw=dict(height_ratios=heights))
    taus = df["tau"] if "tau" in df else [math.nan] * len(df)
    keys = list(dict.fromkeys(_rk(r, t) for r, t in zip(df["regime"], taus)))
    keys.sort(key=lambda k: (REGIME_ORDER.index(k[0]) if k[0] in REGIME_ORDER else 99, -(k[1] or 0)))
    colors = {k: plt.get_cmap("tab10")(i) for i, k in enumerate(keys)}
    used = set()
    for i, cfg in enumerate(configs):
        block, j = divmod(i, ncols)
        sub_cfg = df[(df["lr"] == cfg[0]) & (df["momentum"] == cfg[1]) & (df["batch_size"] == cfg[2])]
        for r, (col, kind) in enumerate(per_cfg):
            ax = axes[block * len(per_cfg) + r, j]
            used.add((block * len(per_cfg) + r, j))
            ref = _reference_curve(sub_cfg, reference, col) if kind == "ratio" else None
            for key, sub in _series(sub_cfg):
                rk = _rk(key["regime"], key.get("tau"))
                label = regime_label(key["regime"], key.get("tau", math.nan), key.get("repeats", 1))
                ls = "--" if key["regime"] in ("full", "theory") else "-"
                if kind == "curve":
                    _draw(ax, sub, colors[rk], ls, label, col=col, marker=_MARKERS.get(rk))
                elif ref is not None and key["regime"] != reference:
                    sub = sub[sub["step"].isin(ref.index)].copy()
                    scale = ref.loc[sub["step"]].to_numpy()
                    for c in (col, f"{col}_se"):
                        if c in sub:
                            sub[c] = sub[c].to_numpy() / scale
                    _draw(ax, sub, colors[rk], ls, label, col=col, marker=_MARKERS.get(rk), log_band=False)
            ax.set_xscale("log")
            if kind == "curve":
                ax.set_yscale("log")
                what = "test" if col == "test_loss" else ("train" if with_test else "")
                ax.set_title(config_label(*cfg) + (f" — {what}" if what else ""), fontsize=10)
                ax.set_ylabel("test loss (held out)" if col == "test_loss" else "loss $L_t$")
            else:
                ax.axhline(1.0, color=colors.get(_rk(reference, None), "0.3"), ls="--", lw=1.2)
                ax.set_ylabel(f"ratio to {REGIME_NAMES.get(reference, reference).split(' (')[0]}", fontsize=8)
            if r == len(per_cfg) - 1 or kind == "curve" and not ratio:
                ax.set_xlabel("step t")
    for (r, j), ax in np.ndenumerate(axes):
        if (r, j) not in used:
            ax.set_visible(False)
    handles = {}
    for ax in axes.flat:  # every regime once in the legend, whichever panel has it
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 3),
               bbox_to_anchor=(0.5, 0.0), fontsize=9, frameon=False)
    legend_rows = math.ceil(len(handles) / 3)
    top = 1 - 0.45 / (sum(heights) + 0.8) if title else 1
    fig.tight_layout(rect=(0, min(0.3, 0.3 * legend_rows / (sum(heights) + 0.8)), 1, top))
    if title:
        fig.suptitle(title, fontsize=11, y=0.998)
    return fig


# ================================================================================================
# Theory overlays, (alpha, beta) maps, budget plots, phase diagrams, spectra
# ================================================================================================
LR_LABEL = "learning rate α  (λ_max = 1)"
MOMENTUM_LABEL = "momentum β"
_PHASE_NAMES = {"divergent": "ν < 1: divergent for b < N",
                "signal": "signal-dominated\n$L_t \\sim t^{-\\kappa/\\nu}$",
                "noise": "noise-dominated\n$L_t \\sim t^{-(2-1/\\nu)}$"}


def _theory():
    """gfsgd.theory, or None when it cannot be imported (the plots then skip their theory overlays)."""
    try:
        from . import theory
    except Exception:  # noqa: BLE001 - any import problem means: no overlay
        return None
    return theory


def _split(configs):
    cfg = np.asarray([(float(a), float(m), float(b)) for a, m, b in configs], dtype=float).reshape(-1, 3)
    return cfg[:, 0], cfg[:, 1], cfg[:, 2].astype(np.int64)


def theory_curves(problem, configs, n_steps, *, tau=1.0, log_steps=None, replacement=False) -> pd.DataFrame:
    """Predicted loss curves (gfsgd.theory.loss_curve: the renewal equation L_t = V_t + sum_s U_{t-s} L_s)
    as a tidy table with regime = "theory", ready to be concatenated with regime curves for loss_curves or
    regime_comparison. configs: (lr, momentum, batch_size) triples; log_steps: the steps kept (default all)."""
    theory = _theory()
    if theory is None or not hasattr(theory, "loss_curve"):
        raise ImportError("gfsgd.theory.loss_curve is not available")
    lr, mom, b = _split(configs)
    steps = np.arange(int(n_steps) + 1) if log_steps is None else np.unique(np.asarray(log_steps, dtype=np.int64))
    with np.errstate(all="ignore"):
        L = np.asarray(theory.loss_curve(problem, lr, mom, b, int(n_steps), tau=tau, log_steps=steps,
                                         replacement=replacement), dtype=float).reshape(len(lr), -1)
    L = np.where(np.isfinite(L) & (L <= 1e6 * L[:, :1]), L, np.nan)  # the regimes' divergence rule
    T = len(steps)
    return pd.DataFrame({
        "regime": "theory", "lr": np.repeat(lr, T), "momentum": np.repeat(mom, T),
        "batch_size": np.repeat(b, T), "tau": float(tau), "seed": 0, "repeats": 1,
        "step": np.tile(steps, len(lr)), "loss": L.reshape(-1)})


# ------------------------------------------------------------------------------------ (alpha, beta) maps
def map_values(curves, *, step=None, batch_size=None, regime=None, tau=None, normalize=True):
    """Pivot curves into a map over the (lr, momentum) grid at one step.

    Returns (lr [A], momentum [B], values [A, B], step): the loss (L_t / L_0 if normalize) at the last logged
    step <= `step` (default: the last one), NaN where the config diverged before it. `batch_size`, `regime`,
    `tau` select one slice when the curves hold several.
    """
    df = _frame(curves)
    for col, val in (("batch_size", batch_size), ("regime", regime), ("tau", tau)):
        if val is not None and col in df:
            df = df[np.isclose(df[col], val)] if col != "regime" else df[df[col] == val]
        elif col in df and df[col].nunique(dropna=False) > 1:
            raise ValueError(f"the curves hold several {col} values {sorted(df[col].unique().tolist())}; "
                             f"pick one with {col}=...")
    if df.empty:
        raise ValueError(f"no curves left after selecting batch_size={batch_size}, regime={regime}, tau={tau}")
    steps = np.sort(df["step"].unique())
    t = steps[-1] if step is None else steps[steps <= step].max(initial=-1)
    if t < 0:
        raise ValueError(f"no logged step <= {step}; logged steps start at {steps[0]}")
    at = df[df["step"] == t].groupby(["lr", "momentum"])["loss"].mean()
    if normalize:
        l0 = df[df["step"] == steps[0]].groupby(["lr", "momentum"])["loss"].mean()
        at = at / l0
    table = at.unstack("momentum").sort_index().sort_index(axis=1)
    return table.index.to_numpy(float), table.columns.to_numpy(float), table.to_numpy(float), int(t)


def _edges(x, log):
    x = np.asarray(x, dtype=float)
    if x.size == 1:
        return np.array([x[0] * 0.9, x[0] * 1.1]) if log else np.array([x[0] - 0.5, x[0] + 0.5])
    v = np.log(x) if log else x
    mid = 0.5 * (v[1:] + v[:-1])
    e = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return np.exp(e) if log else e


def _is_geometric(x):
    x = np.asarray(x, dtype=float)
    if x.size < 3 or (x <= 0).any():
        return False
    r = x[1:] / x[:-1]
    d = np.diff(x)
    return np.ptp(np.log(r)) < 1e-6 * max(1.0, abs(np.log(r).mean())) and np.ptp(d) > 1e-6 * abs(d.mean())


def _stroke(lw=3.0, color="black"):
    from matplotlib import patheffects
    return [patheffects.Stroke(linewidth=lw, foreground=color), patheffects.Normal()]


def alpha_beta_map(data, lr=None, momentum=None, *, step=None, batch_size=None, problem=None, tau=1.0,
                   replacement=False, regime=None, normalize=True, theory=True, optimum=True,
                   predicted_optimum=None, ax=None, title=None, vmin=None, vmax=None, colorbar=True,
                   cbar_label=None, legend=True):
    """The (alpha, beta) map: log10 of the loss at one step over a grid of learning rates (y) and momenta (x).

    data: Curves / list of Curves / tidy DataFrame of one batch size (pivoted by map_values at `step`), or a
        2-d array values[i, j] at (lr[i], momentum[j]) (then lr and momentum are required).
    Diverged cells (NaN / inf) are hatched grey. With a `problem` (or eigenvalues) and `batch_size`, the theory
    lines of gfsgd.theory are drawn over beta (docs/theory.md#stability):
        alpha_crit(beta): the convergence edge (U(1) = 1, or a mode's limit),          gid "alpha_crit"
        alpha = 2 (1 + beta) / lambda_max (per-mode asymptote),                       gid "asymptote_mode"
        alpha = 2 (1 - beta) / (gamma lambda_crit) (noise asymptote; absent at b = N), gid "asymptote_noise"
    optimum: mark the grid's smallest finite value (white star, gid "optimum"); predicted_optimum: (alpha, beta)
    marked with a red cross (gid "predicted_optimum"). The y axis is logarithmic when the lr grid is geometric.
    """
    style()
    if isinstance(data, np.ndarray) or (isinstance(data, (list, tuple)) and lr is not None):
        if lr is None or momentum is None:
            raise ValueError("a values array needs lr= and momentum= (its row and column coordinates)")
        lr, momentum = np.asarray(lr, float), np.asarray(momentum, float)
        values = np.asarray(data, dtype=float)
        if values.shape != (lr.size, momentum.size):
            raise ValueError(f"values must have shape (len(lr), len(momentum)) = {(lr.size, momentum.size)}, "
                             f"got {values.shape}")
        t = step
    else:
        lr, momentum, values, t = map_values(data, step=step, batch_size=batch_size, regime=regime,
                                             normalize=normalize)
        if batch_size is None:
            bs = _frame(data)["batch_size"].unique()
            batch_size = int(bs[0]) if len(bs) == 1 else None
    own = ax is None
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.6, 4.6))
    logy = _is_geometric(lr)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log10(values)
    z = np.where(np.isfinite(z), z, np.nan)
    finite = z[np.isfinite(z)]
    if vmin is None:
        vmin = float(finite.min()) if finite.size else -1.0
    if vmax is None:
        vmax = float(finite.max()) if finite.size else 0.0
        if normalize:
            vmax = min(vmax, 0.0) if vmin < 0 else vmax
    xe, ye = _edges(momentum, False), _edges(lr, logy)
    from matplotlib.patches import Patch, Rectangle
    ax.add_patch(Rectangle((xe[0], ye[0]), xe[-1] - xe[0], ye[-1] - ye[0], facecolor="0.85", edgecolor="0.55",
                           hatch="///", lw=0, zorder=0))
    cmap = plt.get_cmap("viridis").copy()
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(z), cmap=cmap, vmin=vmin, vmax=vmax, shading="flat",
                         zorder=1)
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    if logy:
        ax.set_yscale("log")
    ax.grid(False)
    ax.set_xlabel(MOMENTUM_LABEL)
    ax.set_ylabel(LR_LABEL)
    handles = []
    if np.isnan(z).any():
        handles.append(Patch(facecolor="0.85", edgecolor="0.55", hatch="///", label="diverged"))
    if theory and problem is not None and batch_size is not None:
        th = _theory()
        if th is not None and all(hasattr(th, f) for f in ("critical_lr", "asymptotes")):
            lo, hi = max(xe[0], -0.999), min(xe[-1], 0.999)
            beta = np.linspace(lo, hi, 300)
            with np.errstate(all="ignore"):
                acrit = np.asarray(th.critical_lr(problem, beta, batch_size, tau=tau, replacement=replacement))
                a_mode, a_noise = (np.asarray(v, float) * np.ones_like(beta) for v in
                                   th.asymptotes(problem, beta, batch_size, tau=tau, replacement=replacement))
            handles += ax.plot(beta, acrit, color="black", lw=2.0, gid="alpha_crit", zorder=4,
                               path_effects=_stroke(3.6, "white"), label="edge α_crit: U(1) = 1")
            handles += ax.plot(beta, a_mode, color="tab:red", lw=1.8, ls="--", gid="asymptote_mode", zorder=3,
                               path_effects=_stroke(3.2, "white"), label="α = 2(1+β)/λ_max")
            if np.isfinite(a_noise).any():
                handles += ax.plot(beta, a_noise, color="tab:orange", lw=1.8, ls="-.", gid="asymptote_noise",
                                   zorder=3, path_effects=_stroke(3.2), label="α = 2(1−β)/(γ λ_crit)")
            ax.set_xlim(xe[0], xe[-1])
            ax.set_ylim(ye[0], ye[-1])
    if optimum and finite.size:
        i, j = np.unravel_index(np.nanargmin(z), z.shape)
        handles += ax.plot([momentum[j]], [lr[i]], marker="*", ms=15, color="white", mec="black", mew=1.2, ls="",
                           gid="optimum", zorder=5, label=f"best on grid (α={lr[i]:.3g}, β={momentum[j]:.2g})")
    if predicted_optimum is not None:
        pa, pb = predicted_optimum
        handles += ax.plot([pb], [pa], marker="X", ms=10, color="tab:red", mec="white", mew=1.0, ls="",
                           gid="predicted_optimum", zorder=6, label=f"predicted optimum (α={pa:.3g}, β={pb:.2g})")
    if colorbar:
        label = cbar_label or ("$\\log_{10} L_t/L_0$" if normalize else "$\\log_{10} L_t$")
        if t is not None:
            label += f" at t = {t}"
        extend = "max" if finite.size and finite.max() > vmax else "neither"
        fig.colorbar(mesh, ax=ax, label=label, extend=extend, shrink=0.95)
    if title:
        ax.set_title(title, fontsize=10)
    elif batch_size is not None:
        ax.set_title(f"b = {batch_size}" + (f", t = {t}" if t is not None else ""), fontsize=10)
    if legend and handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=7,
                  frameon=False)
    if own:
        fig.tight_layout()
    ax.map_data = dict(lr=lr, momentum=momentum, log10_values=z, step=t, batch_size=batch_size, mesh=mesh,
                       handles=handles)
    return fig


def alpha_beta_maps(panels, *, ncols=None, share="column", title=None, cbar_label=None, **common):
    """Several (alpha, beta) maps in one figure with one legend: panels is a list of dicts of alpha_beta_map
    arguments (data, batch_size, title, predicted_optimum, ...), filled row by row; `common` goes to every
    panel (e.g. problem=p, step=T). share: "column" (one colour scale and colour bar per column, e.g.
    simulated above predicted), "all" (one for the figure) or None (one per panel)."""
    style()
    n = len(panels)
    ncols = ncols or min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.7 * ncols + 0.8, 3.1 * nrows + 0.8), squeeze=False,
                             layout="constrained")
    # colour limits: first pass computes each panel's log10 values
    zs = []
    for kw in panels:
        kw = dict(common, **kw)
        data = kw.pop("data")
        vals = np.asarray(data, float) if isinstance(data, np.ndarray) else \
            map_values(data, step=kw.get("step"), batch_size=kw.get("batch_size"), regime=kw.get("regime"),
                       normalize=kw.get("normalize", True))[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(vals)
        zs.append(z[np.isfinite(z)])
    limits = []
    for i in range(n):
        group = {"all": range(n), "column": range(i % ncols, n, ncols)}.get(share, [i])
        vals = np.concatenate([zs[g] for g in group]) if group else np.array([])
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (-1.0, 0.0)
        limits.append((lo, min(hi, 0.0) if lo < 0 else hi))
    handles = {}
    for i, (ax, kw) in enumerate(zip(axes.flat, panels)):
        kw = dict(common, **kw)
        alpha_beta_map(kw.pop("data"), ax=ax, vmin=limits[i][0], vmax=limits[i][1], colorbar=share is None,
                       legend=False, cbar_label=cbar_label, **kw)
        for h in ax.map_data["handles"]:
            lab = h.get_label()
            key = lab.split(" (")[0] if lab.startswith(("best on grid", "predicted optimum")) else lab
            handles.setdefault(key, h)
        if i + ncols < n:
            ax.set_xlabel("")
        if i % ncols:
            ax.set_ylabel("")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    label = cbar_label or "$\\log_{10} L_t/L_0$"
    if share == "column":
        for j in range(ncols):
            col = [axes[r, j] for r in range(nrows) if r * ncols + j < n]
            if col:
                fig.colorbar(col[0].map_data["mesh"], ax=col, label=label, shrink=0.9)
    elif share == "all":
        fig.colorbar(axes.flat[0].map_data["mesh"], ax=list(axes.flat[:n]), label=label, shrink=0.9)
    labels = [h.get_label().split(" (")[0] if h.get_label().startswith(("best on grid", "predicted optimum"))
              else h.get_label() for h in handles.values()]
    fig.legend(list(handles.values()), labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=8,
               frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


# ------------------------------------------------------------------------------------------------ budget
def budget_plot(curves, *, regime=None, normalize=True, ax=None, title=None):
    """Loss against the number of samples processed t * b, one line per (lr, momentum, b), log-log.

    Colour = batch size (log scale). Under the linear scaling rule (lr proportional to b at b << N) the curves
    collapse onto one (docs/theory.md#critical-batch). Sampled regimes get ±2 s.e. bands.
    """
    style()
    df = _frame(curves)
    if regime is not None:
        df = df[df["regime"] == regime]
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 4.4))
    bs = np.sort(df["batch_size"].unique())
    from matplotlib.colors import LogNorm
    norm = LogNorm(vmin=bs.min(), vmax=max(bs.max(), bs.min() * 1.0001))
    cmap = plt.get_cmap("plasma")
    several_m = df["momentum"].nunique() > 1
    several_r = df["regime"].nunique() > 1
    for key, sub in _series(df):
        b = int(key["batch_size"])
        sub = _normalized(sub) if normalize else sub.copy()
        sub["step"] = sub["step"] * b
        label = f"b={b}, α={key['lr']:.3g}" + (f", β={key['momentum']:g}" if several_m else "")
        if several_r:
            label += " · " + regime_label(key["regime"], key.get("tau", math.nan), key.get("repeats", 1))
        diverged = bool(sub["loss"].isna().any())
        _draw(ax, sub, cmap(0.85 * norm(b)), ":" if diverged else "-", label + (" (diverged)" if diverged else ""))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("samples processed t·b")
    ax.set_ylabel("loss $L_t/L_0$" if normalize else "loss $L_t$")
    if title:
        ax.set_title(title, fontsize=10)
    if len(ax.lines) <= 12:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ phase diagram
def _phase_code(nu, kappa):
    """0: nu <= 1 (divergent at finite b), 1: signal-dominated (kappa < 2 nu - 1), 2: noise-dominated."""
    nu, kappa = np.broadcast_arrays(np.asarray(nu, float), np.asarray(kappa, float))
    return np.where(nu <= 1, 0, np.where(kappa < 2 * nu - 1, 1, 2))


def phase_diagram(*, nu=(0.6, 3.0), kappa=(0.0, 5.0), points=None, values=None, values_label=None,
                  levels=(0.0,), cmap="RdBu_r", center=0.0, ax=None, title=None):
    """The (nu, kappa) phase diagram of power-law problems lambda_k = k^-nu, c_k ~ k^-(kappa + 1)
    (docs/theory.md#phases).

    Regions: nu < 1 (U(1) grows without bound with N: divergence at any alpha > 0 for b < N), signal-dominated
    (kappa < 2 nu - 1, L_t ~ t^-(kappa/nu)) and noise-dominated (kappa > 2 nu - 1, L_t ~ t^-(2 - 1/nu)); the
    transition line kappa = 2 nu - 1 has gid "transition".
    points: {label: (nu, kappa)} marked with stars (e.g. a problem's fitted exponents, see theory.fit_power_law).
    values: optional field (nu_grid [n], kappa_grid [m], Z [m, n]) drawn as a colour map (diverging, centred at
        `center`) with contour lines at `levels`; the phases are then drawn as lines only.
    """
    style()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.0, 4.6))
    n0, n1 = nu
    k0, k1 = kappa
    if values is None:
        from matplotlib.colors import ListedColormap
        gx, gy = np.meshgrid(np.linspace(n0, n1, 400), np.linspace(k0, k1, 400))
        code = _phase_code(gx, gy)
        colors = ["#d9d9d9", "#c6dbef", "#fdd0a2"]
        ax.pcolormesh(gx, gy, code, cmap=ListedColormap(colors), vmin=-0.5, vmax=2.5, shading="auto",
                      rasterized=True)
        nl = max(1.0, n0)
        spots = {0: (0.5 * (n0 + min(1.0, n1)), 0.5 * (k0 + k1)),
                 1: (n1 - 0.25 * (n1 - nl), k0 + 0.2 * (k1 - k0)),
                 2: (nl + 0.3 * (n1 - nl), k1 - 0.2 * (k1 - k0))}
        for c, key in enumerate(("divergent", "signal", "noise")):
            x, y = spots[c]
            if (code == c).sum() > 50 and _phase_code(x, y) == c:
                ax.text(x, y, _PHASE_NAMES[key], ha="center", va="center", fontsize=8 if c == 0 else 9,
                        rotation=90 if c == 0 else 0)
    else:
        vx, vy, Z = (np.asarray(v, float) for v in values)
        if Z.shape != (vy.size, vx.size):
            raise ValueError(f"values Z must have shape (len(kappa_grid), len(nu_grid)) = {(vy.size, vx.size)}, "
                             f"got {Z.shape}")
        from matplotlib.colors import TwoSlopeNorm
        zf = Z[np.isfinite(Z)]
        lo, hi = (zf.min(), zf.max()) if zf.size else (-1.0, 1.0)
        norm = TwoSlopeNorm(vcenter=center, vmin=min(lo, center - 1e-12), vmax=max(hi, center + 1e-12)) \
            if center is not None else None
        mesh = ax.pcolormesh(vx, vy, np.ma.masked_invalid(Z), cmap=cmap, norm=norm, shading="nearest",
                             rasterized=True)
        fig.colorbar(mesh, ax=ax, label=values_label or "value")
        if levels is not None and zf.size and zf.min() < max(levels) and zf.max() > min(levels):
            cs = ax.contour(vx, vy, np.ma.masked_invalid(Z), levels=list(levels), colors="black",
                            linewidths=1.6, linestyles="-")
            cs.set_gid("values_contour")
    nn_ = np.linspace(max(n0, 1.0), n1, 200)
    ax.plot(nn_, 2 * nn_ - 1, color="black", lw=2.0, ls="--", gid="transition",
            label="transition κ = 2ν − 1")
    if n0 < 1 < n1:
        ax.axvline(1.0, color="0.3", lw=1.2, ls=":", gid="nu_one", label="ν = 1")
    for label, (pn, pk) in (points or {}).items():
        ax.plot([pn], [pk], marker="*", ms=14, ls="", mec="black", mew=1.0, label=f"{label} (ν={pn:.2f}, κ={pk:.2f})",
                gid="point")
    ax.set_xlim(n0, n1)
    ax.set_ylim(k0, k1)
    ax.set_xlabel("spectral exponent ν   ($\\lambda_k \\sim k^{-\\nu}$)")
    ax.set_ylabel("target exponent κ   ($c_k \\sim k^{-(\\kappa+1)}$)")
    ax.grid(False)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- spectra
def _spectrum_arrays(problem):
    if hasattr(problem, "eigvals") and hasattr(problem, "coef"):
        lam = problem.eigvals.detach().cpu().double().numpy()
        c = problem.c.detach().cpu().double().numpy()
    else:
        lam, c = (np.asarray(v, float) for v in problem)
        order = np.argsort(-lam, kind="stable")
        lam, c = lam[order], c[order]
    return lam, c


def _log_bins(k_lo, k_hi, per_decade=8):
    n = max(2, int(math.ceil(per_decade * math.log10(max(k_hi / k_lo, 1.0 + 1e-9)))) + 1)
    return np.unique(np.round(np.logspace(math.log10(k_lo), math.log10(k_hi + 1), n)).astype(int))


def _binned(k, y, edges):
    """Mean of y over k in [edges[i], edges[i+1]) and the geometric centre of each non-empty bin."""
    centers, means = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        m = (k >= a) & (k < b)
        if m.any():
            centers.append(math.sqrt(a * (b - 1)) if b - 1 > a else float(a))
            means.append(float(y[m].mean()))
    return np.asarray(centers), np.asarray(means)


def spectrum_plot(problem, *, k_range=None, fit=True, title=None):
    """Two log-log panels: the kernel eigenvalues lambda_k and the target coefficients c_k = (u_k^T d0)^2 against
    the mode index k (dots, and their means in log-spaced bins), with the power-law fits lambda_k ~ k^-nu and
    c_k ~ k^-(kappa + 1) of gfsgd.theory.fit_power_law over k_range (shaded). problem: a Problem or a pair
    (eigvals, c). Returns the Figure; the fit (a theory.PowerLawFit, or None) is in fig.fit."""
    style()
    lam, c = _spectrum_arrays(problem)
    N = lam.size
    k = np.arange(1, N + 1, dtype=float)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.6, 3.8))
    pos = lam > 0
    a1.plot(k[pos], lam[pos], color="tab:blue", lw=1.6, label="$\\lambda_k$")
    cc = c / c.sum()
    a2.plot(k[cc > 0], cc[cc > 0], ls="", marker=".", ms=2.5, color="tab:green", alpha=0.35,
            label="$c_k / \\Sigma_l\\, c_l$", rasterized=True)
    kc, cm = _binned(k, cc, _log_bins(1, N))
    a2.plot(kc[cm > 0], cm[cm > 0], color="tab:green", lw=1.8, marker="o", ms=3, label="bin means")
    res = None
    th = _theory() if fit else None
    if th is not None and hasattr(th, "fit_power_law"):
        res = th.fit_power_law(lam, c=c, N=N, k_range=k_range)
        lo, hi = res.k_range
        kk = np.geomspace(lo, hi, 50)
        # amplitude of the c_k law: least squares in log space with the fitted slope, over the fit range
        sel = (k >= lo) & (k <= hi) & (cc > 0)
        kb, cb = _binned(k[sel], cc[sel], _log_bins(lo, hi))
        amp = math.exp(np.mean(np.log(cb) + (res.kappa + 1) * np.log(kb))) if kb.size else math.nan
        a1.plot(kk, res.lambda_scale * kk ** (-res.nu), color="black", ls="--", lw=1.6, gid="fit_nu",
                label=f"fit $k^{{-\\nu}}$, ν = {res.nu:.2f}")
        a2.plot(kk, amp * kk ** (-(res.kappa + 1)), color="black", ls="--", lw=1.6, gid="fit_kappa",
                label=f"fit $k^{{-(\\kappa+1)}}$, κ = {res.kappa:.2f}")
        for a in (a1, a2):
            a.axvspan(lo, hi, color="0.5", alpha=0.12, lw=0, label="fit range")
    for a, lab in ((a1, "eigenvalue $\\lambda_k$ (λ_max = 1)"), (a2, "target coefficient $c_k/\\Sigma_l\\, c_l$")):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("mode index k")
        a.set_ylabel(lab)
        a.legend(fontsize=8, loc="lower left")
    a1.set_title("kernel spectrum", fontsize=10)
    a2.set_title("target in the eigenbasis", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.fit = res
    return fig


# ---------------------------------------------------------------------------------------------- exponents
def exponent_plot(predicted, measured, *, labels=None, tol=None, ax=None, title=None,
                  xlabel="predicted exponent", ylabel="measured exponent"):
    """Measured against predicted exponents (one point each), with the diagonal y = x and, if tol is given,
    a ±tol band. labels: a name per point (shown next to it)."""
    style()
    p, m = np.asarray(predicted, float).reshape(-1), np.asarray(measured, float).reshape(-1)
    if p.shape != m.shape:
        raise ValueError(f"predicted and measured must have the same length, got {p.size} and {m.size}")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(4.8, 4.4))
    lo = float(np.nanmin(np.concatenate([p, m]))) * 0.9
    hi = float(np.nanmax(np.concatenate([p, m]))) * 1.08
    xs = np.array([lo, hi])
    ax.plot(xs, xs, color="black", lw=1.2, gid="diagonal", label="measured = predicted")
    if tol is not None:
        ax.fill_between(xs, xs - tol, xs + tol, color="0.6", alpha=0.25, lw=0, label=f"± {tol:g}")
    ax.scatter(p, m, s=36, color="tab:red", edgecolor="black", zorder=3, label="problems")
    for i, lab in enumerate(labels or []):
        ax.annotate(lab, (p[i], m[i]), textcoords="offset points", xytext=(5, -10), fontsize=7)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
