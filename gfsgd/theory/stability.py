"""Stability of the averaged dynamics (docs/theory.md section 5).

Per mode (lam = lambda_k > 0, alpha = lr, beta = momentum, gamma_tau = gamma * tau):

    |beta| < 1,  0 < alpha lam < 2 (1 + beta),  and  S_k(1) > 0, i.e.
    alpha lam [(1 - beta) - gamma_tau (1 + beta)] < 2 (1 - beta^2)   (binding only when gamma_tau < 0).

Globally, with every mode stable, the averaged loss converges iff U(1) < 1, where

    U(1) = gamma alpha sum_k lam_k (1 + beta)
           / [(1 - beta)(2 (1 + beta) - alpha lam_k) + gamma tau alpha lam_k (1 + beta)].

U(1) increases with alpha on the per-mode stable range, so alpha_crit(beta, b) is the root of U(1) = 1 there,
or the per-mode limit when U(1) < 1 up to it (b = N: alpha_crit = 2 (1 + beta) / lambda_max).
The boundary U(1) = 1 has two asymptotes in the (alpha, beta) plane: alpha = 2 (1 + beta) / lambda_max and
alpha = 2 (1 - beta) / (gamma lambda_crit), with sum_k lam_k / (lambda_crit + tau lam_k) = 1.
"""
from __future__ import annotations

import numpy as np

from ._inputs import (as_spectrum, check_batch_size, check_eigvals, check_finite, check_lr, check_momentum,
                      check_tau, noise_gamma)
from .generating import U1

__all__ = ["mode_stable", "per_mode_lr_limit", "is_convergent", "critical_lr", "lambda_crit", "asymptotes",
           "boundary_adjacent"]


def mode_stable(lam, lr, momentum, gamma_tau):
    """Per-mode stability (docs/theory.md section 5), broadcast over all arguments:

    0 < alpha lam < 2 (1 + beta) and alpha lam [(1 - beta) - gamma_tau (1 + beta)] < 2 (1 - beta^2).
    A mode with lam = 0 never moves and counts as stable. Returns a boolean array.
    """
    lam = check_eigvals(lam)
    a = check_lr(lr)
    beta = check_momentum(momentum)
    gt = check_finite(gamma_tau, "gamma_tau")
    u = a * lam
    ok = (u < 2 * (1 + beta)) & (u * ((1 - beta) - gt * (1 + beta)) < 2 * (1 - beta * beta))
    return ok | (lam == 0)


