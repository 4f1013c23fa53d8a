"""The SGD SDE in the spectral-diagonal closure, solved through its Laplace transform (docs/theory.md#updates).

The l -> infinity limit of SVAG(l) (momentum 0), with t in SGD steps, per mode:

    dA_k/dt = d_k A_k + u_k sum_l A_l,   d_k = -2 alpha lambda_k - gamma tau alpha^2 lambda_k^2,
                                          u_k = gamma alpha^2 lambda_k^2,      L(t) = sum_k A_k(t) / (2N).

This is the continuous-time renewal equation L(t) = V(t) + int_0^t U(t - s) L(s) ds with V(t) = sum_k w_k e^{d_k t}
and U(t) = sum_k u_k e^{d_k t}, so its Laplace transform is

    L^(s) = V^(s) / (1 - U^(s)),   V^(s) = sum_k w_k / (s - d_k),   U^(s) = sum_k u_k / (s - d_k).

The generator D + u 1^T is similar to the symmetric D + sqrt(u) sqrt(u)^T, so every singularity is real. The
solution converges iff every d_k < 0 (lambda_k > 0) and U^(0) = sum_k u_k / (-d_k) < 1. The slowest pole sigma is
the root of U^(s) = 1 above max d_k, and L(t) is the Bromwich integral on the parabola s = sigma + mu (1 + i x)^2,
trapezoidal with step 3/n and mu = pi n / (12 t) (error about e^{-2 pi n / 3} relative to e^{sigma t}). Modes
with lambda_k = 0 keep their loss w_k; they contribute the constant w_0 / (1 - U^(0)) and a term analytic at 0.
"""
from __future__ import annotations

import math

from types import SimpleNamespace

import numpy as np

from ._inputs import as_spectrum, broadcast_configs
from ..errors import InputError

__all__ = ["sde_loss", "SOLVERS"]

NODES = 24  # the rule whose value is returned
CHECK = 16  # the rule it is checked against
_BLOCK = 1 << 22  # configs x nodes x modes per block (complex)


def sde_loss(problem, lr, batch_size, t, *, tau=1.0, w=None, c=None, N=None, replacement=False,
             tol: float = 1e-9, return_info: bool = False):
    """The SD-closure loss of the SGD SDE (momentum 0) at SGD-step times t (docs/theory.md#updates).

    problem: a Problem or eigenvalues with w= or c= (and N=); lr and batch_size broadcast to a config shape;
    t: times >= 0 (need not be integers). Returns an array (*config_shape, *t.shape); a config whose SDE does
    not converge gives inf. With return_info=True also returns info["error"], the difference between the
    24- and the 16-node rules relative to the value (it must stay below tol, else a ValueError says where).
    """
    spec = as_spectrum(problem, w=w, c=c, N=N, need_w=True)
    t_in = np.asarray(t, dtype=float)
    if t_in.size == 0 or not np.all(np.isfinite(t_in)) or np.any(t_in < 0):
        raise InputError(f"t must be a non-empty set of times >= 0, got t={t!r}")
    shape, (a, _, b), gamma, tau = broadcast_configs(spec, lr, 0.0, batch_size, tau, replacement)
    ts = t_in.reshape(-1)
    lam, wk = spec.eigvals, spec.w
    pos = lam > 0
    w0 = float(wk[~pos].sum())
    lam_p, w_p = lam[pos], wk[pos]
    G, T = a.size, ts.size
    d = -2.0 * a[:, None] * lam_p - gamma[:, None] * tau * (a[:, None] * lam_p) ** 2  # [G, n]
    u = gamma[:, None] * (a[:, None] * lam_p) ** 2
    out = np.full((G, T), np.inf)
    err = np.full((G, T), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        u0 = np.where(d < 0, u / -d, np.inf).sum(1) if lam_p.size else np.zeros(G)
    conv = (d < 0).all(1) & (u0 < 1)
    out[conv[:, None] & (ts[None, :] == 0)] = float(wk.sum())
    for g in np.flatnonzero(conv):
        sigma = _slowest_pole(d[g], u[g])
        const = w0 / (1.0 - u0[g])
        for j in np.flatnonzero(ts > 0):
            v = [_bromwich(n, ts[j], sigma, d[g], u[g], w_p, w0, u0[g]) for n in (NODES, CHECK)]
            out[g, j] = const + v[0]
            err[g, j] = abs(v[0] - v[1]) / max(abs(out[g, j]), 1e-300)
    if np.any(err > tol):
        g, j = np.unravel_index(np.nanargmax(err), err.shape)
        raise InputError(f"sde_loss: the contour rules disagree by {err[g, j]:.2g} (> tol={tol:g}) at lr={a[g]:g}, "
                         f"batch_size={b[g]:g}, t={ts[j]:g}")
    loss = out.reshape(tuple(shape) + t_in.shape)
    if return_info:
        return loss, dict(error=err.reshape(tuple(shape) + t_in.shape))
    return loss


def _slowest_pole(d, u):
    """The root of U^(s) = sum u / (s - d) = 1 in (max d, 0) (U^ falls from +inf to U^(0) < 1 there)."""
    if d.size == 0:
        return -1.0
    lo, hi = float(d.max()), 0.0
    for _ in range(200):  # bisection on a monotone function; stops at float resolution
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if np.sum(u / (mid - d)) > 1.0:
            lo = mid
        else:
            hi = mid
    return hi


def _bromwich(n, t, sigma, d, u, w, w0, u0):
    """(1 / 2 pi i) int e^{s t} G(s) ds on the parabola, G = V^+ / (1 - U^) + w0 (U^ - U^(0)) / (s (1 - U^)(1 - U^(0)))."""
    h = 3.0 / n
    mu = math.pi * n / (12.0 * t)
    x = h * np.arange(n + 1)
    s = sigma + mu * (1.0 + 1j * x) ** 2  # [n + 1]
    Vh = np.zeros(s.size, dtype=complex)
    Uh = np.zeros(s.size, dtype=complex)
    step = max(1, _BLOCK // max(1, s.size))
    for i in range(0, d.size, step):
        R = 1.0 / (s[:, None] - d[None, i:i + step])  # [nodes, modes]
        Vh += R @ w[i:i + step]
        Uh += R @ u[i:i + step]
    Gs = Vh / (1.0 - Uh)
    if w0:
        Gs = Gs + w0 * (Uh - u0) / (s * (1.0 - Uh) * (1.0 - u0))
    weight = np.full(s.size, 2.0)
    weight[0] = 1.0
    total = np.sum(weight * np.exp(s * t) * Gs * (1.0 + 1j * x))
    return float((h * mu / math.pi) * total.real)


# the theory's solvers that a rule's theory piece may call (gfsgd.updates.base: UpdateRule.theory_solver)
SOLVERS = SimpleNamespace(sde_loss=sde_loss)
