"""Optimal hyperparameters for a step budget, the negative-momentum condition, and budget analysis
(docs/theory.md#phases to #critical-batch).

- optimal_hyperparameters: minimise the predicted loss L_T at the horizon T over (alpha, beta), beta allowed
  negative, and report the best beta = 0 run for comparison. The search runs over alpha = f * alpha_crit(beta, b)
  with f in (0, 1) (only convergent configs), on a grid then on shrinking local grids, all vectorised.
- negative_momentum_condition: at b = 1, tau = 1, alpha_eff at its beta = 0 optimum, the asymptotic constant
  alpha_eff^(1/nu) V(1) / (1 - U(1))^2 is minimised at beta < 0 iff
      sum_k lambda_k * sum_k w_k > ((nu - 1) / nu) * sum_k lambda_k^2 * sum_k w_k / lambda_k   (loss-space w_k).
- budget_curves: loss against samples processed t * b for several b with alpha = b * lr_per_sample (the linear
  scaling rule, valid while gamma ~ 1 / b and alpha lambda_max << 1); critical_batch_size: where it breaks,
  b* ~ lambda_crit (1 + beta) / ((1 - beta) lambda_max).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._inputs import (as_spectrum, check_batch_size, check_finite, check_lr, check_momentum, check_positive_int,
                      check_tau)
from .asymptotics import fit_power_law, spectral_asymptotic_loss
from .generating import loss_curve
from .inversion import loss_at
from .stability import critical_lr, is_convergent, lambda_crit
from ..errors import InputError

__all__ = ["OptimalHyperparameters", "optimal_hyperparameters", "NegativeMomentumCondition",
           "negative_momentum_condition", "BudgetCurves", "budget_curves", "critical_batch_size"]


@dataclass
class OptimalHyperparameters:
    """Result of optimal_hyperparameters (arrays [len(batch_size)], or scalars for a scalar batch size).

    lr, momentum, loss: alpha*, beta* and the predicted loss at the horizon; lr_beta0, loss_beta0: the best
    alpha and loss at beta = 0; gain = 1 - loss / loss_beta0 (the relative improvement momentum brings)."""
    lr: np.ndarray
    momentum: np.ndarray
    loss: np.ndarray
    lr_beta0: np.ndarray
    loss_beta0: np.ndarray
    gain: np.ndarray
    batch_size: np.ndarray
    horizon: int
    method: str


_TRANSIENT_FACTOR = 8.0  # horizon >= this x the transient time for the asymptotic predictor
_TRANSIENT_SHARE = 0.01  # and the transient's loss bound <= this x the predicted loss


def _transient_radius(spec, a, beta):
    """Per-step decay factor rho of the parts of the noiseless dynamics that the asymptotic law
    e^{-2 alpha_eff lambda t} leaves out: rho = max(|beta|, sqrt(beta) for beta > 0 (modes with
    alpha lambda > (1 - sqrt(beta))^2 are underdamped, |root| = sqrt(beta)), the spectral radius of the top mode's
    heavy-ball matrix [[1 + beta - alpha lambda_max, -beta], [1, 0]])."""
    m = 1 + beta - a * spec.lambda_max
    disc = m * m - 4 * beta
    with np.errstate(invalid="ignore"):
        rho_top = np.where(disc < 0, np.sqrt(np.abs(beta)), (np.abs(m) + np.sqrt(np.maximum(disc, 0))) / 2)
    return np.maximum(np.maximum(rho_top, np.abs(beta)), np.sqrt(np.maximum(beta, 0)))


def _asymptotics_valid(spec, a, beta, horizon, predicted):
    """The asymptotic law is trusted at t = horizon only well past the transient: horizon >= 8 relaxation
    times 1 / -log(rho), and the transient's loss bound L0 rho^(2 horizon) <= 1% of the predicted loss."""
    rho = _transient_radius(spec, a, beta)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t_relax = np.where(rho < 1, -1 / np.log(np.maximum(rho, 1e-300)), np.inf)
        transient = spec.w.sum() * np.exp(2 * horizon * np.log(np.maximum(rho, 1e-300)))
    return (_TRANSIENT_FACTOR * t_relax <= horizon) & (transient <= _TRANSIENT_SHARE * predicted)


