"""Training rules besides plain mini-batch SGD, as objects that every regime takes as `update=`
(docs/theory.md#updates).

    SGD()                      the default: one batch of size b per step
    SVAG(l)                    two independent batches B1, B2 per step, g = r1 g_B1 + r2 g_B2 with
                               r1,2 = (1 ± sqrt(2l - 1)) / 2, learning rate alpha / l, and l steps per SGD step
                               (Li, Malladi, Arora 2021). Times (n_steps, log_steps, Curves.steps) stay in
                               SGD-step units: the run takes l * n_steps SVAG steps.
    SDE()                      the l -> infinity limit of SVAG: the SGD stochastic differential equation, solved
                               for the second moments (full, sd) or through its Laplace transform (theory);
                               momentum 0 only
    NoisyGD(replacement=False) the full-batch gradient plus Gaussian noise with the mini-batch gradient's
                               covariance given d (without or with replacement); same second moments as SGD

A rule a regime cannot run raises `UnsupportedUpdate` (a ValueError) naming the rules that regime runs.
This module imports nothing from the rest of gfsgd, so regimes and theory can both use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SGD", "SVAG", "SDE", "NoisyGD", "UpdateRule", "UnsupportedUpdate", "as_update", "check_update",
           "SUPPORTED", "RULE_NAMES"]


class UnsupportedUpdate(ValueError):
    """A training rule that the chosen regime cannot run."""


@dataclass(frozen=True)
class UpdateRule:
    """Base class: `name` is the rule's command-line spelling."""
    name = "rule"

    @property
    def lr_divisor(self) -> float:
        """The step's learning rate is alpha / lr_divisor."""
        return 1.0

    @property
    def noise_scale(self) -> float:
        """The noise level gamma of the second-moment dynamics is multiplied by this."""
        return 1.0

    @property
    def steps_per_sgd_step(self) -> int:
        """Steps of this rule per SGD step (times are reported in SGD steps)."""
        return 1

    def describe(self) -> dict:
        """A JSON-able record (run folders keep it in config.json)."""
        return {"update": self.name}


@dataclass(frozen=True)
class SGD(UpdateRule):
    """Plain mini-batch SGD with heavy-ball momentum (the v-form of docs/theory.md#update)."""
    name = "sgd"


@dataclass(frozen=True)
class SVAG(UpdateRule):
    """Stochastic variance amplified gradient with parameter l >= 1 (an integer in the stepping regimes).

    Each step draws two independent batches and takes g = r1 g_B1 + r2 g_B2, r1,2 = (1 ± sqrt(2l - 1)) / 2
    (r1 + r2 = 1, r1^2 + r2^2 = l), with learning rate alpha / l. Its batch-averaged second moments are those of
    SGD with learning rate alpha / l and noise level l * gamma (docs/theory.md#updates), and l of its steps
    make one SGD step. l = 1 is SGD.
    """
    l: float = 1.0
    name = "svag"

    def __post_init__(self):
        l = self.l
        if isinstance(l, bool) or not isinstance(l, (int, float)) or not math.isfinite(l) or l < 1:
            raise ValueError(f"SVAG(l): l must be a finite number >= 1, got l={l!r}")
        if float(l) != int(l):
            raise ValueError(f"SVAG(l): l must be a whole number so that an SGD step is l SVAG steps, got l={l!r}")
        object.__setattr__(self, "l", int(l))

    @property
    def coefficients(self) -> tuple[float, float]:
        """(r1, r2): the weights of the two batch gradients."""
        s = math.sqrt(2 * self.l - 1)
        return (1 + s) / 2, (1 - s) / 2

    @property
    def lr_divisor(self) -> float:
        return float(self.l)

    @property
    def noise_scale(self) -> float:
        return float(self.l)

    @property
    def steps_per_sgd_step(self) -> int:
        return int(self.l)

    def describe(self) -> dict:
        return {"update": self.name, "svag_l": int(self.l)}


@dataclass(frozen=True)
class SDE(UpdateRule):
    """The SGD stochastic differential equation (the l -> infinity limit of SVAG), at SGD-step times t:

        dC/dt = -alpha (K C + C K) + alpha^2 gamma K (N diag(C) - C) K      (momentum 0)

    `substeps` exponential-integrator (ETDRK4) steps per SGD step in the stepping regimes (full, sd).
    """
    substeps: int = 8
    name = "sde"

    def __post_init__(self):
        s = self.substeps
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ValueError(f"SDE(substeps): substeps must be an integer >= 1, got substeps={s!r}")

    def describe(self) -> dict:
        return {"update": self.name, "sde_substeps": self.substeps}


@dataclass(frozen=True)
class NoisyGD(UpdateRule):
    """Full-batch gradient plus Gaussian noise with the mini-batch gradient covariance given d.

    In residual space g = K (d + eta), eta = sqrt(gamma N) d * (z - mean(z)), z ~ N(0, I_N), whose covariance
    gamma (N diag(d^2) - d d^T) is that of the batch gradient (N/b) K[:, B] d[B] (gamma of the batch size b:
    without replacement, or 1/b with `replacement=True`). Second moments, hence the expected loss, equal SGD's.
    """
    replacement: bool = False
    name = "ngd"

    def describe(self) -> dict:
        return {"update": self.name, "ngd_replacement": bool(self.replacement)}


RULE_NAMES = {"sgd": SGD, "svag": SVAG, "sde": SDE, "ngd": NoisyGD}

# what each regime runs (the theory: loss_curve and loss_at)
SUPPORTED = {
    "full": (SGD, SVAG, SDE, NoisyGD),
    "sd": (SGD, SVAG, SDE, NoisyGD),
    "linearized": (SGD, SVAG, NoisyGD),
    "nn": (SGD,),
    "theory": (SGD, SVAG, SDE, NoisyGD),
}


def as_update(update) -> UpdateRule:
    """None -> SGD(); a rule object is returned as is; a name ("sgd", "svag", ...) gives the default rule."""
    if update is None:
        return SGD()
    if isinstance(update, UpdateRule):
        return update
    if isinstance(update, str) and update in RULE_NAMES:
        return RULE_NAMES[update]()
    raise ValueError(f"update must be one of {', '.join(RULE_NAMES)} or a rule object "
                     f"(gfsgd.updates.SVAG(l), ...), got update={update!r}")


def check_update(update, regime: str, *, momenta=None, replacement: bool | None = None) -> UpdateRule:
    """The rule as an object, after checking that `regime` runs it (and, for the SDE, that every momentum is 0;
    for NoisyGD, that its replacement flag agrees with the regime's)."""
    rule = as_update(update)
    allowed = SUPPORTED[regime]
    if not isinstance(rule, allowed):
        names = ", ".join(f"{c.__name__} ({c.name})" for c in allowed)
        raise UnsupportedUpdate(f"the {regime} regime cannot run update={rule.name}; it runs: {names}")
    if isinstance(rule, SDE) and momenta is not None:
        bad = [m for m in momenta if m != 0]
        if bad:
            raise ValueError(f"update=sde is the momentum-free SGD SDE; got momentum={bad[0]!r} "
                             f"(use momentum 0, or SVAG(l) for a finite l, which runs with momentum)")
    if isinstance(rule, NoisyGD) and replacement is not None and bool(rule.replacement) != bool(replacement):
        raise ValueError(f"NoisyGD(replacement={rule.replacement}) disagrees with replacement={replacement}; "
                         f"set one of them")
    return rule
