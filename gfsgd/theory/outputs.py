"""The stability edge of the spectral-diagonal dynamics with C outputs per example (docs/theory.md#outputs).

With C outputs the SD noise couples mode k to mode l through <M^k, M^l> = F_k . F_l (F = Problem.profiles,
[N C, C^2]), so the renewal equation of section 4 becomes one for the C^2-vector l_t = sum_k F_k C_k(t):

    l(z) = v(z) + U(z) l(z),      U(z) = sum_k U_k(z) F_k F_k^T,

with U_k(z) the scalar per-mode transfer of section 4 (C = 1: F = 1 and U(z) is the scalar U(z)). While its
coefficients are positive semi-definite, |x^H U(z) x| <= x^T U(1) x for |z| <= 1 and a unit x, and I - U(z) is
invertible on the closed disc iff rho(U(1)) < 1 (and every mode is stable); where a mode's own coefficient turns
negative they are not, and the recursion's own spectral radius decides (sd_radius, critical_lr_outputs). Per mode
(section 5)

    U_k(1) = gamma alpha lambda_k (1 + beta) / [(1 - beta)(2 (1 + beta) - alpha lambda_k) + gamma tau alpha lambda_k (1 + beta)],

so the edge alpha_crit(beta, b) is the smallest alpha where a mode or rho(sum_k U_k(1) F_k F_k^T) = 1 fails,
found by bisection (rho grows with alpha on the stable interval), then checked by sd_radius.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ._inputs import check_batch_size, check_momentum, check_tau, noise_gamma
from .exact_edge import live_modes

__all__ = ["critical_lr_outputs", "noise_radius", "sd_radius", "gauss_newton_problem", "critical_lr_loss"]


def _profiles(problem):
    lam = problem.eigvals.detach().cpu().double().numpy()
    F = problem.profiles.detach().cpu().double().numpy()
    return lam, F


def noise_radius(problem, lr, momentum, batch_size, *, tau=1.0, replacement=False) -> float:
    """rho(U(1)) of one config (inf when a mode is unstable): the SD dynamics converge iff it is < 1."""
    lam, F = _profiles(problem)
    a, beta = float(lr), float(momentum)
    gamma = float(noise_gamma(batch_size, problem.N, replacement))
    pos = lam > 0
    x = a * lam[pos]
    if a <= 0 or not np.all(x < 2 * (1 + beta)) or not -1 < beta < 1:
        return np.inf
    den = (1 - beta) * (2 * (1 + beta) - x) + gamma * tau * x * (1 + beta)
    if np.any(den <= 0):
        return np.inf
    u = gamma * x * (1 + beta) / den  # U_k(1) of the nonzero modes
    Fp = F[pos]
    return float(np.linalg.eigvalsh((Fp * u[:, None]).T @ Fp)[-1])


def sd_radius(problem, lr, momentum, batch_size, *, tau=1.0, replacement=False) -> float:
    """The spectral radius of the SD recursion's own one-step map at one config (docs/theory.md#outputs): per mode
    the state (A_k, B_k, D_k) moves by A' = k1 A + k2 B + beta^2 D + k3 (W A)_k, B' = m A - beta B, D' = A with
    W = F F^T (rank C^2), so a product costs O(N C . C^2); its largest |eigenvalue| comes from Arnoldi (scipy eigs).
    Modes with lambda = 0 (to rounding) receive no noise and stay put; they are left out (neutral, not unstable)."""
    from scipy.sparse.linalg import LinearOperator, eigs
    lam, F = _profiles(problem)
    live = live_modes(lam)
    lam, F = lam[live], F[live]
    M = lam.size
    a, beta = float(lr), float(momentum)
    gamma = float(noise_gamma(batch_size, problem.N, replacement))
    u = a * lam
    m = 1 + beta - u
    k3 = gamma * u * u
    k1, k2 = m * m - tau * k3, -2 * beta * m

    def matvec(x):
        x = np.asarray(x).reshape(-1)
        A, B, D = x[:M], x[M:2 * M], x[2 * M:]
        return np.concatenate([k1 * A + k2 * B + beta * beta * D + k3 * (F @ (F.T @ A)), m * A - beta * B, A])

    op = LinearOperator((3 * M, 3 * M), matvec=matvec, dtype=np.float64)
    v0 = np.ones(3 * M)
    if 3 * M <= 600:  # small: dense
        T = np.stack([matvec(e) for e in np.eye(3 * M)], axis=1)
        return float(np.max(np.abs(np.linalg.eigvals(T))))
    from scipy.sparse.linalg import ArpackNoConvergence
    # many modes of small lambda put eigenvalues near 1 and near beta in clusters, where ARPACK's default Krylov
    # space may not converge; a wider one does, at a higher cost per restart (a 200-example, 10-output CNN at
    # beta = 0.9, b = 100: the default failed after 20,000 iterations, 80 vectors converged in 9 s; at b = 10 the
    # default takes 5 s for the whole edge and 80 vectors 200 s), so the default is tried first, briefly
    for ncv, maxiter in ((None, 2000), (80, 20000), (200, 20000)):
        try:
            val = eigs(op, k=1, which="LM", v0=v0, tol=1e-10, maxiter=maxiter,
                       ncv=None if ncv is None else min(3 * M - 1, ncv), return_eigenvectors=False)
            return float(np.max(np.abs(val)))
        except ArpackNoConvergence:
            continue
    raise RuntimeError(f"sd_radius: Arnoldi did not converge for lr={a}, momentum={beta}, batch_size={batch_size} "
                       f"({M} modes x 3 states)")


def critical_lr_outputs(problem, momentum, batch_size, *, tau=1.0, replacement=False, iterations=60) -> np.ndarray:
    """alpha_crit(beta, b) of the SD dynamics of a C-output problem (module docstring); arrays broadcast.

    rho(U(1)) < 1 is necessary; it is also sufficient while every per-mode transfer U_k(z) has nonnegative
    coefficients, which fails where a mode's own coefficient m^2 - tau gamma (alpha lambda)^2 turns negative
    (the mode oscillates; with C = 1 its self-coupling W_kk = 1 keeps it stable, with C > 1 W_kk < 1 need not).
    So the bisection on rho(U(1)) gives an upper bound, checked by the spectral radius of the recursion itself
    (sd_radius) and, where that is >= 1, lowered by a bisection on sd_radius < 1."""
    if not hasattr(problem, "profiles"):
        raise InputError(f"critical_lr_outputs needs a Problem (its output profiles), got {type(problem).__name__}")
    tau = check_tau(tau)
    beta = check_momentum(momentum)
    b = check_batch_size(batch_size, problem.N)
    beta, b = np.broadcast_arrays(beta, b)
    lam_max = float(problem.eigvals.max())
    out = np.empty(beta.shape)
    for j, (m, bb) in enumerate(zip(beta.reshape(-1), b.reshape(-1))):
        lo, hi = 0.0, 2 * (1 + m) / lam_max  # the top mode's own limit
        whole = noise_radius(problem, hi * (1 - 1e-12), m, bb, tau=tau, replacement=replacement) < 1
        if whole:
            lo = hi
        for _ in range(0 if whole else iterations):
            mid = 0.5 * (lo + hi)
            if noise_radius(problem, mid, m, bb, tau=tau, replacement=replacement) < 1:
                lo = mid
            else:
                hi = mid
        if sd_radius(problem, lo * (1 - 1e-9), m, bb, tau=tau, replacement=replacement) >= 1:  # oscillating mode
            hi, lo = lo, 0.0
            for _ in range(iterations):
                mid = 0.5 * (lo + hi)
                if sd_radius(problem, mid, m, bb, tau=tau, replacement=replacement) < 1:
                    lo = mid
                else:
                    hi = mid
                if hi - lo <= 1e-10 * hi:
                    break
        out.reshape(-1)[j] = lo
    return out


def gauss_newton_problem(problem, loss="cross_entropy", targets=None):
    """The kernel of the linearised network on `loss` near its initialisation, weighted by the loss's curvature:

        Theta_GN = H^(1/2) Theta H^(1/2),   H = blockdiag_i curvature(f0_i)   (cross-entropy: diag(s) - s s^T)

    (docs/theory.md#outputs). Near w0 a step moves the logits by -alpha Theta g and the gradient g by H times that,
    so the stability of the mini-batch dynamics is that of the squared loss on Theta_GN. Returns (problem_GN,
    lr_factor): problem_GN is normalised to its own top eigenvalue, and an alpha of `problem` is alpha * lr_factor
    in its units (lr_factor = lambda_max(Theta_GN) / lambda_max(Theta)). An approximation: the curvature changes as
    the logits move (softmax saturates), so the edge holds near initialisation; beyond it, measure on the network.
    """
    from ..losses import as_loss
    from ..problem import Problem
    loss = as_loss(loss)
    C, N = problem.n_outputs, problem.N
    problem.require_basis("the Gauss-Newton kernel")
    if targets is None:
        net = getattr(problem, "network", None)
        if net is None:
            raise InputError("gauss_newton_problem needs the targets: pass targets= (y [N, C]) or a problem from "
                             "gfsgd.problem_from_network")
        targets = net.y
    Y = torch.as_tensor(targets).double().reshape(N, C)
    f0 = problem.d0.double().reshape(N, C) + Y
    H = torch.as_tensor(loss.curvature(f0), dtype=torch.float64)
    H = H.reshape(N, C, C) if H.ndim == 3 else torch.diag_embed(H.expand(N, C))
    w, V = torch.linalg.eigh(H)  # [N, C], [N, C, C]
    Hs = V @ torch.diag_embed(torch.clamp(w, min=0.0).sqrt()) @ V.mT  # H^(1/2) per example
    T = problem.K.double().reshape(N, C, N, C) * problem.lambda_max_raw  # the raw kernel
    G = torch.einsum("iab,ibjc,jcd->iajd", Hs, T, Hs).reshape(N * C, N * C)
    gn = Problem.from_kernel(0.5 * (G + G.T), problem.d0.double().reshape(N, C), name=f"{problem.name}, GN({loss.name})",
                             psd_tol=1e-8)
    return gn, gn.lambda_max_raw / problem.lambda_max_raw


def critical_lr_loss(problem, momentum, batch_size, loss="cross_entropy", *, tau=1.0, targets=None) -> np.ndarray:
    """The SD stability edge of `loss` near initialisation, in the units of `problem` (its alpha): the edge of the
    Gauss-Newton problem (gauss_newton_problem) divided by lr_factor."""
    gn, factor = gauss_newton_problem(problem, loss, targets)
    return critical_lr_outputs(gn, momentum, batch_size, tau=tau) / factor  # C = 1: the scalar edge (1e-9)
