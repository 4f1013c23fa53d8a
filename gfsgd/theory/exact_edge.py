"""The exact stability edge of a dense problem, fast (docs/theory.md#stability-edge).

The exact batch-averaged dynamics (the `full` regime) converge iff every entry map R_kl is stable and the z = 1
noise operator A(1) c = diag(U (H(alpha) o (U^T diag(c) U)) U^T) has spectral radius rho(alpha) < 1. A(1) is
symmetric with nonnegative entries, so rho is its largest eigenvalue (Perron), and it grows with alpha on the
stable interval. The edge is the root of rho(alpha) = 1, found here by safeguarded Newton steps:

    rho'(alpha) = v^T A'(alpha) v        (Hellmann-Feynman, v the unit Perron vector of A(alpha)),

A'(alpha) the same operator with dH/dalpha in place of H (closed form below). Each rho comes from a short Lanczos
run (LANCZOS vectors, full reorthogonalisation) started from the previous Perron vector, so a Newton step costs
about LANCZOS + 1 products of two N x N x N matmuls each, against ~15 bisection steps of a cold eigensolver
before. The entry maps are checked on the pairs of the top modes while searching and on every pair at the end.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ._inputs import noise_gamma

__all__ = ["fast_exact_critical_lr", "entry_matrices", "apply_noise_operator", "live_modes"]

LANCZOS = 6  # Krylov vectors per Perron solve (warm-started: the Ritz value's error goes like the residual^2)
TOP_PAIRS = 64  # modes whose entry maps are checked while searching (all pairs are checked at the end)


def live_modes(lam) -> np.ndarray:
    """The modes with lambda > 0 beyond rounding (a boolean mask). A mode with lambda = 0 is neither learnt nor
    reached by the noise (q_kl = 0): its entries keep an eigenvalue 1 at every alpha (the residual stays put), which
    is neutral, not unstable, so the stability checks leave it out."""
    return lam > 1e-12 * lam.max()


def entry_matrices(lam, a, beta, gamma, k, l):
    """The 4 x 4 maps R_kl of the pairs (k, l) of the exact second-moment dynamics in the eigenbasis, on the state
    (C~_kl, B~_kl, B~_lk, D~_kl): [P, 4, 4] (docs/theory.md#stability-edge)."""
    m = 1 + beta - a * lam
    mk, ml = m[k], m[l]
    akl = mk * ml - a * a * gamma * lam[k] * lam[l]
    R = np.zeros((k.size, 4, 4))
    R[:, 0, 0], R[:, 0, 1], R[:, 0, 2], R[:, 0, 3] = akl, -beta * mk, -beta * ml, beta * beta
    R[:, 1, 0], R[:, 1, 2] = mk, -beta
    R[:, 2, 0], R[:, 2, 1] = ml, -beta
    R[:, 3, 0] = 1.0
    return R


def _entries_stable(lam, a, beta, gamma, k, l) -> bool:
    """Every entry map R_kl of the pairs (k, l) has spectral radius < 1."""
    return bool(np.max(np.abs(np.linalg.eigvals(entry_matrices(lam, a, beta, gamma, k, l)))) < 1)


def _gain_and_slope(lam, a, beta, gamma, N):
    """H_kl(alpha) = q_kl / den_kl (the z = 1 response of entry (k, l) to a unit noise injection) and dH/dalpha."""
    m = 1 + beta - a * lam
    mk, ml = m[:, None], m[None, :]
    lk, ll = lam[:, None], lam[None, :]
    akl = mk * ml - a * a * gamma * lk * ll
    c = 1 - beta * beta
    den = 1 - akl - beta * beta + beta * (mk * mk + ml * ml - 2 * beta * mk * ml) / c
    d_akl = -lk * ml - ll * mk - 2 * a * gamma * lk * ll
    d_den = -d_akl + beta * (-2 * mk * lk - 2 * ml * ll + 2 * beta * (lk * ml + ll * mk)) / c
    q = a * a * gamma * N * lk * ll
    dq = 2 * a * gamma * N * lk * ll
    with np.errstate(divide="ignore", invalid="ignore"):
        H = np.where(q == 0, 0.0, q / den)
        dH = np.where(q == 0, 0.0, (dq * den - q * d_den) / (den * den))
    return H, dH


def apply_noise_operator(U, Ut, W, c, n_outputs=1):
    """c -> diag(U (W o (U^T diag(c) U)) U^T) for W symmetric [M, M]. With C = n_outputs > 1 the noise lives on the
    examples' C x C blocks (docs/theory.md#outputs): c is [N C C] (the blocks c_i, flattened) and the map is
    c -> blockdiag(U (W o (U^T blockdiag(c) U)) U^T)."""
    if n_outputs == 1:
        X = (Ut * c) @ U
        return np.einsum("ik,ik->i", U @ (W * X), U)
    Co = n_outputs
    M = U.shape[1]
    Ub = U.reshape(-1, Co, M)  # [N, C, M]: the rows of each example
    cb = c.reshape(-1, Co, Co)
    X = np.einsum("iak,iac,icl->kl", Ub, cb, Ub)  # U^T blockdiag(c) U
    Y = (W * X) @ Ut  # [M, N C]
    return np.einsum("iak,kic->iac", Ub, Y.reshape(M, -1, Co)).reshape(-1)


def _perron(U, Ut, H, v0, m=LANCZOS, n_outputs=1):
    """(rho, v): the largest eigenvalue of the symmetric operator and its unit vector, by Lanczos from v0."""
    N = v0.size
    m = min(m, N)
    Q = np.zeros((m, N))
    alpha, beta_ = np.zeros(m), np.zeros(m)
    q = v0 / np.linalg.norm(v0)
    k = 0
    for k in range(m):
        Q[k] = q
        w = apply_noise_operator(U, Ut, H, q, n_outputs)
        alpha[k] = q @ w
        w -= Q[:k + 1].T @ (Q[:k + 1] @ w)  # full reorthogonalisation (twice)
        w -= Q[:k + 1].T @ (Q[:k + 1] @ w)
        beta_[k] = np.linalg.norm(w)
        if beta_[k] < 1e-14 * max(1.0, abs(alpha[k])) or k == m - 1:
            break
        q = w / beta_[k]
    n = k + 1
    T = np.diag(alpha[:n]) + np.diag(beta_[:n - 1], 1) + np.diag(beta_[:n - 1], -1)
    theta, S = np.linalg.eigh(T)
    v = Q[:n].T @ S[:, -1]
    return float(theta[-1]), v / np.linalg.norm(v)


def fast_exact_critical_lr(problem, momentum, batch_size, *, replacement=False, rtol=1e-9, max_steps=60):
    """The largest stable alpha of the exact batch-averaged dynamics at one (momentum, batch_size) (module
    docstring), to relative accuracy about rtol. Returns a float."""
    if problem.eigvecs is None:
        raise InputError("the exact stability edge needs the kernel's eigenvectors, but this problem is spectral "
                         f"only ({problem.name}); use exact=False (the SD edge)")
    Co = int(getattr(problem, "n_outputs", 1))
    U = problem.eigvecs.detach().cpu().double().numpy()
    Ut = np.ascontiguousarray(U.T)
    lam = problem.eigvals.detach().cpu().double().numpy()
    M = lam.size  # modes (N C)
    N = M // Co  # examples: the batch samples examples, all C outputs together
    beta = float(momentum)
    gamma = float(noise_gamma(np.asarray(float(batch_size)), N, replacement))
    lam_max = float(lam.max())
    limit = 2 * (1 + beta) / lam_max  # the top mode's own limit
    alive = live_modes(lam)  # zero modes are neutral: left out of the checks
    live, dead = np.flatnonzero(alive), np.flatnonzero(~alive)
    top = live[np.argsort(-lam[live])][:min(live.size, TOP_PAIRS)]
    tk, tl = np.triu_indices(top.size)
    tk, tl = top[tk], top[tl]
    k_all, l_all = np.concatenate([tk, live]), np.concatenate([tl, live])

    def entries_ok(a, full=False):
        if full:
            ka, la = np.triu_indices(live.size)
            return _entries_stable(lam, a, beta, gamma, live[ka], live[la])
        return _entries_stable(lam, a, beta, gamma, k_all, l_all)

    # the largest alpha with stable entries (on the top pairs and the diagonal), by bisection on a cheap check
    lo, hi = 0.0, limit * (1 - 1e-12)
    if not entries_ok(hi):
        for _ in range(32):  # to 2^-32 of the limit: far below the noise edge's own accuracy needs
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if entries_ok(mid) else (lo, mid)
        a_entry = lo
    else:
        a_entry = hi
    if gamma == 0:
        return _verified(a_entry, entries_ok)
    # A(1) maps PSD (block-)diagonals to PSD ones: its top eigenvector is one (Perron / Krein-Rutman); start there
    v = np.tile(np.eye(Co).reshape(-1), N) / math.sqrt(N * Co)

    calls = [0]

    def rho_and_slope(a):
        nonlocal v
        H, dH = _gain_and_slope(lam, a, beta, gamma, N)
        H[dead], H[:, dead], dH[dead], dH[:, dead] = 0.0, 0.0, 0.0, 0.0  # 0/0 there; their gain is O(lambda) ~ 0
        r, v = _perron(U, Ut, H, v, m=3 * LANCZOS // 2 if calls[0] == 0 else LANCZOS,  # the first one starts cold
                       n_outputs=Co)
        calls[0] += 1
        return r, float(v @ apply_noise_operator(U, Ut, dH, v, Co))

    # the noise edge: root of rho(a) = 1 in (0, a_entry], by Newton steps kept inside a bracket [lo, hi] with
    # rho(lo) < 1 <= rho(hi); started from the right end (rho grows with alpha; where it is convex, Newton then
    # approaches the root from above)
    r, s = rho_and_slope(a_entry)
    if r < 1:
        return _verified(a_entry, entries_ok)
    lo, hi, a = 0.0, a_entry, a_entry
    for _ in range(max_steps):
        new = a - (r - 1) / s if s > 0 and math.isfinite(s) else math.nan
        if not lo < new < hi:
            new = 0.5 * (lo + hi)
        if abs(new - a) <= rtol * new or hi - lo <= rtol * hi:
            a = new
            break
        a = new
        r, s = rho_and_slope(a)
        if r < 1:
            lo = a
        else:
            hi = a
    # a is the root to about rtol: return the stable side, checked
    for shrink in (rtol, 10 * rtol, 100 * rtol, 1e-4, 1e-3):
        cand = min(a, hi) * (1 - shrink)
        if cand > lo and rho_and_slope(cand)[0] < 1:
            lo = cand
            break
    return _verified(lo, entries_ok)


def _verified(a, entries_ok):
    """a, after checking every entry map there (the search checked the top pairs only); shrink until they hold."""
    for _ in range(60):
        if entries_ok(a, full=True):
            return float(a)
        a *= 0.999
    raise RuntimeError("the exact edge search found no alpha with stable entry maps")
