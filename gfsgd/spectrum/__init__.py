"""Kernel spectra without an N x N matrix: the top eigenpairs of a matrix-free symmetric PSD operator, a
power-law model of the modes beyond them, and the spectral-only Problem built from both
(docs/theory.md#full-datasets, "Full datasets: rank k plus a tail"). One concept per module:

krylov     top_eigenpairs(op, k): block Krylov (block Lanczos with full reorthogonalisation) on op @ V;
           Eigenpairs, ConvergenceError, as_operator, DenseOperator
powerlaw   fit_power_law (nu, kappa with confidence intervals), q_lambda, phase, loss_exponent (gfsgd.theory
           re-exports them)
tail       spectral_tail(...): the modes k+1..N, lambda_j = a j^-nu, c_j = e j^-(kappa+1), nu and kappa fitted
           on the top k, a and e set by the exact constraints sum_j lambda_j = trace(K), sum_j c_j = |d0|^2;
           problem_from_operator(op, d0, rank=k) (also gfsgd.problem_from_operator): N modes, the top k exact,
           the rest the tail; band_problems, spectrum_summary
extrapolate extrapolate(problem_n, N): the problem of N points predicted from a dense problem on n << N of them
           (top modes kept, the rest the tail, with an ensemble for bands; docs/theory.md#subset)

An operator is anything with `N` and `op @ V` for V [N, m] (gfsgd.ntk.KernelOperator, or `as_operator(K)`
for a dense symmetric matrix); `diag()`/`trace()` give the exact trace the tail needs.
"""
from .krylov import ConvergenceError, DenseOperator, Eigenpairs, as_operator, top_eigenpairs
from .tail import SpectralTail, band_problems, problem_from_operator, spectral_tail, spectrum_summary
from .extrapolate import Extrapolation, extrapolate

__all__ = ["top_eigenpairs", "Eigenpairs", "ConvergenceError", "spectral_tail", "SpectralTail",
           "problem_from_operator", "as_operator", "DenseOperator", "band_problems", "spectrum_summary",
           "extrapolate", "Extrapolation"]
