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
# # Beyond the linearisation: how far the kernel moves, where the network really diverges, and what a short probe buys
#
# Every prediction of gfsgd is exact for the network *linearised at initialisation*. A real network leaves that
# linearisation, most at the large learning rates and high momenta a practitioner wants to use. Before launching a
# costly run there, three questions matter:
#
# * **(a) How far does the kernel move?** `nn.run(..., drift_probe=n)` records |K_t − K_0|_F / |K_0|_F and
#   λ_max(K_t)/λ_max(K_0) on a fixed probe of n training points (docs/theory.md#drift).
# * **(b) Where does the network itself diverge?** The exact edge of the linearised dynamics
#   (`theory.critical_lr(..., exact=True)`, docs/theory.md#stability-edge) against the network's own edge, found by
#   short real probes (`relinearize.network_edge`, docs/theory.md#network-edge), and both against a real grid.
# * **(c) How good is the prediction?** The prediction at initialisation against the re-linearised one
#   (`relinearize.run(..., t0=)`: the network trained for the first 5% of the run, then its kernel and residual at
#   w_t0 carry the prediction; docs/theory.md#relinearise), against the real network.
#
# The data is one no test here tunes on: scikit-learn's bundled diabetes regression (442 patients, 10 features;
# 80% train, 20% held out), with the default one-hidden-layer MLP (width 512). The same measurements at more sizes
# and on breast cancer and an MNIST CNN are in benchmarks/validate_network_fidelity.py (benchmarks/README.md).

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
import torch
from scipy.stats import spearmanr
from sklearn import datasets

import gfsgd.theory as th
from gfsgd import plots, problem_from_network, relinearize
from gfsgd.models import MLP
from gfsgd.regimes import nn
from gfsgd.regimes import spectral_diagonal as sd

savefig = plots.saver(FIG_DIR, "BeyondLinearisation")

WIDTH = 64 if QUICK else 512                # hidden units
T = 200 if QUICK else 2000                  # SGD steps of every run
B = 4                                       # batch size
MOMENTA = (0.0, 0.5, 0.9)                   # momenta of the grid
FRACTIONS = (0.5, 1.1, 2.0) if QUICK else (0.25, 0.5, 0.8, 1.1, 1.5, 2.0)  # alpha / the SD edge at (beta, b)
PATHS = 2 if QUICK else 3                   # real-network batch-sampler seeds per config
T0 = max(1, int(round(0.05 * T)))           # the re-linearisation step and the network edge's probe length
print(f"gfsgd {gfsgd.__version__}; parameters: QUICK={QUICK}, WIDTH={WIDTH}, T={T}, B={B}, MOMENTA={MOMENTA}, "
      f"FRACTIONS={FRACTIONS}, PATHS={PATHS}, T0={T0}")

# %%
X, y = datasets.load_diabetes(return_X_y=True)
rng = np.random.default_rng(0)
idx = rng.permutation(len(y))
n = int(0.8 * len(y))
tr, te = idx[:n], idx[n:]
mu, sdv = X[tr].mean(0), X[tr].std(0)
X, y = (X - mu) / sdv, (y - y[tr].mean()) / y[tr].std()
as_t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
p = problem_from_network(MLP(X.shape[1], width=WIDTH, seed=0, dtype=torch.float64), as_t(X[tr]), as_t(y[tr]),
                         X_test=as_t(X[te]), y_test=as_t(y[te]), device="cpu")
print(p)

# %% [markdown]
# **(b) first: the two edges.** Per momentum, the SD edge (the grid's unit), the exact edge of the linearised
# dynamics, and the network's edge from real probes of T0 steps (a probe trains when it ends finite and below
# L_0; the edge is the geometric middle of the first bracket, refined once).

