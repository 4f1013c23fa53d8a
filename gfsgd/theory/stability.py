"""Stability of the averaged dynamics (docs/theory.md#stability).

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

from .exact_edge import apply_noise_operator, entry_matrices, fast_exact_critical_lr, live_modes
from .outputs import critical_lr_outputs
from ._inputs import (as_spectrum, check_batch_size, check_eigvals, check_finite, check_lr, check_momentum,
                      check_tau, noise_gamma)
from .generating import U1
from ..errors import InputError

__all__ = ["mode_stable", "per_mode_lr_limit", "is_convergent", "critical_lr", "lambda_crit", "asymptotes",
           "boundary_adjacent"]


def mode_stable(lam, lr, momentum, gamma_tau):
    """Per-mode stability (docs/theory.md#stability), broadcast over all arguments:

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


def is_convergent(spectrum, lr, momentum, batch_size, N=None, tau=1.0, *, replacement=False, noise_scale=1.0):
    """True where the averaged loss converges: every mode stable and U(1) < 1 (docs/theory.md#stability).
    lr, momentum, batch_size broadcast together; returns a boolean array. noise_scale multiplies gamma (SVAG(l):
    l, with lr / l; docs/theory.md#updates)."""
    spec = as_spectrum(spectrum, N=N)
    tau = check_tau(tau)
    a = check_lr(lr)
    beta = check_momentum(momentum)
    b = check_batch_size(batch_size, spec.N)
    a, beta, b = np.broadcast_arrays(a, beta, b)
    gamma = noise_gamma(b, spec.N, replacement) * float(noise_scale)
    modes_ok = a < _mode_limit(spec.lambda_max, beta, gamma * tau)
    u1 = U1(spec, a, beta, b, tau=tau, replacement=replacement, noise_scale=noise_scale)
    return modes_ok & (u1 >= 0) & (u1 < 1)


def critical_lr(spectrum, momentum, batch_size, N=None, tau=1.0, *, replacement=False, iterations=200,
                exact=False, rtol=1e-4):
    """alpha_crit(beta, b): the smallest alpha at which U(1) = 1 or a mode becomes unstable (docs/theory.md#stability).

    spectrum: a Problem or eigenvalues (N: training points, default from the Problem / len(eigvals)).
    momentum, batch_size: broadcast together (vectorised). U(1) increases with alpha on (0, alpha_mode), so
    the root is found by bisection to full float64 precision. b = N gives 2 (1 + beta) / lambda_max.

    exact=True: the edge of the exact batch-averaged dynamics of a dense problem (a Problem with its
    eigenvectors; the `full` regime), which can lie well below the SD edge when the eigenvectors are localised
    (docs/theory.md#stability-edge); tau is not used, rtol is the relative width of its bisection. Cost O(N^3) per
    bisection step and config (see exact_critical_lr).
    """
    if getattr(spectrum, "n_outputs", 1) > 1 and not exact:  # C outputs: the C^2-vector renewal's edge
        return critical_lr_outputs(spectrum, momentum, batch_size, tau=tau, replacement=replacement)
    if exact:
        beta = check_momentum(momentum)
        b = check_batch_size(batch_size, getattr(spectrum, "N", 0) or 1)
        beta, b = np.broadcast_arrays(beta, b)
        if not hasattr(spectrum, "eigvecs"):
            raise InputError("critical_lr(exact=True) needs a Problem with its eigenvectors (a dense problem), "
                             f"got {type(spectrum).__name__}")
        out = np.array([exact_critical_lr(spectrum, m, bb, replacement=replacement, rtol=rtol)
                        for m, bb in zip(beta.reshape(-1), b.reshape(-1))])
        return out.reshape(beta.shape)
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
    # U(1) is a sum of positive terms on the stable range; a negative value means that rounding put a
    # denominator past its zero at the per-mode limit (tau < 0), where U(1) -> +inf: noise-limited
    noise_limited = ~((u_hi >= 0) & (u_hi < 1))
    lo = np.zeros_like(hi)
    top = hi.copy()
    idx = np.flatnonzero(noise_limited)
    if idx.size:
        l, h = lo[idx], top[idx]
        for _ in range(int(iterations)):
            mid = 0.5 * (l + h)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                u1 = U1(spec, mid, beta[idx], b[idx], tau=tau, replacement=replacement)
                bad = ~((u1 >= 0) & (u1 < 1))
            h = np.where(bad, mid, h)
            l = np.where(bad, l, mid)
            if np.all(h - l <= 4e-16 * h):
                break
        top[idx] = 0.5 * (l + h)
    return top.reshape(shape)


def lambda_crit(spectrum, tau=1.0, *, iterations=200):
    """lambda_crit: the root z of sum_k lambda_k / (z + tau lambda_k) = 1 (docs/theory.md#stability), on the
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
    """The two asymptotes of the convergence boundary U(1) = 1 (docs/theory.md#stability), broadcast over
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


# ------------------------------------------------------------------------------ exact edge (dense problems)
def _noise_gain(lam, a, beta, gamma, N):
    """H_kl = q_kl [(I - R_kl)^{-1} e_C]_C, q_kl = alpha^2 gamma N lam_k lam_l: the z = 1 response of entry
    (k, l) to a unit noise injection (docs/theory.md#stability-edge)."""
    m = 1 + beta - a * lam
    mk, ml = m[:, None], m[None, :]
    akl = mk * ml - a * a * gamma * lam[:, None] * lam[None, :]
    den = 1 - akl - beta * beta + beta * (mk * mk + ml * ml - 2 * beta * mk * ml) / (1 - beta * beta)
    q = a * a * gamma * N * lam[:, None] * lam[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(q == 0, 0.0, q / den)


def exact_stability(problem, lr, momentum, batch_size, *, replacement=False, tol=1e-6, v0=None):
    """The exact batch-averaged dynamics of a dense problem (the `full` regime) at one config: returns
    (stable: bool, rho: spectral radius of the z = 1 noise operator A(1) (inf if an entry is unstable),
    eigenvector for warm starts).

    In the eigenbasis every entry (k, l) of the second moments evolves by its own 4 x 4 map R_kl, except for the
    noise injection q_kl (U^T diag(c) U)_kl, c the data-basis diagonal of C. Stable iff every R_kl has spectral
    radius < 1 and the operator c -> A(1) c = diag(U (H o (U^T diag(c) U)) U^T) has spectral radius < 1.
    A(1) is symmetric; its largest |eigenvalue| is found by Lanczos (scipy eigsh) on matrix-free products that
    cost two N x N x N matmuls each. With C outputs per example the noise acts on the examples' C x C blocks
    (blockdiag in place of diag, docs/theory.md#outputs); the entry maps are unchanged.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    U = problem.eigvecs
    if U is None:
        raise InputError("the exact stability edge needs the kernel's eigenvectors, but this problem is spectral "
                         f"only ({problem.name}); use exact=False (the SD edge)")
    U = U.detach().cpu().double().numpy()
    lam = problem.eigvals.detach().cpu().double().numpy()
    Co = int(getattr(problem, "n_outputs", 1))
    M = lam.size
    N = M // Co  # examples (C outputs: the noise acts on the examples' C x C blocks, docs/theory.md#outputs)
    a, beta = float(lr), float(momentum)
    gamma = float(noise_gamma(np.asarray(float(batch_size)), N, replacement))
    alive = live_modes(lam)  # zero modes: neutral entries (eigenvalue 1), see exact_edge
    live = np.flatnonzero(alive)
    ka, la = np.triu_indices(live.size)
    R = entry_matrices(lam, a, beta, gamma, live[ka], live[la])
    if np.max(np.abs(np.linalg.eigvals(R))) >= 1:
        return False, np.inf, v0
    if gamma == 0:
        return True, 0.0, v0
    H = _noise_gain(lam, a, beta, gamma, N)
    dead = np.flatnonzero(~alive)
    H[dead], H[:, dead] = 0.0, 0.0  # 0/0 there; their gain is O(lambda) ~ 0
    Ut = np.ascontiguousarray(U.T)
    size = N * Co * Co

    def matvec(c):
        return apply_noise_operator(U, Ut, H, np.asarray(c).reshape(-1), Co)

    op = LinearOperator((size, size), matvec=matvec, dtype=float)
    vals, vecs = eigsh(op, k=1, which="LM", tol=tol, v0=v0, maxiter=5000)
    rho = float(abs(vals[0]))
    return rho < 1, rho, vecs[:, 0]


def exact_critical_lr(problem, momentum, batch_size, *, replacement=False, rtol=1e-4, lo=None,
                      method: str = "newton"):
    """The largest stable alpha of the exact batch-averaged dynamics (see exact_stability) at one
    (momentum, batch_size).

    method="newton" (default; gfsgd.theory.exact_edge): safeguarded Newton steps on rho(alpha) = 1 with
    Hellmann-Feynman slopes and warm-started Lanczos, to about 1e-9 relative (rtol is an upper bound on its error);
    about 5-8 steps of 7 products of 2 N^3 flops. method="bisection": the earlier search, bisection to relative
    width rtol between 0 and the per-mode limit (about 15 steps x (N^2/2 4 x 4 eigenvalue problems + ~20-40 Lanczos
    products)), kept as an independent check. See benchmarks/README.md for measured times."""
    if method not in ("newton", "bisection"):
        raise InputError(f"method must be 'newton' or 'bisection', got method={method!r}")
    if method == "newton":
        return fast_exact_critical_lr(problem, momentum, batch_size, replacement=replacement,
                                      rtol=min(1e-9, float(rtol)))
    beta = float(momentum)
    hi = float(_mode_limit(float(problem.eigvals.max()), np.asarray(beta), 0.0))
    ok, _, v = exact_stability(problem, hi * (1 - 1e-12), beta, batch_size, replacement=replacement)
    if ok:
        return hi
    low = 0.0 if lo is None else float(lo)
    v = None
    while hi - low > rtol * hi:
        mid = 0.5 * (low + hi) if low > 0 else (hi / 2 if lo is None else 0.5 * (low + hi))
        ok, _, v = exact_stability(problem, mid, beta, batch_size, replacement=replacement, v0=v)
        if ok:
            low = mid
        else:
            hi = mid
    return 0.5 * (low + hi)
