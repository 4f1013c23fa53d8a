"""Time-dependent hyperparameters.

A *schedule function* maps (step t, base value) to the value at step t; `base` is the tensor of the
configs' base values [G], so one schedule serves a whole grid:

    f(t: int, base: Tensor[G]) -> Tensor[G]

The step index t starts at 0 (the update that produces d_1 from d_0 uses t = 0).

`Schedule(lr=..., momentum=..., batch_size=...)` bundles one function per hyperparameter (None keeps the
config's constant value). Every regime applies it in the v-form of docs/theory.md#update:

    g_t = (N/b_t) K[:, B_t] d_t[B_t];   v_{t+1} = -alpha_t g_t + beta_t v_t;   d_{t+1} = d_t + v_{t+1}.

Batch sizes returned by a schedule are rounded and clipped to [1, N].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from .errors import InputError

__all__ = ["Schedule", "constant", "step_decay", "linear_warmup", "cosine", "cyclic", "jacobi_lr",
           "jacobi_momentum", "jacobi", "from_name", "SCHEDULE_NAMES"]

ScheduleFn = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass
class Schedule:
    """One schedule function per hyperparameter; None means constant (the config's value)."""
    lr: Optional[ScheduleFn] = None
    momentum: Optional[ScheduleFn] = None
    batch_size: Optional[ScheduleFn] = None
    name: str = "custom"

    @property
    def is_constant(self) -> bool:
        return self.lr is None and self.momentum is None and self.batch_size is None

    def __call__(self, t: int, lr: torch.Tensor, momentum: torch.Tensor, batch_size: torch.Tensor, N: int):
        """Values at step t for G configs: (lr_t [G], momentum_t [G], batch_size_t [G] integer-valued)."""
        a, m = self.lr_momentum(t, lr, momentum)
        return a, m, self.batch_sizes(t, batch_size, N)

    def lr_momentum(self, t: int, lr: torch.Tensor, momentum: torch.Tensor):
        """(lr_t [G], momentum_t [G]) on the device of the base values."""
        a = lr if self.lr is None else torch.as_tensor(self.lr(t, lr), dtype=lr.dtype, device=lr.device)
        m = momentum if self.momentum is None else torch.as_tensor(self.momentum(t, momentum),
                                                                   dtype=momentum.dtype, device=momentum.device)
        return a.expand_as(lr), m.expand_as(momentum)

    def batch_sizes(self, t: int, batch_size: torch.Tensor, N: int) -> torch.Tensor:
        """batch_size_t [G], rounded and clipped to [1, N] (the regimes evaluate it on the host: its maximum
        sets the shapes of the step)."""
        if self.batch_size is None:
            return batch_size
        b = torch.as_tensor(self.batch_size(t, batch_size), dtype=batch_size.dtype, device=batch_size.device)
        return torch.clamp(torch.round(b), 1, N).expand_as(batch_size)


def _check_pos(name, value, allow_zero=False):
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {name}={value}")


def constant() -> ScheduleFn:
    """f(t, base) = base."""
    return lambda t, base: base


def step_decay(step_size: int, factor: float = 0.1) -> ScheduleFn:
    """f(t, base) = base * factor^(t // step_size)."""
    _check_pos("step_size", step_size)
    _check_pos("factor", factor)
    return lambda t, base: base * factor ** (t // int(step_size))


def linear_warmup(warmup_steps: int, start_factor: float = 0.0) -> ScheduleFn:
    """Linear ramp from start_factor * base at t = 0 to base at t = warmup_steps, constant after."""
    _check_pos("warmup_steps", warmup_steps)
    if not 0 <= start_factor <= 1:
        raise InputError(f"start_factor must be in [0, 1], got start_factor={start_factor}")

    def f(t, base):
        frac = min(t / warmup_steps, 1.0)
        return base * (start_factor + (1.0 - start_factor) * frac)
    return f


def cosine(total_steps: int, final_factor: float = 0.0, warmup_steps: int = 0) -> ScheduleFn:
    """Optional linear warm-up, then cosine decay from base to final_factor * base at total_steps."""
    _check_pos("total_steps", total_steps)
    _check_pos("final_factor", final_factor, allow_zero=True)
    if not 0 <= warmup_steps < total_steps:
        raise InputError(f"warmup_steps must be in [0, total_steps), got {warmup_steps}")

    def f(t, base):
        if t < warmup_steps:
            return base * (t + 1) / warmup_steps
        frac = min((t - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return base * (final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * frac)))
    return f


def cyclic(period: int, low_factor: float = 0.1) -> ScheduleFn:
    """Triangular cyclic schedule: low_factor*base -> base -> low_factor*base every `period` steps."""
    _check_pos("period", period)
    _check_pos("low_factor", low_factor, allow_zero=True)

    def f(t, base):
        phase = (t % period) / period
        tri = 1 - abs(2 * phase - 1)  # 0 -> 1 -> 0
        return base * (low_factor + (1 - low_factor) * tri)
    return f


def _check_jacobi(a, b):
    if not (a > -1 and b > -1):
        raise InputError(f"Jacobi parameters must satisfy a > -1 and b > -1, got a={a}, b={b}")


def jacobi_lr(a: float, b: float) -> ScheduleFn:
    """alpha_t = base * (2t+a+b+1)(2t+a+b+2) / (2 (t+a+1)(t+a+b+1)), t = 0, 1, ... (docs/theory.md#jacobi)."""
    _check_jacobi(a, b)

    def f(t, base):
        return base * (2 * t + a + b + 1) * (2 * t + a + b + 2) / (2 * (t + a + 1) * (t + a + b + 1))
    return f


def jacobi_momentum(a: float, b: float) -> ScheduleFn:
    """beta_t = t (t+b)(2t+a+b+2) / ((t+a+1)(t+a+b+1)(2t+a+b)), t = 0, 1, ...; replaces the base momentum."""
    _check_jacobi(a, b)

    def f(t, base):
        if t == 0:
            return torch.zeros_like(base)
        val = t * (t + b) * (2 * t + a + b + 2) / ((t + a + 1) * (t + a + b + 1) * (2 * t + a + b))
        return torch.full_like(base, val)
    return f


def jacobi(a: float, b: float) -> Schedule:
    """The Jacobi heavy-ball pair: in the noiseless case the residual polynomial after n steps is
    P_n^(a,b)(1 - lr*lambda) / P_n^(a,b)(1)."""
    return Schedule(lr=jacobi_lr(a, b), momentum=jacobi_momentum(a, b), name=f"jacobi(a={a}, b={b})")


SCHEDULE_NAMES = ("constant", "step", "warmup", "cosine", "cyclic", "jacobi")


def from_name(name: str, n_steps: int, *, step_size=None, factor=0.1, warmup_steps=None,
              final_factor=0.0, period=None, low_factor=0.1, jacobi_a=0.0, jacobi_b=0.0) -> Schedule:
    """Build a learning-rate schedule (or the Jacobi pair) from its name, as the scripts' --sched does."""
    if name == "constant":
        return Schedule(name="constant")
    if name == "step":
        return Schedule(lr=step_decay(max(n_steps // 3, 1) if step_size is None else step_size, factor), name="step")
    if name == "warmup":
        return Schedule(lr=linear_warmup(warmup_steps or max(n_steps // 10, 1)), name="warmup")
    if name == "cosine":
        return Schedule(lr=cosine(n_steps, final_factor, warmup_steps or 0), name="cosine")
    if name == "cyclic":
        return Schedule(lr=cyclic(max(n_steps // 5, 2) if period is None else period, low_factor), name="cyclic")
    if name == "jacobi":
        return jacobi(jacobi_a, jacobi_b)
    raise InputError(f"sched must be one of {', '.join(SCHEDULE_NAMES)}; got {name!r}")