# %%
t0 = time.time()
edges = {}
for beta in MOMENTA:
    e = relinearize.network_edge(p, beta, B, probe_steps=T0, seed=0)
    edges[beta] = dict(sd=float(th.critical_lr(p, beta, B)), exact=float(th.critical_lr(p, beta, B, exact=True)),
                       network=e["edge"], bracket=e["bracket"], probes=len(e["probes"]))
    print(f"beta = {beta}: SD edge {edges[beta]['sd']:.3f}, exact edge {edges[beta]['exact']:.3f}, network edge "
          f"{e['edge']:.3f} (bracket {e['bracket'][0]:.3f}-{e['bracket'][1]:.3f}, {len(e['probes'])} probes)")
t_edges = time.time() - t0
print(f"the edges took {t_edges:.1f} s")

# %% [markdown]
# **The grid, on the real network and predicted.** α = f × the SD edge for every f in FRACTIONS, at each momentum,
# b = B; the network with PATHS seeds and the drift probe (64 points), the SD prediction at initialisation, and the
# re-linearised SD prediction from T0.

# %%
cfgs = [(f * edges[beta]["sd"], beta, B) for beta in MOMENTA for f in FRACTIONS]
steps = np.unique(np.concatenate([[0, T0], np.round(np.geomspace(1, T, 40)).astype(int)]))
t0 = time.time()
real = nn.run(p, cfgs, T, repeats=PATHS, log_steps=steps, drift_probe=64, progress=False)
t_real = time.time() - t0
lin = sd.run(p, cfgs, T, log_steps=steps, progress=False)
t0 = time.time()
rel = relinearize.run(p, cfgs, T, t0=T0, log_steps=steps, seed=0)
t_rel = time.time() - t0
print(f"real network {t_real:.1f} s; re-linearised {t_rel:.1f} s ({t_rel / t_real:.2f} x the real grid)")
final = lambda c: np.where([s == "ok" for s in c.status], c.loss[:, -1], np.inf)  # noqa: E731
f_real, f_lin, f_rel = final(real), final(lin), final(rel)
trains = np.isfinite(f_real) & (f_real < p.loss0)
for (a, beta, b), fr, fl, fz in zip(cfgs, f_real, f_lin, f_rel):
    print(f"alpha {a:7.3f} beta {beta:.1f}: real {fr:.4g}  linear {fl:.4g}  re-linearised {fz:.4g}")

# %% [markdown]
# **(a) The drift, measured and forecast.** The relative change of the probe's kernel along training, and its top
# eigenvalue against the initial one, per config (colour: α / SD edge). Past the SD edge the network trains on by
# lowering λ_max (the catapult: Lewkowycz et al. 2020) and its kernel moves by tens of percent, so the prediction
# at initialisation cannot hold there. Dashed: the forecast from a T0-step probe (`relinearize.drift_forecast`):
# the kernel moves to first order linearly with w − w0, so the probe's drift is carried along the linearised
# network's weight travel, drift(S)·√(W(t)/W(S)) with W = E|w_t − w_0|² (`theory.weight_travel`); past the
# linear edge the probe's value is held (the catapult has happened by then).

# %%
t0 = time.time()
fc = relinearize.drift_forecast(p, cfgs, T, probe_steps=T0, drift_probe=64, log_steps=steps)
t_fc = time.time() - t0
d = real.meta["kernel_drift"]
ds, rc, lr_ = np.asarray(d["steps"]), np.asarray(d["relative_change"]), np.asarray(d["lambda_max_ratio"])
plots.style()
fig, axes = plt.subplots(2, len(MOMENTA), figsize=(4.6 * len(MOMENTA), 6.4), sharex=True)
cmap = plt.get_cmap("viridis")
for j, beta in enumerate(MOMENTA):
    for k, f in enumerate(FRACTIONS):
        i = MOMENTA.index(beta) * len(FRACTIONS) + k
        col = cmap(k / max(1, len(FRACTIONS) - 1))
        axes[0, j].plot(np.maximum(ds, 1), rc[i], color=col, label=f"α = {f:g} × SD edge")
        keep = fc["steps"] >= T0
        axes[0, j].plot(fc["steps"][keep], fc["forecast"][i, keep], color=col, ls="--", lw=1)
        axes[1, j].plot(np.maximum(ds, 1), lr_[i], color=col)
    axes[0, j].set(xscale="log", yscale="log", title=f"β = {beta}, b = {B}", ylabel="|K_t − K_0| / |K_0| (probe)")
    axes[1, j].set(xscale="log", xlabel="step", ylabel="λ_max(K_t) / λ_max(K_0)")
    axes[1, j].axhline(1, color="k", lw=0.6)
