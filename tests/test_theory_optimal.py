"""gfsgd.theory.optimal against an SD grid search, the exact asymptotic constant and the stability boundary."""
import numpy as np
import pytest
from scipy import optimize

from gfsgd import Problem
from gfsgd import theory as th
from gfsgd.regimes import spectral_diagonal as sd


def test_negative_momentum_optimum_matches_sd_grid_search():
    nu, kappa, N, T = 1.5, 3.5, 1000, 2000
    p = Problem.synthetic(N, nu=nu, kappa=kappa, basis=None)
    assert th.negative_momentum_condition(p, nu).holds
    opt = th.optimal_hyperparameters(p, 1, horizon=T)
    assert opt.momentum < 0 and opt.loss < opt.loss_beta0
    # a direct SD grid search at the same budget, on a grid that knows nothing of the prediction
    alphas = np.geomspace(0.06, 0.4, 12)
    betas = np.linspace(-0.7, 0.5, 13)
    A, Bt = np.meshgrid(alphas, betas, indexing="ij")
    configs = list(zip(A.ravel(), Bt.ravel(), [1] * A.size))
    ref = sd.run(p, configs, T, log_steps=[0, T], progress=False)
    final = np.where(np.isfinite(ref.loss[:, -1]), ref.loss[:, -1], np.inf)
    k = int(np.argmin(final))
    assert configs[k][1] < 0
    assert final[k] == pytest.approx(opt.loss, rel=0.02)
    assert final[k] >= opt.loss * (1 - 1e-9)  # the optimiser is at least as good as any grid cell
    # the cheap asymptotic predictor agrees on the sign of beta*
    assert th.optimal_hyperparameters(p, 1, horizon=T, method="asymptotic").momentum < 0


@pytest.mark.parametrize("nu, kappa", [(1.5, 3.5), (1.5, 1.7), (2.0, 5.0), (1.2, 1.3)])
def test_negative_momentum_condition_is_the_sign_of_the_derivative(nu, kappa):
    """At b = 1, tau = 1 and alpha_eff at the beta = 0 optimum of F = alpha_eff^(1/nu) V(1) / (1 - U(1))^2,
    dF/dbeta (alpha_eff fixed) > 0 at beta = 0 exactly when the condition holds (docs/theory.md#negative-momentum)."""
    p = Problem.synthetic(20_000, nu=nu, kappa=kappa, basis=None)

    def F(a_eff, beta):
        a = a_eff * (1 - beta)
        return a_eff ** (1 / nu) * th.V1(p, a, beta, 1) / (1 - th.U1(p, a, beta, 1)) ** 2

    a_max = th.critical_lr(p, 0.0, 1)
    a0 = optimize.minimize_scalar(lambda x: np.log(F(x, 0.0)), bounds=(1e-4 * a_max, a_max * (1 - 1e-9)),
                                  method="bounded", options=dict(xatol=1e-12)).x
    h = 1e-5
    dF = (F(a0, h) - F(a0, -h)) / (2 * h)
    cond = th.negative_momentum_condition(p, nu)
    assert cond.holds == (dF > 0), (cond, dF)


def test_large_batch_optimum_has_positive_momentum():
    p = Problem.synthetic(400, nu=1.5, kappa=3.5, basis=None)
    opt = th.optimal_hyperparameters(p, np.array([1, 200]), horizon=300, refine=2)
    assert opt.momentum.shape == (2,)
    assert opt.momentum[0] < 0 < opt.momentum[1]
    assert opt.gain[1] > opt.gain[0] > 0


def test_critical_batch_size_is_where_the_asymptotes_cross():
    p = Problem.synthetic(2000, nu=1.3, kappa=1.0, basis=None)
    N = p.N
    gamma = lambda b: (N - b) / ((N - 1) * b)  # noqa: E731
    for beta in (0.0, 0.5, 0.95):
        bstar = float(th.critical_batch_size(p, beta))
        assert bstar == pytest.approx(th.lambda_crit(p) * (1 + beta) / (1 - beta))
        a_mode, a_noise = th.asymptotes(p, beta, bstar)
        # gamma = (N - b)/((N - 1) b) ~ 1/b: the asymptotes meet at b*
        assert a_noise == pytest.approx(a_mode, rel=2 * bstar / N + 1e-9)
        # far above b*, alpha_crit sits at the per-mode limit 2 (1 + beta)
        big = min(N, int(50 * bstar))
        assert th.critical_lr(p, beta, big) == pytest.approx(2 * (1 + beta), rel=0.03)
        if bstar > 50:  # far below b*, alpha_crit follows the noise asymptote: linear in 1 / gamma ~ b
            small = np.array([1, 2, 4])
            ac = th.critical_lr(p, beta, small)
            np.testing.assert_allclose(ac * gamma(small), ac[0] * gamma(1), rtol=0.05)
    assert th.critical_batch_size(p, 0.5) > th.critical_batch_size(p, 0.0)  # momentum pushes b* up


