"""A kernel spectrum as the theory and the power-law fit read it, and the checks on it (docs/theory.md#phases).

`Spectrum` holds what every spectral computation reads from a Problem or from plain arrays:

    eigvals  lambda_k >= 0, descending                         # [N_modes]
    w        initial loss per mode, w_k = c_k / (2N) (or None)  # [N_modes]
    N        number of training points (sets gamma; defaults to the number of modes)

`as_spectrum` builds one and checks it; `check_finite` checks any numeric argument. Both raise InputError naming
the argument, the value and what is allowed. The theory (gfsgd.theory) re-exports them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["Spectrum", "as_spectrum", "check_finite", "to_numpy", "format_bad"]


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
            raise InputError("this quantity needs the signal side of the problem: pass a Problem, or w= "
                             "(initial loss per mode, c_k / (2N)) or c= (squared eigen-coefficients of d0)")
        return self.w


def to_numpy(x, name) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a numeric array, got {type(x).__name__}") from None
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
        raise InputError("give either w= (initial loss per mode) or c= (squared coefficients), not both")
    if isinstance(spectrum, Spectrum):
        lam, w0, N0 = spectrum.eigvals, spectrum.w, spectrum.N
        order = None
    elif hasattr(spectrum, "eigvals") and hasattr(spectrum, "coef"):  # a Problem
        if getattr(spectrum, "n_outputs", 1) > 1:
            raise InputError(f"the theory's loss (renewal equation, loss_at) and recommend run on one output per "
                             f"example; this problem has C = {spectrum.n_outputs} (docs/theory.md#outputs): use the sd "
                             f"or full regime, whose C-output dynamics are implemented (critical_lr has its edge)")
        lam = to_numpy(spectrum.eigvals, "problem.eigvals")
        w0 = to_numpy(spectrum.w, "problem.w")
        N0 = int(spectrum.N)
        order = None
    else:
        lam = to_numpy(spectrum, "spectrum (eigenvalues)")
        w0, N0 = None, None
        order = "sort"
    if lam.ndim != 1 or lam.size == 0:
        raise InputError(f"spectrum (eigenvalues) must be a non-empty 1-d array, got shape {lam.shape}")
    if not np.isfinite(lam).all():
        raise InputError("spectrum (eigenvalues) must be finite, got non-finite entries")
    if (lam < 0).any():
        raise InputError(f"spectrum (eigenvalues) must be >= 0 (a PSD kernel), got min {lam.min():.4g}")
    if lam.max() <= 0:
        raise InputError("spectrum (eigenvalues) must have a positive eigenvalue, got all zeros")
    if N is None:
        N = N0 if N0 is not None else lam.size
    if isinstance(N, bool) or not float(N).is_integer() or int(N) < 1:
        raise InputError(f"N (number of training points) must be an integer >= 1, got N={N!r}")
    N = int(N)
    if w is not None or c is not None:
        name = "w" if w is not None else "c"
        arr = to_numpy(w if w is not None else c, name)
        if arr.shape != lam.shape:
            raise InputError(f"{name} must have one entry per eigenvalue ({lam.size}), got shape {arr.shape}")
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise InputError(f"{name} must be finite and >= 0, got min {np.nanmin(arr):.4g}")
        w0 = arr if w is not None else arr / (2 * N)
    if order == "sort":
        idx = np.argsort(-lam, kind="stable")
        lam = lam[idx]
        w0 = None if w0 is None else w0[idx]
    if need_w and w0 is None:
        raise InputError("this function needs the signal side: pass a Problem, or w= (initial loss per mode, "
                         "c_k / (2N)) or c= (squared eigen-coefficients of d0) with the eigenvalues")
    return Spectrum(np.ascontiguousarray(lam), None if w0 is None else np.ascontiguousarray(w0), N)


def format_bad(arr, bad) -> str:
    """The first bad entry of arr (and how many more), for an error message."""
    vals = np.asarray(arr)[bad]
    v = vals.reshape(-1)[0].item()
    more = f" (and {vals.size - 1} more)" if vals.size > 1 else ""
    return f"{v!r}{more}"


def check_finite(x, name) -> np.ndarray:
    arr = to_numpy(x, name)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(f"{name} must be finite, got {name}={format_bad(arr, bad)}")
    return arr
