"""gfsgd.theory.stability against the SD simulation, closed forms and independent root finding."""
import numpy as np
import pytest
from scipy import optimize

from gfsgd import Problem
from gfsgd import theory as th
from gfsgd.regimes import spectral_diagonal as sd
from gfsgd.theory.stability import boundary_adjacent




@pytest.mark.parametrize("b, tau", [(1, 1.0), (10, -1.0)])
def test_critical_lr_matches_sd_divergence(b, tau):
    p = Problem.synthetic(500, nu=1.5, kappa=1.0, basis=None)
    alphas = np.geomspace(0.03, 3.5, 9)
    betas = np.linspace(-0.85, 0.9, 7)
    A, Bt = np.meshgrid(alphas, betas, indexing="ij")
    a_crit = th.critical_lr(p, betas, b, tau=tau)  # [beta]
    pred = A >= a_crit[None, :]
    np.testing.assert_array_equal(pred, ~th.is_convergent(p, A, Bt, b, tau=tau))
    assert pred.any() and (~pred).any()
    configs = list(zip(A.ravel(), Bt.ravel(), [b] * A.size))
    ref = sd.run(p, configs, 10_000, tau=tau, log_steps=[0, 10_000], progress=False)
    blew_up = np.array([s == "diverged" for s in ref.status]).reshape(A.shape)
    mismatch = (pred != blew_up) & ~boundary_adjacent(pred)
    assert mismatch.sum() == 0, list(zip(A[mismatch], Bt[mismatch]))


def test_critical_lr_is_the_root_of_u1_and_closed_forms():
    p = Problem.synthetic(400, nu=1.3, kappa=1.0, basis=None)
    betas = np.array([-0.7, 0.0, 0.5, 0.95])
    for b in (1, 7, 60):
        ac = th.critical_lr(p, betas, b)
        for beta, a in zip(betas, ac):  # independent root of U(1) = 1 by brentq
            lim = 2 * (1 + beta)
            f = lambda x: th.U1(p, x, beta, b) - 1  # noqa: E731
            root = optimize.brentq(f, 1e-9, lim * (1 - 1e-12), xtol=1e-15) if f(lim * (1 - 1e-12)) > 0 else lim
            assert a == pytest.approx(root, rel=1e-9)
    # b = N: plain GD, alpha_crit = 2 (1 + beta) / lambda_max
    np.testing.assert_allclose(th.critical_lr(p, betas, p.N), 2 * (1 + betas), rtol=1e-14)
    # vectorised over (beta, b)
    grid = th.critical_lr(p, betas[:, None], np.array([1, 7, 60])[None, :])
    assert grid.shape == (4, 3)
    np.testing.assert_allclose(grid[:, 1], th.critical_lr(p, betas, 7), rtol=1e-14)


def test_lambda_crit_and_asymptotes():
    p = Problem.synthetic(300, nu=1.4, kappa=1.0, basis=None)
    lam = p.eigvals.numpy()
    for tau in (1.0, 0.5, -1.0):
        lc = th.lambda_crit(p, tau)
        lo = max(-tau * lam.max(), -tau * lam.min()) + 1e-12
        ref = optimize.brentq(lambda z: np.sum(lam / (z + tau * lam)) - 1, lo, 10 * lam.sum())
        assert lc == pytest.approx(ref, rel=1e-10)
    # as beta -> 1 the boundary follows alpha = 2 (1 - beta) / (gamma lambda_crit); large b: 2 (1 + beta)
    for b in (1, 5):
        beta = 0.999
        a_mode, a_noise = th.asymptotes(p, beta, b)
        assert th.critical_lr(p, beta, b) == pytest.approx(a_noise, rel=2e-3)
    a_mode, _ = th.asymptotes(p, 0.2, 300)
    assert th.critical_lr(p, 0.2, 300) == pytest.approx(a_mode, rel=1e-12)


def test_per_mode_condition_is_spectral_radius_of_R():
    """With gamma tau = 0 the per-mode condition is |eigenvalues of R| < 1 (numpy eig), and for gamma tau < 0
    it adds S_k(1) > 0: the 3 x 3 per-mode map has spectral radius < 1."""
    rng = np.random.default_rng(1)
    for _ in range(400):
        beta = rng.uniform(-0.99, 0.99)
        u = rng.uniform(0.0, 3 * (1 + beta))
        R = np.array([[1 - u, beta], [-u, beta]])
        radius = np.abs(np.linalg.eigvals(R)).max()
        if abs(radius - 1) < 1e-6:
            continue
        assert bool(th.mode_stable(1.0, u, beta, 0.0)) == (radius < 1)
        gt = -rng.uniform(0, 1)
        E = np.ones((2, 2))
        basis = [np.array([[1.0, 0], [0, 0]]), np.array([[0, 1.0], [1.0, 0]]), np.array([[0, 0], [0, 1.0]])]
        A = np.stack([[(R @ M @ R.T - gt * u * u * M[0, 0] * E)[i, j] for i, j in ((0, 0), (0, 1), (1, 1))]
                      for M in basis], 1)
        rad3 = np.abs(np.linalg.eigvals(A)).max()
        if abs(rad3 - 1) < 1e-6:
            continue
        assert bool(th.mode_stable(1.0, u, beta, gt)) == (rad3 < 1), (beta, u, gt, rad3)


def test_stability_rejects_bad_input():
    p = Problem.synthetic(20, nu=1.5, kappa=1.0, basis=None)
    with pytest.raises(ValueError, match=r"momentum \(beta\) must be in \(-1, 1\), got momentum=-1.0"):
        th.critical_lr(p, -1.0, 1)
    with pytest.raises(ValueError, match=r"batch_size \(b\) must be in \[1, N=20\], got batch_size=21"):
        th.critical_lr(p, 0.0, 21)
    with pytest.raises(ValueError, match=r"lr \(alpha\) must be > 0"):
        th.is_convergent(p, [0.1, -0.1], 0.0, 1)
    with pytest.raises(ValueError, match=r"spectrum \(eigenvalues\) must be >= 0"):
        th.lambda_crit([1.0, -0.1])
    with pytest.raises(ValueError, match=r"tau must be a finite number"):
        th.lambda_crit(p, float("inf"))
