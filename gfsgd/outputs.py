"""Networks with C outputs per example (docs/theory.md#outputs).

The residual of C outputs on N examples is D [N, C], flattened example-major: row i C + a holds output a of
example i, so the kernel Theta is [NC, NC] with Theta[(i, a), (j, c)] at (i C + a, j C + c). Mini-batches sample
examples: all C outputs of an example enter or leave together. The noise of the batch gradient is then

    E[g g^T] = Theta [(1 - gamma) C + gamma N blockdiag(C)] Theta,

blockdiag keeping the C x C block of each example (C = 1: diag). In the spectral-diagonal closure a mode k talks
to the others through its output profile M^k = sum_i U[(i, .), k] U[(i, .), k]^T (C x C, trace 1):

    P_k' = (alpha lambda_k)^2 [(1 - gamma tau) C_k + gamma sum_l <M^k, M^l> C_l] - 2 alpha beta lambda_k J_k + beta^2 P_k

(C = 1: M^k = 1 and the coupling is sum_l C_l). This module holds the two pieces every regime shares.
"""
from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["output_profiles", "example_rows", "check_n_outputs"]


def check_n_outputs(n_outputs, n_rows: int) -> int:
    """C, an integer >= 1 that divides the number of rows (N C)."""
    if isinstance(n_outputs, bool) or not isinstance(n_outputs, int) or n_outputs < 1:
        raise InputError(f"n_outputs must be an integer >= 1 (outputs per example), got n_outputs={n_outputs!r}")
    if n_rows % n_outputs:
        raise InputError(f"n_outputs={n_outputs} must divide the number of rows N C = {n_rows}")
    return n_outputs


def output_profiles(eigvecs: torch.Tensor, C: int) -> torch.Tensor:
    """F [M, C^2]: row k is vec(M^k), M^k[a, c] = sum_i U[i C + a, k] U[i C + c, k], for eigvecs U [N C, M]."""
    NC, M = eigvecs.shape
    U = eigvecs.reshape(NC // C, C, M)
    return torch.einsum("iak,ick->kac", U, U).reshape(M, C * C)


def example_rows(idx: torch.Tensor, C: int) -> torch.Tensor:
    """The rows of the examples idx [..., b]: [..., b C], example-major (i C + a)."""
    if C == 1:
        return idx
    return (idx[..., None] * C + torch.arange(C, device=idx.device)).reshape(*idx.shape[:-1], idx.shape[-1] * C)

