"""Plots for papers: one consistent style; every function returns the Figure (save it with
`save(fig, path)` as PNG and/or PDF).

Inputs are the tidy tables of gfsgd.results (columns regime, lr, momentum, batch_size, tau, seed, step,
loss[, loss_se]) or Curves objects (converted with Curves.to_frame()).

    loss_curves(curves)              all configs of one or more regimes, log-log, ±2 s.e. bands
    regime_comparison(curves)        one column per config, one line per regime, a ratio-to-exact panel under
                                     each (theory_curves() adds the theory)
    alpha_beta_map(curves, step=t)   log10 L_t / L_0 over the (beta, alpha) grid of one batch size, with the
                                     theory lines U(1) = 1, alpha = 2(1 + beta) / lambda_max,
                                     alpha = 2(1 - beta) / (gamma lambda_crit) and the optimum marked
    budget_plot(curves)              L_t / L_0 against the number of samples processed t * b, one line per b
    phase_diagram()                  the (nu, kappa) phases of power-law problems, the transition line
                                     kappa = 2 nu - 1, optionally a field over (nu, kappa) and fitted points
    spectrum_plot(problem)           lambda_k and c_k against k (log-log) with power-law fits (theory.fit_power_law)
    exponent_plot(pred, meas)        measured against predicted exponents

Modules, one per figure family: common (style, save, saver, labels, the drawing of one curve), curves
(loss_curves, regime_comparison, theory_curves), maps (map_values, alpha_beta_map(s) with the exact edge drawn),
budgets (budget_plot), powerlaw (phase_diagram, spectrum_plot, exponent_plot). The plots sit above
gfsgd.theory: the theory lines, curves and fits are computed here from a problem.
"""
from .common import (LR_LABEL, MOMENTUM_LABEL, REGIME_NAMES, REGIME_ORDER, config_label, regime_label, save, saver,
                     show_inline, style)  # first: selects the headless backend before pyplot is imported
from .budgets import budget_plot
from .curves import loss_curves, regime_comparison, theory_curves
from .maps import alpha_beta_map, alpha_beta_maps, map_values
from .powerlaw import exponent_plot, phase_diagram, spectrum_plot

__all__ = ["style", "save", "saver", "show_inline", "loss_curves", "regime_comparison", "regime_label", "config_label",
           "theory_curves", "alpha_beta_map", "alpha_beta_maps", "map_values", "budget_plot", "phase_diagram",
           "spectrum_plot", "exponent_plot", "LR_LABEL", "MOMENTUM_LABEL", "REGIME_ORDER", "REGIME_NAMES"]
