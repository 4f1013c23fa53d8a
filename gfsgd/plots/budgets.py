"""Budget figures: the loss against the number of samples processed t * b, one line per batch size."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from .common import as_frame, draw_curve, iter_series, normalized, regime_label, style

__all__ = ["budget_plot"]


def budget_plot(curves, *, regime=None, normalize=True, ax=None, title=None):
    """Loss against the number of samples processed t * b, one line per (lr, momentum, b), log-log.

    Colour = batch size (log scale). Under the linear scaling rule (lr proportional to b at b << N) the curves
    collapse onto one (docs/theory.md#critical-batch). Sampled regimes get ±2 s.e. bands.
    """
    style()
    df = as_frame(curves)
    if regime is not None:
        df = df[df["regime"] == regime]
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 4.4))
    bs = np.sort(df["batch_size"].unique())
    from matplotlib.colors import LogNorm
    norm = LogNorm(vmin=bs.min(), vmax=max(bs.max(), bs.min() * 1.0001))
    cmap = plt.get_cmap("plasma")
    several_m = df["momentum"].nunique() > 1
    several_r = df["regime"].nunique() > 1
    for key, sub in iter_series(df):
        b = int(key["batch_size"])
        sub = normalized(sub) if normalize else sub.copy()
        sub["step"] = sub["step"] * b
        label = f"b={b}, α={key['lr']:.3g}" + (f", β={key['momentum']:g}" if several_m else "")
        if several_r:
            label += " · " + regime_label(key["regime"], key.get("tau", math.nan), key.get("repeats", 1))
        diverged = bool(sub["loss"].isna().any())
        draw_curve(ax, sub, cmap(0.85 * norm(b)), ":" if diverged else "-", label + (" (diverged)" if diverged else ""))
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