axes[0, 0].legend(fontsize=7)
fig.suptitle(f"diabetes, MLP width {WIDTH}: how far the kernel moves (mean of {PATHS} paths; ended where a "
             "path diverged)", fontsize=10)
fig.tight_layout()
savefig(fig, "drift")
measured_T, forecast_T = rc[:, -1], fc["forecast"][:, -1]
fine = np.isfinite(measured_T) & np.isfinite(forecast_T) & trains
err_fc = np.abs(forecast_T[fine] / measured_T[fine] - 1)
err_hold = np.abs(fc["probe_drift"][fine] / measured_T[fine] - 1)
print(f"drift at T = {T} forecast from {T0} steps ({t_fc:.1f} s): median |forecast / measured - 1| = "
      f"{np.median(err_fc):.2f} (holding the probe's value: {np.median(err_hold):.2f}); within a factor 2: "
      f"{np.mean(np.abs(np.log(forecast_T[fine] / measured_T[fine])) <= np.log(2)):.0%} of the {int(fine.sum())} "
      "configs that train")

# %% [markdown]
# **(b) The edges against the real divergence map.** Each cell of the grid: a circle where the network trained
# (finite, below L_0), a cross where it diverged or stalled. The exact edge of the linearised dynamics and the
# network's own edge, from T0-step probes.

# %%
fig, ax = plt.subplots(figsize=(6.2, 4.4))
for j, beta in enumerate(MOMENTA):
    for k, f in enumerate(FRACTIONS):
        i = j * len(FRACTIONS) + k
        ax.plot(j, cfgs[i][0], "o" if trains[i] else "x", color="C2" if trains[i] else "C3", ms=8, mfc="none")
    ax.hlines(edges[beta]["exact"], j - 0.35, j + 0.35, color="C0", lw=2, label="exact edge (linearised)" if j == 0 else None)
    ax.hlines(edges[beta]["network"], j - 0.35, j + 0.35, color="C1", lw=2, ls="--",
              label=f"network edge ({T0}-step probes)" if j == 0 else None)
ax.plot([], [], "o", color="C2", mfc="none", label="trained (real)")
ax.plot([], [], "x", color="C3", label="diverged or stalled (real)")
ax.set(xticks=range(len(MOMENTA)), xticklabels=[f"β = {b}" for b in MOMENTA], yscale="log",
       ylabel="learning rate α (normalised kernel units)", title=f"diabetes, MLP width {WIDTH}, b = {B}")
ax.legend(fontsize=7, loc="upper left")
fig.tight_layout()
savefig(fig, "edges")
exact_ok = np.array([c[0] < edges[c[1]]["exact"] for c in cfgs])
net_ok = np.array([c[0] < edges[c[1]]["network"] for c in cfgs])
acc_exact, acc_net = float(np.mean(exact_ok == trains)), float(np.mean(net_ok == trains))
print(f"trains / diverges classified right: exact edge {acc_exact:.0%}, network edge {acc_net:.0%} "
      f"({int(trains.sum())} of {len(cfgs)} configs train on the network)")

# %% [markdown]
# **(c) Predicted against real.** The loss curves of three configs, and the final losses of every config that
# trains: the prediction at initialisation against the re-linearised one.

