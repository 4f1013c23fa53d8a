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

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from .errors import InputError

__all__ = ["Schedule", "constant", "step_decay", "linear_warmup", "cosine", "cyclic", "wsd", "linear_decay",
           "geometric", "piecewise", "jacobi_lr", "jacobi_momentum", "jacobi", "from_name", "SCHEDULE_NAMES", "KINDS",
           "component_from_spec", "schedule_to_dict", "schedule_from_dict", "save", "load"]

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

    def to_dict(self) -> dict:
        """The JSON data form (schedules built from this module's shapes; see schedule_to_dict)."""
        return schedule_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Schedule":
        return schedule_from_dict(data)

    def save(self, path) -> Path:
        """Write as JSON; Schedule.load or --sched_file reads it back."""
        return save(self, path)

    @classmethod
    def load(cls, path) -> "Schedule":
        return load(path)

    def values(self, n_steps: int, lr: float, momentum: float, batch_size: int, N: int):
        """(lr_t, momentum_t, batch_size_t) for t = 0 .. n_steps - 1 as numpy arrays, for one config."""
        t = np.arange(int(n_steps))
        out = []
        for fn, base in ((self.lr, lr), (self.momentum, momentum), (self.batch_size, batch_size)):
            if fn is None:
                out.append(np.full(t.size, float(base)))
            elif hasattr(fn, "values"):
                v = fn.values(t)
                out.append(v * float(base) if fn.spec["scale"] == "factor" else np.broadcast_to(v, t.shape) + 0.0)
            else:
                b = torch.tensor([float(base)], dtype=torch.float64)
                out.append(np.array([float(fn(int(k), b)[0]) for k in t]))
        out[2] = np.clip(np.round(out[2]), 1, N)
        return tuple(out)

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
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {name}={value!r}")


def _check_steps(name, value, low=1):
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < low:
        raise InputError(f"{name} must be an integer >= {low}, got {name}={value!r}")
    return int(value)


# ---------------------------------------------------------------- shapes (numpy, vectorised over steps)
# Each shape maps steps t (an int array, any shape) to values; `scale` says what a value is: "factor" (times
# the config's base value) or "value" (the hyperparameter itself, the base is ignored).

def _shape_constant(t):
    return np.ones_like(t, dtype=float)


