"""The class-diagonal approximation of a problem with C outputs per example (docs/theory.md#outputs).

    approx, report = class_diagonal(problem)

Theta ~ K (x) I_C with K the mean of the C diagonal blocks: one N x N eigendecomposition instead of one of N C,
and a report of what the approximation drops.
"""
from __future__ import annotations

import torch

from .errors import InputError
from .problem import Problem

__all__ = ["class_diagonal"]


def class_diagonal(problem, *, basis: bool = False):
    """The class-diagonal approximation Theta ~ K (x) I_C of a C-output problem (docs/theory.md#outputs), with
    K = the mean of the C diagonal blocks Theta[a::C, a::C], and a report of what it drops.

    The approximation costs what one output costs: its eigenpairs are (lambda_j, u_j (x) e_a) from one N x N
    eigendecomposition of K, its output profiles are e_a e_a^T (the classes decouple; the batch is shared), and
    without `basis` it is spectral only (the sd regime and the theory's edge run on it; basis=True adds the
    N C x N C eigenvectors for the full and linearized regimes).

    Returns (approx, report). report["offdiag_rel"] = |off-diagonal blocks|_F / |Theta|_F (what the approximation
    drops), report["diag_spread_rel"] = |Theta_aa - K|_F summed over a / |Theta|_F (what averaging the diagonal
    blocks drops), report["lr_factor"] = lambda_max(K) / lambda_max(Theta): a learning rate alpha of `problem` is
    alpha * lr_factor in the approximation's units (both are normalised to their own top eigenvalue).
    """
    C = problem.n_outputs
    if C == 1:
        raise InputError("class_diagonal needs a problem with C > 1 outputs per example")
    problem.require_basis("class_diagonal (it needs the kernel's blocks)")
    T = problem.K.double()  # normalised Theta [NC, NC]
    N = problem.N
    blocks = T.reshape(N, C, N, C)  # [i, a, j, c]
    diag = torch.stack([blocks[:, a, :, a] for a in range(C)])  # [C, N, N]
    K = diag.mean(0)
    total = float(torch.linalg.norm(T))
    diag_norm2 = float((diag ** 2).sum())
    offdiag = (max(total ** 2 - diag_norm2, 0.0)) ** 0.5 / total
    spread = float(torch.linalg.norm(diag - K)) / total
    lam, U = torch.linalg.eigh(0.5 * (K + K.T))
    lam = torch.clamp(lam, min=0.0)
    top = float(lam.max())
    D = problem.d0.double().reshape(N, C)
    coef = (U.T @ D).reshape(-1)  # mode (j, a) at j C + a
    eigvals = (lam / top).repeat_interleave(C)
    prof = torch.zeros(N * C, C * C, dtype=torch.float64)
    prof[torch.arange(N * C), (torch.arange(N * C) % C) * (C + 1)] = 1.0  # vec(e_a e_a^T)
    vecs = torch.kron(U.contiguous(), torch.eye(C, dtype=torch.float64)) if basis else None
    approx = Problem(eigvals, coef, vecs, lambda_max_raw=problem.lambda_max_raw * top, n_outputs=C,
                     profiles=None if basis else prof, name=f"{problem.name}, class-diagonal",
                     meta=dict(problem.meta, class_diagonal_of=problem.name))
    report = dict(offdiag_rel=offdiag, diag_spread_rel=spread, lr_factor=top)
    return approx, report