def _predictor(spec, horizon, tau, replacement, method):
    if method == "renewal":  # the exact SD loss at the horizon: the contour integral, renewal where needed
        def predict(a, beta, b):
            with np.errstate(all="ignore"):
                out = loss_at(spec, a, beta, b, horizon, tau=tau, replacement=replacement)  # inf if divergent
            # a loss is >= 0; a negative or non-finite value (or a divergent config) is never a candidate
            return np.where(np.isfinite(out) & (out >= 0), out, np.inf)
        return predict
    if method == "asymptotic":
        include_noise = True
        try:
            fit = fit_power_law(spec)
            include_noise = not (fit.kappa / fit.nu < 1)
        except ValueError:
            pass

        def predict(a, beta, b):
            out = spectral_asymptotic_loss(spec, a, beta, b, horizon, tau=tau, replacement=replacement,
                                           include_noise=include_noise)
            # the asymptotic law holds only once the fast (oscillating) transients have died out
            ok = _asymptotics_valid(spec, a, beta, horizon, out)
            return np.where(ok & np.isfinite(out) & (out >= 0), out, np.inf)
        return predict
    raise InputError(f"method must be 'renewal' or 'asymptotic', got method={method!r}")


def _take(x, idx):
    """x [B, K] -> x[b, idx[b]] [B]."""
    return np.take_along_axis(x, idx[:, None], 1)[:, 0]


