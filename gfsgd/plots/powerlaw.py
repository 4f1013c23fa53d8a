"""Power-law problems: the (nu, kappa) phase diagram, the kernel spectrum and target coefficients with their
fitted exponents, and measured against predicted exponents."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from ..theory import fit_power_law
from .common import style
from ..errors import InputError

__all__ = ["phase_diagram", "spectrum_plot", "exponent_plot"]

_PHASE_NAMES = {"divergent": "ν < 1: divergent for b < N",
                "signal": "signal-dominated\n$L_t \\sim t^{-\\kappa/\\nu}$",
                "noise": "noise-dominated\n$L_t \\sim t^{-(2-1/\\nu)}$"}


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
            raise InputError(f"values Z must have shape (len(kappa_grid), len(nu_grid)) = {(vy.size, vx.size)}, "
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
    if fit:
        res = fit_power_law(lam, c=c, N=N, k_range=k_range)
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
        raise InputError(f"predicted and measured must have the same length, got {p.size} and {m.size}")
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
