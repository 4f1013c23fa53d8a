"""Normalized: normalised large-batch GD, or grafting (Novack et al. 2023; docs/theory.md#normalized).

The batch gradient's direction, with the parameter step's norm |delta w| set to `target` (a float, in the
normalised-kernel units: |delta w|^2 = u^T K_BB u for the residual weights u = alpha (N/b) d_B; a network's own
step norm is this divided by sqrt(lambda_max(K_emp))), or with target="small_batch" to the norm of the SGD step of
the first `small_batch_size` points of the same batch at the same learning rate. The step is no longer linear in
d, so only the sampled regimes (linearized, nn) run it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputError
from .base import Pieces, UpdateRule, check_size, register

__all__ = ["Normalized"]


@register
@dataclass(frozen=True)
class Normalized(UpdateRule):
    """The batch's direction with a target step norm: a number, or that of a small batch's step ("small_batch")."""
    target: object = "small_batch"
    small_batch_size: int | None = None
    name = "normalized"
    regimes = frozenset({"linearized", "nn"})

    def __post_init__(self):
        if self.target == "small_batch":
            check_size(self.small_batch_size, "small_batch_size", "Normalized(target='small_batch')")
        elif isinstance(self.target, bool) or not isinstance(self.target, (int, float)) \
                or not math.isfinite(self.target) or self.target <= 0:
            raise InputError(f"Normalized: target must be 'small_batch' or a finite number > 0, got "
                             f"target={self.target!r}")

    def validate(self, regime, *, batch_sizes=None, **_) -> None:
        if self.target == "small_batch" and batch_sizes is not None:
            bad = [int(b) for b in batch_sizes if int(b) < self.small_batch_size]
            if bad:
                raise InputError(f"Normalized: small_batch_size={self.small_batch_size} must be <= every batch size, "
                                 f"got batch_size={bad[0]} (the small batch is the first small_batch_size points of "
                                 f"the batch)")

    @classmethod
    def from_args(cls, args):
        target = args.normalized_target
        if target != "small_batch":
            try:
                target = float(target)
            except ValueError:
                raise InputError(f"--normalized_target must be 'small_batch' or a number > 0, got {target!r}") from None
        return cls(target, args.small_batch_size)

    def describe(self) -> dict:
        return {"update": self.name, "normalized_target": self.target if self.target == "small_batch" else
                float(self.target), "small_batch_size": self.small_batch_size}

    def linearized_pieces(self, ctx) -> Pieces:
        """Rescale the batch's residual weights u so that u^T K_BB u is the target norm squared."""
        N, R, cache = ctx.N, ctx.R, ctx.cache

        def weights(st, h, idx, Kb, dB, vals):
            bmax = h.bmax
            KBB = Kb.gather(2, idx[:, None, :].expand(R, bmax, bmax))  # [R, bmax, bmax]
            nrm = torch.einsum("rgi,rij,rgj->rg", vals, KBB, vals).clamp_min(0).sqrt()
            if self.target == "small_batch":
                if h.t == 0 or not ctx.constant:  # the small batch's weights  [g, bmax]
                    bs = self.small_batch_size
                    cache["small"] = torch.where(torch.arange(bmax, device=ctx.device)[None, :] < bs,
                                                 (-h.lr * N / bs)[:, None],
                                                 torch.zeros((), dtype=ctx.dtype, device=ctx.device))
                small = dB * cache["small"]
                want = torch.einsum("rgi,rij,rgj->rg", small, KBB, small).clamp_min(0).sqrt()
            else:
                want = torch.full_like(nrm, float(self.target))
            return vals.mul_(torch.where(nrm > 0, want / nrm, torch.zeros_like(nrm))[..., None])

        return Pieces(weights=weights, full_batch_shortcut=False)

    def nn_pieces(self, ctx) -> Pieces:
        """The batch gradient rescaled to the target step norm (in parameters)."""
        N, R, scale = ctx.N, ctx.R, ctx.scale

        def norm(grads):
            return torch.sqrt(sum((t.reshape(t.shape[0], -1) ** 2).sum(1) for t in grads.values()))  # [R g]

        def gradient(st, p, h, g, bmax, w):
            idx, xb, yb = ctx.batch(h, g, bmax, h.t)
            ctx.record(st, idx, g, bmax)
            grads, bl = ctx.grad_fn(p, xb, yb, w)
            nrm = norm(grads)
            if self.target == "small_batch":  # the same lr on the first small_batch_size points of the batch
                ws = (torch.arange(bmax, device=ctx.device) < self.small_batch_size).to(ctx.dtype) / self.small_batch_size
                want = norm(ctx.grad_fn(p, xb, yb, ws.expand(R * g, bmax))[0])
            else:  # |delta w| = target / sqrt(lambda_max(K_emp)) = lr_nn |g'|  (target in normalised units)
                lr_nn = (h.lr * scale).repeat(R)
                want = float(self.target) / (math.sqrt(N / scale) * lr_nn)
            fac = torch.where(nrm > 0, want / nrm, torch.zeros_like(nrm))
            return {k: t * fac.view((-1,) + (1,) * (t.ndim - 1)) for k, t in grads.items()}, bl

        return Pieces(gradient=gradient)
