"""Generating functions of the loss (docs/theory.md#generating-functions).

Per mode k (eigenvalue lam = lambda_k), with alpha = lr, beta = momentum and the noise strength
gamma_tau = gamma * tau, the per-mode second-moment map is

    A_k(M) = R M R^T - gamma tau alpha^2 lam^2 m11 E,   R = [[1 - alpha lam, beta], [-alpha lam, beta]],

acting on the second moments M = [[m11, m12], [m12, m22]] of (mode of d, mode of v), E = [[1, 1], [1, 1]],
e11 = [[1, 0], [0, 0]]. Its resolvent gives the per-mode generating functions

    S_k(z) = (1 - beta z)[(1 + beta z)^2 - z (1 + beta - alpha lam)^2] + gamma_tau alpha^2 lam^2 z (1 + beta z)
    U_k(z) = [(1 - z A_k)^{-1} E]_11   = (1 + beta z) / S_k(z)
    V_k(z) = [(1 - z A_k)^{-1} e11]_11 = [(1 - beta z)(1 - beta^2 z) + 2 alpha beta lam z] / S_k(z)

and, with w_k = c_k / (2N) the initial loss per mode and gamma = (N - b) / ((N - 1) b),

    V(z) = sum_k w_k V_k(z),   U(z) = gamma alpha^2 z sum_k lam_k^2 U_k(z),   L(z) = V(z) / (1 - U(z)),

L(z) = sum_{t >= 0} L_t z^t. Its coefficients in time (the propagators V_t, U_m) and the renewal equation they
satisfy are in gfsgd.theory.renewal.

Everything is vectorised: lr, momentum, batch_size (and z) broadcast together to a config shape; the spectrum
adds a mode axis that is summed over. float64 throughout.
"""
from __future__ import annotations

import numpy as np

from ._inputs import (as_spectrum, broadcast_configs, check_eigvals, check_finite, check_lr, check_momentum,
                      check_z)
from .renewal import loss_curve
from ..errors import InputError

# loss_curve lives in gfsgd.theory.renewal; re-exported here because inversion.py and optimal.py import it from here
__all__ = ["S_k", "U_k", "V_k", "U", "V", "L", "U1", "V1", "total_loss", "split_configs", "loss_curve"]

_CHUNK_ELEMS = 1 << 21  # configs x modes per block in the spectral sums


# ------------------------------------------------------------------------------------------- per mode
def _mode_args(z, lam, lr, momentum, gamma_tau):
    z = check_z(z)
    lam = check_eigvals(lam)
    lr = check_lr(lr)
    beta = check_momentum(momentum)
    gt = check_finite(gamma_tau, "gamma_tau")
    return np.broadcast_arrays(z, lam, lr, beta, gt)


def _S(z, lam, a, beta, gt):
    u = a * lam
    bz = beta * z
    return (1 - bz) * ((1 + bz) ** 2 - z * (1 + beta - u) ** 2) + gt * u * u * z * (1 + bz)


def S_k(z, lam, lr, momentum, gamma_tau):
    """Common denominator of the per-mode generating functions (docs/theory.md#generating-functions):

    S_k(z) = (1 - beta z)[(1 + beta z)^2 - z (1 + beta - alpha lam)^2] + gamma_tau alpha^2 lam^2 z (1 + beta z)

    = det(1 - z A_k). All arguments broadcast (z in [0, 1], lam >= 0, lr = alpha > 0, momentum = beta in
    (-1, 1), gamma_tau = gamma * tau any real).
    """
    return _S(*_mode_args(z, lam, lr, momentum, gamma_tau))


def U_k(z, lam, lr, momentum, gamma_tau):
    """Per-mode noise generating function U_k(z) = [(1 - z A_k)^{-1} E]_11 = (1 + beta z) / S_k(z)."""
    z, lam, a, beta, gt = _mode_args(z, lam, lr, momentum, gamma_tau)
    return (1 + beta * z) / _S(z, lam, a, beta, gt)


def V_k(z, lam, lr, momentum, gamma_tau):
    """Per-mode signal generating function
    V_k(z) = [(1 - z A_k)^{-1} e11]_11 = [(1 - beta z)(1 - beta^2 z) + 2 alpha beta lam z] / S_k(z)."""
    z, lam, a, beta, gt = _mode_args(z, lam, lr, momentum, gamma_tau)
    return ((1 - beta * z) * (1 - beta * beta * z) + 2 * a * beta * lam * z) / _S(z, lam, a, beta, gt)


