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
    GradientPenalty(strength, chunk_size, split="fixed" | "reshuffle")
                               full-batch GD on L + strength / (4m) sum_k |grad L_{B_k}|^2 over a split of the
                               N points into m = N / chunk_size chunks (Geiping et al. 2022)
    MicroBatchPenalty(strength, micro_batch_size, kind="grad_norm" | "fisher")
                               batch-b SGD on L_B + strength * mean_j |grad L_{M_j}|^2 over the b / micro_batch_size
                               micro-batches of the batch (Novack et al. 2023); "fisher" evaluates the micro-batch
                               gradients at labels drawn from the model, y~ = f + eps, eps ~ N(0, 1)
    Normalized(target="small_batch" | float, small_batch_size=None)
                               the batch's direction with the step's norm (in parameter space) set to that of a
                               small-batch step at the same lr (the first small_batch_size points of the batch), or
                               to a fixed value (grafting / normalised GD, Novack et al. 2023); not linear in d

Penalty strengths are in the units of the normalised kernel (lambda_max(K) = 1), like the learning rate: for a
network, the penalty on its own loss is strength / lambda_max(K_emp) (docs/theory.md#penalties).

A rule a regime cannot run raises `UnsupportedUpdate` (a ValueError) naming the rules that regime runs.
This module imports nothing from the rest of gfsgd, so regimes and theory can both use it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SGD", "SVAG", "SDE", "NoisyGD", "GradientPenalty", "MicroBatchPenalty", "Normalized", "UpdateRule", "UnsupportedUpdate",
           "as_update", "check_update", "SUPPORTED", "RULE_NAMES"]


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


def _check_strength(strength, rule):
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) \
            or strength < 0:
        raise ValueError(f"{rule}: strength must be a finite number >= 0, got strength={strength!r}")
    return float(strength)


def _check_size(value, name, rule):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{rule}: {name} must be an integer >= 1, got {name}={value!r}")
    return value


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

    def __post_init__(self):
        object.__setattr__(self, "strength", _check_strength(self.strength, "GradientPenalty"))
        _check_size(self.chunk_size, "chunk_size", "GradientPenalty")
        if self.split not in ("fixed", "reshuffle"):
            raise ValueError(f"GradientPenalty: split must be 'fixed' or 'reshuffle', got split={self.split!r}")

    def check_problem(self, N: int) -> None:
        if N % self.chunk_size:
            raise ValueError(f"GradientPenalty: chunk_size={self.chunk_size} must divide the number of training "
                             f"points N={N} (the chunks split the whole training set)")

    def describe(self) -> dict:
        return {"update": self.name, "penalty": self.strength, "chunk_size": self.chunk_size, "split": self.split}


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

    def __post_init__(self):
        object.__setattr__(self, "strength", _check_strength(self.strength, "MicroBatchPenalty"))
        _check_size(self.micro_batch_size, "micro_batch_size", "MicroBatchPenalty")
        if self.kind not in ("grad_norm", "fisher"):
            raise ValueError(f"MicroBatchPenalty: kind must be 'grad_norm' or 'fisher', got kind={self.kind!r}")

    def check_batch_sizes(self, batch_sizes) -> None:
        bad = [int(b) for b in batch_sizes if int(b) % self.micro_batch_size]
        if bad:
            raise ValueError(f"MicroBatchPenalty: micro_batch_size={self.micro_batch_size} must divide every batch "
                             f"size, got batch_size={bad[0]} (no remainder rule: choose sizes that divide)")

    def describe(self) -> dict:
        return {"update": self.name, "penalty": self.strength, "micro_batch_size": self.micro_batch_size,
                "penalty_kind": self.kind}


@dataclass(frozen=True)
class Normalized(UpdateRule):
    """Normalised large-batch GD, or grafting: the batch gradient's direction, with the parameter step's norm
    |delta w| set to `target` (a float, in the normalised-kernel units: |delta w|^2 = u^T K_BB u for the residual
    weights u = alpha (N/b) d_B; a network's own step norm is this divided by sqrt(lambda_max(K_emp))), or with
    target="small_batch" to the norm of the SGD step of the first `small_batch_size` points of the same batch at
    the same learning rate (docs/theory.md#normalized). The step is no longer linear in d, so only the sampled
    regimes (linearized, nn) run it.
    """
    target: object = "small_batch"
    small_batch_size: int | None = None
    name = "normalized"

    def __post_init__(self):
        if self.target == "small_batch":
            _check_size(self.small_batch_size, "small_batch_size", "Normalized(target='small_batch')")
        elif isinstance(self.target, bool) or not isinstance(self.target, (int, float)) \
                or not math.isfinite(self.target) or self.target <= 0:
            raise ValueError(f"Normalized: target must be 'small_batch' or a finite number > 0, got target={self.target!r}")

    def describe(self) -> dict:
        return {"update": self.name, "normalized_target": self.target if self.target == "small_batch" else
                float(self.target), "small_batch_size": self.small_batch_size}


RULE_NAMES = {"sgd": SGD, "svag": SVAG, "sde": SDE, "ngd": NoisyGD, "gd_penalty": GradientPenalty,
              "mb_penalty": MicroBatchPenalty, "normalized": Normalized}

# what each regime runs (the theory: loss_curve and loss_at)
SUPPORTED = {
    "full": (SGD, SVAG, SDE, NoisyGD, GradientPenalty),
    "sd": (SGD, SVAG, SDE, NoisyGD),
    "linearized": (SGD, SVAG, NoisyGD, GradientPenalty, MicroBatchPenalty, Normalized),
    "nn": (SGD, SVAG, NoisyGD, GradientPenalty, MicroBatchPenalty, Normalized),
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


def check_update(update, regime: str, *, momenta=None, replacement: bool | None = None, N: int | None = None,
                 batch_sizes=None) -> UpdateRule:
    """The rule as an object, after checking that `regime` runs it (and, for the SDE, that every momentum is 0;
    for NoisyGD, that its replacement flag agrees with the regime's; for the penalties, that the sizes divide)."""
    rule = as_update(update)
    allowed = SUPPORTED.get(regime, (SGD,))  # a regime of your own runs plain SGD
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
    if isinstance(rule, GradientPenalty):
        if N is not None:
            rule.check_problem(N)
        if batch_sizes is not None and N is not None and any(int(b) != N for b in batch_sizes):
            raise ValueError(f"GradientPenalty is full-batch GD plus a penalty: every batch_size must be N={N}, got "
                             f"{sorted(set(int(b) for b in batch_sizes))[:3]} (MicroBatchPenalty penalises "
                             f"mini-batch SGD)")
        if regime == "full" and rule.split != "fixed":
            raise UnsupportedUpdate("the full regime runs GradientPenalty(split='fixed') only: with a reshuffled "
                                    "split the second moments need the fourth moments of the random operator; use "
                                    "the linearized regime (Monte-Carlo) for split='reshuffle'")
    if isinstance(rule, MicroBatchPenalty) and batch_sizes is not None:
        rule.check_batch_sizes(batch_sizes)
    if isinstance(rule, Normalized) and rule.target == "small_batch" and batch_sizes is not None:
        bad = [int(b) for b in batch_sizes if int(b) < rule.small_batch_size]
        if bad:
            raise ValueError(f"Normalized: small_batch_size={rule.small_batch_size} must be <= every batch size, got "
                             f"batch_size={bad[0]} (the small batch is the first small_batch_size points of the batch)")
    return rule