def optimal_hyperparameters(spectrum, batch_size, N=None, horizon=1000, tau=1.0, *, w=None, c=None,
                            replacement=False, method="renewal", momenta=None, n_lr=14, refine=3, validate=16):
    """alpha*, beta* minimising the predicted loss L_T at the step budget T = horizon
    (docs/theory.md#negative-momentum).

    spectrum: a Problem or eigenvalues with w=/c= (and N). batch_size: a scalar or a 1-d array (vectorised).
    method: "renewal" (L_T from the renewal equation: exact for the SD dynamics; cost O(configs x modes x T))
    or "asymptotic" (the two-term spectral asymptotic loss at t = T; cost O(configs x modes)). The asymptotic
    law only holds well past the transient, so that predictor only admits configs whose fast relaxation time
    (from |beta|, sqrt(beta) and the top mode's heavy-ball radius rho, see `_transient_radius`) is <= horizon / 8
    and whose transient loss bound L0 rho^(2 horizon) is <= 1% of the predicted loss.
    validate (asymptotic only): the `validate` best first-pass cells and the refined point are re-ranked by the
    exact renewal L_T at the horizon (cheap: a few configs); the point returned is the best of them by that
    check, its `loss` the asymptotic prediction there. 0 disables the check.
    Only convergent configs are candidates, and the returned loss is finite and >= 0 (inf if none is left).
    momenta: the beta grid of the first pass (default -0.9..0.9 by 0.1 and 0.95); the lr grid is
    alpha = f alpha_crit(beta, b), f in geomspace(0.02, 0.98, n_lr); then `refine` rounds of 5 x 5 local
    grids, each half as wide. The beta = 0 optimum is searched the same way for comparison.
    """
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    tau = check_tau(tau)
    horizon = check_positive_int(horizon, "horizon", 1)
    b_in = check_batch_size(batch_size, spec.N)
    if b_in.ndim > 1:
        raise InputError(f"batch_size must be a scalar or a 1-d array, got shape {b_in.shape}")
    b = np.atleast_1d(b_in).astype(float)  # [B]
    betas = np.concatenate([np.round(np.linspace(-0.9, 0.9, 19), 12), [0.95]]) if momenta is None \
        else np.atleast_1d(check_momentum(momenta, "momenta")).astype(float)
    fr = np.geomspace(0.02, 0.98, int(n_lr))
    predict = _predictor(spec, horizon, tau, replacement, method)
    kw = dict(tau=tau, replacement=replacement)

    def evaluate(beta, f):  # beta, f: broadcastable [B, ...]; returns alpha, loss of the same shape
        beta, f, bb = np.broadcast_arrays(beta, f, b.reshape(-1, *([1] * (np.ndim(beta) - 1))))
        a = f * critical_lr(spec, beta, bb, **kw)
        return a, predict(a, beta, bb)

    # first pass: [B, nbeta, nlr]
    beta_g = np.broadcast_to(betas[None, :, None], (b.size, betas.size, fr.size))
    f_g = np.broadcast_to(fr[None, None, :], beta_g.shape)
    a_g, loss_g = evaluate(beta_g, f_g)
    flat = loss_g.reshape(b.size, -1).argmin(1)
    pick = lambda x: x.reshape(b.size, -1)[np.arange(b.size), flat]  # noqa: E731
    best_beta, best_f, best_loss, best_a = pick(beta_g), pick(f_g), pick(loss_g), pick(a_g)
    dbeta = np.full(b.size, np.diff(np.sort(betas)).max() if betas.size > 1 else 0.1)
    dlogf = np.full(b.size, np.log(fr[1] / fr[0]) if fr.size > 1 else 0.5)
    off = np.linspace(-1, 1, 5)
    for _ in range(int(refine)):
        nb = np.clip(best_beta[:, None, None] + dbeta[:, None, None] * off[None, :, None], -0.995, 0.995)
        nf = np.clip(best_f[:, None, None] * np.exp(dlogf[:, None, None] * off[None, None, :]), 1e-4, 0.999)
        nb, nf = np.broadcast_arrays(nb, nf)
        a_l, loss_l = evaluate(nb, nf)
        k = loss_l.reshape(b.size, -1).argmin(1)
        cand = _take(loss_l.reshape(b.size, -1), k)
        better = cand < best_loss
        best_loss = np.where(better, cand, best_loss)
        best_beta = np.where(better, _take(nb.reshape(b.size, -1), k), best_beta)
        best_f = np.where(better, _take(nf.reshape(b.size, -1), k), best_f)
        best_a = np.where(better, _take(a_l.reshape(b.size, -1), k), best_a)
        dbeta, dlogf = dbeta / 2, dlogf / 2

    if method == "asymptotic" and validate:
        # re-rank the asymptotic shortlist (best first-pass cells and the refined point) by the exact renewal L_T:
        # O(shortlist x modes x T), cheap, and it catches candidates still in their transient at the horizon
        k_s = min(int(validate), loss_g[0].size)
        order = np.argsort(loss_g.reshape(b.size, -1), axis=1)[:, :k_s]  # [B, k]
        sb = np.concatenate([np.take_along_axis(beta_g.reshape(b.size, -1), order, 1), best_beta[:, None]], 1)
        sa = np.concatenate([np.take_along_axis(a_g.reshape(b.size, -1), order, 1), best_a[:, None]], 1)
        sl = np.concatenate([np.take_along_axis(loss_g.reshape(b.size, -1), order, 1), best_loss[:, None]], 1)
        exact = _predictor(spec, horizon, tau, replacement, "renewal")(sa, sb, np.broadcast_to(b[:, None], sa.shape))
        exact = np.where(np.isfinite(sl), exact, np.inf)
        k = exact.argmin(1)
        found = np.isfinite(_take(exact, k))
        best_beta = np.where(found, _take(sb, k), best_beta)
        best_a = np.where(found, _take(sa, k), best_a)
        best_loss = np.where(found, _take(sl, k), best_loss)

    # beta = 0: [B, nlr], then refine f
    f0 = np.broadcast_to(fr[None, :], (b.size, fr.size))
    a0, l0 = evaluate(np.zeros_like(f0), f0)
    k = l0.argmin(1)
    best0_loss, best0_f, best0_a = _take(l0, k), _take(f0, k), _take(a0, k)
    dlogf = np.full(b.size, np.log(fr[1] / fr[0]) if fr.size > 1 else 0.5)
    off9 = np.linspace(-1, 1, 9)
    for _ in range(int(refine)):
        nf = np.clip(best0_f[:, None] * np.exp(dlogf[:, None] * off9[None, :]), 1e-4, 0.999)
        a_l, loss_l = evaluate(np.zeros_like(nf), nf)
        k = loss_l.argmin(1)
        cand = _take(loss_l, k)
        better = cand < best0_loss
        best0_loss = np.where(better, cand, best0_loss)
        best0_f = np.where(better, _take(nf, k), best0_f)
        best0_a = np.where(better, _take(a_l, k), best0_a)
        dlogf = dlogf / 2
    # beta = 0 is a candidate of the 2-d search too
    use0 = best0_loss < best_loss
    best_loss = np.where(use0, best0_loss, best_loss)
    best_a = np.where(use0, best0_a, best_a)
    best_beta = np.where(use0, 0.0, best_beta)
    gain = 1 - best_loss / best0_loss
    sq = (lambda x: float(x[0])) if np.ndim(b_in) == 0 else (lambda x: x)  # noqa: E731
    return OptimalHyperparameters(lr=sq(best_a), momentum=sq(best_beta), loss=sq(best_loss), lr_beta0=sq(best0_a),
                                  loss_beta0=sq(best0_loss), gain=sq(gain), batch_size=sq(b), horizon=horizon,
                                  method=method)


