"""gfsgd.theory.asymptotics against the SD simulation and closed forms."""
import math

import numpy as np
import pytest

from gfsgd import Problem
from gfsgd import theory as th
from gfsgd.regimes import spectral_diagonal as sd


def test_phase_and_exponent():
    assert th.phase(0.8, 1.0) == "divergent" and math.isnan(th.loss_exponent(0.8, 1.0))
    assert th.phase(1.5, 1.0) == "signal" and th.loss_exponent(1.5, 1.0) == pytest.approx(1 / 1.5)
    assert th.phase(1.5, 4.0) == "noise" and th.loss_exponent(1.5, 4.0) == pytest.approx(2 - 1 / 1.5)
    grid = th.phase(np.array([[1.5], [2.0]]), np.array([1.0, 2.5, 4.0]))
    assert grid.tolist() == [["signal", "noise", "noise"], ["signal", "signal", "noise"]]
    with pytest.raises(ValueError, match="kappa must be > 0"):
        th.phase(1.5, -1.0)


@pytest.mark.parametrize("kappa", [1.0, 4.0])  # signal- and noise-dominated phases at nu = 1.5
def test_asymptotic_loss_and_exponent_match_sd(kappa):
    nu, N, T = 1.5, 10_000, 10_000
    p = Problem.synthetic(N, nu=nu, kappa=kappa, basis=None)
    configs = [(0.5, 0.0, 10), (0.4, 0.0, 1), (0.2, 0.5, 1)]
    assert th.is_convergent(p, *th.split_configs(configs)).all()
    steps = np.unique(np.round(np.geomspace(1000, T, 25)).astype(int))
    ref = sd.run(p, configs, T, log_steps=np.concatenate([[0], steps]), progress=False)
    lr, mom, b = th.split_configs(configs)
    pred = th.asymptotic_loss(p, lr, mom, b, T, nu=nu, kappa=kappa)
    assert pred.phase == ("signal" if kappa == 1.0 else "noise")
    rel = ref.loss[:, -1] / pred.loss - 1
    assert np.abs(rel).max() < 0.05, rel
    slope = -np.polyfit(np.log(steps), np.log(ref.loss[:, 1:].T), 1)[0]
    assert np.abs(slope - pred.exponent).max() < 0.05, (slope, pred.exponent)
    # the discrete-spectrum form agrees with the power-law form
    spec = th.spectral_asymptotic_loss(p, lr, mom, b, T, include_noise=kappa / nu > 1)
    np.testing.assert_allclose(spec, pred.loss, rtol=0.02)


def test_constants_and_crossover_time():
    nu, kappa, N = 1.5, 4.0, 20_000
    p = Problem.synthetic(N, nu=nu, kappa=kappa, basis=None)
    # Q_lambda of w_k = C k^-(kappa+1) is C / kappa
    C = p.w[0].item()
    assert th.q_lambda(p, nu, kappa) == pytest.approx(C / kappa, rel=2e-3)
    a, beta, b = 0.3, 0.2, 2
    zeta, ex = kappa / nu, 2 - 1 / nu
    t_star = th.crossover_time(p, a, beta, b, nu=nu, kappa=kappa)
    res = th.asymptotic_loss(p, a, beta, b, np.array([t_star / 10, t_star * 10]), nu=nu, kappa=kappa,
                             finite_size=False)
    # at t* the two power laws are equal, and t* solves THEORY's equation
    assert res.c_signal * t_star ** -zeta == pytest.approx(res.c_noise * t_star ** -ex, rel=1e-10)
    a_eff = a / (1 - beta)
    gamma = (N - b) / ((N - 1) * b)
    u1, v1 = th.U1(p, a, beta, b), th.V1(p, a, beta, b)
    rhs = (C / kappa) * math.gamma(zeta + 1) * (1 - u1) / (v1 * gamma / nu * math.gamma(ex) * a_eff ** 2)
    assert (2 * a_eff * t_star) ** (zeta - ex) == pytest.approx(rhs, rel=5e-3)
    # the noise law takes over after t*
    assert res.signal[0] > res.noise[0] and res.signal[-1] < res.noise[-1]


def test_fit_power_law_recovers_exponents_with_intervals():
    p = Problem.synthetic(4000, nu=1.3, kappa=2.0, basis=None)
    fit = th.fit_power_law(p)
    assert fit.nu == pytest.approx(1.3, abs=1e-3) and fit.kappa == pytest.approx(2.0, abs=0.02)
    assert fit.phase == "noise"  # kappa = 2 > 2 nu - 1 = 1.6
    # a real-looking problem: Gaussian coefficients (c_k ~ k^-(kappa+1) chi^2_1) and a jittered spectrum
    rng = np.random.default_rng(0)
    covered = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        k = np.arange(1, 3001)
        lam = k ** -1.6 * np.exp(0.05 * rng.standard_normal(k.size))
        lam /= lam.max()
        c = k ** -3.0 * rng.standard_normal(k.size) ** 2
        f = th.fit_power_law(lam, c=c, k_range=(2, 1500))
        assert abs(f.nu - 1.6) < 0.05 and abs(f.kappa - 2.0) < 0.35
        covered += (f.nu_ci[0] <= 1.6 <= f.nu_ci[1]) + (f.kappa_ci[0] <= 2.0 <= f.kappa_ci[1])
    assert covered >= 16  # 95% intervals: most of the 20 cover the truth
    with pytest.raises(ValueError, match="k_range must satisfy"):
        th.fit_power_law(p, k_range=(10, 5))


def test_spectral_asymptotic_loss_is_inf_where_a_mode_is_unstable():
    p = Problem.synthetic(256, 1.5, 2.0, basis=None)
    # b = N: gamma = 0, U(1) = 0 < 1, yet alpha > 2 (1 + beta) makes the top mode diverge
    a, beta, b = np.array([2.5, 1.5, 2.9]), np.array([0.0, 0.0, 0.5]), p.N
    assert (th.U1(p, a, beta, b) < 1).all()
    conv = th.is_convergent(p, a, beta, b)
    assert conv.tolist() == [False, True, True]
    out = th.spectral_asymptotic_loss(p, a, beta, b, 100.0)
    assert np.isinf(out[0]) and np.isfinite(out[1:]).all()
    full = th.asymptotic_loss(p, a, beta, b, 100.0, nu=1.5, kappa=2.0).loss
    assert np.isinf(full[0]) and np.isfinite(full[1:]).all()
