"""gfsgd.theory: what can be predicted about a run from the kernel spectrum alone
(docs/theory.md#generating-functions to #critical-batch, #loss-at, #updates).

Every function takes a spectrum: a Problem, or eigenvalues (top one 1) with w= (initial loss per mode,
c_k / (2N)) or c= (squared eigen-coefficients of d0) and N (training points). lr = alpha, momentum = beta and
batch_size = b broadcast together, so grids of configs are computed at once. float64 numpy results.

generating   S_k, U_k, V_k (per mode), U, V, L (= V / (1 - U)), U1, V1, total_loss, split_configs
renewal      propagators (U_m, V_t), solve_renewal, loss_curve (the renewal equation L_t = V_t + sum_s U_{t-s} L_s),
             mode_second_moments
inversion    loss_at (L_t at any steps from a contour integral of L(z), without stepping)
sde          sde_loss (the SGD SDE, the l -> infinity limit of SVAG, by Laplace inversion; docs/theory.md#updates)
outputs      critical_lr_outputs, noise_radius (the SD edge with C outputs per example), gauss_newton_problem,
             critical_lr_loss (the edge of cross-entropy near initialisation; docs/theory.md#outputs)
stability    mode_stable, per_mode_lr_limit, is_convergent, critical_lr, lambda_crit, asymptotes
asymptotics  phase, loss_exponent, fit_power_law, q_lambda, asymptotic_loss, crossover_time,
             spectral_asymptotic_loss
optimal      optimal_hyperparameters, negative_momentum_condition, critical_batch_size, budget_curves
scaling      data_scaling (the loss at a budget against the dataset size, from a subset's kernel)
travel       weight_travel (E|w_t - w_0|^2 of the linearised network: what drives the kernel's drift)
symbolic     the sympy derivation (import gfsgd.theory.symbolic; not imported here to keep sympy lazy)

`python -m gfsgd.theory --help` prints a summary table for a problem.
"""
from ._inputs import Spectrum, as_spectrum, noise_gamma
from .asymptotics import (AsymptoticLoss, PowerLawFit, asymptotic_loss, crossover_time, fit_power_law,
                          loss_exponent, phase, q_lambda, spectral_asymptotic_loss)
from .generating import L, S_k, U, U1, U_k, V, V1, V_k, split_configs, total_loss
from .renewal import loss_curve, mode_second_moments, propagators, solve_renewal
from .inversion import loss_at
from .sde import sde_loss
from .scaling import data_scaling
from .travel import weight_travel
from .scheduled import compress_spectrum, free_form, sd_final_loss, segment_boundaries
from .optimal import (BudgetCurves, NegativeMomentumCondition, OptimalHyperparameters, budget_curves,
                      critical_batch_size, negative_momentum_condition, optimal_hyperparameters)
from .outputs import critical_lr_loss, critical_lr_outputs, gauss_newton_problem, noise_radius
from .stability import (asymptotes, critical_lr, exact_critical_lr, exact_stability, is_convergent, lambda_crit,
                        mode_stable, per_mode_lr_limit)

__all__ = [
    "Spectrum", "as_spectrum", "noise_gamma", "compress_spectrum", "free_form", "sd_final_loss", "segment_boundaries",
    "S_k", "U_k", "V_k", "U", "V", "L", "U1", "V1", "total_loss", "propagators", "solve_renewal", "loss_curve",
    "split_configs", "mode_second_moments", "loss_at", "sde_loss", "exact_critical_lr", "exact_stability",
    "critical_lr_outputs", "noise_radius", "gauss_newton_problem", "critical_lr_loss", "mode_stable", "per_mode_lr_limit", "is_convergent", "critical_lr", "lambda_crit", "asymptotes",
    "phase", "loss_exponent", "PowerLawFit", "fit_power_law", "q_lambda", "AsymptoticLoss", "asymptotic_loss",
    "crossover_time", "spectral_asymptotic_loss", "data_scaling", "weight_travel",
    "OptimalHyperparameters", "optimal_hyperparameters", "NegativeMomentumCondition",
    "negative_momentum_condition", "critical_batch_size", "BudgetCurves", "budget_curves",
]
