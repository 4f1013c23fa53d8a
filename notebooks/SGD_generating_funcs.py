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
# # SGD through generating functions: the symbolic derivation
#
# The setup cell installs gfsgd from the repository this notebook sits in when it is not importable. The derivation (docs/theory.md §4) in sympy:
# per mode k, the second moments M = [[m11, m12], [m12, m22]] of (mode of d, mode of v) evolve by the linear map
#
# A_k(M) = R M Rᵀ − γτ α² λ² m11 E,  R = [[1 − αλ, β], [−αλ, β]],  E = [[1, 1], [1, 1]],
#
# plus the noise injection γα²λ²(2N L_t)E. The generating functions are resolvent entries:
# U_k(z) = [(1 − zA)⁻¹E]₁₁, V_k(z) = [(1 − zA)⁻¹e₁₁]₁₁, with common denominator S_k(z) = det(1 − zA), and
# L(z) = V(z)/(1 − U(z)), U(z) = γα²z Σ_k λ_k² U_k(z), V(z) = Σ_k w_k V_k(z).

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
import sympy as sp
import torch
from IPython.display import display

import gfsgd.theory as th
from gfsgd import Problem, plots
from gfsgd.theory import symbolic

torch.set_flush_denormal(True)  # fully decayed modes reach subnormal floats, which are very slow on CPU
if QUICK:
    torch.set_num_threads(1)
savefig = plots.saver(FIG_DIR, "SGD_generating_funcs")

N_POS = 20_000 if QUICK else 1_000_000     # random points of the stability region for the positivity checks
N = 256 if QUICK else 4096                 # modes of the problem used to compare U(z) numerically
print(f"gfsgd {gfsgd.__version__}; parameters: QUICK={QUICK}, N_POS={N_POS}, N={N}")

# %%
s = symbolic.symbols()
A = symbolic.per_mode_map()
print("per-mode map A on (m11, m12, m22):")
A

# %%
d = symbolic.derive()
S_fact = sp.factor(d["S"])
print("S_k(z) = det(1 - z A):")
S_fact

# %%
print("U_k(z) =")
display(sp.factor(d["U"]))
print("V_k(z) =")
display(sp.factor(d["V"]))

# %% [markdown]
# **Checks.** The derived expressions equal the closed forms of docs/theory.md §4; γ and τ enter only through γτ;
# S at λ = 0 is (1 − z)(1 − βz)(1 − β²z); the values at z = 1; and, numerically over the stability region
# (−1 < β < 1, 0 < αλ < 2(1+β), 0 ≤ γτ ≤ 1, 0 < z < 1), S_k(z) > 0 and d/dz[z U_k(z)] ≥ 0.

# %%
checks = dict(closed_forms=symbolic.check_closed_forms(), gamma_tau_only=symbolic.check_gamma_tau(),
              lambda_zero=symbolic.check_lambda_zero(), values_at_one=symbolic.check_values_at_one())
positivity = symbolic.check_positivity(N_POS)
checks, positivity

# %% [markdown]
# **Symbolic = numeric.** The lambdified U_k, V_k against gfsgd.theory's numeric U_k, V_k, and U(z), L(z) of a
# power-law problem for three configs: U(z) increases on [0, 1]; the loss converges iff U(1) < 1.

# %%
f = symbolic.numeric_functions()
rng = np.random.default_rng(0)
beta = rng.uniform(-0.95, 0.95, 1000); u = rng.uniform(0.01, 1.99, 1000) * (1 + beta)
gt = rng.uniform(0, 1, 1000); z = rng.uniform(0, 1, 1000); one = np.ones(1000)
err_U = np.max(np.abs(f["U"](z, one, u, beta, gt) / th.U_k(z, one, u, beta, gt) - 1))
err_V = np.max(np.abs(f["V"](z, one, u, beta, gt) / th.V_k(z, one, u, beta, gt) - 1))
print(f"max relative difference, symbolic vs numeric: U_k {err_U:.1e}, V_k {err_V:.1e}")

p = Problem.synthetic(N, 1.5, 1.0, basis=None)
zs = np.linspace(0, 1, 201)
configs = [(0.3, 0.0, 1), (0.3, -0.3, 1), (0.8, 0.5, 1)]
plots.style()
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
for lr, mom, b in configs:
    Uz = th.U(zs, p, lr, mom, b)
    label = plots.config_label(lr, mom, b) + f": U(1) = {Uz[-1]:.2f}"
    a1.plot(zs, Uz, label=label)
    conv = th.is_convergent(p, lr, mom, b)
    zz = zs[:-1] if conv else zs[zs < 0.999 * zs[np.argmax(Uz >= 1)]] if (Uz >= 1).any() else zs[:-1]
    a2.plot(zz, th.L(zz, p, lr, mom, b) / p.loss0, label=label + ("" if conv else " (diverges)"))
a1.axhline(1, color="black", lw=1, ls="--", label="U = 1")
a1.set(xlabel="z", ylabel="noise generating function U(z)", title=f"ν = 1.5, κ = 1, N = {N}")
a2.set(xlabel="z", ylabel="$L(z)/L_0 = \\sum_t L_t z^t / L_0$", yscale="log", title="loss generating function")
a1.legend(fontsize=7); a2.legend(fontsize=7)
fig.tight_layout()
savefig(fig, "generating_functions")

# %%
# what the derivation claims
assert all(checks["closed_forms"].values()), checks["closed_forms"]
assert checks["gamma_tau_only"] and checks["lambda_zero"] and all(checks["values_at_one"].values())
assert positivity["violations_S"] == 0 and positivity["violations_dzU"] == 0, positivity
assert err_U < 1e-9 and err_V < 1e-9, "lambdified derivation = numeric theory"
for lr, mom, b in configs:
    Uz = th.U(zs, p, lr, mom, b)
    assert np.all(np.diff(Uz) >= -1e-12), "U(z) increases on [0, 1]"
    assert bool(th.is_convergent(p, lr, mom, b)) == bool(Uz[-1] < 1), "converges iff U(1) < 1"
print(f"all assertions passed; notebook ran in {time.time() - T_START:.1f} s")
