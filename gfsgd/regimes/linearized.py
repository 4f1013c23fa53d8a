"""Linearized regime: the residual dynamics with sampled mini-batches (THEORY.md section 1).

    g_t = (N/b) K[:, B_t] d_t[B_t];   v_{t+1} = -alpha_t g_t + beta_t v_t;   d_{t+1} = d_t + v_{t+1};   v_0 = 0,

B_t a uniform b-subset drawn afresh each step (without replacement inside the step; `replacement=True` draws
with replacement). Loss L_t = |d_t|^2 / (2N). With `repeats=R` every config runs R independent sample paths;
Curves.loss is their mean and Curves.loss_se its standard error (std / sqrt(R)).

Vectorised over configs and paths ([g*R, N] state). The batch gradient is a sparse-times-dense product
(CSR rows of b weights times K) when batches are small, a masked dense matmul otherwise.
"""
from __future__ import annotations

import math
import warnings

import torch

from ._engine import drive, resolve_device, resolve_dtype

REGIME = "linearized"
__all__ = ["run", "REGIME"]


def run(problem, configs, n_steps, *, repeats: int = 1, schedule=None, log_steps=None, seed: int = 0,
        device="auto", dtype="float64", replacement: bool = False, chunk_size: int | None = None,
        progress: bool = True):
    """Sampled mini-batch SGD on the linearized model for G configs at once; returns Curves.

    repeats: independent sample paths per config (their mean and standard error are reported).
    seed: seeds the batch sampler (results also depend on chunk_size, which sets the draw order).
    """
    if isinstance(repeats, bool) or not float(repeats).is_integer() or int(repeats) < 1:
        raise ValueError(f"repeats must be an integer >= 1, got repeats={repeats!r}")
    R = int(repeats)
    problem._need_basis("the linearized regime")
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    N = problem.N
    K = problem.K.to(device, dtype).contiguous()  # [N, N]
    d0 = problem.d0.to(device, dtype)  # [N]
    gen = torch.Generator(device=device).manual_seed(int(seed))
    if chunk_size is None:
        chunk_size = max(1, (2 ** 17 // N) // R) if device.type == "cpu" else max(1, 2 ** 24 // (N * R))
    constant = schedule is None or schedule.is_constant
    cache = {}

    def init(lr, mom, b):
        rows = lr.numel() * R
        d = d0.expand(rows, N).clone()
        return dict(d=d, v=torch.zeros_like(d))

    def sample(b_rows, bmax):
        """Indices [rows, bmax] and per-position weights N/b (0 beyond each row's b)."""
        rows = b_rows.numel()
        if replacement:
            idx = torch.randint(0, N, (rows, bmax), generator=gen, device=device)
        elif bmax * bmax <= N:  # rejection: uniform draws until a row has no repeated index
            idx = torch.randint(0, N, (rows, bmax), generator=gen, device=device)
            while bmax > 1:
                srt = idx.sort(1).values
                dup = (srt[:, 1:] == srt[:, :-1]).any(1).nonzero().squeeze(1)
                if dup.numel() == 0:
                    break
                idx[dup] = torch.randint(0, N, (dup.numel(), bmax), generator=gen, device=device)
        else:  # the bmax largest of N uniforms: a uniform random subset (any prefix is uniform too)
            u = torch.rand(rows, N, generator=gen, device=device, dtype=dtype)
            idx = u.topk(bmax, dim=1, sorted=False).indices
        pos = torch.arange(bmax, device=device)
        wts = torch.where(pos[None, :] < b_rows[:, None], (N / b_rows)[:, None], torch.zeros((), dtype=dtype,
                                                                                               device=device))
        return idx, wts

    def step(st, h):
        if h.t == 0 or not constant:  # per-row hyperparameters, once per chunk when constant
            b_rows = h.batch_size.repeat_interleave(R)
            cache["rows"] = (h.lr.repeat_interleave(R), h.momentum.repeat_interleave(R), b_rows,
                             int(b_rows.max().item()))
        a, beta, b, bmax = cache["rows"]  # [g*R] each, and the largest batch size
        d, v = st["d"], st["v"]
        rows = d.shape[0]
        v.mul_(beta[:, None])
        if bmax == N and not replacement and bool((b == N).all()):
            v.addmm_(d * (-a)[:, None], K)  # full batch: g = K d
        else:
            idx, wts = sample(b, bmax)
            vals = d.gather(1, idx) * wts * (-a)[:, None]  # [rows, bmax]
            if 4 * bmax <= N:
                crow = torch.arange(0, rows * bmax + 1, bmax, device=device)
                with warnings.catch_warnings():  # "sparse CSR support is in beta"
                    warnings.simplefilter("ignore", UserWarning)
                    sp = torch.sparse_csr_tensor(crow, idx.reshape(-1), vals.reshape(-1), (rows, N),
                                                 check_invariants=False)
                v.add_(torch.sparse.mm(sp, K) if device.type != "cpu" else sp @ K)
            else:
                dense = torch.zeros(rows, N, dtype=dtype, device=device).scatter_add_(1, idx, vals)
                v.addmm_(dense, K)
        d.add_(v)
        path_loss = torch.linalg.vecdot(d, d).view(-1, R) / (2 * N)  # [g, R]
        mean = path_loss.mean(1)
        se = path_loss.std(1) / math.sqrt(R) if R > 1 else torch.zeros_like(mean)
        return st, mean, se

    def kill(st, mask):
        rows = mask.repeat_interleave(R)
        st["d"][rows] = 0.0
        st["v"][rows] = 0.0

    return drive(regime=REGIME, problem=problem, configs=configs, n_steps=n_steps, schedule=schedule,
                 log_steps=log_steps, device=device, dtype=dtype, chunk_size=chunk_size, init=init,
                 step=step, kill=kill, replacement=replacement, progress=progress, with_se=True,
                 meta=dict(seed=seed, repeats=R))