# %%
pick = [MOMENTA.index(beta) * len(FRACTIONS) + FRACTIONS.index(f) for beta, f in ((0.9, 1.1), (0.0, 1.1), (0.5, 0.5))]
fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
for ax, i in zip(axes, pick):
    a, beta, b = cfgs[i]
    st = np.maximum(steps, 1)
    ax.plot(st, real.loss[i], "k-", lw=1.8, label="real network")
    ax.plot(st, lin.loss[i], "C0--", label="SD at initialisation")
    ax.plot(st, rel.loss[i], "C1-", label=f"re-linearised at t0 = {T0}")
    ax.axvline(T0, color="C1", lw=0.6, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="step", ylabel="train loss",
           title=f"α = {a:.3g} ({a / edges[beta]['sd']:.2g} × SD edge), β = {beta}")
    top = np.nanmax(np.where(np.isfinite(real.loss[i]), real.loss[i], np.nan))
    ax.set_ylim(None, 3 * top)
axes[0].legend(fontsize=7)
ax = axes[3]
ok = trains & np.isfinite(f_lin) & np.isfinite(f_rel)
shown = ok & (f_lin < 10 * p.loss0) & (f_rel < 10 * p.loss0)  # a prediction that blows up is off the scale
ax.loglog(f_real[shown], f_lin[shown], "o", color="C0", mfc="none", label="SD at initialisation")
ax.loglog(f_real[shown], f_rel[shown], "s", color="C1", mfc="none", label=f"re-linearised at t0 = {T0}")
vals = np.r_[f_real[shown], f_lin[shown], f_rel[shown]]
ax.plot([vals.min(), vals.max()], [vals.min(), vals.max()], "k:", lw=0.8)
ax.set(xlabel=f"real final train loss (mean of {PATHS} paths)", ylabel="predicted",
       title=f"configs that train ({int((ok & ~shown).sum())} with a prediction > 10 $L_0$ not shown)")
ax.legend(fontsize=7)
fig.tight_layout()
savefig(fig, "curves")
gap = lambda f: float(np.median(np.abs(f[ok] / f_real[ok] - 1)))  # noqa: E731
rho = lambda f: float(spearmanr(f[ok], f_real[ok])[0])  # noqa: E731
print(f"configs that train with both predictions finite: {int(ok.sum())}")
print(f"median |predicted / real - 1|: at initialisation {gap(f_lin):.3f}, re-linearised {gap(f_rel):.3f}")
print(f"Spearman rank correlation with the real final loss: at initialisation {rho(f_lin):.3f}, "
      f"re-linearised {rho(f_rel):.3f}")

# %% [markdown]
# **What this shows** (the numbers above are those of the committed run). The network's kernel moves most where a
# practitioner wants to train: past the linearised edge the network does not diverge but lowers its sharpness
# (λ_max falls by up to 30%) and trains on, so the exact edge of the linearisation is a pessimistic answer to
# "will it train?", while a few short real probes find where the network itself fails. The loss predictions are
# another matter at this small batch: both the prediction at initialisation and the re-linearised one end 20–30%
# (median) away from the real network, and the re-linearised one does not rank the configs better here: the kernel
# keeps moving after t0. (At b = 10 and 100 re-linearising does help the ranking: benchmarks/README.md,
# validate_network_fidelity.py, on three data sets.) The drift forecast from the probe is within a factor 2 for
# most configs but no better than holding the probe's value on this data. `recommend(..., probe_steps=)` uses such
# probes to check its candidates on the network.

# %%
# Closing checks (they hold at both sizes)
assert np.all(rc[:, 0] == 0) and np.all(lr_[:, 0] == 1)  # no drift at step 0
assert np.nanmax(rc) > 0  # the kernel moves
assert acc_net >= acc_exact  # the network's edge classifies at least as well as the linearised one
assert ok.sum() >= 3 and np.isfinite(gap(f_rel))
print(f"all assertions passed ({time.time() - T_START:.0f} s)")