def _mode_limit(lam_max, beta, gt):
    """Largest stable alpha for the top mode: min(2 (1 + beta), 2 (1 - beta^2) / c if c > 0) / lam_max,
    c = (1 - beta) - gamma_tau (1 + beta)."""
    cfac = (1 - beta) - gt * (1 + beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        lim2 = np.where(cfac > 0, 2 * (1 - beta * beta) / np.where(cfac > 0, cfac, 1.0), np.inf)
    return np.minimum(2 * (1 + beta), lim2) / lam_max


def per_mode_lr_limit(spectrum, momentum, batch_size, N=None, tau=1.0, *, replacement=False):
    """The largest alpha for which every mode is stable (the per-mode part of alpha_crit), broadcast over
    momentum and batch_size: min(2 (1 + beta), 2 (1 - beta^2) / [(1 - beta) - gamma tau (1 + beta)]) / lambda_max."""
    spec = as_spectrum(spectrum, N=N)
    tau = check_tau(tau)
    beta = check_momentum(momentum)
    b = check_batch_size(batch_size, spec.N)
    beta, b = np.broadcast_arrays(beta, b)
    gamma = noise_gamma(b, spec.N, replacement)
    return _mode_limit(spec.lambda_max, beta, gamma * tau)


def is_convergent(spectrum, lr, momentum, batch_size, N=None, tau=1.0, *, replacement=False):
    """True where the averaged loss converges: every mode stable and U(1) < 1 (docs/theory.md section 5).
    lr, momentum, batch_size broadcast together; returns a boolean array."""
    spec = as_spectrum(spectrum, N=N)
    tau = check_tau(tau)
    a = check_lr(lr)
    beta = check_momentum(momentum)
    b = check_batch_size(batch_size, spec.N)
    a, beta, b = np.broadcast_arrays(a, beta, b)
    gamma = noise_gamma(b, spec.N, replacement)
    modes_ok = a < _mode_limit(spec.lambda_max, beta, gamma * tau)
    u1 = U1(spec, a, beta, b, tau=tau, replacement=replacement)
    return modes_ok & (u1 < 1)


def critical_lr(spectrum, momentum, batch_size, N=None, tau=1.0, *, replacement=False, iterations=200):
    """alpha_crit(beta, b): the smallest alpha at which U(1) = 1 or a mode becomes unstable (docs/theory.md sec. 5).

    spectrum: a Problem or eigenvalues (N: training points, default from the Problem / len(eigvals)).
    momentum, batch_size: broadcast together (vectorised). U(1) increases with alpha on (0, alpha_mode), so
    the root is found by bisection to full float64 precision. b = N gives 2 (1 + beta) / lambda_max.
    """
    spec = as_spectrum(spectrum, N=N)
    tau = check_tau(tau)
    beta = check_momentum(momentum)
    b = check_batch_size(batch_size, spec.N)
    beta, b = np.broadcast_arrays(beta, b)
    shape = beta.shape
    beta, b = beta.reshape(-1).astype(float), b.reshape(-1).astype(float)
    gamma = noise_gamma(b, spec.N, replacement)
    hi = _mode_limit(spec.lambda_max, beta, gamma * tau)  # [G]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u_hi = U1(spec, hi * (1 - 1e-15), beta, b, tau=tau, replacement=replacement)
    noise_limited = ~(u_hi < 1)
    lo = np.zeros_like(hi)
    top = hi.copy()
    idx = np.flatnonzero(noise_limited)
    if idx.size:
        l, h = lo[idx], top[idx]
        for _ in range(int(iterations)):
            mid = 0.5 * (l + h)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                bad = ~(U1(spec, mid, beta[idx], b[idx], tau=tau, replacement=replacement) < 1)
            h = np.where(bad, mid, h)
            l = np.where(bad, l, mid)
            if np.all(h - l <= 4e-16 * h):
                break
        top[idx] = 0.5 * (l + h)
    return top.reshape(shape)


def lambda_crit(spectrum, tau=1.0, *, iterations=200):
    """lambda_crit: the root z of sum_k lambda_k / (z + tau lambda_k) = 1 (docs/theory.md section 5), on the
    branch where every denominator is positive (z > lambda_max |tau| when tau < 0). Only lambda_k > 0 count."""
    spec = as_spectrum(spectrum)
    tau = check_tau(tau)
    lam = spec.eigvals[spec.eigvals > 0]
    lo = np.max(-tau * lam)  # f -> +inf as z -> lo from above
    hi = lam.sum() + max(0.0, -tau) * lam.max()  # f(hi) <= 1
    for _ in range(int(iterations)):
        mid = 0.5 * (lo + hi)
        if np.sum(lam / (mid + tau * lam)) > 1:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 4e-16 * max(abs(hi), abs(lo)):
            break
    return float(0.5 * (lo + hi))


def asymptotes(spectrum, momentum, batch_size, N=None, tau=1.0, *, replacement=False):
    """The two asymptotes of the convergence boundary U(1) = 1 (docs/theory.md section 5), broadcast over
    momentum and batch_size: (alpha = 2 (1 + beta) / lambda_max, alpha = 2 (1 - beta) / (gamma lambda_crit)).
    The second is inf at b = N (gamma = 0)."""
    spec = as_spectrum(spectrum, N=N)
    beta = check_momentum(momentum)
    b = check_batch_size(batch_size, spec.N)
    beta, b = np.broadcast_arrays(beta, b)
    gamma = noise_gamma(b, spec.N, replacement)
    lc = lambda_crit(spec, tau)
    with np.errstate(divide="ignore"):
        noise_line = 2 * (1 - beta) / (gamma * lc)
    return 2 * (1 + beta) / spec.lambda_max, noise_line


def boundary_adjacent(pred):
    """Cells of a boolean grid (e.g. predicted divergent over (alpha, beta)) with a 4-neighbour of the other
    value: where a prediction and a finite-time simulation may legitimately disagree."""
    pred = np.asarray(pred, dtype=bool)
    adj = np.zeros_like(pred)
    adj[1:, :] |= pred[1:, :] != pred[:-1, :]
    adj[:-1, :] |= pred[:-1, :] != pred[1:, :]
    adj[:, 1:] |= pred[:, 1:] != pred[:, :-1]
    adj[:, :-1] |= pred[:, :-1] != pred[:, 1:]
    return adj
