"""How far the linearised network's weights travel: E|w_t - w_0|^2 under the SD dynamics (docs/theory.md#drift).

    W = gfsgd.theory.weight_travel(problem, lr, momentum, batch_size, steps)     # [G, S]

In the linearised model f(w) = f(w0) + J (w - w0), every SGD step moves w in the row space of J, so
w_t - w_0 = J^T a_t and d_t - d_0 = K_raw a_t, whence

    |w_t - w_0|^2 = (d_t - d_0)^T K_raw^+ (d_t - d_0) = sum_k (d_t,k - d_0,k)^2 / (lambda_k lambda_max_raw)

in the kernel's eigenbasis (lambda_k normalised, top 1). Over the batches, E(d_t,k - d_0,k)^2 = C_k(t)
- 2 d_0,k E[d_t,k] + c_k, with C_k(t) the SD second moment of mode k (docs/theory.md#sd, stepped here with the
coupling of docs/theory.md#outputs for C outputs) and E[d_t,k] = d_0,k mu_k(t): the batch gradient is unbiased,
so the mean follows heavy-ball gradient descent, mu' = (1 + beta - alpha lambda_k) mu - beta mu_prev,
mu_0 = mu_-1 = 1. Returned in units of 1 / lambda_max_raw (W = sum_k E(d_t,k - d_0,k)^2 / lambda_k), so only
ratios W(t) / W(s) carry over to a network: that is what gfsgd.relinearize.drift_forecast uses (the first-order
change of the kernel is linear in w - w0). Modes with lambda_k = 0 do not move. Cost O(G N C T).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._inputs import noise_gamma

__all__ = ["weight_travel"]


def weight_travel(problem, lr, momentum, batch_size, steps, *, tau: float = 1.0) -> np.ndarray:
    """E|w_t - w_0|^2 of the linearised network (module docstring) for configs broadcast from lr, momentum and
    batch_size [G], at the integer steps `steps` [S]: an array [G, S] (inf where the dynamics blew up, i.e. past
    the edge)."""
    a, beta, b = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (lr, momentum, batch_size))
    a, beta, b = np.broadcast_arrays(a, beta, b)
    steps = np.atleast_1d(np.asarray(steps))
    if steps.size == 0 or not np.issubdtype(steps.dtype, np.number) or np.any(steps < 0) or \
            np.any(steps != np.round(steps)):
        raise InputError(f"steps must be integer steps >= 0, got steps={steps!r}")
    N = problem.N
    if np.any(b < 1) or np.any(b > N) or np.any(b != np.round(b)):
        raise InputError(f"batch_size must be integers in [1, N={N}], got {b.tolist()}")
    lam = problem.eigvals.detach().cpu().double().numpy()
    c = problem.c.detach().cpu().double().numpy()
    F = problem.profiles.detach().cpu().double().numpy()  # [modes, C^2]; C = 1: ones
    gamma = noise_gamma(b, N)[:, None]
    a, beta = a[:, None], beta[:, None]
    m = 1 + beta - a * lam
    k3 = gamma * a * a * lam * lam
    A = np.tile(c, (a.shape[0], 1))
    B, D = A.copy(), A.copy()
    mu, mu_prev = np.ones_like(A), np.ones_like(A)
    inv = np.where(lam > 0, 1.0 / np.where(lam > 0, lam, 1.0), 0.0)
    out = np.full((a.shape[0], steps.size), np.nan)
    want = {}
    for j, s in enumerate(steps.astype(np.int64).tolist()):
        want.setdefault(s, []).append(j)
    with np.errstate(all="ignore"):
        for t in range(int(steps.max()) + 1):
            if t in want:
                val = ((A - 2.0 * c * mu + c) * inv).sum(1)
                out[:, want[t]] = np.where(np.isfinite(val), val, np.inf)[:, None]
            coupling = (A @ F) @ F.T  # sum_l W_kl A_l with W = F F^T (C = 1: sum_l A_l)
            A, B, D = (m * m - tau * k3) * A - 2 * beta * m * B + beta * beta * D + k3 * coupling, m * A - beta * B, A
            mu, mu_prev = m * mu - beta * mu_prev, mu
    return out
