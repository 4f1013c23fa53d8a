"""The SD-predicted loss by stepping the SD recursion itself in the time domain (docs/theory.md#sd): O(modes) a
step and config, exact to relative round-off whatever the growth. `loss_at` uses it for the configs that do not
converge, where the renewal solver's FFT tilt cannot follow the loss's growth (tests/test_loss_at.py checks it
against `loss_curve` where both are accurate)."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

__all__ = ["stepped_loss"]


def stepped_loss(lam, wk, a, beta, gamma, tau, steps):
    """L at `steps` (> 0) for configs [g] by stepping the SD recursion itself (docs/theory.md#sd, the dynamics
    that the renewal equation solves): per mode, in the two-time variables of `loss_curve`'s propagators,
        A' = (m^2 - tau k3) A - 2 beta m B + beta^2 D + k3 sum_l A_l,   B' = m A - beta B,   D' = A,
    m = 1 + beta - alpha lam, k3 = gamma alpha^2 lam^2, A = B = D = w at t = 0, L_t = sum_k A_k. O(modes) a step
    and config, relative round-off whatever the growth. A block stops once all its configs have overflowed."""
    need = np.unique(steps)
    res = np.full((a.size, need.size), np.inf)
    dt = torch.float64
    lam_t = torch.as_tensor(lam, dtype=dt)
    M = lam.size
    step = max(1, (1 << 15) // max(1, M))  # configs per block: small arrays, cache resident
    with one_thread(), np.errstate(all="ignore"):
        for i in range(0, a.size, step):
            sl = slice(i, i + step)
            at = torch.as_tensor(a[sl], dtype=dt)[:, None]
            bt = torch.as_tensor(beta[sl], dtype=dt)[:, None]
            u = at * lam_t
            m = 1 + bt - u
            k3 = torch.as_tensor(gamma[sl], dtype=dt)[:, None] * u * u
            k1, k2, b2, mb = m * m - tau * k3, -2 * bt * m, (bt * bt).expand_as(u), (-bt).expand_as(u)
            A = torch.as_tensor(wk, dtype=dt).expand_as(u).clone()
            B, D, An = A.clone(), A.clone(), torch.empty_like(A)
            j, t = 0, 0
            while j < need.size:
                t += 1
                total = A.sum(1, keepdim=True)
                torch.mul(A, k1, out=An)
                An.addcmul_(k2, B).addcmul_(D, b2).addcmul_(k3, total)
                B.mul_(mb).addcmul_(m, A)
                A, D, An = An, A, D
                if t == need[j]:
                    L = A.sum(1).numpy()
                    res[sl, j] = L
                    j += 1
                    if not np.isfinite(L).any():
                        break  # all overflowed: the later steps stay inf
    return res[:, np.searchsorted(need, steps)]


@contextlib.contextmanager
def one_thread():
    """torch on one thread for the small per-step ops of `stepped_loss` (threading them only costs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
