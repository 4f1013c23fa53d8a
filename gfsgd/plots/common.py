"""Shared pieces of the plots: the style, saving figures, labels and colours of regimes and configs, and the
drawing of one loss curve (with its ±2 s.e. band) that the figure modules use.

Importing gfsgd.plots selects matplotlib's headless Agg backend unless MPLBACKEND is set or the code runs in
Jupyter (which keeps its inline backend).
"""
from __future__ import annotations

import io
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

__all__ = ["style", "save", "saver", "config_label", "regime_label", "as_frame", "iter_series", "normalized",
           "draw_curve", "show_inline", "REGIME_ORDER", "REGIME_NAMES", "LR_LABEL", "MOMENTUM_LABEL"]

REGIME_ORDER = ["nn", "linearized", "full", "sd", "theory"]
REGIME_NAMES = {"nn": "network", "linearized": "linearized (sampled)", "full": "exact second moments",
                "sd": "spectral-diagonal", "theory": "theory (renewal)"}

LR_LABEL = "learning rate α  (λ_max = 1)"
MOMENTUM_LABEL = "momentum β"


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
        show_inline(fig)
    return savefig


def show_inline(fig) -> bool:
    """In a Jupyter kernel: display `fig` in the cell's output (a PNG, whatever matplotlib's backend) and close it,
    so that a notebook shows every figure it saves exactly once, where it is made. Elsewhere: nothing (False)."""
    if "ipykernel" not in sys.modules:
        return False
    from IPython.display import Image, display
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    display(Image(data=buf.getvalue(), format="png"))
    plt.close(fig)
    return True


def as_frame(curves) -> pd.DataFrame:
    """A tidy table from a DataFrame, a Curves object or a list of Curves."""
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


def iter_series(df):
    """Group a tidy table into curves: ((regime, tau, seed, repeats, lr, momentum, batch_size), frame)."""
    keys = [k for k in ("regime", "tau", "seed", "repeats", "lr", "momentum", "batch_size") if k in df]
    for key, sub in df.groupby(keys, dropna=False, sort=False):
        yield dict(zip(keys, key)), sub.sort_values("step")


def normalized(sub):
    """A copy of one curve's rows with loss (and loss_se) divided by the loss at its first step."""
    sub = sub.copy()
    l0 = sub["loss"].iloc[0]
    for col in ("loss", "loss_se"):
        if col in sub:
            sub[col] = sub[col] / l0
    return sub


def draw_curve(ax, sub, color, ls, label, band=True, col="loss", marker=None, log_band=True):
    """One curve of a tidy table (step -> col) on ax, with a ±2 s.e. band where col_se is there."""
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