def test_budget_curves_equal_sd_and_collapse_below_critical_batch():
    p = Problem.synthetic(1000, nu=1.5, kappa=1.0, basis=None)
    res = th.budget_curves(p, [1, 2, 4], n_samples=2000, lr_per_sample=0.05, n_points=12)
    assert res.convergent.all()
    for i, b in enumerate(res.batch_size):
        ref = sd.run(p, [(res.lr[i], 0.0, int(b))], int(res.steps[i].max()), log_steps=np.unique(res.steps[i]),
                     progress=False)
        got = res.loss[i, np.unique(res.steps[i], return_index=True)[1]]
        np.testing.assert_allclose(got, ref.loss[0], rtol=1e-10)
    # linear scaling rule: loss against samples processed is (nearly) independent of b for b << b*
    late = res.samples >= 200
    np.testing.assert_allclose(res.loss[1, late], res.loss[0, late], rtol=0.05)
    np.testing.assert_allclose(res.loss[2, late], res.loss[0, late], rtol=0.05)
    # beyond the critical batch size alpha_b = b * lr_per_sample leaves the stable region
    far = th.budget_curves(p, [1, 100], n_samples=200, lr_per_sample=0.05, n_points=4)
    assert far.convergent.tolist() == [True, False]


def test_optimal_rejects_bad_input():
    p = Problem.synthetic(50, nu=1.5, kappa=1.0, basis=None)
    with pytest.raises(ValueError, match=r"batch_size \(b\) must be in \[1, N=50\], got batch_size=0"):
        th.optimal_hyperparameters(p, 0, horizon=10)
    with pytest.raises(ValueError, match=r"horizon must be an integer >= 1, got horizon=0"):
        th.optimal_hyperparameters(p, 1, horizon=0)
    with pytest.raises(ValueError, match=r"method must be 'renewal' or 'asymptotic'"):
        th.optimal_hyperparameters(p, 1, horizon=10, method="magic")
    with pytest.raises(ValueError, match=r"lr_per_sample \(alpha\) must be > 0"):
        th.budget_curves(p, [1, 2], 100, lr_per_sample=-1.0)


def test_renewal_optimum_at_b1_is_finite_and_matches_sd():
    """Regression: with growing propagators (b = 1, alpha lambda_max > 1) the renewal predictor returned -1.6e44."""
    p = Problem.synthetic(512, 2.0, 4.0, basis=None)
    T = 300
    r = th.optimal_hyperparameters(p, np.array([1, 8]), horizon=T, method="renewal", n_lr=8, refine=1)
    assert np.isfinite(r.loss).all() and (r.loss > 0).all() and (r.loss_beta0 > 0).all()
    assert th.is_convergent(p, r.lr, r.momentum, r.batch_size).all()
    ref = sd.run(p, list(zip(r.lr, r.momentum, r.batch_size)), T, log_steps=[T], progress=False).loss[:, -1]
    np.testing.assert_allclose(r.loss, ref, rtol=1e-9)


def test_asymptotic_optimum_at_full_batch_is_near_the_sd_grid_best():
    """Regression: at b = N the asymptotic predictor picked beta = 0.995, alpha = 3.99 (4.2 L0 at T = 300), a
    point still deep in its transient. The returned point must be within a few % of the best SD grid cell."""
    p = Problem.synthetic(512, 1.5, 3.0, basis=None)
    T, N = 300, p.N
    r = th.optimal_hyperparameters(p, N, horizon=T, method="asymptotic")
    assert np.isfinite(r.loss) and r.loss > 0
    betas = np.linspace(-0.5, 0.95, 16)
    fr = np.geomspace(0.05, 0.99, 16)
    B, F = np.meshgrid(betas, fr, indexing="ij")
    A = F * th.critical_lr(p, B, N)
    configs = list(zip(A.ravel(), B.ravel(), np.full(A.size, N))) + [(r.lr, r.momentum, N)]
    ref = sd.run(p, configs, T, log_steps=[T], progress=False).loss[:, -1]
    assert ref[-1] <= 1.05 * np.nanmin(ref[:-1]), (ref[-1] / p.loss0, np.nanmin(ref[:-1]) / p.loss0)
