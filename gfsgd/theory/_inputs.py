"""The inputs of the theory module: a spectrum (eigvals, w, N) and the checks on every argument.

`Spectrum` is what every theory function reads from a Problem or from plain arrays:

    eigvals  lambda_k >= 0, descending                         # [N_modes]
    w        initial loss per mode, w_k = c_k / (2N) (or None)  # [N_modes]
    N        number of training points (sets gamma; defaults to the number of modes)

All computations are float64 numpy. Errors are ValueErrors naming the argument, the value and what is
allowed (docs/theory.md#update for the conventions: gamma = (N - b) / ((N - 1) b) without replacement).
"""
from __future__ import annotations

import math

import numpy as np
from ..errors import InputError
from ..spectrum.modes import Spectrum, as_spectrum, check_finite, format_bad  # noqa: F401 (re-exported)

__all__ = ["Spectrum", "as_spectrum", "noise_gamma"]


def noise_gamma(batch_size, N: int, replacement: bool = False) -> np.ndarray:
    """gamma = (N - b) / ((N - 1) b) without replacement (0 at b = N, 1 at b = 1); 1 / b with replacement."""
    b = np.asarray(batch_size, dtype=np.float64)
    if replacement:
        return 1.0 / b
    if N == 1:
        return np.zeros_like(b)
    return (N - b) / ((N - 1) * b)


# ---------------------------------------------------------------------------------------------- checks
def check_lr(lr, name="lr") -> np.ndarray:
    """alpha > 0 (finite)."""
    arr = check_finite(lr, name)
    bad = ~(arr > 0)
    if bad.any():
        raise InputError(f"{name} (alpha) must be > 0, got {name}={format_bad(arr, bad)}")
    return arr


def check_momentum(momentum, name="momentum") -> np.ndarray:
    """-1 < beta < 1."""
    arr = check_finite(momentum, name)
    bad = ~((arr > -1) & (arr < 1))
    if bad.any():
        raise InputError(f"{name} (beta) must be in (-1, 1), got {name}={format_bad(arr, bad)}")
    return arr


def check_batch_size(batch_size, N, name="batch_size") -> np.ndarray:
    """1 <= b <= N."""
    arr = check_finite(batch_size, name)
    bad = ~((arr >= 1) & (arr <= N))
    if bad.any():
        raise InputError(f"{name} (b) must be in [1, N={N}], got {name}={format_bad(arr, bad)}")
    return arr


def check_z(z, name="z") -> np.ndarray:
    """0 <= z <= 1."""
    arr = check_finite(z, name)
    bad = ~((arr >= 0) & (arr <= 1))
    if bad.any():
        raise InputError(f"{name} must be in [0, 1], got {name}={format_bad(arr, bad)}")
    return arr


def check_tau(tau) -> float:
    tau = float(tau)
    if not math.isfinite(tau):
        raise InputError(f"tau must be a finite number (1 = mean field, -1 = Gaussian features), got tau={tau}")
    return tau


def check_eigvals(lam, name="lam") -> np.ndarray:
    arr = check_finite(lam, name)
    bad = arr < 0
    if bad.any():
        raise InputError(f"{name} (eigenvalue) must be >= 0, got {name}={format_bad(arr, bad)}")
    return arr


def check_positive_int(n, name, low=0) -> int:
    if isinstance(n, bool) or not float(n).is_integer() or int(n) < low:
        raise InputError(f"{name} must be an integer >= {low}, got {name}={n!r}")
    return int(n)


def broadcast_configs(spec: Spectrum, lr, momentum, batch_size, tau, replacement, extra=None, noise_scale=1.0):
    """Validate and broadcast (extra, lr, momentum, batch_size); returns shape and flat arrays + gamma
    (multiplied by noise_scale: SVAG(l) has noise level l * gamma, docs/theory.md#updates)."""
    tau = check_tau(tau)
    arrays = [check_lr(lr), check_momentum(momentum), check_batch_size(batch_size, spec.N)]
    if extra is not None:
        arrays.append(extra)
    arrays = np.broadcast_arrays(*arrays)
    shape = arrays[0].shape
    flat = [np.ascontiguousarray(x).reshape(-1) for x in arrays]
    gamma = noise_gamma(flat[2], spec.N, replacement) * float(noise_scale)
    return shape, flat, gamma, tau
