"""The expected loss of SGD under a schedule, fast enough to search over schedules (docs/theory.md#design).

    sd_final_loss(lam, c, N, lr[T, G], beta[T, G], gamma[T, G])   # the SD loss after T steps, G schedules at once
    compress_spectrum(lam, c)                                     # fewer modes, the noise injection kept
    free_form(lam, c, N, b, T, edge_betas=..., edge_values=...)   # piecewise lr and momentum, optimised

The recursion is the SD regime's (docs/theory.md#sd) with each step's own (alpha_t, beta_t, gamma_t), written with
out-of-place tensor operations so that autograd can run through it; tests/test_design.py checks it against the
SD regime. gfsgd.design_schedule (gfsgd.recommend.design) builds on it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from ._inputs import noise_gamma

__all__ = ["compress_spectrum", "sd_final_loss", "segment_boundaries", "free_form"]


def compress_spectrum(lam, c, *, exact_modes: int = 256, bin_ratio: float = 1.05):
    """(lam_b, c_b, mult_b): the top `exact_modes` modes as they are, the others merged into bins of eigenvalues
    within a factor bin_ratio (C = 1 only). A bin's second moment is the sum of its modes' (c summed), it decays
    with the c-weighted mean eigenvalue, and it receives the noise of all its modes: mult_b = sum_k lam_k^2 /
    lam_b^2 copies of the single-mode injection gamma (alpha lam_b)^2 sum_l A_l (exact when a bin's eigenvalues
    are equal). Zero eigenvalues form one bin (no dynamics)."""
    lam = np.asarray(lam, float)
    c = np.asarray(c, float)
    order = np.argsort(-lam)
    lam, c = lam[order], c[order]
    if lam.size <= exact_modes or bin_ratio <= 1:
        return lam, c, np.ones_like(lam)
    tl, tc = lam[exact_modes:], c[exact_modes:]
    pos = tl > 0
    out = [(lam[:exact_modes], c[:exact_modes], np.ones(exact_modes))]
    if pos.any():
        lp, cp = tl[pos], tc[pos]
        key = np.floor(np.log(lp / lp.max()) / math.log(bin_ratio)).astype(np.int64)
        _, inv = np.unique(key, return_inverse=True)
        cs = np.bincount(inv, weights=cp)
        mean = np.bincount(inv, weights=lp) / np.bincount(inv)
        lam_b = np.where(cs > 0, np.bincount(inv, weights=lp * cp) / np.where(cs > 0, cs, 1), mean)
        out.append((lam_b, cs, np.bincount(inv, weights=lp * lp) / lam_b ** 2))
    if (~pos).any():
        out.append((np.zeros(1), np.array([tc[~pos].sum()]), np.ones(1)))
    return tuple(np.concatenate(x) for x in zip(*out))


def sd_final_loss(lam, c, N, lr, beta, gamma, *, tau=1.0, F=None, mult=None, log_steps=None, bound=None):
    """The SD recursion (docs/theory.md#sd) for G candidates with per-step hyperparameters, differentiable.

    lam, c: [M] torch tensors; lr, beta, gamma: [T, G] tensors (step t's values); F: output profiles [M, C^2]
    (C outputs) or None; mult: the modes' noise multiplicities [M] (compress_spectrum) or None. Returns the loss after T steps [G] (inf where it passed `bound` or is not finite) and,
    with log_steps, the losses at those steps [G, len(log_steps)] (step 0 included if asked)."""
    T, G = lr.shape
    A = c.expand(G, -1)
    B, D = A, A
    two_n = 2.0 * N
    logged = {}
    log_set = set(int(s) for s in (log_steps if log_steps is not None else []))
    if 0 in log_set:
        logged[0] = A.sum(1) / two_n
    for t in range(T):
        u = lr[t][:, None] * lam
        bt = beta[t][:, None]
        m = 1.0 + bt - u
        k3 = gamma[t][:, None] * u * u
        s = A.sum(1, keepdim=True) if F is None else (A @ F) @ F.T
        An = (m * m - tau * k3) * A - 2.0 * bt * m * B + bt * bt * D + (k3 if mult is None else k3 * mult) * s
        B, D, A = m * A - bt * B, A, An
        if t + 1 in log_set:
            logged[t + 1] = A.sum(1) / two_n
    final = A.sum(1) / two_n
    # a second moment never goes negative: a negative loss is a recursion oscillating out of control (diverged)
    bad = ~((final >= 0) & torch.isfinite(final)) if bound is None else ~((final >= 0) & (final <= bound))
    final = torch.where(bad, torch.full_like(final, math.inf), final)
    if log_steps is None:
        return final
    curve = torch.stack([logged[int(s)] for s in log_steps], 1)
    return final, curve


# ---------------------------------------------------------------- the free-form schedule
def segment_boundaries(T: int, pieces: int) -> list[int]:
    """Segment starts for `pieces` pieces on [0, T): log-spaced from the start (warm-up) and from the end (decay),
    so both ends of the run get short segments; one piece: [0]."""
    if pieces <= 1:
        return [0]
    n_front = pieces // 2
    n_back = pieces - n_front
    front = [0] + [int(round(T * 10.0 ** (k - n_front))) for k in range(1, n_front)]  # 0, T/10^(n-1), ..., T/10
    back = [int(round(T * (1 - 0.5 * 10.0 ** (-(k))))) for k in range(n_back)]  # T/2, 0.95 T, 0.995 T, ...
    b = sorted({x for x in front + back if 0 <= x < T})
    return b


def _edge_interp(betas, edges):
    """A differentiable piecewise-linear edge(beta) from values on a grid."""
    bt = torch.as_tensor(betas, dtype=torch.float64)
    et = torch.as_tensor(edges, dtype=torch.float64)

    def f(beta):
        i = torch.clamp(torch.searchsorted(bt, beta.detach()) - 1, 0, bt.numel() - 2)
        w = (beta - bt[i]) / (bt[i + 1] - bt[i])
        return et[i] + w * (et[i + 1] - et[i])
    return f


def free_form(lam, c, N, b, T, *, edge_betas, edge_values, pieces=8, tau=1.0, F=None, mult=None, margin=0.95,
              momentum_range=(-0.5, 0.95), init=None, iterations=12, method="pattern", step=None, bound=None):
    """Piecewise-constant lr and momentum on `pieces` segments (segment_boundaries), optimised on the SD loss after
    T steps. Parameters: lr_j = margin * edge(beta_j) * sigmoid(theta_j), beta_j = lo + (hi - lo) sigmoid(phi_j),
    so every segment stays below the edge at its momentum (edge(beta) interpolated from edge_values at
    edge_betas; momentum_range = (lo, hi)).

    method "pattern": a coordinate pattern search, each round scoring every move theta_j +- s, phi_j +- s (and the
        combination of the improving ones) in one vectorised pass; s (default 1) halves when no move improves.
    method "adam": Adam (learning rate `step`, default 0.15) on the log loss, autograd through the recursion
        (about 3 passes' cost per iteration, one start per row of init optimised together).
    init: starting points [(lr_j ...), (beta_j ...)]; default one at half the edge and beta = 0.
    Returns (boundaries, lr per piece, beta per piece, loss) of the best point scored.
    """
    if method not in ("pattern", "adam"):
        raise InputError(f"method must be 'pattern' or 'adam', got method={method!r}")
    bounds = segment_boundaries(T, pieces)
    P = len(bounds)
    lo, hi = momentum_range
    edge = _edge_interp(edge_betas, edge_values)
    lam_t = torch.as_tensor(lam, dtype=torch.float64)
    c_t = torch.as_tensor(c, dtype=torch.float64)
    mult_t = None if mult is None else torch.as_tensor(mult, dtype=torch.float64)
    if init is None:
        init = [([0.5 * margin * float(np.interp(0.0, edge_betas, edge_values))] * P, [0.0] * P)]
    th0, ph0 = [], []
    for lrs, bets in init:
        bets = np.clip(np.asarray(bets, float), lo + 1e-3, hi - 1e-3)
        p = (bets - lo) / (hi - lo)
        ph0.append(np.log(p / (1 - p)))
        cap = margin * np.interp(bets, edge_betas, edge_values)
        q = np.clip(np.asarray(lrs, float) / cap, 1e-4, 1 - 1e-4)
        th0.append(np.log(q / (1 - q)))
    seg = torch.as_tensor(np.searchsorted(np.asarray(bounds), np.arange(T), side="right") - 1)  # [T]
    g_b = float(noise_gamma(b, N))

    def values(theta, phi):
        beta = lo + (hi - lo) * torch.sigmoid(phi)  # [R, P]
        lr = margin * edge(beta.reshape(-1)).reshape(beta.shape) * torch.sigmoid(theta)
        return lr, beta

    def evaluate(theta, phi):
        lr, beta = values(theta, phi)
        gam = torch.full((T, theta.shape[0]), g_b, dtype=torch.float64)
        return sd_final_loss(lam_t, c_t, N, lr[:, seg].T, beta[:, seg].T, gam, tau=tau, F=F, mult=mult_t,
                             bound=bound), lr, beta

    best = [math.inf, None, None]

    def keep(loss, lr, beta):
        k = int(torch.argmin(loss))
        if float(loss[k]) < best[0]:
            best[:] = [float(loss[k]), lr[k].detach().numpy().copy(), beta[k].detach().numpy().copy()]
        return k

    if method == "adam":
        theta = torch.tensor(np.array(th0), dtype=torch.float64, requires_grad=True)  # [R, P]
        phi = torch.tensor(np.array(ph0), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([theta, phi], lr=0.15 if step is None else step)
        for _ in range(int(iterations)):
            loss, lr, beta = evaluate(theta, phi)
            with torch.no_grad():
                keep(loss, lr, beta)
            ok = torch.isfinite(loss)
            if not ok.any():
                break
            opt.zero_grad()
            torch.log(loss[ok]).sum().backward()
            for q in (theta, phi):  # a diverged start gets no gradient
                q.grad = torch.nan_to_num(q.grad, nan=0.0, posinf=0.0, neginf=0.0)
            opt.step()
        return bounds, best[1], best[2], best[0]
    with torch.no_grad():
        theta = torch.tensor(np.array(th0), dtype=torch.float64)
        phi = torch.tensor(np.array(ph0), dtype=torch.float64)
        loss, lr, beta = evaluate(theta, phi)
        k = keep(loss, lr, beta)
        x = torch.cat([theta[k], phi[k]])  # the best start
        fx = float(loss[k])
        s = 1.0 if step is None else float(step)
        n = 2 * P
        free_dims = [j for j in range(n) if j < P or hi > lo]
        combo = None
        for _ in range(int(iterations)):
            moves = [x.clone() for _ in range(2 * len(free_dims))]
            for i, j in enumerate(free_dims):
                moves[2 * i][j] += s
                moves[2 * i + 1][j] -= s
            cands = torch.stack(moves + ([combo] if combo is not None else []))
            loss, lr, beta = evaluate(cands[:, :P], cands[:, P:])
            keep(loss, lr, beta)
            f = loss.numpy()
            k = int(np.argmin(f))
            better = [i for i in range(2 * len(free_dims)) if f[i] < fx]
            if f[k] < fx:
                # next round also tries every improving move at once
                combo = x.clone()
                for i in better:
                    j = free_dims[i // 2]
                    combo[j] = moves[i][j] if f[i] <= f[i ^ 1] or (i ^ 1) not in better else combo[j]
                x, fx = cands[k].clone(), float(f[k])
            else:
                combo = None
                s /= 2
                if s < 1e-3:
                    break
    return bounds, best[1], best[2], best[0]


