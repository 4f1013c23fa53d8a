"""Power-law spectra: the fit of (nu, kappa) to a kernel spectrum, Q_lambda, and the phase and loss exponent of
(nu, kappa) (docs/theory.md#phases).

    lambda_k ~ lambda_scale k^-nu,    c_k ~ k^-(kappa + 1),    zeta = kappa / nu

The fit lives here, below both of its users: gfsgd.spectrum.tail models the modes beyond the top k with it,
and gfsgd.theory (asymptotics) re-exports every name of this module and builds the asymptotic loss on it.

Every function takes a spectrum: a Problem, a gfsgd.theory.Spectrum, or eigenvalues (top one 1) with w=
(initial loss per mode, c_k / (2N)) or c= (squared eigen-coefficients of d0) and N, read as
gfsgd.theory.as_spectrum reads them (same checks, same messages).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from ..errors import InputError
from .modes import as_spectrum, check_finite

__all__ = ["phase", "loss_exponent", "check_exponents", "PowerLawFit", "fit_power_law", "q_lambda"]


def check_exponents(nu, kappa):
    """(nu, kappa) as broadcast float64 arrays, checked: both finite, nu > 0, kappa > 0 (else a ValueError)."""
    nu = check_finite(nu, "nu")
    kappa = check_finite(kappa, "kappa")
    if (nu <= 0).any():
        raise InputError(f"nu must be > 0 (eigenvalues k^-nu decrease), got nu={nu[nu <= 0].reshape(-1)[0]}")
    if (kappa <= 0).any():
        raise InputError(f"kappa must be > 0 (w_k ~ k^-(kappa+1) summable), got "
                         f"kappa={kappa[kappa <= 0].reshape(-1)[0]}")
    return np.broadcast_arrays(nu, kappa)


# ------------------------------------------------------------------------------------ phase and exponent
def phase(nu, kappa):
    """Phase of a power-law problem (docs/theory.md#phases): "divergent" for nu <= 1 (U(1) grows with N, any
    alpha > 0 diverges at finite b), "signal" for kappa < 2 nu - 1, "noise" for kappa >= 2 nu - 1.
    Scalars give a str, arrays an array of str."""
    nu_a, kappa_a = check_exponents(nu, kappa)
    out = np.where(nu_a <= 1, "divergent", np.where(kappa_a < 2 * nu_a - 1, "signal", "noise"))
    return str(out) if out.ndim == 0 else out


def loss_exponent(nu, kappa):
    """The loss exponent xi in L_t ~ t^-xi: min(zeta, 2 - 1/nu) with zeta = kappa / nu (nan if divergent)."""
    nu_a, kappa_a = check_exponents(nu, kappa)
    out = np.where(nu_a <= 1, np.nan, np.minimum(kappa_a / nu_a, 2 - 1 / nu_a))
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------------------------- fitting
@dataclass
class PowerLawFit:
    """Fitted power laws lambda_k ~ lambda_scale k^-nu and c_k ~ k^-(kappa + 1), with confidence intervals.

    nu_ci, kappa_ci: (low, high) at `confidence`; q_lambda: Q_lambda of the loss-space weights w 
    (docs/theory.md#phases); phase and exponent from (nu, kappa); k_range: the mode indices used (1-based,
    inclusive)."""
    nu: float
    nu_ci: tuple
    kappa: float
    kappa_ci: tuple
    lambda_scale: float
    q_lambda: float
    phase: str
    exponent: float
    k_range: tuple
    confidence: float

    def __str__(self):
        return (f"nu = {self.nu:.3f} [{self.nu_ci[0]:.3f}, {self.nu_ci[1]:.3f}], kappa = {self.kappa:.3f} "
                f"[{self.kappa_ci[0]:.3f}, {self.kappa_ci[1]:.3f}] ({self.confidence:.0%}), phase {self.phase}, "
                f"exponent {self.exponent:.3f}, modes {self.k_range[0]}..{self.k_range[1]}")


def _ols(x, y, confidence, weights=None):
    """Slope, intercept and the slope's confidence half-width of y = a + b x, by (weighted) least squares
    with the heteroscedasticity-robust (sandwich) covariance and a t quantile with n - 2 dof."""
    n = x.size
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    X = np.stack([np.ones(n), x], 1)
    XtWX_inv = np.linalg.inv(X.T @ (w[:, None] * X))
    coef = XtWX_inv @ (X.T @ (w * y))
    resid = y - X @ coef
    meat = X.T @ ((w * w * resid * resid)[:, None] * X) * n / max(n - 2, 1)
    cov = XtWX_inv @ meat @ XtWX_inv
    half = stats.t.ppf(0.5 + confidence / 2, max(n - 2, 1)) * math.sqrt(max(cov[1, 1], 0.0))
    return coef[1], coef[0], half


def fit_power_law(spectrum, w=None, c=None, N=None, *, k_range=None, confidence=0.95):
    """Fit nu and kappa (with confidence intervals) to a spectrum and its signal coefficients, to place a
    real (e.g. NTK) problem on the phase diagram (docs/theory.md#phases).

    nu: least squares of log lambda_k on log k at log-spaced k in k_range (every decade weighs the same).
    kappa: weighted least squares of log c_k on log k over every mode in k_range (weights 1/k, so that every
    decade weighs the same) gives -(kappa + 1); the c_k of a real problem are noisy (a random factor per mode),
    which moves only the intercept. The intervals are t-intervals with the sandwich (robust) covariance.
    Q_lambda is then estimated from the tail sums of w with the fitted laws (`q_lambda`).

    spectrum: a Problem, or eigenvalues with w= or c=. k_range: (k_min, k_max), 1-based mode indices
    (default (2, N_modes // 2): the top mode and the far tail of real kernels are usually off the law).
    """
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    lam, wk = spec.eigvals, spec.w
    M = lam.size
    if k_range is None:
        k_range = (min(2, M), max(M // 2, min(M, 8)))
    k_lo, k_hi = int(k_range[0]), int(k_range[1])
    if not (1 <= k_lo < k_hi <= M) or k_hi - k_lo < 4:
        raise InputError(f"k_range must satisfy 1 <= k_min < k_max <= {M} with at least 5 modes, "
                         f"got k_range={k_range}")
    if not (0 < confidence < 1):
        raise InputError(f"confidence must be in (0, 1), got confidence={confidence}")
    # nu: log-spaced sample of modes
    ks = np.unique(np.round(np.geomspace(k_lo, k_hi, 60)).astype(int))
    ks = ks[lam[ks - 1] > 0]
    if ks.size < 3:
        raise InputError("fit_power_law needs at least 3 positive eigenvalues in k_range")
    slope, icpt, half = _ols(np.log(ks), np.log(lam[ks - 1]), confidence)
    nu, nu_half, scale = -slope, half, math.exp(icpt)
    # kappa: every mode, log c_k on log k, weights 1/k (each decade weighs the same). Noisy coefficients
    # (c_k = k^-(kappa+1) x a random factor) only shift the intercept, so the slope stays unbiased
    # (averaging c in bins first would not be: E log(mean) depends on the bin's size).
    cc = 2 * spec.N * wk
    kk = np.arange(k_lo, k_hi + 1)
    kk = kk[cc[kk - 1] > 0]
    if kk.size < 5:
        raise InputError("fit_power_law needs at least 5 modes with c_k > 0 in k_range")
    slope_c, _, half_c = _ols(np.log(kk), np.log(cc[kk - 1]), confidence, weights=1.0 / kk)
    kappa = -slope_c - 1
    if nu > 0 and kappa > 0:
        q = q_lambda(spec, nu=nu, kappa=kappa, lambda_scale=scale, k_range=(k_lo, k_hi))
        ph, ex = phase(nu, kappa), loss_exponent(nu, kappa)
    else:
        q, ph, ex = math.nan, "undefined", math.nan
    return PowerLawFit(nu=float(nu), nu_ci=(float(nu - nu_half), float(nu + nu_half)), kappa=float(kappa),
                       kappa_ci=(float(kappa - half_c), float(kappa + half_c)), lambda_scale=float(scale),
                       q_lambda=float(q), phase=ph, exponent=float(ex), k_range=(k_lo, k_hi),
                       confidence=float(confidence))


def q_lambda(spectrum, nu, kappa, *, w=None, c=None, N=None, lambda_scale=1.0, k_range=None):
    """Q_lambda of docs/theory.md#phases, sum_{lambda_l < lambda} w_l ~ Q_lambda lambda^zeta, from the partial
    sums of w with the finite-N cutoff kept: with lambda(x) = lambda_scale x^-nu,

        W_k = sum_{l > k} w_l ~ Q_lambda [lambda(k + 1/2)^zeta - lambda(M + 1/2)^zeta],

    and Q_lambda is the median of W_k / [...] over log-spaced k in k_range (default 2..M/2). For the synthetic
    problem w_k = C k^-(kappa + 1) this gives C / (kappa lambda_scale^zeta)."""
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    nu, kappa = (float(v) for v in check_exponents(nu, kappa))
    zeta = kappa / nu
    M = spec.eigvals.size
    k_lo, k_hi = k_range if k_range is not None else (min(2, M), max(M // 2, min(M, 8)))
    ks = np.unique(np.round(np.geomspace(k_lo, k_hi, 40)).astype(int))
    tail = np.concatenate([np.cumsum(spec.w[::-1])[::-1][1:], [0.0]])  # W_k = sum_{l > k} w_l, k = 1..M
    lam_of = lambda x: lambda_scale * x ** (-nu)  # noqa: E731
    den = lam_of(ks + 0.5) ** zeta - lam_of(M + 0.5) ** zeta
    ok = den > 0
    return float(np.median(tail[ks - 1][ok] / den[ok]))