# ------------------------------------------------------------------------------------------ spectral sums
def _mode_sum(term, lam, weights, *cfg):
    """sum_k weights_k * term(lam_k, *cfg) for flat configs cfg (each [G]), in blocks of configs: [G]."""
    G = cfg[0].size
    M = lam.size
    out = np.empty(G)
    step = max(1, _CHUNK_ELEMS // M)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for i in range(0, G, step):
            sl = slice(i, i + step)
            args = [x[sl, None] for x in cfg]  # [g, 1] each
            out[sl] = term(lam[None, :], *args) @ weights  # [g, M] @ [M]
    return out


def _U_term(lam, z, a, beta, gt):
    return lam * lam * (1 + beta * z) / _S(z, lam, a, beta, gt)


def _V_term(lam, z, a, beta, gt):
    return ((1 - beta * z) * (1 - beta * beta * z) + 2 * a * beta * lam * z) / _S(z, lam, a, beta, gt)


def U(z, spectrum, lr, momentum, batch_size, *, N=None, tau=1.0, replacement=False):
    """Noise generating function U(z) = sum_{m>=1} U_m z^m = gamma alpha^2 z sum_k lambda_k^2 U_k(z).

    spectrum: a Problem or eigenvalues (then N = number of training points, default len(eigvals));
    z in [0, 1], lr, momentum, batch_size: broadcast together; returns an array of the broadcast shape
    (docs/theory.md#generating-functions). Meaningful as a power series where every S_k > 0 on [0, z].
    """
    spec = as_spectrum(spectrum, N=N)
    z = check_z(z)
    shape, (a, beta, b, zz), gamma, tau = broadcast_configs(spec, lr, momentum, batch_size, tau, replacement, z)
    s = _mode_sum(_U_term, spec.eigvals, np.ones(spec.eigvals.size), zz, a, beta, gamma * tau)
    return (gamma * a * a * zz * s).reshape(shape)


def V(z, spectrum, lr, momentum, batch_size, *, w=None, c=None, N=None, tau=1.0, replacement=False):
    """Signal generating function V(z) = sum_{t>=0} V_t z^t = sum_k w_k V_k(z), w_k = c_k / (2N).

    spectrum: a Problem (w read from it) or eigenvalues with w= or c=. Shapes as in U
    (docs/theory.md#generating-functions).
    """
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    z = check_z(z)
    shape, (a, beta, b, zz), gamma, tau = broadcast_configs(spec, lr, momentum, batch_size, tau, replacement, z)
    return _mode_sum(_V_term, spec.eigvals, spec.w, zz, a, beta, gamma * tau).reshape(shape)


def L(z, spectrum, lr, momentum, batch_size, *, w=None, c=None, N=None, tau=1.0, replacement=False):
    """Loss generating function L(z) = sum_{t>=0} L_t z^t = V(z) / (1 - U(z)) (docs/theory.md#generating-functions)."""
    kw = dict(N=N, tau=tau, replacement=replacement)
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    return V(z, spec, lr, momentum, batch_size, **kw) / (1 - U(z, spec, lr, momentum, batch_size, **kw))


def _U1_term(lam, a, beta, gt):
    return lam * (1 + beta) / ((1 - beta) * (2 * (1 + beta) - a * lam) + gt * a * lam * (1 + beta))


def U1(spectrum, lr, momentum, batch_size, *, N=None, tau=1.0, replacement=False, noise_scale=1.0):
    """U(1) = gamma alpha sum_k lambda_k (1 + beta) / [(1 - beta)(2(1 + beta) - alpha lambda_k)
    + gamma tau alpha lambda_k (1 + beta)]  (docs/theory.md#generating-functions). The averaged loss converges iff
    every mode is stable and U(1) < 1 (docs/theory.md#stability). noise_scale multiplies gamma."""
    spec = as_spectrum(spectrum, N=N)
    shape, (a, beta, b), gamma, tau = broadcast_configs(spec, lr, momentum, batch_size, tau, replacement,
                                                        noise_scale=noise_scale)
    s = _mode_sum(_U1_term, spec.eigvals, np.ones(spec.eigvals.size), a, beta, gamma * tau)
    return (gamma * a * s).reshape(shape)


def _V1_term(lam, a, beta, gt):
    u = a * lam
    s1 = u * ((1 - beta) * (2 * (1 + beta) - u) + gt * u * (1 + beta))
    return ((1 - beta) * (1 - beta * beta) + 2 * a * beta * lam) / s1


def V1(spectrum, lr, momentum, batch_size, *, w=None, c=None, N=None, tau=1.0, replacement=False):
    """V(1) = sum_t V_t = sum_k w_k [(1 - beta)(1 - beta^2) + 2 alpha beta lambda_k] / S_k(1), with
    S_k(1) = alpha lambda_k [(1 - beta)(2(1 + beta) - alpha lambda_k) + gamma tau alpha lambda_k (1 + beta)]
    (infinite when a mode with w_k > 0 has lambda_k = 0)."""
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    shape, (a, beta, b), gamma, tau = broadcast_configs(spec, lr, momentum, batch_size, tau, replacement)
    lam, wk = spec.eigvals, spec.w
    pos = lam > 0
    out = _mode_sum(_V1_term, lam[pos], wk[pos], a, beta, gamma * tau)
    if (wk[~pos] > 0).any():
        out[:] = np.inf
    return out.reshape(shape)


def total_loss(spectrum, lr, momentum, batch_size, *, w=None, c=None, N=None, tau=1.0, replacement=False):
    """sum_{t>=0} L_t = L(1) = V(1) / (1 - U(1)) for a convergent config (inf when U(1) >= 1)."""
    kw = dict(N=N, tau=tau, replacement=replacement)
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    u1 = U1(spec, lr, momentum, batch_size, **kw)
    v1 = V1(spec, lr, momentum, batch_size, **kw)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(u1 < 1, v1 / (1 - u1), np.inf)


# ------------------------------------------------------------------------------------------------ configs
def split_configs(configs):
    """A list of (lr, momentum, batch_size) triples (or a gfsgd Grid) -> three arrays (lr, momentum, b)."""
    configs = getattr(configs, "configs", configs)
    arr = np.asarray([tuple(c) for c in configs], dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
        raise InputError(f"configs must be a non-empty list of (lr, momentum, batch_size) triples, "
                         f"got shape {arr.shape}")
    return arr[:, 0], arr[:, 1], arr[:, 2]