@dataclass
class NegativeMomentumCondition:
    """holds: lhs > rhs, with lhs = sum lambda * sum w and rhs = ((nu - 1) / nu) * sum lambda^2 * sum w / lambda."""
    holds: bool
    lhs: float
    rhs: float
    nu: float


def negative_momentum_condition(spectrum, nu=None, *, w=None, c=None, N=None):
    """The negative-momentum condition of docs/theory.md#negative-momentum (b = 1, tau = 1, alpha_eff at its beta = 0
    optimum, noise-dominated phase): the optimal beta is negative iff

        sum_k lambda_k * sum_k w_k > ((nu - 1) / nu) * sum_k lambda_k^2 * sum_k w_k / lambda_k,

    with w_k = c_k / (2N) the initial LOSS per mode. nu: the spectral exponent (default: fitted)."""
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    if nu is None:
        nu = fit_power_law(spec).nu
    nu = float(check_finite(nu, "nu"))
    if nu <= 0:
        raise InputError(f"nu must be > 0, got nu={nu}")
    lam, wk = spec.eigvals, spec.w
    pos = lam > 0
    lhs = lam.sum() * wk.sum()
    rhs = (nu - 1) / nu * (lam ** 2).sum() * (wk[pos] / lam[pos]).sum()
    return NegativeMomentumCondition(holds=bool(lhs > rhs), lhs=float(lhs), rhs=float(rhs), nu=nu)


def critical_batch_size(spectrum, momentum=0.0, tau=1.0):
    """b* ~ lambda_crit (1 + beta) / ((1 - beta) lambda_max) (docs/theory.md#critical-batch): where the noise asymptote
    alpha = 2 (1 - beta) / (gamma lambda_crit) of the stability boundary (gamma ~ 1 / b) meets the per-mode
    limit alpha = 2 (1 + beta) / lambda_max. Vectorised over momentum."""
    spec = as_spectrum(spectrum)
    beta = check_momentum(momentum)
    return lambda_crit(spec, tau) * (1 + beta) / ((1 - beta) * spec.lambda_max)


@dataclass
class BudgetCurves:
    """Loss against samples processed under the linear scaling rule alpha = b * lr_per_sample.

    samples [S]: the target sample counts; steps [B, S] = round(samples / b); processed [B, S] = steps * b;
    loss [B, S]: predicted loss after those steps; lr [B]; convergent [B]: alpha_b below alpha_crit(beta, b)."""
    batch_size: np.ndarray
    lr: np.ndarray
    momentum: float
    samples: np.ndarray
    steps: np.ndarray
    processed: np.ndarray
    loss: np.ndarray
    convergent: np.ndarray


def budget_curves(spectrum, batch_sizes, n_samples, lr_per_sample, momentum=0.0, *, w=None, c=None, N=None,
                  tau=1.0, replacement=False, n_points=40):
    """Predicted loss against samples processed t * b for several batch sizes b, with alpha = b * lr_per_sample
    (the linear scaling rule, docs/theory.md#critical-batch), from the renewal equation. Below the critical batch size
    the curves collapse onto one; above it alpha_b exceeds alpha_crit and the run diverges (convergent False,
    loss inf/nan)."""
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    tau = check_tau(tau)
    b = np.atleast_1d(check_batch_size(batch_sizes, spec.N, "batch_sizes")).astype(float)
    n_samples = check_positive_int(n_samples, "n_samples", 1)
    a0 = float(check_lr(lr_per_sample, "lr_per_sample"))
    beta = float(check_momentum(momentum))
    a = a0 * b  # [B]
    samples = np.unique(np.round(np.geomspace(b.max(), n_samples, int(n_points))).astype(np.int64))
    steps = np.maximum(np.round(samples[None, :] / b[:, None]).astype(np.int64), 1)  # [B, S]
    conv = is_convergent(spec, a, beta, b, tau=tau, replacement=replacement)
    with np.errstate(all="ignore"):
        full = loss_curve(spec, a, beta, b, int(steps.max()), tau, replacement=replacement)  # [B, T + 1]
    loss = np.take_along_axis(full, steps, 1)
    return BudgetCurves(batch_size=b, lr=a, momentum=beta, samples=samples, steps=steps,
                        processed=steps * b[:, None].astype(np.int64), loss=loss, convergent=conv)
