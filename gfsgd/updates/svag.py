"""SVAG(l): stochastic variance amplified gradient (Li, Malladi, Arora 2021; docs/theory.md#updates).

Each step draws two independent batches and takes g = r1 g_B1 + r2 g_B2, r1,2 = (1 ± sqrt(2l - 1)) / 2
(r1 + r2 = 1, r1^2 + r2^2 = l), with learning rate alpha / l; l of its steps make one SGD step. Its batch-averaged
second moments are SGD's with learning rate alpha / l and noise level l * gamma, so the second-moment regimes and
the theory run it through lr_divisor, noise_scale and steps_per_sgd_step alone, and the sampled regimes through
`draws` (the two batch weights): no piece of its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError
from .base import REGIMES, UpdateRule, register

__all__ = ["SVAG"]


@register
@dataclass(frozen=True)
class SVAG(UpdateRule):
    """Stochastic variance amplified gradient with parameter l >= 1 (a whole number). l = 1 is SGD."""
    l: float = 1.0
    name = "svag"
    regimes = frozenset(REGIMES)
    multi_output = True

    def __post_init__(self):
        l = self.l
        if isinstance(l, bool) or not isinstance(l, (int, float)) or not math.isfinite(l) or l < 1:
            raise InputError(f"SVAG(l): l must be a finite number >= 1, got l={l!r}")
        if float(l) != int(l):
            raise InputError(f"SVAG(l): l must be a whole number so that an SGD step is l SVAG steps, got l={l!r}")
        object.__setattr__(self, "l", int(l))

    @property
    def coefficients(self) -> tuple[float, float]:
        """(r1, r2): the weights of the two batch gradients."""
        s = math.sqrt(2 * self.l - 1)
        return (1 + s) / 2, (1 - s) / 2

    @property
    def draws(self) -> tuple:
        return self.coefficients if self.l > 1 else (1.0,)

    @property
    def lr_divisor(self) -> float:
        return float(self.l)

    @property
    def noise_scale(self) -> float:
        return float(self.l)

    @property
    def steps_per_sgd_step(self) -> int:
        return int(self.l)

    @classmethod
    def from_args(cls, args):
        return cls(args.svag_l)

    def describe(self) -> dict:
        return {"update": self.name, "svag_l": int(self.l)}
