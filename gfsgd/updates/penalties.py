"""Explicit regularisers that imitate small-batch SGD (docs/theory.md#penalties).

    GradientPenalty(strength, chunk_size, split="fixed" | "reshuffle")
        full-batch GD on L + strength / (4m) sum_k |grad L_{B_k}|^2 over a split of the N points into
        m = N / chunk_size chunks (Geiping et al. 2022)
    MicroBatchPenalty(strength, micro_batch_size, kind="grad_norm" | "fisher")
        batch-b SGD on L_B + strength * mean_j |grad L_{M_j}|^2 over the b / micro_batch_size micro-batches of the
        batch (Novack et al. 2023)

Strengths are in the units of the normalised kernel (lambda_max(K) = 1), like the learning rate: for a network the
penalty on its own loss is strength / lambda_max(K_emp). In the linearized model a chunk's gradient-norm term moves
the residual through the block-diagonal M of K over the chunks: -alpha strength / (2c) K M d.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import grad, vmap

from ..errors import InputError
from .base import Pieces, UpdateRule, UnsupportedUpdate, check_size, check_strength, register

__all__ = ["GradientPenalty", "MicroBatchPenalty"]


def block_product(K, x, rows, c, Kblk=None):
    """M x for x [R, g, n] whose positions are `rows` [R, n] split into consecutive blocks of size c: the product
    with each block's own K[rows_j, rows_j] (block-diagonal), [R, g, n]."""
    R, n = x.shape[0], x.shape[2]
    if Kblk is None:
        rb = rows.reshape(R, n // c, c)
        Kblk = K[rb[..., :, None], rb[..., None, :]]  # [R, n / c, c, c]
    y = torch.einsum("rgjm,rjmn->rgjn", x.reshape(R, x.shape[1], n // c, c), Kblk)
    return y.reshape(x.shape)


def required_size(args) -> int:
    """--micro_batch_size, which both penalties need (the chunk / micro-batch size)."""
    if args.micro_batch_size is None:
        raise InputError("--micro_batch_size is required (the chunk / micro-batch size)")
    return args.micro_batch_size


def sq_grad_norms(f, p, xs, ys):
    """|grad L_j(p)|^2 of the chunks j of a network f(p, x) -> [n]: xs [m, c, ...], ys [m, c] (labels, or the model's
    own draws y~ for the fisher kind), L_j = 0.5 mean over chunk j of (f - y)^2. Returns [m]."""
    def chunk_loss(q, x, yy):
        r = f(q, x) - yy
        return 0.5 * (r * r).mean()
    g = vmap(grad(chunk_loss), in_dims=(None, 0, 0))(p, xs, ys)  # per-chunk gradients [m, ...]
    return sum((t.reshape(t.shape[0], -1) ** 2).sum(1) for t in g.values())  # [m]


@register
@dataclass(frozen=True)
class GradientPenalty(UpdateRule):
    """Full-batch GD with an explicit gradient penalty over a split into chunks of `chunk_size` points:

        L(w) + strength / (4m) sum_k |grad L_{B_k}(w)|^2,   m = N / chunk_size (chunk_size must divide N).

    In the linearized model the step's residual change is -alpha K (I + strength / (2 c) M) d, with M the
    block-diagonal of K over the chunks (docs/theory.md#penalties). split="fixed": the chunks are consecutive
    indices 0..c-1, c..2c-1, ... of the training order (which is already a random subsample), the same every
    step; "reshuffle": a fresh uniform partition per step and path.
    """
    strength: float = 0.0
    chunk_size: int = 1
    split: str = "fixed"
    name = "gd_penalty"
    regimes = frozenset({"full", "linearized", "nn"})

    def __post_init__(self):
        object.__setattr__(self, "strength", check_strength(self.strength, "GradientPenalty"))
        check_size(self.chunk_size, "chunk_size", "GradientPenalty")
        if self.split not in ("fixed", "reshuffle"):
            raise InputError(f"GradientPenalty: split must be 'fixed' or 'reshuffle', got split={self.split!r}")

    def check_problem(self, N: int) -> None:
        if N % self.chunk_size:
            raise InputError(f"GradientPenalty: chunk_size={self.chunk_size} must divide the number of training "
                             f"points N={N} (the chunks split the whole training set)")

    def validate(self, regime, *, N=None, batch_sizes=None, **_) -> None:
        if N is not None:
            self.check_problem(N)
        if batch_sizes is not None and N is not None and any(int(b) != N for b in batch_sizes):
            raise InputError(f"GradientPenalty is full-batch GD plus a penalty: every batch_size must be N={N}, got "
                             f"{sorted(set(int(b) for b in batch_sizes))[:3]} (MicroBatchPenalty penalises "
                             f"mini-batch SGD)")
        if regime == "full" and self.split != "fixed":
            raise UnsupportedUpdate("the full regime runs GradientPenalty(split='fixed') only: with a reshuffled "
                                    "split the second moments need the fourth moments of the random operator; use "
                                    "the linearized regime (Monte-Carlo) for split='reshuffle'")

    @classmethod
    def from_args(cls, args):
        return cls(args.penalty, required_size(args), args.penalty_split)

    def describe(self) -> dict:
        return {"update": self.name, "penalty": self.strength, "chunk_size": self.chunk_size, "split": self.split}

    def full_pieces(self, ctx) -> Pieces:
        """Deterministic (a fixed split): the residual itself is stepped, d' = d + v',
        v' = beta v - alpha A d with A = K (I + strength / (2c) M), and the same at the held-out points."""
        N, device, dtype, c = ctx.N, ctx.device, ctx.dtype, self.chunk_size
        K_ = ctx.problem.K.to(device, dtype)
        Mop = torch.block_diag(*[K_[i:i + c, i:i + c] for i in range(0, N, c)])
        At = (K_ + (self.strength / (2 * c)) * (K_ @ Mop)).T.contiguous()
        with_test = ctx.tt is not None
        if with_test:
            Ktest = ctx.problem.K_test.to(device, dtype)
            Bt = (Ktest + (self.strength / (2 * c)) * (Ktest @ Mop)).T.contiguous()  # [N, M]
            r0 = ctx.problem.r_test.to(device, dtype)

        def init(lr, mom, b):
            g = lr.numel()
            d = ctx.problem.d0.to(device, dtype).expand(g, N).clone()
            st = dict(d=d, v=torch.zeros_like(d))
            if with_test:
                st.update(r=r0.expand(g, r0.numel()).clone(), vt=torch.zeros(g, r0.numel(), dtype=dtype, device=device))
            return st

        def step(st, h):
            beta, neg = h.momentum[:, None], -h.lr[:, None]
            dn = st["d"] * neg
            st["v"].mul_(beta).add_(dn @ At)
            if with_test:
                st["vt"].mul_(beta).add_(dn @ Bt)
                st["r"].add_(st["vt"])
            st["d"].add_(st["v"])
            return st, torch.linalg.vecdot(st["d"], st["d"]) / (2 * N), None

        def test(st):
            return torch.linalg.vecdot(st["r"], st["r"]) / (2 * ctx.tt["M"]), None

        return Pieces(init=init, step=step, test=test if with_test else None)

    def linearized_pieces(self, ctx) -> Pieces | None:
        """The penalty's term -alpha strength / (2c) K M d added to the full-batch step."""
        if self.strength == 0:
            return None
        K, KtT, N, R, c = ctx.K, ctx.KtT, ctx.N, ctx.R, self.chunk_size
        blocks = torch.stack([K[i:i + c, i:i + c] for i in range(0, N, c)]) if self.split == "fixed" else None

        def extra(st, h):
            d = st["d"]
            if blocks is not None:
                Md = torch.einsum("rgjm,jmn->rgjn", d.reshape(R, d.shape[1], N // c, c), blocks).reshape(d.shape)
            else:
                perm = ctx.uniform_keys(h.t, N).argsort(dim=1)  # a uniform partition per path and step
                pe = perm[:, None, :].expand(d.shape)
                Md = torch.empty_like(d).scatter_(2, pe, block_product(K, d.gather(2, pe), perm, c))
            Md.mul_((-h.lr * self.strength / (2 * c))[None, :, None])
            st["v"].add_(torch.matmul(Md, K))
            if KtT is not None:
                st["vt"].add_(torch.matmul(Md, KtT))

        return Pieces(extra=extra)

    def nn_pieces(self, ctx) -> Pieces:
        """Double backprop: the gradient of the full-batch loss + lam / (4m) sum_k |grad L_k|^2,
        lam = strength / lambda_max(K_emp)."""
        X, y, N, c = ctx.X, ctx.y, ctx.N, self.chunk_size
        lam_raw = self.strength * ctx.scale / N

        def penalty_loss(p, Xs, ys, parts):  # parts [m, c]
            r = ctx.f(p, Xs) - ys
            return 0.5 * (r * r).mean() + lam_raw / (4 * parts.shape[0]) * sq_grad_norms(ctx.f, p, Xs[parts],
                                                                                          ys[parts]).sum()
        pen_grad = vmap(grad(penalty_loss), in_dims=(0, None, None, 0))

        def gradient(st, p, h, g, bmax, w):
            with torch.no_grad():
                dd = ctx.out_fn(p, X) - y  # [R g, N]
            bl = 0.5 * (dd * dd).mean(1)
            if self.split == "fixed":
                parts = torch.arange(N, device=ctx.device).reshape(1, N // c, c).expand(ctx.R * g, N // c, c)
            else:
                parts = ctx.paths(ctx.uniform_keys(h.t, N).argsort(dim=1).reshape(ctx.R, N // c, c), g)
            return pen_grad(p, X, y, parts), bl

        return Pieces(gradient=gradient)


@register
@dataclass(frozen=True)
class MicroBatchPenalty(UpdateRule):
    """Mini-batch SGD (batch b) plus strength * mean_j |grad L_{M_j}|^2 over the b / micro_batch_size micro-batches
    M_j of each batch (consecutive positions of the uniformly random batch order: a uniform split). Every batch
    size must be a multiple of micro_batch_size. kind="fisher" takes the micro-batch gradients at labels drawn
    from the model's predictive distribution: for the squared loss 0.5 (f - y)^2 that is y~ = f + eps with
    eps ~ N(0, 1) (unit variance), so the penalty's residual is -eps (docs/theory.md#penalties).
    """
    strength: float = 0.0
    micro_batch_size: int = 1
    kind: str = "grad_norm"
    name = "mb_penalty"
    regimes = frozenset({"linearized", "nn"})

    def __post_init__(self):
        object.__setattr__(self, "strength", check_strength(self.strength, "MicroBatchPenalty"))
        check_size(self.micro_batch_size, "micro_batch_size", "MicroBatchPenalty")
        if self.kind not in ("grad_norm", "fisher"):
            raise InputError(f"MicroBatchPenalty: kind must be 'grad_norm' or 'fisher', got kind={self.kind!r}")

    def check_batch_sizes(self, batch_sizes) -> None:
        bad = [int(b) for b in batch_sizes if int(b) % self.micro_batch_size]
        if bad:
            raise InputError(f"MicroBatchPenalty: micro_batch_size={self.micro_batch_size} must divide every batch "
                             f"size, got batch_size={bad[0]} (no remainder rule: choose sizes that divide)")

    def validate(self, regime, *, batch_sizes=None, **_) -> None:
        if batch_sizes is not None:
            self.check_batch_sizes(batch_sizes)

    @classmethod
    def from_args(cls, args):
        return cls(args.penalty, required_size(args), args.penalty_kind)

    def describe(self) -> dict:
        return {"update": self.name, "penalty": self.strength, "micro_batch_size": self.micro_batch_size,
                "penalty_kind": self.kind}

    def linearized_pieces(self, ctx) -> Pieces | None:
        """Adds -alpha 2 strength N / (b mu) sum_j K[:, M_j] K_{M_j M_j} d~_{M_j} to the batch's weights."""
        if self.strength == 0:
            return None
        mu, N, cache = self.micro_batch_size, ctx.N, ctx.cache

        def weights(st, h, idx, Kb, dB, vals):
            if h.t == 0 or not ctx.constant:  # -alpha 2 strength N / (b mu) at positions < b, 0 beyond  [g, bmax]
                pos = torch.arange(h.bmax, device=ctx.device)[None, :]
                cache["pen"] = torch.where(pos < h.batch_size[:, None],
                                           (-h.lr * 2 * self.strength * N / (h.batch_size * mu))[:, None],
                                           torch.zeros((), dtype=ctx.dtype, device=ctx.device))
            if self.kind == "fisher":  # d~ = f - y~ = -eps, y~ = f + eps drawn from the model
                dm = -ctx.gaussian(h.t, h.bmax)[:, None, :].expand(vals.shape)
            else:
                dm = dB
            return vals + block_product(ctx.K, dm, idx, mu).mul_(cache["pen"])

        return Pieces(weights=weights, full_batch_shortcut=False)

    def nn_pieces(self, ctx) -> Pieces:
        """Double backprop of the batch loss + lam mean_j |grad L_{M_j}|^2, lam = strength / lambda_max(K_emp)."""
        mu = self.micro_batch_size
        lam_raw = self.strength * ctx.scale / ctx.N

        def penalty_loss(p, xb, yb, wb, yt_mb):  # xb [bmax, ...]
            r = ctx.f(p, xb) - yb
            J = xb.shape[0] // mu
            norms = sq_grad_norms(ctx.f, p, xb.reshape(J, mu, *xb.shape[1:]), yt_mb.reshape(J, mu))  # [J]
            live = (wb.reshape(J, mu)[:, 0] > 0).to(norms.dtype)  # micro-batches inside this config's batch
            return 0.5 * (wb * r * r).sum() + lam_raw * (norms * live).sum() / live.sum()
        mb_grad = vmap(grad(penalty_loss))

        def gradient(st, p, h, g, bmax, w):
            idx, xb, yb = ctx.batch(h, g, bmax, h.t)
            ctx.record(st, idx, g, bmax)
            if self.kind == "fisher":  # labels from the model: y~ = f + eps, so f - y~ = -eps (unit variance)
                with torch.no_grad():
                    ft = vmap(ctx.f)(p, xb)
                ytil = ft + ctx.paths(ctx.gaussian(h.t, bmax), g)
            else:
                ytil = yb
            return mb_grad(p, xb, yb, w, ytil), ctx.grad_fn(p, xb, yb, w)[1]

        return Pieces(gradient=gradient)
