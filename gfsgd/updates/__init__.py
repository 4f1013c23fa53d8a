"""Training rules, one module each, registered by name; every regime takes one as `update=`
(docs/theory.md#updates, docs/design.md#rules).

    SGD()                      the default: one batch of size b per step                           (sgd.py)
    SVAG(l)                    two independent batches per step, lr / l, l steps per SGD step      (svag.py)
    SDE()                      the l -> infinity limit of SVAG: the SGD SDE (momentum 0)           (sde.py)
    NoisyGD(replacement=False) full-batch gradient + Gaussian noise of the batch covariance        (noisy_gd.py)
    GradientPenalty(strength, chunk_size, split)   full-batch GD + gradient penalty over chunks     (penalties.py)
    MicroBatchPenalty(strength, micro_batch_size, kind)  SGD + micro-batch gradient-norm penalty   (penalties.py)
    Normalized(target, small_batch_size)   the batch's direction with a target step norm           (normalized.py)

A rule declares the regimes it runs in and supplies its own piece for each (gfsgd.updates.base); a regime asks
the rule and never tests its type. A rule a regime cannot run raises `UnsupportedUpdate` naming the rules that
regime runs. To add a rule: one module with its class decorated by `@register`, imported below, and its tests
(docs/design.md#adding-a-rule).
"""
from __future__ import annotations

from .base import (REGIMES, RULE_NAMES, SUPPORTED, Pieces, UnsupportedUpdate, UpdateRule, as_update, check_update,
                   register, supported_rules)
# the registry's order (the CLI lists the rules in it): sgd, svag, sde, ngd, gd_penalty, mb_penalty, normalized
from .sgd import SGD  # noqa: I001
from .svag import SVAG
from .sde import SDE
from .noisy_gd import NoisyGD
from .penalties import GradientPenalty, MicroBatchPenalty
from .normalized import Normalized

__all__ = ["SGD", "SVAG", "SDE", "NoisyGD", "GradientPenalty", "MicroBatchPenalty", "Normalized", "UpdateRule",
           "UnsupportedUpdate", "Pieces", "as_update", "check_update", "register", "supported_rules", "SUPPORTED",
           "RULE_NAMES", "REGIMES"]
