"""Loss curves: all configs of one or more regimes in one panel, the regimes side by side per config with a
ratio-to-exact panel, and the theory's curves as a table that joins them."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..theory import loss_curve
from .common import (REGIME_NAMES, REGIME_ORDER, as_frame, config_label, draw_curve, iter_series, normalized,
                     regime_label, style)

__all__ = ["loss_curves", "regime_comparison", "theory_curves"]


def _rk(regime, tau):
    """Hashable regime key: (regime, tau or None)."""
    return (regime, None if tau is None or tau != tau else float(tau))


def loss_curves(curves, *, ax=None, title=None, normalize=False):
    """All configs of one or more regimes in one log-log panel: colour = config, line style = regime.

    normalize: plot L_t / L_0. Sampled regimes with repeats get a ±2 standard-error band.
    """
    style()
    df = as_frame(curves)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 4.4))
    configs = list(dict.fromkeys(zip(df["lr"], df["momentum"], df["batch_size"])))
    palette = plt.get_cmap("viridis")(np.linspace(0.05, 0.9, max(len(configs), 1)))
    colors = {c: palette[i] for i, c in enumerate(configs)}
    styles = ["-", "--", ":", "-.", (0, (6, 2, 1, 2, 1, 2)), (0, (1, 3))]
    taus = df["tau"] if "tau" in df else [math.nan] * len(df)
    reg_keys = list(dict.fromkeys(_rk(r, t) for r, t in zip(df["regime"], taus)))
    ls_of = {k: styles[i % len(styles)] for i, k in enumerate(reg_keys)}
    for key, sub in iter_series(df):
        cfg = (key["lr"], key["momentum"], key["batch_size"])
        sub = normalized(sub) if normalize else sub.copy()
        label = config_label(*cfg) + ("" if len(reg_keys) == 1 else
                                      " · " + regime_label(key["regime"], key.get("tau", math.nan),
                                                           key.get("repeats", 1)))
        draw_curve(ax, sub, colors[cfg], ls_of[_rk(key["regime"], key.get("tau"))], label)
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
    df = as_frame(curves)
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
            for key, sub in iter_series(sub_cfg):
                rk = _rk(key["regime"], key.get("tau"))
                label = regime_label(key["regime"], key.get("tau", math.nan), key.get("repeats", 1))
                ls = "--" if key["regime"] in ("full", "theory") else "-"
                if kind == "curve":
                    draw_curve(ax, sub, colors[rk], ls, label, col=col, marker=_MARKERS.get(rk))
                elif ref is not None and key["regime"] != reference:
                    sub = sub[sub["step"].isin(ref.index)].copy()
                    scale = ref.loc[sub["step"]].to_numpy()
                    for c in (col, f"{col}_se"):
                        if c in sub:
                            sub[c] = sub[c].to_numpy() / scale
                    draw_curve(ax, sub, colors[rk], ls, label, col=col, marker=_MARKERS.get(rk), log_band=False)
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


def _split(configs):
    cfg = np.asarray([(float(a), float(m), float(b)) for a, m, b in configs], dtype=float).reshape(-1, 3)
    return cfg[:, 0], cfg[:, 1], cfg[:, 2].astype(np.int64)


def theory_curves(problem, configs, n_steps, *, tau=1.0, log_steps=None, replacement=False) -> pd.DataFrame:
    """Predicted loss curves (gfsgd.theory.loss_curve: the renewal equation L_t = V_t + sum_s U_{t-s} L_s)
    as a tidy table with regime = "theory", ready to be concatenated with regime curves for loss_curves or
    regime_comparison. configs: (lr, momentum, batch_size) triples; log_steps: the steps kept (default all)."""
    lr, mom, b = _split(configs)
    steps = np.arange(int(n_steps) + 1) if log_steps is None else np.unique(np.asarray(log_steps, dtype=np.int64))
    with np.errstate(all="ignore"):
        L = np.asarray(loss_curve(problem, lr, mom, b, int(n_steps), tau=tau, log_steps=steps,
                                  replacement=replacement), dtype=float).reshape(len(lr), -1)
    L = np.where(np.isfinite(L) & (L <= 1e6 * L[:, :1]), L, np.nan)  # the regimes' divergence rule
    T = len(steps)
    return pd.DataFrame({
        "regime": "theory", "lr": np.repeat(lr, T), "momentum": np.repeat(mom, T),
        "batch_size": np.repeat(b, T), "tau": float(tau), "seed": 0, "repeats": 1,
        "step": np.tile(steps, len(lr)), "loss": L.reshape(-1)})
