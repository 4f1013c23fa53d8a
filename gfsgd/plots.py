"""Plots for papers: one consistent style; every function returns the Figure (save it with
`save(fig, path)` as PNG and/or PDF).

Inputs are the tidy tables of gfsgd.results (columns regime, lr, momentum, batch_size, tau, seed, step,
loss[, loss_se]) or Curves objects (converted with Curves.to_frame()).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless by default; notebooks switch back with %matplotlib inline
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["style", "save", "loss_curves", "regime_comparison", "regime_label", "config_label"]

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
    for fmt in formats:
        target = path.with_suffix("." + fmt)
        fig.savefig(target, dpi=150, bbox_inches="tight")
        out.append(target)
    return out


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
    if regime == "linearized" and repeats and repeats > 1:
        name += f" (mean of {int(repeats)})"
    return name


def _rk(regime, tau):
    """Hashable regime key: (regime, tau or None)."""
    return (regime, None if tau is None or tau != tau else float(tau))


def _series(df):
    """Group a tidy table into curves: ((regime, tau, seed, repeats, lr, momentum, batch_size), frame)."""
    keys = [k for k in ("regime", "tau", "seed", "repeats", "lr", "momentum", "batch_size") if k in df]
    for key, sub in df.groupby(keys, dropna=False, sort=False):
        yield dict(zip(keys, key)), sub.sort_values("step")


def _draw(ax, sub, color, ls, label, band=True):
    x = sub["step"].to_numpy()
    y = sub["loss"].to_numpy()
    keep = x > 0
    ax.plot(x[keep], y[keep], color=color, ls=ls, lw=1.6, label=label)
    if band and "loss_se" in sub and sub["loss_se"].notna().any():
        se = sub["loss_se"].to_numpy()[keep]
        ax.fill_between(x[keep], np.clip(y[keep] - 2 * se, 1e-300, None), y[keep] + 2 * se, color=color,
                        alpha=0.2, lw=0)


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
    styles = ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 1))]
    taus = df["tau"] if "tau" in df else [math.nan] * len(df)
    reg_keys = list(dict.fromkeys(_rk(r, t) for r, t in zip(df["regime"], taus)))
    ls_of = {k: styles[i % len(styles)] for i, k in enumerate(reg_keys)}
    for key, sub in _series(df):
        cfg = (key["lr"], key["momentum"], key["batch_size"])
        sub = sub.copy()
        if normalize:
            l0 = sub["loss"].iloc[0]
            sub["loss"] = sub["loss"] / l0
            if "loss_se" in sub:
                sub["loss_se"] = sub["loss_se"] / l0
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
    fig.tight_layout()
    return fig


def regime_comparison(curves, *, ncols=None, title=None, sharey=False):
    """One panel per config, one line per regime (log-log), ±2 SE bands for sampled regimes."""
    style()
    df = _frame(curves)
    configs = list(dict.fromkeys(zip(df["lr"], df["momentum"], df["batch_size"])))
    n = len(configs)
    ncols = ncols or min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False, sharey=sharey)
    taus = df["tau"] if "tau" in df else [math.nan] * len(df)
    keys = list(dict.fromkeys(_rk(r, t) for r, t in zip(df["regime"], taus)))
    keys.sort(key=lambda k: (REGIME_ORDER.index(k[0]) if k[0] in REGIME_ORDER else 99, -(k[1] or 0)))
    colors = {k: plt.get_cmap("tab10")(i) for i, k in enumerate(keys)}
    for ax, cfg in zip(axes.flat, configs):
        sub_cfg = df[(df["lr"] == cfg[0]) & (df["momentum"] == cfg[1]) & (df["batch_size"] == cfg[2])]
        for key, sub in _series(sub_cfg):
            rk = _rk(key["regime"], key.get("tau"))
            _draw(ax, sub, colors[rk], "--" if key["regime"] in ("full", "theory") else "-",
                  regime_label(key["regime"], key.get("tau", math.nan), key.get("repeats", 1)))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(config_label(*cfg), fontsize=10)
        ax.set_xlabel("step t")
        ax.set_ylabel("loss $L_t$")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), bbox_to_anchor=(0.5, -0.02),
               fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
