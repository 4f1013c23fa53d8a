"""Spectral-diagonal (SD) regime: the closed per-mode second-moment recursion (docs/theory.md#sd).

In the kernel eigenbasis keep only the diagonal second moments and replace the diag(C) noise term by its
delocalised value (parameter tau; tau = 1 mean field, tau = -1 Gaussian features):

    P_k' = (alpha lambda_k)^2 [(1 - gamma tau) C_k + gamma sum_l C_l] - 2 alpha beta lambda_k J_k + beta^2 P_k
    C_k' = C_k - 2 alpha lambda_k C_k + 2 beta J_k + P_k',   J_k' = beta J_k - alpha lambda_k C_k + P_k'
    L = sum_k C_k / (2N),  C_k(0) = c_k, J_k(0) = P_k(0) = 0.

Implementation: the same dynamics in the equivalent two-time variables A_k = E[d_k(t)^2],
B_k = E[d_k(t) d_k(t-1)], D_k = E[d_k(t-1)^2] (C_k = A_k, J_k = A_k - B_k, P_k = A_k - 2 B_k + D_k), which
follow from d(t+1) = (1 + beta) d(t) - beta d(t-1) - alpha g(t):

    A_k' = m_k^2 A_k - 2 beta m_k B_k + beta^2 D_k + gamma u_k^2 (sum_l A_l - tau A_k),  m_k = 1 + beta - u_k,
    B_k' = m_k A_k - beta B_k,   D_k' = A_k,   u_k = alpha lambda_k,

which costs 7 passes over the [G, N] state a step instead of about 12 (D' is a pointer swap). Configs are
processed in cache-sized chunks, each chunk for all steps (temporal blocking). Only eigvals and c are used,
so spectral-only problems (no eigenvectors) work at any N.

Test loss (an approximation; docs/theory.md#test-loss): with a held-out set (dense-basis problems) the
per-mode mean m_k = E[d~_k] is tracked as well (noiseless heavy ball, m_k' = (1 + beta - alpha lambda_k) m_k -
beta m_k,prev, exact). Writing C~ = m m^T + S~ (S~ the covariance), the mean part is exact and only the
covariance is taken diagonal:
    E|r_t|^2 ~ |e|^2 + 2 h^T m + m^T W m + sum_k W_kk (A_k - m_k^2),   L_test = E|r_t|^2 / (2M).
It drops the off-diagonal W_kl S~_kl (k != l), which the SD closure does not track; at b = N (no noise) it is
exact. The m^T W m term costs O(N^2) per config at each logged step (log fewer steps for large grids).
"""
from __future__ import annotations

import math

from types import SimpleNamespace

import torch

from ..losses import check_loss
from ._engine import drive, kill_state, resolve_device, resolve_dtype, test_terms
from ..errors import InputError

REGIME = "sd"
__all__ = ["run", "REGIME"]