def _shape_step(t, step_size, factor):
    return factor ** (t // step_size)


def _shape_warmup(t, warmup_steps, start_factor):
    return start_factor + (1.0 - start_factor) * np.minimum(t / warmup_steps, 1.0)


def _shape_cosine(t, total_steps, final_factor, warmup_steps):
    frac = np.clip((t - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
    dec = final_factor + (1 - final_factor) * 0.5 * (1 + np.cos(np.pi * frac))
    return np.where(t < warmup_steps, (t + 1) / max(warmup_steps, 1), dec)


def _shape_cyclic(t, period, low_factor):
    phase = (t % period) / period
    return low_factor + (1 - low_factor) * (1 - np.abs(2 * phase - 1))


def _shape_wsd(t, total_steps, warmup_steps, decay_steps, final_factor):
    start = total_steps - decay_steps
    dec = 1.0 - (1.0 - final_factor) * np.clip((t - start) / decay_steps, 0.0, 1.0)
    return np.where(t < warmup_steps, (t + 1) / max(warmup_steps, 1), dec)


def _shape_linear(t, total_steps, warmup_steps, final_factor):
    frac = np.clip((t - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
    return np.where(t < warmup_steps, (t + 1) / max(warmup_steps, 1), 1.0 - (1.0 - final_factor) * frac)


def _shape_geometric(t, ramp_steps, final_factor):
    return final_factor ** np.minimum(t / ramp_steps, 1.0)


def _shape_piecewise(t, boundaries, values):
    idx = np.searchsorted(np.asarray(boundaries), t, side="right") - 1
    return np.asarray(values, dtype=float)[idx]


def _shape_jacobi_lr(t, a, b):
    return (2 * t + a + b + 1) * (2 * t + a + b + 2) / (2 * (t + a + 1) * (t + a + b + 1))


def _shape_jacobi_momentum(t, a, b):
    t = np.asarray(t, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = t * (t + b) * (2 * t + a + b + 2) / ((t + a + 1) * (t + a + b + 1) * (2 * t + a + b))
    return np.where(t == 0, 0.0, val)


_SHAPES = dict(constant=_shape_constant, step=_shape_step, warmup=_shape_warmup, cosine=_shape_cosine,
               cyclic=_shape_cyclic, wsd=_shape_wsd, linear=_shape_linear, geometric=_shape_geometric,
               piecewise=_shape_piecewise, jacobi_lr=_shape_jacobi_lr, jacobi_momentum=_shape_jacobi_momentum)
KINDS = tuple(_SHAPES)


def _component(kind: str, scale: str = "factor", **params) -> ScheduleFn:
    """A schedule function f(t, base) of a named shape that knows its own data form (f.spec) and its values over
    many steps at once (f.values(t), numpy)."""
    shape = _SHAPES[kind]
    spec = dict(kind=kind, scale=scale, **params)

    def values(t):
        return shape(np.asarray(t), **params)

    if scale == "factor":
        def f(t, base):
            return base * float(values(t))
    else:
        def f(t, base):
            return torch.full_like(base, float(values(t)))
    f.spec, f.values = spec, values
    return f


def constant() -> ScheduleFn:
    """f(t, base) = base."""
    return _component("constant")


def step_decay(step_size: int, factor: float = 0.1) -> ScheduleFn:
    """f(t, base) = base * factor^(t // step_size)."""
    _check_pos("step_size", step_size)
    _check_pos("factor", factor)
    return _component("step", step_size=int(step_size), factor=float(factor))


def linear_warmup(warmup_steps: int, start_factor: float = 0.0) -> ScheduleFn:
    """Linear ramp from start_factor * base at t = 0 to base at t = warmup_steps, constant after."""
    _check_pos("warmup_steps", warmup_steps)
    if not 0 <= start_factor <= 1:
        raise InputError(f"start_factor must be in [0, 1], got start_factor={start_factor}")
    return _component("warmup", warmup_steps=int(warmup_steps), start_factor=float(start_factor))


def _check_warmup(warmup_steps, total_steps):
    if isinstance(warmup_steps, bool) or not float(warmup_steps).is_integer() or not 0 <= warmup_steps < total_steps:
        raise InputError(f"warmup_steps must be an integer in [0, total_steps={total_steps}), got "
                         f"warmup_steps={warmup_steps!r}")
    return int(warmup_steps)


def cosine(total_steps: int, final_factor: float = 0.0, warmup_steps: int = 0) -> ScheduleFn:
    """Optional linear warm-up ((t + 1) / warmup_steps), then cosine decay from base to final_factor * base at
    total_steps."""
    total = _check_steps("total_steps", total_steps)
    _check_pos("final_factor", final_factor, allow_zero=True)
    return _component("cosine", total_steps=total, final_factor=float(final_factor),
                      warmup_steps=_check_warmup(warmup_steps, total))


def cyclic(period: int, low_factor: float = 0.1) -> ScheduleFn:
    """Triangular cyclic schedule: low_factor*base -> base -> low_factor*base every `period` steps."""
    _check_pos("period", period)
    _check_pos("low_factor", low_factor, allow_zero=True)
    return _component("cyclic", period=int(period), low_factor=float(low_factor))


def wsd(total_steps: int, decay_steps: int, warmup_steps: int = 0, final_factor: float = 0.0) -> ScheduleFn:
    """Warmup-stable-decay: linear warm-up ((t + 1) / warmup_steps), base until total_steps - decay_steps, then a
    linear decay to final_factor * base at total_steps."""
    total = _check_steps("total_steps", total_steps)
    warm = _check_warmup(warmup_steps, total)
    decay = _check_steps("decay_steps", decay_steps)
    if decay > total - warm:
        raise InputError(f"decay_steps must be at most total_steps - warmup_steps = {total - warm}, got "
                         f"decay_steps={decay_steps}")
    _check_pos("final_factor", final_factor, allow_zero=True)
    return _component("wsd", total_steps=total, warmup_steps=warm, decay_steps=decay, final_factor=float(final_factor))


def linear_decay(total_steps: int, warmup_steps: int = 0, final_factor: float = 0.0) -> ScheduleFn:
    """Linear warm-up ((t + 1) / warmup_steps), then a linear decay from base to final_factor * base at total_steps
    (linear-to-zero with final_factor = 0)."""
    total = _check_steps("total_steps", total_steps)
    _check_pos("final_factor", final_factor, allow_zero=True)
    return _component("linear", total_steps=total, warmup_steps=_check_warmup(warmup_steps, total),
                      final_factor=float(final_factor))


def geometric(ramp_steps: int, final_factor: float) -> ScheduleFn:
    """base * final_factor^(min(t / ramp_steps, 1)): a geometric ramp (e.g. a batch size that grows by final_factor
    over ramp_steps steps), constant after."""
    _check_pos("ramp_steps", ramp_steps)
    _check_pos("final_factor", final_factor)
    return _component("geometric", ramp_steps=int(ramp_steps), final_factor=float(final_factor))


def piecewise(boundaries, values, scale: str = "factor") -> ScheduleFn:
    """Piecewise constant: values[i] on steps [boundaries[i], boundaries[i+1]) (the last one from boundaries[-1]
    on). boundaries: increasing integers starting at 0. scale "factor": value * base; "value": the value itself
    (e.g. a momentum per segment, or a batch size)."""
    if scale not in ("factor", "value"):
        raise InputError(f"scale must be 'factor' or 'value', got scale={scale!r}")
    try:
        bd = [float(x) for x in boundaries]
        vs = [float(x) for x in values]
    except (TypeError, ValueError):
        raise InputError(f"boundaries and values must be lists of numbers, got {boundaries!r}, {values!r}") from None
    if not bd or len(bd) != len(vs):
        raise InputError(f"boundaries and values must be non-empty and of equal length, got {len(bd)} boundaries and "
                         f"{len(vs)} values")
    if bd[0] != 0 or any(not x.is_integer() for x in bd) or any(b <= a for a, b in zip(bd, bd[1:])):
        raise InputError(f"boundaries must be strictly increasing integers starting at 0, got {boundaries!r}")
    if not all(math.isfinite(v) for v in vs):
        raise InputError(f"values must be finite, got {values!r}")
    return _component("piecewise", scale=scale, boundaries=[int(x) for x in bd], values=vs)


# ---------------------------------------------------------------- data form (JSON)
FORMAT = "gfsgd.schedule"
_BUILDERS = dict(constant=lambda: constant(), step=step_decay, warmup=linear_warmup, cosine=cosine, cyclic=cyclic,
                 wsd=wsd, linear=linear_decay, geometric=geometric, piecewise=piecewise,
                 jacobi_lr=lambda a, b: jacobi_lr(a, b), jacobi_momentum=lambda a, b: jacobi_momentum(a, b))


def component_from_spec(spec: dict, what: str = "schedule") -> ScheduleFn:
    """Rebuild a schedule function from its data form {kind, scale, params...} (every value checked)."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise InputError(f"{what} must be an object with a 'kind' (one of {', '.join(KINDS)}), got {spec!r}")
    spec = dict(spec)
    kind, scale = spec.pop("kind"), spec.pop("scale", None)
    if kind not in _BUILDERS:
        raise InputError(f"{what}: kind must be one of {', '.join(KINDS)}, got kind={kind!r}")
    if kind == "piecewise":
        spec["scale"] = scale or "factor"
    try:
        f = _BUILDERS[kind](**spec)
    except TypeError as e:
        raise InputError(f"{what}: wrong parameters for kind {kind!r}: {e}") from None
    if scale is not None and scale != f.spec["scale"]:
        raise InputError(f"{what}: kind {kind!r} has scale {f.spec['scale']!r}, got scale={scale!r}")
    return f


def schedule_to_dict(schedule: "Schedule") -> dict:
    """The data form of a schedule built from this module's shapes (a Python function of your own has none)."""
    out = dict(format=FORMAT, version=1, name=schedule.name)
    for key in ("lr", "momentum", "batch_size"):
        fn = getattr(schedule, key)
        if fn is not None and not hasattr(fn, "spec"):
            raise InputError(f"the {key} schedule of {schedule.name!r} is a Python function without a data form; only "
                             f"schedules built from gfsgd.schedules ({', '.join(KINDS)}) can be saved")
        out[key] = None if fn is None else dict(fn.spec)
    return out


def schedule_from_dict(data: dict) -> "Schedule":
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a saved gfsgd schedule (expected an object with format={FORMAT!r})")
    if data.get("version") != 1:
        raise InputError(f"unsupported schedule version {data.get('version')!r} (this gfsgd reads version 1)")
    extra = set(data) - {"format", "version", "name", "lr", "momentum", "batch_size"}
    if extra:
        raise InputError(f"unknown keys in the schedule: {sorted(extra)}")
    parts = {k: None if data.get(k) is None else component_from_spec(data[k], k)
             for k in ("lr", "momentum", "batch_size")}
    return Schedule(name=str(data.get("name", "custom")), **parts)


def save(schedule: "Schedule", path) -> Path:
    """Write the schedule as JSON (gfsgd.schedules.load reads it; the scripts take it with --sched_file)."""
    path = Path(path)
    path.write_text(json.dumps(schedule_to_dict(schedule), indent=1) + "\n")
    return path


def load(path) -> "Schedule":
    """Read a schedule saved by gfsgd.schedules.save (plain JSON; every value checked)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"sched_file: no such file: {str(path)!r}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"sched_file {str(path)!r} is not JSON: {e}") from None
    return schedule_from_dict(data)


def _check_jacobi(a, b):
    if not (a > -1 and b > -1):
        raise InputError(f"Jacobi parameters must satisfy a > -1 and b > -1, got a={a}, b={b}")


def jacobi_lr(a: float, b: float) -> ScheduleFn:
    """alpha_t = base * (2t+a+b+1)(2t+a+b+2) / (2 (t+a+1)(t+a+b+1)), t = 0, 1, ... (docs/theory.md#jacobi)."""
    _check_jacobi(a, b)
    return _component("jacobi_lr", a=float(a), b=float(b))


def jacobi_momentum(a: float, b: float) -> ScheduleFn:
    """beta_t = t (t+b)(2t+a+b+2) / ((t+a+1)(t+a+b+1)(2t+a+b)), t = 0, 1, ...; replaces the base momentum."""
    _check_jacobi(a, b)
    return _component("jacobi_momentum", scale="value", a=float(a), b=float(b))


def jacobi(a: float, b: float) -> Schedule:
    """The Jacobi heavy-ball pair: in the noiseless case the residual polynomial after n steps is
    P_n^(a,b)(1 - lr*lambda) / P_n^(a,b)(1)."""
    return Schedule(lr=jacobi_lr(a, b), momentum=jacobi_momentum(a, b), name=f"jacobi(a={a}, b={b})")


SCHEDULE_NAMES = ("constant", "step", "warmup", "cosine", "cyclic", "wsd", "linear", "jacobi")


def from_name(name: str, n_steps: int, *, step_size=None, factor=0.1, warmup_steps=None,
              final_factor=0.0, period=None, low_factor=0.1, jacobi_a=0.0, jacobi_b=0.0) -> Schedule:
    """Build a learning-rate schedule (or the Jacobi pair) from its name, as the scripts' --sched does (wsd decays
    over the last fifth, linear decays to final_factor * base at n_steps)."""
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
    if name == "wsd":
        return Schedule(lr=wsd(n_steps, max(n_steps // 5, 1), warmup_steps or 0, final_factor), name="wsd")
    if name == "linear":
        return Schedule(lr=linear_decay(n_steps, warmup_steps or 0, final_factor), name="linear")
    if name == "jacobi":
        return jacobi(jacobi_a, jacobi_b)
    raise InputError(f"sched must be one of {', '.join(SCHEDULE_NAMES)}; got {name!r}")
