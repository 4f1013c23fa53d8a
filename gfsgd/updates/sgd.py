"""Plain mini-batch SGD with heavy-ball momentum, the default rule (docs/theory.md#update).

Every regime's own step is SGD's, so the rule supplies no pieces: it only declares that it runs everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import REGIMES, UpdateRule, register

__all__ = ["SGD"]


@register
@dataclass(frozen=True)
class SGD(UpdateRule):
    """Plain mini-batch SGD with heavy-ball momentum (the v-form of docs/theory.md#update)."""
    name = "sgd"
    regimes = frozenset(REGIMES)
    multi_output = True