def run(problem, configs, n_steps, *, tau: float = 1.0, schedule=None, log_steps=None, seed: int = 0,
        device="auto", dtype="float64", replacement: bool = False, chunk_size: int | None = None,
        progress: bool = True, test: bool | None = None, test_cutoff: float = 1e-10, update=None, loss="mse"):
    """Simulate the SD recursion for G configs (lr, momentum, batch_size) at once; returns Curves.

    tau: the SE parameter (1 = mean field, -1 = Gaussian features); seed is recorded only (deterministic).
    chunk_size: configs per temporal block (default: about 64k modes per block, which stays in cache).
    test: the diagonal approximation of the test loss (None: when the problem has a dense held-out set).
    update: the training rule (gfsgd.updates): SGD (default), SVAG(l), SDE() (the SD closure of the SGD SDE,
        stepped by ETDRK4 with SDE.substeps steps per SGD step) or NoisyGD (the same second moments as SGD).
        A rule's own piece (rule.sd_pieces) gets the context: problem, N, device, dtype, lam, c, tau, tt, cache,
        constant; the state holds A, B, D (the two-time moments), s = sum_k A_k and, with a test set, mean.
    loss: the loss (gfsgd.losses): "mse", the squared loss 0.5 (f - y)^2 (the residual form of this regime).
    """
    tau = float(tau)
    if not math.isfinite(tau):
        raise InputError(f"tau must be finite, got tau={tau}")
    check_loss(loss, REGIME)  # squared loss: the residual's second moments close (gfsgd.losses)
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    N, M = problem.N, problem.n_modes  # examples; modes (N C with C outputs per example)
    lam = problem.eigvals.to(device, dtype)  # [M]
    c = problem.c.to(device, dtype)  # [M]
    # C outputs: mode k's noise is gamma u_k^2 sum_l <M^k, M^l> A_l through the output profiles F [M, C^2]
    # (docs/theory.md#outputs); C = 1: F = 1 and the coupling is sum_l A_l
    F = problem.profiles.to(device, dtype) if problem.n_outputs > 1 else None

    def coupling(A):  # [g, M] -> [g, 1] (C = 1) or [g, M]
        return A.sum(1, keepdim=True) if F is None else (A @ F) @ F.T

    if chunk_size is None:
        chunk_size = max(1, 65536 // M) if device.type == "cpu" else max(1, 2 ** 26 // M)
    constant = schedule is None or schedule.is_constant
    cache = {}
    tt = test_terms(problem, test, test_cutoff, device, dtype)
    if tt is not None:
        h, Wd = tt["h"], torch.diagonal(tt["W"]).contiguous()
        coef = problem.coef.to(device, dtype)

    def coefficients(h):
        u = h.lr[:, None] * lam  # [g, N]
        beta = h.momentum[:, None]  # [g, 1]
        m = 1.0 + beta - u
        k3 = h.gamma[:, None] * u * u
        k1 = m * m - tau * k3
        return m, k1, -2.0 * beta * m, k3, beta * beta, -beta

    def init(lr, mom, b):
        A = c.expand(lr.numel(), M).clone()  # [g, M]
        st = dict(A=A, B=A.clone(), D=A.clone(), An=torch.empty_like(A), s=coupling(A))
        if tt is not None:
            st.update(mean=coef.expand(lr.numel(), M).clone(), mean_prev=coef.expand(lr.numel(), M).clone())
        return st

    def step(st, h):
        if h.t == 0 or not constant:  # constant hyperparameters: coefficients once per chunk
            cache["coef"] = coefficients(h)
        m, k1, k2, k3, b2, mb = cache["coef"]
        A, B, D, An = st["A"], st["B"], st["D"], st["An"]
        torch.mul(A, k1, out=An)
        An.addcmul_(k2, B)
        An.addcmul_(D, b2)
        An.addcmul_(k3, st["s"])
        B.mul_(mb).addcmul_(m, A)
        st["A"], st["D"], st["An"] = An, A, D  # D' = A; the old D buffer is reused for the next A'
        st["s"] = coupling(An)
        if tt is not None:  # noiseless heavy ball per mode
            new = st["mean_prev"].mul_(mb).addcmul_(m, st["mean"])
            st["mean_prev"], st["mean"] = st["mean"], new
        return st, (st["s"][:, 0] if F is None else An.sum(1)) / (2 * N), None

    def test_loss(st):
        mean = st["mean"]
        val = tt["e2"] + 2.0 * (mean @ h) + torch.linalg.vecdot(mean @ tt["W"], mean) + (st["A"] - mean * mean) @ Wd
        return val / (2 * tt["M"]), None

    # what a rule's piece may use (gfsgd.updates.base)
    ctx = SimpleNamespace(problem=problem, N=N, device=device, dtype=dtype, lam=lam, c=c, tau=tau, tt=tt,
                          cache=cache, constant=constant)
    return drive(regime=REGIME, problem=problem, configs=configs, n_steps=n_steps, schedule=schedule,
                 log_steps=log_steps, device=device, dtype=dtype, chunk_size=chunk_size, init=init, step=step,
                 kill=kill_state, replacement=replacement, progress=progress, test=None if tt is None else test_loss,
                 meta=dict(tau=tau, seed=seed, repeats=1), update=update, ctx=ctx)
