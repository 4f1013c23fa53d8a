"""NoisyGD: the full-batch gradient plus Gaussian noise with the mini-batch gradient's covariance
(docs/theory.md#updates).

In residual space g = K (d + eta), eta = sqrt(gamma N) d * (z - mean(z)), z ~ N(0, I_N), whose covariance
gamma (N diag(d^2) - d d^T) is that of the batch gradient (N/b) K[:, B] d[B] (gamma of the batch size b:
without replacement, or 1/b with `replacement=True`). Its second moments, hence the expected loss, are SGD's:
the second-moment regimes and the theory run it as SGD; the sampled regimes take its own step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import grad, vmap

from ..errors import InputError
from .base import REGIMES, Pieces, UpdateRule, register

__all__ = ["NoisyGD"]


@register
@dataclass(frozen=True)
class NoisyGD(UpdateRule):
    """Full-batch gradient plus Gaussian noise with the mini-batch gradient covariance given d."""
    replacement: bool = False
    name = "ngd"
    regimes = frozenset(REGIMES)

    def sampling_replacement(self, replacement: bool) -> bool:
        return bool(self.replacement)

    def validate(self, regime, *, replacement=None, **_) -> None:
        if replacement is not None and bool(self.replacement) != bool(replacement):
            raise InputError(f"NoisyGD(replacement={self.replacement}) disagrees with replacement={replacement}; "
                             f"set one of them")

    @classmethod
    def from_args(cls, args):
        return cls(replacement=args.replacement)

    def describe(self) -> dict:
        return {"update": self.name, "ngd_replacement": bool(self.replacement)}

    def linearized_pieces(self, ctx) -> Pieces:
        """g = K (d + eta): z drawn per path and step (shared by the configs, like the batches)."""
        K, KtT, N = ctx.K, ctx.KtT, ctx.N

        def noisy_step(st, h):
            d, v = st["d"], st["v"]
            z = ctx.gaussian(h.t, N)  # [R, N]
            z = z - z.mean(1, keepdim=True)
            scale = (-h.lr * torch.sqrt(h.gamma * N))[None, :, None]  # [1, g, 1]
            dn = d * (-h.lr)[None, :, None] + d * z[:, None, :] * scale  # -alpha (d + eta)
            v.mul_(h.momentum[None, :, None]).add_(torch.matmul(dn, K))
            if KtT is not None:
                st["vt"].mul_(h.momentum[None, :, None]).add_(torch.matmul(dn, KtT))
            return ctx.finish(st)

        return Pieces(step=noisy_step)

    def nn_pieces(self, ctx) -> Pieces:
        """The gradient of 0.5 mean (f - y)^2 plus (1/N) J^T eta, one full-batch pass a step."""
        X, y, N = ctx.X, ctx.y, ctx.N

        def noisy_loss(p, Xs, coef):  # its gradient is (1/N) J^T (d + eta) for constant coef = (d + eta) / N
            return (coef * ctx.f(p, Xs)).sum()
        ngd_grad = vmap(grad(noisy_loss), in_dims=(0, None, 0))

        def gradient(st, p, h, g, bmax, w):
            with torch.no_grad():
                dd = ctx.out_fn(p, X) - y  # [R g, N]
            bl = 0.5 * (dd * dd).mean(1)
            z = ctx.gaussian(h.t, N)
            z = ctx.paths(z - z.mean(1, keepdim=True), g)  # [R g, N]
            eta = torch.sqrt(h.gamma * N).repeat(ctx.R)[:, None] * dd * z
            return ngd_grad(p, X, (dd + eta) / N), bl

        return Pieces(gradient=gradient)
