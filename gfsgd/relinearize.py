"""The re-linearised prediction (docs/theory.md#relinearise): train the real network for its first t0 steps, take
its kernel and residual there, and predict the rest of the run from them.

    curves = gfsgd.relinearize.run(problem, configs, n_steps, t0=100)          # SD from step t0 on
    curves.loss[:, steps <= t0]   # the network's own path (path 0 of the nn regime)
    curves.loss[:, steps > t0]    # the kernel regime on the network linearised at w_t0

The kernel regimes linearise the network at its initialisation w0 and keep that kernel for the whole run. A
network that learns features moves its kernel, fastest early in training. Here each config's network is
trained for t0 steps (gfsgd.regimes.nn, path 0 of `seed`: the batches of a plain nn run with that seed), and
the network at w_t0 gives a new problem: K_t0 = J(w_t0) J(w_t0)^T, the residual d_t0 = f(X; w_t0) - y (and the
held-out set's, when the problem has one). Its learning rate keeps the network's step size,

    lr_nn = alpha N / lambda_max(K_0) = alpha' N / lambda_max(K_t0)   =>   alpha' = alpha lambda_max(K_t0) / lambda_max(K_0),

and the chosen kernel regime ("sd", "full" or "linearized") runs (alpha', beta, b) for the remaining
n_steps - t0 steps from d_t0. What it assumes: the kernel stays at K_t0 after t0, and the velocity at t0 is
dropped (the kernel regimes start at rest; with momentum beta this loses a transient of about 1 / (1 - beta)
steps). Constant hyperparameters only. Cost: t0 steps of the network and one kernel per config.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from .configs import check_log_steps, check_n_steps, default_log_steps
from .curves import Curves
from .errors import InputError
from .ntk import problem_from_network
from .regimes import full, linearized, nn, spectral_diagonal
from . import theory

__all__ = ["run", "network_at", "problem_at", "network_edge", "drift_forecast", "REGIMES"]

REGIMES = {"sd": spectral_diagonal, "full": full, "linearized": linearized}


def network_at(model, params: dict) -> torch.nn.Module:
    """A copy of `model` whose parameters are `params` ({name: tensor}, as nn.run's meta["final_state"])."""
    m = copy.deepcopy(model)
    own = dict(m.named_parameters())
    if set(own) != set(params):
        raise InputError(f"params must name the model's parameters {sorted(own)}, got {sorted(params)}")
    with torch.no_grad():
        for k, q in own.items():
            q.copy_(params[k].to(q.dtype))
    return m


def problem_at(problem, params: dict, *, dtype=torch.float64, device="cpu"):
    """The Problem of `problem`'s network linearised at `params` (its kernel K_t, the residual f(X; w_t) - y, and
    the held-out set's when the network has one); problem.network is the one of gfsgd.problem_from_network."""
    net = nn.as_network(problem)
    model = network_at(net.model, params)
    return problem_from_network(model, net.X, net.y, X_test=net.X_test, y_test=net.y_test, method=net.ntk_method,
                                dtype=dtype, device=device)


def run(problem, configs, n_steps, *, t0: int, regime: str = "sd", log_steps=None, seed: int = 0, network=None,
        nn_dtype="float64", repeats: int = 8, progress: bool = False) -> Curves:
    """The re-linearised prediction of G configs (alpha, beta, b) over n_steps: the network for steps 0..t0, the
    kernel regime `regime` on the network linearised at w_t0 after (module docstring).

    Args:
        problem: a Problem from gfsgd.problem_from_network (it carries the network), or `network=` beside it.
        t0: the step at which the network is re-linearised, 0 <= t0 < n_steps (0: the plain prediction).
        regime: "sd" (default), "full" (exact, needs the N C x N C basis) or "linearized" (`repeats` paths).
        log_steps: as in every regime (default: every step up to 100, then 100 log-spaced per decade).
        seed: the network's batch stream for steps 0..t0 (path 0 of nn.run with this seed); also the
            linearized regime's.
        nn_dtype: the network's training dtype.
    Returns Curves(regime="relinearized-<regime>"); meta: t0, the network's and the prediction's seconds,
    per config kernel_seconds, lambda_ratio (lambda_max(K_t0) / lambda_max(K_0)), kernel_change
    (|K_t0 - K_0|_F / |K_0|_F of the whole kernel), alpha_t0 (alpha') and loss_t0 (the network's loss at t0).
    A config that diverged before t0 is diverged; one whose prediction diverges is diverged at t0 + its step.
    """
    if regime not in REGIMES:
        raise InputError(f"regime must be one of {sorted(REGIMES)}, got regime={regime!r}")
    n_steps = check_n_steps(n_steps)
    if isinstance(t0, bool) or not float(t0).is_integer() or not 0 <= int(t0) < n_steps:
        raise InputError(f"t0 must be an integer with 0 <= t0 < n_steps = {n_steps}, got t0={t0!r}")
    t0 = int(t0)
    net = nn.as_network(problem, network)
    steps = check_log_steps(default_log_steps(n_steps, dense_until=100, per_decade=100) if log_steps is None
                            else log_steps, n_steps)
    cfgs = [tuple(c) for c in (configs.configs if hasattr(configs, "configs") else configs)]
    if not cfgs:
        raise InputError("configs must hold at least one (lr, momentum, batch_size) triple")
    G, T = len(cfgs), len(steps)
    lam0 = net.lambda_max()
    K0 = problem.K if getattr(problem, "has_basis", False) else None  # normalised: K_emp / lambda_max(K_0)

    started = time.perf_counter()
    head = sorted({int(s) for s in steps if s <= t0} | {0, t0})
    if t0 > 0:
        real = nn.run(problem, cfgs, t0, network=net, log_steps=head, seed=seed, dtype=nn_dtype, keep_state=True,
                      progress=progress)
        states, div_head = real.meta["final_state"], real.diverged_step
    else:
        real, states, div_head = None, [None] * G, [None] * G
    nn_seconds = time.perf_counter() - started

    loss = np.full((G, T), math.nan)
    with_test = net.X_test is not None and getattr(problem, "has_test", False)
    test = np.full((G, T), math.nan) if with_test else None
    status, div = ["ok"] * G, [None] * G
    info = dict(kernel_seconds=[], lambda_ratio=[], kernel_change=[], alpha_t0=[], loss_t0=[])
    col = {int(s): j for j, s in enumerate(steps)}
    tail = [int(s) for s in steps if s >= t0]
    pred_seconds = 0.0
    hc = {} if real is None else {int(s): j for j, s in enumerate(real.steps)}  # the network's logged columns
    for g, (alpha, beta, b) in enumerate(cfgs):
        if real is not None:
            for s in steps:
                if s <= t0:
                    loss[g, col[int(s)]] = real.loss[g, hc[int(s)]]
                    if with_test:
                        test[g, col[int(s)]] = real.test_loss[g, hc[int(s)]]
        if div_head[g] is not None:
            status[g], div[g] = "diverged", div_head[g]
            for v in info.values():
                v.append(math.nan)
            continue
        t = time.perf_counter()
        p = problem if t0 == 0 else problem_at(problem, states[g]["params"])
        info["kernel_seconds"].append(0.0 if t0 == 0 else time.perf_counter() - t)
        ratio = p.lambda_max_raw / lam0
        info["lambda_ratio"].append(ratio)
        change = math.nan
        if K0 is not None and t0 > 0:
            K0e, Kte = K0 * lam0, p.K * p.lambda_max_raw
            change = float((Kte - K0e).norm() / K0e.norm())
        info["kernel_change"].append(change)
        info["alpha_t0"].append(alpha * ratio)
        info["loss_t0"].append(p.loss0)
        t = time.perf_counter()
        opts = dict(repeats=repeats, seed=seed) if regime == "linearized" else {}
        pred = REGIMES[regime].run(p, [(alpha * ratio, beta, b)], n_steps - t0, log_steps=[s - t0 for s in tail],
                                   progress=False, **opts)
        pred_seconds += time.perf_counter() - t
        for j, s in enumerate(tail):
            if s > t0 or real is None:
                loss[g, col[s]] = pred.loss[0, j]
                if with_test and pred.test_loss is not None:
                    test[g, col[s]] = pred.test_loss[0, j]
        if pred.diverged_step[0] is not None:
            status[g], div[g] = "diverged", t0 + int(pred.diverged_step[0])
    meta = dict(regime=f"relinearized-{regime}", t0=t0, seed=seed, nn_seconds=nn_seconds,
                prediction_seconds=pred_seconds, wall_time=time.perf_counter() - started, lambda_max0_raw=lam0, **info)
    return Curves(regime=f"relinearized-{regime}", steps=steps, loss=loss, configs=cfgs, status=status,
                  diverged_step=div, meta=meta, test_loss=test)


def _edge_of(p, beta, b, loss):
    if loss == "mse":
        return float(theory.critical_lr(p, beta, b))
    return float(theory.critical_lr_loss(p, beta, b, loss))


def network_edge(problem, momentum: float, batch_size: int, *, probe_steps: int = 200, low: float = 1 / 16,
                 high: float = 16.0, points: int = 13, refine: int = 1, check_kernel: bool = False, slack: float = 1.0,
                 loss: str = "mse", seed: int = 0, nn_dtype="float64", network=None) -> dict:
    """The largest learning rate at which the network itself trains, at momentum beta and batch size b, found on
    short real runs (one path of `seed`, vectorised over the probed learning rates).

    A probe alpha trains when, after probe_steps steps, its network has not diverged and its loss is below L_0
    (the loss at initialisation: a stalled network fails). With check_kernel, it must also be stable under its own
    kernel: alpha' = alpha lambda_max(K_t) / lambda_max(K_0) below slack x the edge of the problem re-linearised
    there (theory.critical_lr; theory.critical_lr_loss for cross-entropy). Off by default: a network at the edge of
    stability (Cohen et al. 2021) sharpens until alpha' hovers at its edge and trains on, so the kernel check
    mislabels it (measured in docs/theory.md#network-edge). The probes: `points` factors from `low` to
    `high` x the linear edge (the SD edge of the kernel at initialisation), geometric; the first failure brackets
    the edge; `refine` rounds of 8 probes inside the bracket narrow it. Returns a dict: edge (the bracket's
    geometric midpoint; NaN when the lowest probe fails, inf when the highest trains), bracket (lo, hi), linear
    (the linear edge), ratio (edge / linear), probes (alpha, trains) and seconds.
    """
    started = time.perf_counter()
    if isinstance(probe_steps, bool) or not float(probe_steps).is_integer() or int(probe_steps) < 1:
        raise InputError(f"probe_steps must be an integer >= 1, got probe_steps={probe_steps!r}")
    if not (0 < low < high) or int(points) < 2:
        raise InputError(f"need 0 < low < high and points >= 2, got low={low}, high={high}, points={points}")
    S = int(probe_steps)
    net = nn.as_network(problem, network)
    beta, b = float(momentum), int(batch_size)
    linear = _edge_of(problem, beta, b, loss)
    probes = []

    def trains(alphas):
        c = nn.run(problem, [(a, beta, b) for a in alphas], S, network=net, log_steps=[0, S], seed=seed,
                   dtype=nn_dtype, keep_state=check_kernel, progress=False, loss=loss)
        L0 = float(c.loss[0, 0])
        ok = np.array([s == "ok" and np.isfinite(v) and v < L0 for s, v in zip(c.status, c.loss[:, -1])])
        if check_kernel:
            for j in np.flatnonzero(ok):
                p = problem_at(problem, c.meta["final_state"][j]["params"])
                a_t = alphas[j] * p.lambda_max_raw / net.lambda_max()
                ok[j] = a_t < slack * _edge_of(p, beta, b, loss)
        probes.extend(zip(map(float, alphas), ok.tolist()))
        return ok

    grid = linear * np.geomspace(low, high, int(points))
    lo = hi = None
    for r in range(1 + int(refine)):
        ok = trains(grid)
        bad = np.flatnonzero(~ok)
        if bad.size == 0:
            lo = grid[-1]
            break
        k = int(bad[0])
        if k == 0:
            hi = grid[0]
            break
        lo, hi = grid[k - 1], grid[k]
        grid = np.geomspace(lo, hi, 10)[1:-1]
    edge = (math.sqrt(lo * hi) if lo is not None and hi is not None else
            math.inf if hi is None else math.nan)
    return dict(edge=edge, bracket=(lo, hi), linear=linear, ratio=edge / linear, momentum=beta, batch_size=b,
                probe_steps=S, probes=sorted(probes), seconds=time.perf_counter() - started)


def drift_forecast(problem, configs, n_steps, *, probe_steps: int, drift_probe: int = 64, log_steps=None,
                   seed: int = 0, tau: float = 1.0, nn_dtype="float64", network=None) -> dict:
    """How far each config's kernel will have moved by n_steps, from a short real probe (docs/theory.md#drift).

    The network is trained probe_steps steps (path 0 of `seed`) and its kernel's relative change |K_S - K_0|_F /
    |K_0|_F measured on drift_probe training points at S = probe_steps (nn.run(drift_probe=)). To first order the
    kernel moves linearly with w - w0, so the forecast carries the probe's value along the linearised network's
    weight travel: drift(t) = drift(S) sqrt(W(t) / W(S)) for t >= S, W = theory.weight_travel (the SD dynamics;
    before S, drift(S) sqrt(W(t) / W(S)) too). Past the linear edge W grows without bound while a network that
    survives its probe has already moved to a kernel that takes the step (the catapult, Lewkowycz et al. 2020): such
    a config (linear_converges False) keeps its probe's value. A config that diverged in its probe is NaN.

    Returns dict(steps [S], forecast [G, S], probe_drift [G], probe_steps, linear_converges [G], seconds).
    """
    import time as _time
    started = _time.perf_counter()
    if isinstance(probe_steps, bool) or not float(probe_steps).is_integer() or not 1 <= int(probe_steps) < n_steps:
        raise InputError(f"probe_steps must be an integer with 1 <= probe_steps < n_steps = {n_steps}, "
                         f"got probe_steps={probe_steps!r}")
    S = int(probe_steps)
    cfgs = [tuple(c) for c in (configs.configs if hasattr(configs, "configs") else configs)]
    steps = check_log_steps(default_log_steps(n_steps, dense_until=100, per_decade=20) if log_steps is None
                            else log_steps, n_steps)
    probe = nn.run(problem, cfgs, S, network=network, log_steps=[0, S], seed=seed, dtype=nn_dtype,
                   drift_probe=int(drift_probe), progress=False)
    d = probe.meta["kernel_drift"]
    at_S = np.asarray(d["relative_change"], float)[:, list(d["steps"]).index(S)]
    a, beta, b = (np.array(x, float) for x in zip(*cfgs))
    grid = np.unique(np.r_[steps, S])
    W = theory.weight_travel(problem, a, beta, b, grid, tau=tau)
    WS, Wt = W[:, np.searchsorted(grid, S)], W[:, np.searchsorted(grid, steps)]
    pairs = {q: float(theory.critical_lr(problem, q[0], q[1], tau=tau)) for q in set(zip(beta.tolist(), b.tolist()))}
    edge = np.array([pairs[q] for q in zip(beta.tolist(), b.tolist())])
    conv = np.isfinite(Wt).all(1) & (a < edge)
    with np.errstate(all="ignore"):
        ratio = np.sqrt(Wt / WS[:, None])
    forecast = np.where(conv[:, None], at_S[:, None] * ratio, at_S[:, None] * np.ones_like(ratio))
    return dict(steps=np.asarray(steps), forecast=forecast, probe_drift=at_S, probe_steps=S, linear_converges=conv,
                seconds=_time.perf_counter() - started)
