"""What a training rule is, and the registry of rules (docs/design.md#rules).

A rule is a small frozen dataclass. It declares the regimes it runs in (`regimes`) and supplies its own
piece for each of them; a regime asks the rule for its piece and never tests the rule's type:

    full_pieces(ctx) -> Pieces | None        the exact second-moment regime (None: SGD's step, with the rule's
                                             lr_divisor and noise_scale applied by the driver)
    sd_pieces(ctx) -> Pieces | None          the spectral-diagonal regime (the same contract)
    linearized_pieces(ctx) -> Pieces | None  the sampled linearized regime: `step` replaces the whole step,
                                             `weights` rescales or adds to a drawn batch's residual weights,
                                             `extra` adds a term to the velocity after the batch terms
    nn_pieces(ctx) -> Pieces | None          the real network: `gradient` replaces the batch gradient
    theory_solver(solvers) -> callable | None  the theory's loss for this rule when it is not the renewal equation
                                             of SGD with the rule's lr_divisor, noise_scale and steps_per_sgd_step

`ctx` is the regime's context (a namespace of its tensors and helpers; each regime's docstring lists what it
holds). A rule runs where it says; `check_update(rule, regime, ...)` raises `UnsupportedUpdate` elsewhere and
calls the rule's own `validate` for its settings.

`@register` adds a rule class to the registry by its `name`; `RULE_NAMES` and `SUPPORTED` are read from it, so a
new rule is one module (its class, its pieces, `@register`) and its tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ..errors import InputError

__all__ = ["UpdateRule", "UnsupportedUpdate", "Pieces", "register", "RULE_NAMES", "SUPPORTED", "as_update",
           "check_update", "supported_rules", "REGIMES"]

REGIMES = ("full", "sd", "linearized", "nn", "theory")


class UnsupportedUpdate(InputError):
    """A training rule that the chosen regime cannot run."""


@dataclass
class Pieces:
    """A rule's piece for one regime; None keeps the regime's own (SGD) piece.

    init(lr, momentum, batch_size) -> state; step(state, hyper) -> (state, loss, se); test(state) -> (loss, se)
    (the contract of gfsgd.regimes' driver). weights(state, hyper, idx, Kb, vals) -> vals and
    extra(state, hyper) (linearized regime); gradient(state, params, hyper, g, bmax, w) -> (grads, batch loss)
    (nn regime). `full_batch_shortcut=False` forbids the linearized regime's g = K d shortcut at b = N.
    """
    init: Callable | None = None
    step: Callable | None = None
    test: Callable | None = None
    weights: Callable | None = None
    extra: Callable | None = None
    gradient: Callable | None = None
    full_batch_shortcut: bool = True
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateRule:
    """Base class of the training rules: plain SGD's behaviour everywhere it is not overridden."""
    name = "rule"
    regimes = frozenset()  # where the rule runs (a class attribute, not a field; see REGIMES)
    multi_output = False  # runs on problems with C > 1 outputs per example (docs/theory.md#outputs)

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

    @property
    def draws(self) -> tuple:
        """The weights of the independent batches a sampled step draws (SGD: one batch, weight 1)."""
        return (1.0,)

    def sampling_replacement(self, replacement: bool) -> bool:
        """Whether batches (or the noise's covariance) are drawn with replacement, given the regime's flag."""
        return bool(replacement)

    def validate(self, regime: str, *, momenta=None, replacement=None, N=None, batch_sizes=None,
                 schedule=None) -> None:
        """Raise InputError when the rule cannot run with these settings (the regime itself is already checked)."""

    def describe(self) -> dict:
        """A JSON-able record (run folders keep it in config.json)."""
        return {"update": self.name}

    @classmethod
    def from_args(cls, args):
        """The rule from parsed command-line options (gfsgd.cli's --update group); the default: no options."""
        return cls()

    def pieces(self, regime: str, ctx) -> Pieces:
        """This rule's piece for `regime` given the regime's context (all None: the regime's own SGD piece)."""
        ask = {"full": self.full_pieces, "sd": self.sd_pieces, "linearized": self.linearized_pieces,
               "nn": self.nn_pieces}.get(regime)
        return (ask(ctx) if ask is not None and ctx is not None else None) or Pieces()

    # the per-regime pieces (module docstring); None: the regime's SGD piece
    def full_pieces(self, ctx) -> Pieces | None:
        return None

    def sd_pieces(self, ctx) -> Pieces | None:
        return None

    def linearized_pieces(self, ctx) -> Pieces | None:
        return None

    def nn_pieces(self, ctx) -> Pieces | None:
        return None

    def theory_solver(self, solvers) -> Callable | None:
        return None


_REGISTRY: dict = {}


def register(cls):
    """Class decorator: add a rule to the registry under `cls.name` (a new name, and regimes among REGIMES)."""
    if not (isinstance(cls, type) and issubclass(cls, UpdateRule)):
        raise TypeError(f"register expects an UpdateRule subclass, got {cls!r}")
    bad = set(cls.regimes) - set(REGIMES)
    if bad:
        raise ValueError(f"rule {cls.__name__}: unknown regimes {sorted(bad)}; allowed: {', '.join(REGIMES)}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a rule named {cls.name!r} is already registered ({_REGISTRY[cls.name].__name__})")
    _REGISTRY[cls.name] = cls
    return cls


RULE_NAMES = _REGISTRY  # name -> rule class: the registry itself, so it is always current


def supported_rules(regime: str) -> tuple:
    """The registered rule classes that run in `regime` (a regime of your own runs plain SGD)."""
    if regime not in REGIMES:
        return tuple(c for c in _REGISTRY.values() if c.name == "sgd")
    return tuple(c for c in _REGISTRY.values() if regime in c.regimes)


class _Supported(dict):
    """SUPPORTED[regime]: the rule classes that regime runs, read from the rules' own declarations."""

    def __missing__(self, regime):
        return supported_rules(regime)


SUPPORTED = _Supported()


def as_update(update) -> UpdateRule:
    """None -> SGD(); a rule object is returned as is; a registered name ("sgd", "svag", ...) gives its default."""
    if update is None:
        return _REGISTRY["sgd"]()
    if isinstance(update, UpdateRule):
        return update
    if isinstance(update, str) and update in _REGISTRY:
        return _REGISTRY[update]()
    raise InputError(f"update must be one of {', '.join(_REGISTRY)} or a rule object "
                     f"(gfsgd.updates.SVAG(l), ...), got update={update!r}")


def check_update(update, regime: str, *, momenta=None, replacement: bool | None = None, N: int | None = None,
                 batch_sizes=None, schedule=None, n_outputs: int = 1) -> UpdateRule:
    """The rule as an object, after checking that `regime` runs it and that its own settings fit the run
    (the rule's `validate`: e.g. the SDE's zero momentum, a penalty's sizes that divide)."""
    rule = as_update(update)
    runs_here = regime in rule.regimes if regime in REGIMES else rule.name == "sgd"
    if not runs_here:
        allowed = supported_rules(regime)
        names = ", ".join(f"{c.__name__} ({c.name})" for c in allowed)
        raise UnsupportedUpdate(f"the {regime} regime cannot run update={rule.name}; it runs: {names}")
    if n_outputs > 1 and not rule.multi_output:
        names = ", ".join(c.name for c in supported_rules(regime) if c.multi_output)
        raise UnsupportedUpdate(f"update={rule.name} runs on one output per example; with C = {n_outputs} outputs "
                                f"the {regime} regime runs: {names}")
    rule.validate(regime, momenta=momenta, replacement=replacement, N=N, batch_sizes=batch_sizes,
                  schedule=schedule)
    return rule


def check_strength(strength, rule: str) -> float:
    """A penalty strength: a finite number >= 0."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) \
            or strength < 0:
        raise InputError(f"{rule}: strength must be a finite number >= 0, got strength={strength!r}")
    return float(strength)


def check_size(value, name: str, rule: str) -> int:
    """A size: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{rule}: {name} must be an integer >= 1, got {name}={value!r}")
    return value
