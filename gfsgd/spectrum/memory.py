"""The memory of gfsgd.spectrum.top_eigenpairs (memory_budget): what the eigensolve allocates, and the C heap.

    eigensolver_bytes(N, item, size, m)    the bytes around the pass that takes the Krylov basis to `size` columns
    MemoryPlan(op, N, m, item, budget, apply_to, k)   the operator's share, the eigensolver's, the passes' rest
    release_freed_memory()                 glibc's malloc_trim: freed tensors' memory back to the system

The plan fills PLANNED (90%) of the budget; the rest is for what no accounting sees: the C allocator's
retained blocks, BLAS's buffers, Python's objects (benchmarks/README.md#bench_memorypy).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import sys

import torch

from ..errors import InputError

__all__ = ["PLANNED", "MemoryPlan", "eigensolver_bytes", "release_freed_memory"]

PLANNED = 0.9  # the share of memory_budget that the accounting fills; the rest is for the C allocator, BLAS, Python


def eigensolver_bytes(N: int, item: int, size: int, m: int) -> dict:
    """What top_eigenpairs allocates (bytes) around the pass that takes its Krylov basis to `size` columns of N
    (block m, operator dtype of `item` bytes; the projected matrix T is float64). "pass": the basis before the
    pass and the block V, with T (the operator's pass adds its own temporaries and the [N, m] result);
    "orth": the basis, the pass's result and two [N, m] working blocks of the orthogonalisation, with T;
    "grow": T and its grown copy; "ritz": the basis, the next block and the Ritz step (T, the eigensolver's copy
    of it, the eigenvectors and LAPACK's workspace of about 2 size^2 numbers). "peak" is the largest."""
    prev = size - m
    out = dict(pass_=N * item * size + 8 * prev * prev,
               orth=N * item * (size + 3 * m) + 8 * prev * prev,
               grow=N * item * (size + m) + 8 * (size * size + prev * prev),
               ritz=N * item * (size + m) + 8 * 5 * size * size)
    out["peak"] = max(out.values())
    return out


def final_bytes(N, item, k, r):
    """The eigenvectors U [N, k] and the verification pass's blocks: [U, apply_to], K [U, apply_to] and the
    residual's two float64 temporaries (and float64 copies of U and K U for a float32 operator)."""
    return N * (k * item + 2 * (k + r) * item + 2 * k * 8 + (2 * k * 8 if item < 8 else 0))


_LIBC = []


def release_freed_memory() -> None:
    """Hand the memory that the C allocator keeps for freed tensors back to the system (glibc's malloc_trim;
    nothing elsewhere). glibc serves blocks below its (adaptive, up to 32 MB) mmap threshold from its heap and
    keeps the freed ones there, so without this the resident size after the operator's feature chunks or a
    few Krylov passes stays 100-200 MB above the live tensors (MNIST N = 10,000: 411 MB resident for the
    operator's 223 MB of features, 199 MB after trimming)."""
    if not sys.platform.startswith("linux"):
        return
    if not _LIBC:
        try:
            _LIBC.append(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _LIBC.append(None)
    if _LIBC[0] is not None:
        _LIBC[0](0)


class MemoryPlan:
    """top_eigenpairs' memory_budget: what the operator holds, plus eigensolver_bytes, plus the operator's passes
    (their temporaries lowered to what is left before each pass). Without a budget it only records."""

    def __init__(self, op, N, m, item, budget, apply_to, k):
        self.op, self.N, self.m, self.item = op, N, m, item
        self.budget = None if budget is None else float(budget)
        self.held = int(getattr(op, "held_bytes", 0) or 0)
        self.r = 0 if apply_to is None else (1 if torch.as_tensor(apply_to).ndim == 1
                                             else int(torch.as_tensor(apply_to).shape[1]))
        self.k = k
        # trim the C heap after each pass when bounded, or when the blocks are large (4 MiB or more)
        self.large = budget is not None or N * m * item >= 2 ** 22
        if self.budget is None:
            return
        if not (math.isfinite(self.budget) and self.budget > 0):
            raise InputError(f"memory_budget must be a positive number of bytes, got memory_budget={budget!r}")
        self.plan = PLANNED * self.budget
        need = self.held + self._need(m)
        if need > self.plan:
            raise InputError(f"memory_budget={self.budget:.4g} bytes cannot hold the eigensolve's first block: the "
                             f"operator holds {self.held:.4g} bytes and a basis of one block of {m} columns of "
                             f"N={N} needs {need - self.held:.4g} more; give at least {2 * need / PLANNED:.4g} bytes, "
                             f"or a smaller block_size")

    def _pass_min(self, m):
        fn = getattr(self.op, "min_pass_bytes", None)
        return int(fn(m)) if fn is not None else self.N * m * self.item

    def _need(self, size):
        e = eigensolver_bytes(self.N, self.item, size, self.m)
        return max(e["peak"], e["pass_"] + self._pass_min(self.m))

    def fits(self, size):
        return self.budget is None or self.held + self._need(size) <= self.plan

    def _set_pass(self, other):
        setter = getattr(self.op, "set_pass_budget", None)
        if self.budget is not None and setter is not None:
            out = self.N * self.m * self.item  # the pass's [N, m] result
            setter(int(self.plan - self.held - other - out))

    def before_pass(self, size):
        self._set_pass(eigensolver_bytes(self.N, self.item, size + self.m, self.m)["pass_"])

    def before_final(self):
        self._set_pass(final_bytes(self.N, self.item, self.k, self.r))

    def dense_too_big(self, k):
        """The message when the exact route (K = op @ I and eigh) does not fit, else None."""
        need = 6 * self.N * self.N * 8
        if self.budget is not None and self.held + need > self.plan:
            return (f"top_eigenpairs(k={k}): the Krylov basis would fill the whole space (N={self.N}) and the exact "
                    f"route (K = op @ I and eigh, about {need:.4g} bytes) does not fit in memory_budget="
                    f"{self.budget:.4g}; lower k or raise memory_budget")
        return None

    def exhausted(self, k, passes, size, worst, tol, floor):
        more = (self.held + self._need(2 * size)) / PLANNED
        return (f"top_eigenpairs(k={k}) did not converge within memory_budget={self.budget:.4g} bytes: after "
                f"{passes} passes the Krylov basis holds {size} columns of N={self.N} (block {self.m}), the worst "
                f"residual is {worst:.3g} times its allowance max(tol * lambda, {floor:.2g} * lambda_1) with "
                f"tol={tol:.3g}, and one more block would exceed the budget (the operator holds {self.held:.4g} "
                f"bytes). Raise memory_budget (a basis twice as large needs about {more:.4g} bytes), or loosen tol")

    def as_dict(self, size):
        e = eigensolver_bytes(self.N, self.item, size, self.m)
        return dict(budget=self.budget, operator_held=self.held, eigensolver_peak=e["peak"], basis=size,
                    basis_bytes=self.N * size * self.item,
                    final_bytes=final_bytes(self.N, self.item, self.k, self.r))
