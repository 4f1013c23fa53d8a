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
from dataclasses import dataclass

import numpy as np

__all__ = ["Spectrum", "as_spectrum", "noise_gamma"]


@dataclass(frozen=True)
class Spectrum:
    """A normalised kernel spectrum with (optionally) the initial loss per mode.

    eigvals: lambda_k, descending, >= 0.      # [M]
    w: w_k = c_k / (2N), the initial loss in mode k (L_0 = sum_k w_k), or None when only the noise side
       (U, stability) is needed.               # [M]
    N: the number of training points (M modes are usually N; a truncated spectrum may have M < N).
    """
    eigvals: np.ndarray
    w: np.ndarray | None
    N: int

    @property
    def lambda_max(self) -> float:
        return float(self.eigvals[0])

    @property
    def loss0(self) -> float:
        return float(self.need_w().sum())

    def need_w(self) -> np.ndarray:
        if self.w is None:
            raise ValueError("this quantity needs the signal side of the problem: pass a Problem, or w= "
                             "(initial loss per mode, c_k / (2N)) or c= (squared eigen-coefficients of d0)")
        return self.w


def _to_numpy(x, name) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    return arr


def as_spectrum(spectrum, w=None, c=None, N=None, *, need_w: bool = False) -> Spectrum:
    """Build a Spectrum from a Problem, a Spectrum, or an array of eigenvalues (+ w or c, N).

    spectrum: a gfsgd Problem (eigvals, w and N are read from it), a Spectrum, or eigvals [M] (any order;
        sorted descending here; they should be normalised so that the top one is 1, as in a Problem).
    w: initial loss per mode w_k = c_k / (2N), in the order of `spectrum` [M]; or
    c: squared eigen-coefficients of d0 [M] (then w = c / (2N)).
    N: number of training points (default: from the Problem, else the number of eigenvalues).
    """
    if w is not None and c is not None:
        raise ValueError("give either w= (initial loss per mode) or c= (squared coefficients), not both")
    if isinstance(spectrum, Spectrum):
        lam, w0, N0 = spectrum.eigvals, spectrum.w, spectrum.N
        order = None
    elif hasattr(spectrum, "eigvals") and hasattr(spectrum, "coef"):  # a Problem
        lam = _to_numpy(spectrum.eigvals, "problem.eigvals")
        w0 = _to_numpy(spectrum.w, "problem.w")
        N0 = int(spectrum.N)
        order = None
    else:
        lam = _to_numpy(spectrum, "spectrum (eigenvalues)")
        w0, N0 = None, None
        order = "sort"
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"spectrum (eigenvalues) must be a non-empty 1-d array, got shape {lam.shape}")
    if not np.isfinite(lam).all():
        raise ValueError("spectrum (eigenvalues) must be finite, got non-finite entries")
    if (lam < 0).any():
        raise ValueError(f"spectrum (eigenvalues) must be >= 0 (a PSD kernel), got min {lam.min():.4g}")
    if lam.max() <= 0:
        raise ValueError("spectrum (eigenvalues) must have a positive eigenvalue, got all zeros")
    if N is None:
        N = N0 if N0 is not None else lam.size
    if isinstance(N, bool) or not float(N).is_integer() or int(N) < 1:
        raise ValueError(f"N (number of training points) must be an integer >= 1, got N={N!r}")
    N = int(N)
    if w is not None or c is not None:
        name = "w" if w is not None else "c"
        arr = _to_numpy(w if w is not None else c, name)
        if arr.shape != lam.shape:
            raise ValueError(f"{name} must have one entry per eigenvalue ({lam.size}), got shape {arr.shape}")
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise ValueError(f"{name} must be finite and >= 0, got min {np.nanmin(arr):.4g}")
        w0 = arr if w is not None else arr / (2 * N)
    if order == "sort":
        idx = np.argsort(-lam, kind="stable")
        lam = lam[idx]
        w0 = None if w0 is None else w0[idx]
    if need_w and w0 is None:
        raise ValueError("this function needs the signal side: pass a Problem, or w= (initial loss per mode, "
                         "c_k / (2N)) or c= (squared eigen-coefficients of d0) with the eigenvalues")
    return Spectrum(np.ascontiguousarray(lam), None if w0 is None else np.ascontiguousarray(w0), N)


def noise_gamma(batch_size, N: int, replacement: bool = False) -> np.ndarray:
    """gamma = (N - b) / ((N - 1) b) without replacement (0 at b = N, 1 at b = 1); 1 / b with replacement."""
    b = np.asarray(batch_size, dtype=np.float64)
    if replacement:
        return 1.0 / b
    if N == 1:
        return np.zeros_like(b)
    return (N - b) / ((N - 1) * b)


# ---------------------------------------------------------------------------------------------- checks
def _fmt(arr, bad):
    vals = np.asarray(arr)[bad]
    v = vals.reshape(-1)[0].item()
    more = f" (and {vals.size - 1} more)" if vals.size > 1 else ""
    return f"{v!r}{more}"


def check_finite(x, name) -> np.ndarray:
    arr = _to_numpy(x, name)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} must be finite, got {name}={_fmt(arr, bad)}")
    return arr


def check_lr(lr, name="lr") -> np.ndarray:
    """alpha > 0 (finite)."""
    arr = check_finite(lr, name)
    bad = ~(arr > 0)
    if bad.any():
        raise ValueError(f"{name} (alpha) must be > 0, got {name}={_fmt(arr, bad)}")
    return arr


def check_momentum(momentum, name="momentum") -> np.ndarray:
    """-1 < beta < 1."""
    arr = check_finite(momentum, name)
    bad = ~((arr > -1) & (arr < 1))
    if bad.any():
        raise ValueError(f"{name} (beta) must be in (-1, 1), got {name}={_fmt(arr, bad)}")
    return arr


def check_batch_size(batch_size, N, name="batch_size") -> np.ndarray:
    """1 <= b <= N."""
    arr = check_finite(batch_size, name)
    bad = ~((arr >= 1) & (arr <= N))
    if bad.any():
        raise ValueError(f"{name} (b) must be in [1, N={N}], got {name}={_fmt(arr, bad)}")
    return arr


def check_z(z, name="z") -> np.ndarray:
    """0 <= z <= 1."""
    arr = check_finite(z, name)
    bad = ~((arr >= 0) & (arr <= 1))
    if bad.any():
        raise ValueError(f"{name} must be in [0, 1], got {name}={_fmt(arr, bad)}")
    return arr


def check_tau(tau) -> float:
    tau = float(tau)
    if not math.isfinite(tau):
        raise ValueError(f"tau must be a finite number (1 = mean field, -1 = Gaussian features), got tau={tau}")
    return tau


def check_eigvals(lam, name="lam") -> np.ndarray:
    arr = check_finite(lam, name)
    bad = arr < 0
    if bad.any():
        raise ValueError(f"{name} (eigenvalue) must be >= 0, got {name}={_fmt(arr, bad)}")
    return arr


def check_positive_int(n, name, low=0) -> int:
    if isinstance(n, bool) or not float(n).is_integer() or int(n) < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {name}={n!r}")
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
