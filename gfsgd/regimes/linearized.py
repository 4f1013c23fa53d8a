"""Linearized regime: the residual dynamics with sampled mini-batches (docs/theory.md#update).

    g_t = (N/b) K[:, B_t] d_t[B_t];   v_{t+1} = -alpha_t g_t + beta_t v_t;   d_{t+1} = d_t + v_{t+1};   v_0 = 0,

B_t a uniform b-subset drawn afresh each step (without replacement inside the step; `replacement=True` draws
with replacement). Loss L_t = |d_t|^2 / (2N). With `repeats=R` every config runs R independent sample paths;
Curves.loss is their mean and Curves.loss_se its standard error (std / sqrt(R)).

Vectorised over configs and paths: the state is [R, g, N]. Common random numbers: at each step, path r of
every config in a chunk uses the same uniformly random ordered subset of size b_max (a config with batch size
b takes its first b indices, itself a uniform b-subset). Each config's paths are therefore exact, independent
SGD sample paths (the R paths of one config never share batches), while different configs see correlated
batches, which makes comparisons across the grid less noisy. The batch gradient of all configs is then one
batched matmul [R, g, b_max] x [R, b_max, N] with the b_max gathered rows of K.

Test loss: with a held-out set each path also carries its test residual r [R, g, M], moved by the same
function-space update through the cross-kernel, v_te' = -alpha (N/b) K_test[:, B] d[B] + beta v_te, r' = r + v_te
(exact for the linearized model; docs/theory.md#test-loss); Curves.test_loss is the mean of |r|^2 / (2M)
over the paths and Curves.test_loss_se its standard error.
"""
from __future__ import annotations

import math

import torch

from ..updates import SVAG, GradientPenalty, MicroBatchPenalty, Normalized, NoisyGD, as_update
from ._engine import (drive, gaussian_keys, resolve_device, resolve_dtype, sample_batches, stream_keys, streams_for,
                      test_terms)

REGIME = "linearized"
__all__ = ["run", "REGIME"]


