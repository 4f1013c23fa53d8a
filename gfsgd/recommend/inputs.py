"""The budget and batch sizes of recommend and design_schedule, checked with errors that name the argument."""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

__all__ = ["check_budget", "check_batches"]


def check_budget(budget_steps, budget_samples):
    if (budget_steps is None) == (budget_samples is None):
        raise InputError("give exactly one of budget_steps (steps of SGD) and budget_samples (steps x batch size); "
                         f"got budget_steps={budget_steps!r}, budget_samples={budget_samples!r}")
    name, value = ("budget_steps", budget_steps) if budget_steps is not None else ("budget_samples", budget_samples)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or float(value) < 1 or not float(value).is_integer():
        raise InputError(f"{name} must be an integer >= 1, got {name}={value!r}")
    return name, int(value)


def check_batches(batch_sizes, N):
    try:
        bs = [b for b in np.atleast_1d(np.asarray(batch_sizes, dtype=float)).tolist()]
    except (TypeError, ValueError):
        raise InputError(f"batch_sizes must be a list of integers, got {batch_sizes!r}") from None
    if not bs:
        raise InputError("batch_sizes must hold at least one batch size, got an empty list")
    bad = [b for b in bs if not (math.isfinite(b) and b.is_integer() and b >= 1)]
    if bad:
        raise InputError(f"batch_sizes must be integers >= 1, got {bad}")
    keep = sorted({int(b) for b in bs if b <= N})
    skipped = sorted({int(b) for b in bs if b > N})
    if not keep:
        raise InputError(f"every batch size in {sorted({int(b) for b in bs})} exceeds N={N}")
    return keep, skipped
