# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The (ν, κ) phase diagram
#
# Power-law problems λ_k = k^−ν, c_k ∝ k^−(κ+1) fall into three phases (docs/theory.md §6):
#
# * **ν < 1**: U(1) grows without bound with N — any α > 0 diverges at finite batch size;
# * **signal-dominated**, κ < 2ν − 1: L_t ~ t^−κ/ν, as for full-batch gradient descent;
# * **noise-dominated**, κ > 2ν − 1: L_t ~ t^−(2−1/ν) whatever κ — the SGD noise sets the rate.
#
# Below: the diagram with the fitted point of a real problem (the ReLU NTK of scikit-learn's digits), the
# **negative-momentum condition** (docs/theory.md §7) over the noise phase, and loss exponents measured on SD simulations
# against the predicted ones.

# %% tags=["parameters"]
QUICK = False       # True: the small sizes CI runs in seconds; False: paper scale (the committed outputs)
FIG_DIR = "figures"  # where the PNG figures are written

# %%
# Setup: install gfsgd from the repository this notebook sits in when it is not importable
import subprocess
import sys
import time
from pathlib import Path

T_START = time.time()
REPO = Path.cwd().resolve().parent
try:
    import gfsgd
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-e", str(REPO)])
    sys.path.insert(0, str(REPO))
    import gfsgd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import gfsgd.theory as th
from gfsgd import Problem, plots
from gfsgd.data import load_dataset
from gfsgd.ntk import relu_ntk

torch.set_flush_denormal(True)  # fully decayed modes reach subnormal floats, which are very slow on CPU
if QUICK:
    torch.set_num_threads(1)
savefig = plots.saver(FIG_DIR, "PhaseDiagram")

N_COND = 1000 if QUICK else 10_000         # modes of the spectra on which the negative-momentum condition is evaluated
GRID = 24 if QUICK else 60                 # (nu, kappa) grid points per axis for the condition map
N_EXP, T_EXP = (2000, 10_000) if QUICK else (20_000, 200_000)   # SD runs for the exponents (spectral-only)
PROBLEMS = [(1.5, 1.0), (2.0, 1.5), (2.5, 2.5), (3.0, 2.0),     # signal-dominated
            (1.5, 3.0), (2.0, 5.0), (1.25, 3.0), (2.5, 6.0)]    # noise-dominated
N_DIGITS = 1000 if QUICK else 1797         # digits points for the fitted problem (ReLU NTK, 1 hidden layer)
print(f"gfsgd {gfsgd.__version__}; parameters: QUICK={QUICK}, N_COND={N_COND}, GRID={GRID}, N_EXP={N_EXP}, T_EXP={T_EXP}, N_DIGITS={N_DIGITS}")

# %%
ds = load_dataset("digits", N_DIGITS, seed=0)
digits = Problem.from_kernel(relu_ntk(ds.X), -ds.y, name=f"digits ReLU NTK (N={N_DIGITS})")  # d0 = f0 - y, f0 ~ 0
fit = th.fit_power_law(digits)
print(fit)
fig = plots.spectrum_plot(digits, title=digits.name)
savefig(fig, "digits_spectrum")

# %%
points = {"digits NTK (fit)": (fit.nu, fit.kappa)}
points.update({f"P{i}": nk for i, nk in enumerate(PROBLEMS)})
fig = plots.phase_diagram(nu=(0.6, 3.2), kappa=(0.0, 6.5), points={"digits NTK (fit)": (fit.nu, fit.kappa)},
                          title="phases of power-law problems")
ax = fig.axes[0]
for i, (nu, kappa) in enumerate(PROBLEMS):
    ax.plot(nu, kappa, "o", color="black", ms=5)
    ax.annotate(f"P{i}", (nu, kappa), textcoords="offset points", xytext=(4, 4), fontsize=8)
savefig(fig, "phases")

# %% [markdown]
# **Negative momentum.** In the noise phase, at b = 1 and α_eff at its β = 0 optimum, the optimal β is negative iff
# Σλ_k · Σw_k > ((ν−1)/ν) · Σλ_k² · Σ w_k/λ_k (w_k the initial loss per mode). The map shows
# log₁₀(lhs/rhs) over the noise phase of spectra with N_COND modes; the condition holds where it is > 0.

