"""Losses, as pieces the regimes ask for instead of branching on a name (docs/design.md#losses).

A loss is a small frozen object:

    value(out, y)        the per-example loss [..., n] of outputs `out` against targets `y` (summed over outputs)
    gradient(out, y)     its gradient in function space, dL/df, the "residual" that drives the update
    curvature(out)       its Hessian in function space (the Gauss-Newton weight of the kernel)
    regimes              where it runs

    mse            0.5 (f - y)^2: exact in every regime (the kernel regimes and the theory are built on it; the
                   gradient is the residual d = f - y and the curvature is 1)
    cross_entropy  softmax cross-entropy over the C >= 2 outputs of an example, -sum_a p_a log softmax(f)_a with
                   target probabilities p (one-hot labels, centred or not: p = y + (1 - sum_a y_a) / C); runs in
                   the nn and linearized regimes; its curvature diag(s) - s s^T (s = softmax(f)) weights the
                   kernel for the Gauss-Newton edge

A regime takes `loss=` (a name or a Loss) and checks it with `check_loss(loss, regime)`: a loss a regime cannot run
raises `UnsupportedLoss` naming the losses it runs. A new loss is one class here (or in a module of its own,
registered with `register_loss`) and its tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InputError

__all__ = ["Loss", "MSE", "mse", "CrossEntropy", "cross_entropy", "LOSSES", "UnsupportedLoss", "as_loss",
           "check_loss", "register_loss", "correct", "is_classification"]


class UnsupportedLoss(InputError):
    """A loss that the chosen regime cannot run."""


@dataclass(frozen=True)
class Loss:
    """Base class: a per-example loss with its function-space gradient and curvature."""
    name = "loss"
    regimes = frozenset()
    problem_loss = False  # True: a Problem's loss0 (|d0|^2 / 2N) is this loss at initialisation

    def value(self, out, y):
        raise NotImplementedError

    def gradient(self, out, y):
        raise NotImplementedError

    def curvature(self, out):
        raise NotImplementedError


@dataclass(frozen=True)
class MSE(Loss):
    """Squared loss 0.5 (f - y)^2 per output; the mean over the N examples is the reported L_t."""
    name = "mse"
    regimes = frozenset({"full", "sd", "linearized", "nn", "theory"})
    problem_loss = True

    def value(self, out, y):
        r = out - y
        return 0.5 * r * r

    def gradient(self, out, y):
        return out - y

    def curvature(self, out):
        return 1.0


@dataclass(frozen=True)
class CrossEntropy(Loss):
    """Softmax cross-entropy over the last axis (the C >= 2 outputs of an example); value(out, y) returns the
    per-output terms -p_a log softmax(out)_a, whose sum over the C outputs is the example's loss."""
    name = "cross_entropy"
    regimes = frozenset({"nn", "linearized"})
    min_outputs = 2

    @staticmethod
    def target_probs(y):
        """Target probabilities from one-hot rows, centred (e - 1/C, summing to 0) or not (summing to 1)."""
        return y + (1.0 - y.sum(-1, keepdim=True)) / y.shape[-1]

    def value(self, out, y):
        return -self.target_probs(y) * torch.log_softmax(out, -1)

    def gradient(self, out, y):
        return torch.softmax(out, -1) - self.target_probs(y)

    def curvature(self, out):
        s = torch.softmax(out, -1)
        return torch.diag_embed(s) - s[..., :, None] * s[..., None, :]


mse = MSE()
cross_entropy = CrossEntropy()
LOSSES = {"mse": mse, "cross_entropy": cross_entropy}


def register_loss(loss: Loss) -> Loss:
    """Add a loss object to LOSSES under its name."""
    if not isinstance(loss, Loss):
        raise TypeError(f"register_loss expects a Loss object, got {loss!r}")
    LOSSES[loss.name] = loss
    return loss


def as_loss(loss) -> Loss:
    """None -> mse; a Loss is returned as is; a registered name gives its loss."""
    if loss is None:
        return mse
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]
    raise InputError(f"loss must be one of {', '.join(LOSSES)} or a gfsgd.losses.Loss, got loss={loss!r}")


def check_loss(loss, regime: str, n_outputs: int = 1) -> Loss:
    """The loss as an object, after checking that `regime` runs it (and that the problem has enough outputs)."""
    obj = as_loss(loss)
    if regime not in obj.regimes:
        runs = ", ".join(name for name, l in LOSSES.items() if regime in l.regimes)
        raise UnsupportedLoss(f"the {regime} regime cannot run loss={obj.name}; it runs: {runs}")
    need = getattr(obj, "min_outputs", 1)
    if n_outputs < need:
        raise UnsupportedLoss(f"loss={obj.name} needs C >= {need} outputs per example (a softmax over them), got "
                              f"C = {n_outputs}: give the model C outputs and targets y [N, C] (e.g. one-hot labels)")
    return obj


def is_classification(y: torch.Tensor) -> bool:
    """Whether targets y [M] or [M, C] are class labels, so that an accuracy means something: C >= 2 outputs whose
    rows each have one largest entry (one-hot, centred or not), or one output with targets +-c (c > 0)."""
    y = torch.as_tensor(y)
    if y.numel() == 0:
        return False
    if y.ndim == 2 and y.shape[1] >= 2:
        top = y.max(1).values
        return bool(((y == top[:, None]).sum(1) == 1).all())
    v = y.reshape(-1).abs()
    return bool((v > 0).all() and (v == v[0]).all())


def correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1.0 where the outputs classify an example as its target does, else 0.0: [..., M] for out [..., M, C] and
    y [M, C] (argmax of the outputs against the target's), or out [..., M] and y [M] (the sign, targets +-c)."""
    if y.ndim == 2 and y.shape[1] >= 2:
        return (out.argmax(-1) == y.argmax(-1)).to(out.dtype)
    return (out * y > 0).to(out.dtype)
