"""Power-law spectra: phases, loss exponents, asymptotic loss and its constants, crossover time, and a fit
of (nu, kappa) to a real spectrum (docs/theory.md#phases).

For lambda_k ~ Lambda k^-nu and w_k ~ k^-(kappa + 1), zeta = kappa / nu, and Q_lambda defined by
sum_{lambda_l < lambda} w_l ~ Q_lambda lambda^zeta, with alpha_eff = alpha / (1 - beta) and s = 2 alpha_eff t:

    signal part  V_t ~ Q_lambda Gamma(zeta + 1) s^-zeta
    noise part   U_t ~ gamma alpha_eff^2 (Lambda^(1/nu) / nu) Gamma(2 - 1/nu) s^-(2 - 1/nu)
    loss         L_t ~ V_t / (1 - U(1)) + V(1) U_t / (1 - U(1))^2

(the second term only where V is summable, zeta > 1: for zeta < 1, V(1) is a finite-N artefact growing like
N^(1 - zeta) and the true correction to the first term is of relative order t^-(1 - 1/nu); the first term
dominates for kappa < 2 nu - 1, "signal" phase; the second for kappa > 2 nu - 1, "noise"
phase; nu <= 1: U(1) grows without bound with N, "divergent"). With N modes the spectrum stops at
lambda_c = Lambda (N + 1/2)^-nu; `finite_size=True` keeps that cutoff, replacing Gamma(a) s^-a by the upper
incomplete Gamma(a, s lambda_c) s^-a, which matters when s lambda_c is not tiny (e.g. t = 10^4, N = 10^4).

phase, loss_exponent, PowerLawFit, fit_power_law and q_lambda are defined in gfsgd.spectrum.powerlaw (the
rank-k tail model fits the same power laws, and the spectrum sits below the theory) and re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from ..spectrum.powerlaw import PowerLawFit, check_exponents, fit_power_law, loss_exponent, phase, q_lambda
from ._inputs import as_spectrum, check_batch_size, check_finite, check_lr, check_momentum, check_tau, noise_gamma
from .generating import U1, V1
from .stability import is_convergent
from ..errors import InputError

__all__ = ["phase", "loss_exponent", "PowerLawFit", "fit_power_law", "q_lambda", "AsymptoticLoss",
           "asymptotic_loss", "crossover_time", "spectral_asymptotic_loss"]


# ----------------------------------------------------------------------------------------- asymptotics
@dataclass
class AsymptoticLoss:
    """Asymptotic loss at steps t for configs (arrays broadcast to (*config_shape, len(t)) or config shape).

    loss = signal + noise; signal = V_t / (1 - U(1)), noise = V(1) U_t / (1 - U(1))^2;
    c_signal, c_noise: the constants in signal ~ c_signal t^-zeta and noise ~ c_noise t^-(2 - 1/nu) (no cutoff);
    exponent, phase: of (nu, kappa); t_star: crossover time where the two power laws cross."""
    loss: np.ndarray
    signal: np.ndarray
    noise: np.ndarray
    c_signal: np.ndarray
    c_noise: np.ndarray
    u1: np.ndarray
    v1: np.ndarray
    exponent: float
    phase: str
    t_star: np.ndarray


def _upper_gamma(a, x):
    """Gamma(a, x) (upper incomplete, unregularised), for a > 0, x >= 0."""
    return special.gammaincc(a, x) * special.gamma(a)


def asymptotic_loss(spectrum, lr, momentum, batch_size, t, *, nu, kappa, w=None, c=None, N=None, tau=1.0,
                    replacement=False, lambda_scale=1.0, q=None, finite_size=True):
    """Predicted asymptotic loss L_t of a power-law problem (docs/theory.md#phases), with its constants.

    With alpha_eff = alpha / (1 - beta), s = 2 alpha_eff t, zeta = kappa / nu, a = 2 - 1/nu:
        V_t ~ Q_lambda Gamma(zeta + 1) s^-zeta,  U_t ~ gamma alpha_eff^2 (lambda_scale^(1/nu) / nu) Gamma(a) s^-a,
        L_t ~ V_t / (1 - U(1)) + V(1) U_t / (1 - U(1))^2   (second term only for zeta > 1, see the module),
    U(1), V(1) from the spectrum (exact sums). finite_size: Gamma(p) s^-p -> Gamma(p, s lambda_c) s^-p with
    lambda_c = lambda_scale (N_modes + 1/2)^-nu, the continuum version of the spectrum's end.

    spectrum: a Problem or eigenvalues with w=/c=. nu, kappa: the power laws (e.g. from fit_power_law).
    q: Q_lambda (default: `q_lambda` from the partial sums of w). lr, momentum, batch_size broadcast to a
    config shape; t: steps (array) -> arrays (*config_shape, len(t)); a scalar t drops that axis.
    """
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    tau = check_tau(tau)
    nu_f, kappa_f = (float(v) for v in check_exponents(nu, kappa))
    if nu_f <= 1:
        raise InputError(f"asymptotic_loss needs nu > 1 (nu <= 1 is the divergent phase), got nu={nu_f}")
    a = check_lr(lr)
    beta = check_momentum(momentum)
    b = check_batch_size(batch_size, spec.N)
    t_arr = check_finite(t, "t")
    if (t_arr <= 0).any():
        raise InputError(f"t must be > 0 (steps), got t={t_arr[t_arr <= 0].reshape(-1)[0]}")
    a, beta, b = np.broadcast_arrays(a, beta, b)
    gamma = noise_gamma(b, spec.N, replacement)
    u1 = U1(spec, a, beta, b, tau=tau, replacement=replacement)
    v1 = V1(spec, a, beta, b, tau=tau, replacement=replacement)
    zeta, ex_noise = kappa_f / nu_f, 2 - 1 / nu_f
    if q is None:
        q = q_lambda(spec, nu_f, kappa_f, lambda_scale=lambda_scale)
    a_eff = a / (1 - beta)
    lam_c = lambda_scale * (spec.eigvals.size + 0.5) ** (-nu_f) if finite_size else 0.0
    s = 2 * a_eff[..., None] * np.atleast_1d(t_arr)  # [..., T]
    if finite_size:  # zeta * Gamma(zeta, x) = Gamma(zeta + 1, x) - x^zeta e^-x
        x = s * lam_c
        sig_gamma = _upper_gamma(zeta + 1, x) - x ** zeta * np.exp(-x)
        noi_gamma = _upper_gamma(ex_noise, x)
    else:
        sig_gamma, noi_gamma = special.gamma(zeta + 1), special.gamma(ex_noise)
    noise_pref = gamma * a_eff ** 2 * lambda_scale ** (1 / nu_f) / nu_f  # [...]
    with np.errstate(divide="ignore", invalid="ignore"):
        v_t = q * sig_gamma * s ** (-zeta)
        u_t = noise_pref[..., None] * noi_gamma * s ** (-ex_noise)
        one_m = (1 - u1)[..., None]
        signal = v_t / one_m
        noise = v1[..., None] * u_t / one_m ** 2 if zeta > 1 else np.zeros_like(signal)
        c_sig = q * special.gamma(zeta + 1) * (2 * a_eff) ** (-zeta) / (1 - u1)
        c_noi = v1 * noise_pref * special.gamma(ex_noise) * (2 * a_eff) ** (-ex_noise) / (1 - u1) ** 2
        t_star = (c_sig / c_noi) ** (1 / (zeta - ex_noise)) if zeta != ex_noise else np.full_like(c_sig, np.nan)
    bad = ~is_convergent(spec, a, beta, b, tau=tau, replacement=replacement)
    if bad.any():
        signal[bad], noise[bad] = np.inf, np.inf
    loss = signal + noise
    if np.ndim(t) == 0:
        loss, signal, noise = loss[..., 0], signal[..., 0], noise[..., 0]
    return AsymptoticLoss(loss=loss, signal=signal, noise=noise, c_signal=c_sig, c_noise=c_noi, u1=u1, v1=v1,
                          exponent=loss_exponent(nu_f, kappa_f), phase=phase(nu_f, kappa_f), t_star=t_star)


def crossover_time(spectrum, lr, momentum, batch_size, *, nu, kappa, w=None, c=None, N=None, tau=1.0,
                   replacement=False, lambda_scale=1.0, q=None):
    """t* where the signal and noise power laws cross (docs/theory.md#phases):

        (2 alpha_eff t*)^(zeta - (2 - 1/nu)) = Q_lambda Gamma(zeta + 1) (1 - U(1))
                                               / [V(1) (gamma / nu) lambda_scale^(1/nu) Gamma(2 - 1/nu) alpha_eff^2].

    In the noise phase (kappa > 2 nu - 1) the curve follows the signal law before t* and the noise law after.
    """
    return asymptotic_loss(spectrum, lr, momentum, batch_size, 1.0, nu=nu, kappa=kappa, w=w, c=c, N=N, tau=tau,
                           replacement=replacement, lambda_scale=lambda_scale, q=q).t_star


def spectral_asymptotic_loss(spectrum, lr, momentum, batch_size, t, *, w=None, c=None, N=None, tau=1.0,
                             replacement=False, include_noise=True):
    """The same two-term asymptotic loss with the spectral sums kept discrete (no power-law fit needed):

        L_t ~ sum_k w_k e^{-2 alpha_eff lambda_k t} / (1 - U(1))
              + V(1) gamma alpha_eff^2 sum_k lambda_k^2 e^{-2 alpha_eff lambda_k t} / (1 - U(1))^2.

    include_noise=False drops the second term (right when sum_t V_t diverges with N: zeta = kappa / nu < 1).

    lr, momentum, batch_size broadcast to a config shape; t a scalar (result: config shape, inf where the
    config does not converge: a mode unstable or U(1) >= 1, see stability.is_convergent). Cost O(configs x modes): the cheap predictor used by optimal_hyperparameters(method="asymptotic").
    """
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    tau = check_tau(tau)
    a = check_lr(lr)
    beta = check_momentum(momentum)
    b = check_batch_size(batch_size, spec.N)
    t = float(check_finite(t, "t"))
    if t <= 0:
        raise InputError(f"t must be > 0 (steps), got t={t}")
    a, beta, b = np.broadcast_arrays(a, beta, b)
    shape = a.shape
    gamma = noise_gamma(b, spec.N, replacement).reshape(-1)
    u1 = U1(spec, a, beta, b, tau=tau, replacement=replacement).reshape(-1)
    v1 = V1(spec, a, beta, b, tau=tau, replacement=replacement).reshape(-1)
    a_eff = (a / (1 - beta)).reshape(-1)
    lam = spec.eigvals
    out = np.empty(a_eff.size)
    step = max(1, (1 << 21) // lam.size)
    for i in range(0, a_eff.size, step):  # blocks of configs, each vectorised over [g, M]
        sl = slice(i, i + step)
        e = np.exp(-2 * t * a_eff[sl, None] * lam[None, :])  # [g, M]
        sig = e @ spec.w
        with np.errstate(divide="ignore", invalid="ignore"):
            out[sl] = sig / (1 - u1[sl])
            if include_noise:
                noi = gamma[sl] * a_eff[sl] ** 2 * (e @ (lam * lam))
                out[sl] += v1[sl] * noi / (1 - u1[sl]) ** 2
    conv = is_convergent(spec, a, beta, b, tau=tau, replacement=replacement).reshape(-1)
    out[~conv] = np.inf
    return out.reshape(shape)
