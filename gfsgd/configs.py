"""Config validation and keys, shared by the regimes' engine and the sweep layer (grid, results).

A config is a triple (lr, momentum, batch_size): lr = alpha in normalised-kernel units (> 0, finite),
momentum = beta in (-1, 1), batch_size = b an integer in [1, N]. `check_configs` turns a list of them (or
anything with a `.configs` list, such as a gfsgd.Grid) into three tensors and names the first bad value;
`config_key` is the hashable identity used to resume sweeps. `check_n_steps`, `check_log_steps` and
`default_log_steps` validate the length of a run and the steps at which its loss is recorded.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch
from .errors import InputError

__all__ = ["check_configs", "config_key", "config_keys", "check_n_steps", "check_log_steps",
           "default_log_steps"]


def check_configs(configs, N: int, *, device=None, dtype=torch.float64):
    """Validate configs and return (lr [G], momentum [G], batch_size [G]) tensors.

    lr > 0 (finite), -1 < momentum < 1, batch_size an integer in [1, N]; anything else is a ValueError that
    names the config, the argument and the value.
    """
    if hasattr(configs, "configs"):
        configs = configs.configs
    configs = list(configs)
    if not configs:
        raise InputError("configs must hold at least one (lr, momentum, batch_size) triple")
    lrs, moms, bs = [], [], []
    for i, cfg in enumerate(configs):
        try:
            lr, mom, b = cfg
        except (TypeError, ValueError):
            raise InputError(f"config {i} must be a triple (lr, momentum, batch_size), got {cfg!r}") from None
        try:
            lr, mom = float(lr), float(mom)
        except (TypeError, ValueError):
            raise InputError(f"config {i}: lr and momentum must be numbers, got {cfg!r}") from None
        if not (math.isfinite(lr) and lr > 0):
            raise InputError(f"lr must be a finite number > 0, got lr={lr} (config {i}: {cfg})")
        if not (math.isfinite(mom) and -1 < mom < 1):
            raise InputError(f"momentum must be in (-1, 1), got momentum={mom} (config {i}: {cfg})")
        if isinstance(b, bool) or not isinstance(b, (int, float, np.integer, np.floating)) \
                or not float(b).is_integer():
            raise InputError(f"batch_size must be an integer, got batch_size={b!r} (config {i}: {cfg})")
        b = int(b)
        if not 1 <= b <= N:
            raise InputError(f"batch_size must be in [1, N={N}], got batch_size={b} (config {i}: {cfg})")
        lrs.append(lr), moms.append(mom), bs.append(b)
    t = lambda xs: torch.tensor(xs, dtype=dtype, device=device)  # noqa: E731
    return t(lrs), t(moms), t(bs)


def config_key(cfg: Sequence) -> tuple:
    """The identity of a config in a run folder: (lr, momentum, batch_size) rounded to 12 digits."""
    lr, mom, b = cfg
    return (round(float(lr), 12), round(float(mom), 12), int(b))


def config_keys(configs: Iterable[Sequence]) -> set:
    return {config_key(c) for c in configs}


def check_n_steps(n_steps) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, float, np.integer, np.floating)) \
            or not float(n_steps).is_integer() or int(n_steps) < 0:
        raise InputError(f"n_steps must be an integer >= 0, got n_steps={n_steps!r}")
    return int(n_steps)


def default_log_steps(n_steps: int, dense_until: int = 10_000, per_decade: int = 100) -> np.ndarray:
    """Every step up to `dense_until`, then `per_decade` log-spaced steps per decade; always 0 and n_steps."""
    n_steps = int(n_steps)
    dense = np.arange(0, min(n_steps, dense_until) + 1)
    if n_steps <= dense_until:
        return dense
    n_pts = int(math.ceil(per_decade * math.log10(n_steps / dense_until)))
    tail = np.unique(np.round(np.logspace(math.log10(dense_until), math.log10(n_steps), n_pts + 1)).astype(int))
    return np.unique(np.concatenate([dense, tail, [n_steps]]))


def check_log_steps(log_steps, n_steps) -> np.ndarray:
    """log_steps (None: default_log_steps) as sorted unique integers in [0, n_steps]."""
    if log_steps is None:
        return default_log_steps(n_steps)
    raw = np.asarray(log_steps).reshape(-1)
    if raw.dtype == bool or not np.issubdtype(raw.dtype, np.number):
        raise InputError(f"log_steps must be integers in [0, n_steps={n_steps}], got {raw[:5].tolist()}")
    if raw.size and not np.all(np.isfinite(raw.astype(float))) or not np.all(np.mod(raw.astype(float), 1) == 0):
        bad = raw[~(np.isfinite(raw.astype(float)) & (np.mod(raw.astype(float), 1) == 0))][:5]
        raise InputError(f"log_steps must be integers in [0, n_steps={n_steps}], got non-integer values "
                         f"{bad.tolist()}")
    steps = np.unique(raw.astype(np.int64))
    if steps.size == 0 or steps[0] < 0 or steps[-1] > n_steps:
        raise InputError(f"log_steps must be integers in [0, n_steps={n_steps}], got range "
                         f"[{steps.min() if steps.size else None}, {steps.max() if steps.size else None}]")
    return steps