# %%
nus = np.linspace(1.05, 3.2, GRID)
kappas = np.linspace(0.1, 6.5, GRID)
margin = np.full((GRID, GRID), np.nan)   # [kappa, nu]
k = np.arange(1, N_COND + 1, dtype=float)
for j, nu in enumerate(nus):             # a loop over spectra (each a different problem), not over configs
    for i, kappa in enumerate(kappas):
        if kappa >= 2 * nu - 1:          # noise-dominated only: where the condition is meaningful
            r = th.negative_momentum_condition(k ** -nu, nu=nu, c=k ** -(kappa + 1))
            margin[i, j] = np.log10(r.lhs / r.rhs)
fig = plots.phase_diagram(nu=(1.0, 3.2), kappa=(0.0, 6.5), values=(nus, kappas, margin),
                          values_label="log10 (lhs / rhs): > 0 means β* < 0 at b = 1",
                          title=f"negative-momentum condition (N = {N_COND} modes)")
savefig(fig, "negative_momentum_condition")
print(f"condition holds on {np.mean(margin[np.isfinite(margin)] > 0):.0%} of the noise-phase grid")

# %% [markdown]
# **Exponents.** For each problem P0–P7, the SD regime at b = 1 and α = α_crit/2, run for T_EXP steps on
# N_EXP modes; the measured exponent is the least-squares slope of log L_t against log t over t ∈ [T/20, T].

# %%
from gfsgd.regimes import spectral_diagonal as sd
log_steps = np.unique(np.geomspace(1, T_EXP, 200).astype(int))
rows, curves = [], []
for i, (nu, kappa) in enumerate(PROBLEMS):
    p = Problem.synthetic(N_EXP, nu, kappa, basis=None)
    alpha = 0.5 * float(th.critical_lr(p, 0.0, 1))
    c = sd.run(p, [(alpha, 0.0, 1)], T_EXP, log_steps=log_steps, progress=False)
    m = c.steps >= T_EXP / 20
    slope = -np.polyfit(np.log(c.steps[m]), np.log(c.loss[0, m]), 1)[0]
    rows.append(dict(problem=f"P{i}", nu=nu, kappa=kappa, phase=th.phase(nu, kappa), alpha=alpha,
                     predicted=th.loss_exponent(nu, kappa), measured=slope))
    curves.append(c.to_frame().assign(problem=f"P{i}"))
exps = pd.DataFrame(rows)
exps["error"] = exps.measured - exps.predicted
exps

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.4))
cmap = plt.get_cmap("tab10")
for i, df in enumerate(curves):
    s = df[df.step > 0]
    a1.plot(s.step, s.loss / s.loss.iloc[0], color=cmap(i), ls="-" if exps.phase[i] == "signal" else "--",
            label=f"P{i} ({exps.phase[i]}): ν={exps.nu[i]}, κ={exps.kappa[i]}")
a1.set(xscale="log", yscale="log", xlabel="step t", ylabel="loss $L_t/L_0$", title="SD regime, b = 1, α = α_crit/2")
a1.legend(fontsize=7)
plots.exponent_plot(exps.predicted, exps.measured, labels=list(exps.problem), tol=0.1, ax=a2,
                    xlabel="predicted exponent min(κ/ν, 2 − 1/ν)", ylabel="measured exponent (fit on [T/20, T])",
                    title="loss exponents")
fig.tight_layout()
savefig(fig, "exponents")

# %%
# what the figures claim
assert th.phase(fit.nu, fit.kappa) == fit.phase and fit.nu > 1, "digits NTK: a convergent (nu > 1) problem"
assert np.all(np.abs(exps.error) < 0.1), "measured exponents within 0.1 of the predicted ones"
assert set(exps.phase) == {"signal", "noise"}, "both phases are sampled"
holds = margin[np.isfinite(margin)] > 0
assert holds.any(), "the negative-momentum condition holds somewhere in the noise phase"
r = th.negative_momentum_condition(np.arange(1, N_COND + 1.0) ** -1.5, nu=1.5, c=np.arange(1, N_COND + 1.0) ** -4.0)
assert r.holds, "nu = 1.5, kappa = 3 (the NegativeMomentum notebook's problem) satisfies the condition"
print(f"all assertions passed; notebook ran in {time.time() - T_START:.1f} s")