def run(problem, configs, n_steps, *, repeats: int = 1, schedule=None, log_steps=None, seed: int = 0,
        device="auto", dtype="float64", replacement: bool = False, chunk_size: int | None = None,
        progress: bool = True, test: bool | None = None, update=None):
    """Sampled mini-batch SGD on the linearized model for G configs at once; returns Curves.

    repeats: independent sample paths per config (their mean and standard error are reported).
    seed: path r draws its batches from random stream seed + r (gfsgd.regimes._engine.sample_batches); every
        config sees the same batches (a config of batch size b takes the first b of each), so a config's
        path depends only on (seed, its batch size, r), not on the configs beside it or on chunk_size.
    test: track the test residual of every path (None: when the problem has a held-out set; True: required).
    update: the training rule (gfsgd.updates; docs/theory.md#updates, #penalties, #normalized): SGD (default);
        Normalized (the step rescaled to a target parameter norm, |delta w|^2 = u^T K_BB u); SVAG(l), two independent
        batches a step (the streams' draws of steps 2t and 2t + 1) weighted r1, r2 with lr / l, l steps per SGD
        step; NoisyGD, g = K (d + eta) with eta = sqrt(gamma N) d * (z - mean(z)), z ~ N(0, I) per path and step
        (shared by the configs, like the batches), which has the batch gradient's covariance given d.
    """
    if isinstance(repeats, bool) or not float(repeats).is_integer() or int(repeats) < 1:
        raise ValueError(f"repeats must be an integer >= 1, got repeats={repeats!r}")
    R = int(repeats)
    problem.require_basis("the linearized regime")
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    N = problem.N
    K = problem.K.to(device, dtype).contiguous()  # [N, N]
    d0 = problem.d0.to(device, dtype)  # [N]
    streams = streams_for(seed, R, device)  # path r: random stream seed + r, shared by every config
    if chunk_size is None:
        chunk_size = max(1, (2 ** 19 // N) // R) if device.type == "cpu" else max(1, 2 ** 24 // (N * R))
    constant = schedule is None or schedule.is_constant
    cache = {}
    with_test = test_terms(problem, test, 1e-10, device, dtype) is not None
    if with_test:
        KtT = problem.K_test.T.to(device, dtype).contiguous()  # [N, M]: K_test^T, rows at training points
        r0 = problem.r_test.to(device, dtype)  # [M]
        M = r0.numel()

    def init(lr, mom, b):
        d = d0.expand(R, lr.numel(), N).clone()  # [R, g, N]
        st = dict(d=d, v=torch.zeros_like(d))
        if with_test:
            st["r"] = r0.expand(R, lr.numel(), M).clone()  # [R, g, M]
            st["vt"] = torch.zeros_like(st["r"])
        return st

    rule = as_update(update)
    two = isinstance(rule, SVAG) and rule.l > 1
    r12 = rule.coefficients if two else (1.0, 0.0)
    gpen = isinstance(rule, GradientPenalty) and rule.strength > 0
    normed = isinstance(rule, Normalized)
    mpen = isinstance(rule, MicroBatchPenalty) and rule.strength > 0
    if gpen and rule.split == "fixed":  # the chunks' diagonal blocks of K, once: [m, c, c]
        c_ = rule.chunk_size
        blocks = torch.stack([K[i:i + c_, i:i + c_] for i in range(0, N, c_)])

    def block_product(x, rows, Kblk=None):
        """M x for x [R, g, n] whose positions are `rows` [R, n] split into consecutive blocks of size c: the
        product with each block's own K[rows_j, rows_j] (block-diagonal), [R, g, n]."""
        n, c = x.shape[2], (rule.chunk_size if gpen else rule.micro_batch_size)
        if Kblk is None:
            rb = rows.reshape(R, n // c, c)
            Kblk = K[rb[..., :, None], rb[..., None, :]]  # [R, n / c, c, c]
        y = torch.einsum("rgjm,rjmn->rgjn", x.reshape(R, x.shape[1], n // c, c), Kblk)
        return y.reshape(x.shape)

    def gd_penalty(st, h):  # -alpha strength / (2c) K M d (docs/theory.md#penalties)
        d = st["d"]
        if rule.split == "fixed":
            c = rule.chunk_size
            Md = torch.einsum("rgjm,jmn->rgjn", d.reshape(R, d.shape[1], N // c, c), blocks).reshape(d.shape)
        else:
            perm = stream_keys(streams, h.t, N, device).argsort(dim=1)  # a uniform partition per path and step
            pe = perm[:, None, :].expand(d.shape)
            Md = torch.empty_like(d).scatter_(2, pe, block_product(d.gather(2, pe), perm))
        Md.mul_((-h.lr * rule.strength / (2 * rule.chunk_size))[None, :, None])
        st["v"].add_(torch.matmul(Md, K))
        if with_test:
            st["vt"].add_(torch.matmul(Md, KtT))

    def noisy_step(st, h):  # NoisyGD: the full-batch gradient plus Gaussian noise of the batch covariance
        d, v = st["d"], st["v"]
        z = gaussian_keys(streams, h.t, N, device).to(dtype)  # [R, N]
        z = z - z.mean(1, keepdim=True)
        scale = (-h.lr * torch.sqrt(h.gamma * N))[None, :, None]  # [1, g, 1]
        dn = d * (-h.lr)[None, :, None] + d * z[:, None, :] * scale  # -alpha (d + eta)
        v.mul_(h.momentum[None, :, None]).add_(torch.matmul(dn, K))
        if with_test:
            st["vt"].mul_(h.momentum[None, :, None]).add_(torch.matmul(dn, KtT))
        d.add_(v)
        if with_test:
            st["r"].add_(st["vt"])
        path_loss = torch.linalg.vecdot(d, d) / (2 * N)
        mean = path_loss.mean(0)
        return st, mean, (path_loss.std(0) / math.sqrt(R) if R > 1 else torch.zeros_like(mean))

    def step(st, h):
        if h.t == 0 or not constant:  # per-config coefficients, once per chunk when constant
            b = h.batch_size
            bmax = h.bmax
            pos = torch.arange(bmax, device=device, dtype=dtype)
            # weight of batch position j for config g: -alpha_g N / b_g if j < b_g else 0     # [g, bmax]
            w = torch.where(pos[None, :] < b[:, None], (-h.lr * N / b)[:, None], torch.zeros((), dtype=dtype,
                                                                                                 device=device))
            full_batch = h.bmin == N and not replacement and not normed
            cache["c"] = (bmax, w, h.momentum[None, :, None], (-h.lr)[None, :, None], full_batch)
        bmax, w, beta, neg_lr, full_batch = cache["c"]
        d, v = st["d"], st["v"]
        v.mul_(beta)
        if with_test:
            st["vt"].mul_(beta)
        if full_batch:  # g = K d, no sampling
            dn = d * neg_lr
            v.add_(torch.matmul(dn, K))
            if with_test:
                st["vt"].add_(torch.matmul(dn, KtT))
        else:
            if normed and rule.target == "small_batch" and (h.t == 0 or not constant):  # the small batch's weights
                bs = rule.small_batch_size
                cache["small"] = torch.where(torch.arange(bmax, device=device)[None, :] < bs, (-h.lr * N / bs)[:, None],
                                             torch.zeros((), dtype=dtype, device=device))  # [g, bmax]
            if mpen and (h.t == 0 or not constant):  # -alpha 2 strength N / (b mu) at positions < b, 0 beyond
                cache["pen"] = torch.where(torch.arange(bmax, device=device)[None, :] < h.batch_size[:, None],
                                           (-h.lr * 2 * rule.strength * N / (h.batch_size * rule.micro_batch_size))
                                           [:, None], torch.zeros((), dtype=dtype, device=device))  # [g, bmax]
            for draw, r in enumerate(r12[:2 if two else 1]):  # SVAG: two independent batches, weights r1, r2
                t_key = 2 * h.t + draw if two else h.t
                idx = sample_batches(streams, t_key, N, bmax, replacement, device)  # [R, bmax]
                Kb = K[idx]  # rows of K at the batch: [R, bmax, N]
                vals = d.gather(2, idx[:, None, :].expand(R, d.shape[1], bmax)).mul_(w if r == 1.0 else w * r)
                if normed:  # |delta w|^2 = vals^T K_BB vals; rescale the step to the target norm
                    KBB = Kb.gather(2, idx[:, None, :].expand(R, bmax, bmax))  # [R, bmax, bmax]
                    nrm = torch.einsum("rgi,rij,rgj->rg", vals, KBB, vals).clamp_min(0).sqrt()
                    if rule.target == "small_batch":
                        small = d.gather(2, idx[:, None, :].expand(R, d.shape[1], bmax)) * cache["small"]
                        want = torch.einsum("rgi,rij,rgj->rg", small, KBB, small).clamp_min(0).sqrt()
                    else:
                        want = torch.full_like(nrm, float(rule.target))
                    vals.mul_(torch.where(nrm > 0, want / nrm, torch.zeros_like(nrm))[..., None])
                v.baddbmm_(vals, Kb)  # [R, g, bmax] x [R, bmax, N]
                if with_test:
                    st["vt"].baddbmm_(vals, KtT[idx])  # the same update at the test points: [R, g, M]
                if mpen:  # micro-batch penalty: -alpha 2 strength N / (b mu) sum_j K[:, M_j] K_{M_j M_j} d~_{M_j}
                    if rule.kind == "fisher":  # d~ = f - y~ = -eps, y~ = f + eps drawn from the model
                        dm = -gaussian_keys(streams, h.t, bmax, device).to(dtype)[:, None, :].expand(vals.shape)
                    else:
                        dm = d.gather(2, idx[:, None, :].expand(R, d.shape[1], bmax))
                    pen = block_product(dm, idx).mul_(cache["pen"])
                    v.baddbmm_(pen, Kb)
                    if with_test:
                        st["vt"].baddbmm_(pen, KtT[idx])
        if gpen:
            gd_penalty(st, h)
        d.add_(v)
        if with_test:
            st["r"].add_(st["vt"])
        path_loss = torch.linalg.vecdot(d, d) / (2 * N)  # [R, g]
        mean = path_loss.mean(0)
        se = path_loss.std(0) / math.sqrt(R) if R > 1 else torch.zeros_like(mean)
        return st, mean, se

    def test_loss(st):
        path = torch.linalg.vecdot(st["r"], st["r"]) / (2 * M)  # [R, g]
        mean = path.mean(0)
        return mean, (path.std(0) / math.sqrt(R) if R > 1 else torch.zeros_like(mean))

    def kill(st, mask):
        for key in ("d", "v", "r", "vt"):
            if key in st:
                st[key][:, mask] = 0.0

    return drive(regime=REGIME, problem=problem, configs=configs, n_steps=n_steps, schedule=schedule,
                 log_steps=log_steps, device=device, dtype=dtype, chunk_size=chunk_size, init=init,
                 step=noisy_step if isinstance(rule, NoisyGD) else step, kill=kill, replacement=replacement,
                 progress=progress, with_se=True, test=test_loss if with_test else None,
                 meta=dict(seed=seed, repeats=R), update=rule)
