"""(alpha, beta) maps: the loss at one step over a grid of learning rates and momenta, with the theory's
convergence edge alpha_crit(beta) (U(1) = 1) and its two asymptotes drawn over it."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from ..theory import asymptotes, critical_lr
from .common import LR_LABEL, MOMENTUM_LABEL, as_frame, style
from ..errors import InputError

__all__ = ["map_values", "alpha_beta_map", "alpha_beta_maps"]


def map_values(curves, *, step=None, batch_size=None, regime=None, tau=None, normalize=True):
    """Pivot curves into a map over the (lr, momentum) grid at one step.

    Returns (lr [A], momentum [B], values [A, B], step): the loss (L_t / L_0 if normalize) at the last logged
    step <= `step` (default: the last one), NaN where the config diverged before it. `batch_size`, `regime`,
    `tau` select one slice when the curves hold several.
    """
    df = as_frame(curves)
    for col, val in (("batch_size", batch_size), ("regime", regime), ("tau", tau)):
        if val is not None and col in df:
            df = df[np.isclose(df[col], val)] if col != "regime" else df[df[col] == val]
        elif col in df and df[col].nunique(dropna=False) > 1:
            raise InputError(f"the curves hold several {col} values {sorted(df[col].unique().tolist())}; "
                             f"pick one with {col}=...")
    if df.empty:
        raise InputError(f"no curves left after selecting batch_size={batch_size}, regime={regime}, tau={tau}")
    steps = np.sort(df["step"].unique())
    t = steps[-1] if step is None else steps[steps <= step].max(initial=-1)
    if t < 0:
        raise InputError(f"no logged step <= {step}; logged steps start at {steps[0]}")
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
            raise InputError("a values array needs lr= and momentum= (its row and column coordinates)")
        lr, momentum = np.asarray(lr, float), np.asarray(momentum, float)
        values = np.asarray(data, dtype=float)
        if values.shape != (lr.size, momentum.size):
            raise InputError(f"values must have shape (len(lr), len(momentum)) = {(lr.size, momentum.size)}, "
                             f"got {values.shape}")
        t = step
    else:
        lr, momentum, values, t = map_values(data, step=step, batch_size=batch_size, regime=regime,
                                             normalize=normalize)
        if batch_size is None:
            bs = as_frame(data)["batch_size"].unique()
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
        lo, hi = max(xe[0], -0.999), min(xe[-1], 0.999)
        beta = np.linspace(lo, hi, 300)
        with np.errstate(all="ignore"):
            acrit = np.asarray(critical_lr(problem, beta, batch_size, tau=tau, replacement=replacement))
            a_mode, a_noise = (np.asarray(v, float) * np.ones_like(beta) for v in
                               asymptotes(problem, beta, batch_size, tau=tau, replacement=replacement))
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
