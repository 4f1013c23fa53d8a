"""SDE: the SGD stochastic differential equation, the l -> infinity limit of SVAG(l) (docs/theory.md#updates).

At SGD-step times t, momentum 0:

    dC/dt = -alpha (K C + C K) + alpha^2 gamma K (N diag(C) - C) K

Pieces: the full regime integrates these second moments in the eigenbasis, the sd regime their
spectral-diagonal closure, both by ETDRK4 (gfsgd.updates.etd) with `substeps` steps per SGD step; the theory
solves the closure through its Laplace transform (gfsgd.theory.sde).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from .base import Pieces, UpdateRule, register
from .etd import etd_coefficients, etdrk4_step

__all__ = ["SDE"]


@register
@dataclass(frozen=True)
class SDE(UpdateRule):
    """The SGD SDE (momentum 0); `substeps` ETDRK4 steps per SGD step in the stepping regimes (full, sd)."""
    substeps: int = 8
    name = "sde"
    regimes = frozenset({"full", "sd", "theory"})

    def __post_init__(self):
        s = self.substeps
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise InputError(f"SDE(substeps): substeps must be an integer >= 1, got substeps={s!r}")

    def validate(self, regime, *, momenta=None, schedule=None, **_) -> None:
        if momenta is not None:
            bad = [m for m in momenta if m != 0]
            if bad:
                raise InputError(f"update=sde is the momentum-free SGD SDE; got momentum={bad[0]!r} "
                                 f"(use momentum 0, or SVAG(l) for a finite l, which runs with momentum)")
        if schedule is not None and getattr(schedule, "momentum", None) is not None:
            raise InputError("update=sde is momentum-free: a momentum schedule cannot be used with it")

    @classmethod
    def from_args(cls, args):
        return cls(substeps=args.sde_substeps)

    def describe(self) -> dict:
        return {"update": self.name, "sde_substeps": self.substeps}

    def full_pieces(self, ctx) -> Pieces:
        """The SDE's second moments C~ in the eigenbasis over one SGD step (the mean follows exp(-alpha lambda t))."""
        lam, ell, U, Ut, N, cache = ctx.lam, ctx.ell, ctx.U, ctx.Ut, ctx.N, ctx.cache

        def noise_coupling(X, k3N):  # alpha^2 gamma N (lambda lambda^T) * (U^T diag(c) U),  c = diag(U X U^T)
            c = (torch.matmul(U, X) * U).sum(-1)  # [g, N]
            return k3N * torch.matmul(Ut, c[:, :, None] * U)

        def sde_step(st, h):
            if h.t == 0 or not ctx.constant:
                a = h.lr[:, None, None]
                a2g = a * a * h.gamma[:, None, None]
                rates = -a * (lam[None, :, None] + lam[None, None, :]) - a2g * ell  # [g, N, N]
                cache["sde"] = (etd_coefficients(rates, 1.0 / self.substeps), N * a2g * ell,
                                torch.exp(-h.lr[:, None] * lam))
            coef, k3N, decay = cache["sde"]
            C = st["C"]
            for _ in range(self.substeps):
                C = etdrk4_step(C, coef, lambda x: noise_coupling(x, k3N))
            st["C"] = 0.5 * (C + C.mT)  # exactly symmetric
            if "mean" in st:  # the mean follows dm/dt = -alpha lambda m
                st["mean"] = st["mean"] * decay
            return st, torch.diagonal(st["C"], dim1=-2, dim2=-1).sum(-1) / (2 * N), None

        return Pieces(step=sde_step)

    def sd_pieces(self, ctx) -> Pieces:
        """The SD closure of the SDE: dA_k/dt = (-2 u_k - tau gamma u_k^2) A_k + gamma u_k^2 sum_l A_l, u = alpha lambda."""
        lam, tau, N, cache = ctx.lam, ctx.tau, ctx.N, ctx.cache

        def sde_step(st, h):
            if h.t == 0 or not ctx.constant:
                u = h.lr[:, None] * lam  # [g, N]
                k3 = h.gamma[:, None] * u * u
                cache["sde"] = etd_coefficients(-2.0 * u - tau * k3, 1.0 / self.substeps), k3, torch.exp(-u)
            coef, k3, decay = cache["sde"]
            A = st["A"]
            for _ in range(self.substeps):
                A = etdrk4_step(A, coef, lambda x: k3 * x.sum(1, keepdim=True))
            st["A"], st["s"] = A, A.sum(1, keepdim=True)
            if "mean" in st:  # the mean follows dm/dt = -alpha lambda m
                st["mean"] = st["mean"] * decay
            return st, st["s"][:, 0] / (2 * N), None

        return Pieces(step=sde_step)

    def theory_solver(self, solvers):
        """The SD-closure loss by Laplace inversion: solvers.sde_loss(spec, lr, batch_size, t, tau, replacement)."""
        def solve(spec, lr, momentum, batch_size, t, *, tau, replacement):
            return solvers.sde_loss(spec, lr, batch_size, t, tau=tau, replacement=replacement)
        return solve
