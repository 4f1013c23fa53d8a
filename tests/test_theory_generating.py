"""gfsgd.theory.generating against independent computations: the SD simulation, the numeric resolvent of the
per-mode map, and the z-transform of the time-domain propagators."""
import numpy as np
import pytest

from gfsgd import Problem
from gfsgd import theory as th
from gfsgd.regimes import spectral_diagonal as sd


def _resolvent_11(z, lam, alpha, beta, gamma_tau, X):
    """[(1 - z A)^{-1} X]_11 with A built entry by entry from M -> R M R^T - gamma_tau u^2 m11 E (numpy)."""
    u = alpha * lam
    R = np.array([[1 - u, beta], [-u, beta]])
    E = np.ones((2, 2))
    basis = [np.array([[1.0, 0], [0, 0]]), np.array([[0, 1.0], [1.0, 0]]), np.array([[0, 0], [0, 1.0]])]
    A = np.zeros((3, 3))
    for j, Mj in enumerate(basis):
        out = R @ Mj @ R.T - gamma_tau * u * u * Mj[0, 0] * E
        A[:, j] = [out[0, 0], out[0, 1], out[1, 1]]
    x = np.linalg.solve(np.eye(3) - z * A, [X[0, 0], X[0, 1], X[1, 1]])
    return x[0], np.linalg.det(np.eye(3) - z * A)


def test_closed_forms_equal_numeric_resolvent():
    rng = np.random.default_rng(0)
    for _ in range(200):
        z, lam = rng.uniform(0, 1), rng.uniform(0, 1)
        beta = rng.uniform(-0.99, 0.99)
        alpha = rng.uniform(0.01, 2 * (1 + beta))
        gt = rng.uniform(-1, 1)
        u_ref, det = _resolvent_11(z, lam, alpha, beta, gt, np.ones((2, 2)))
        v_ref, _ = _resolvent_11(z, lam, alpha, beta, gt, np.array([[1.0, 0], [0, 0]]))
        assert th.U_k(z, lam, alpha, beta, gt) == pytest.approx(u_ref, rel=1e-9, abs=1e-12)
        assert th.V_k(z, lam, alpha, beta, gt) == pytest.approx(v_ref, rel=1e-9, abs=1e-12)
        assert th.S_k(z, lam, alpha, beta, gt) == pytest.approx(det, rel=1e-9, abs=1e-12)
    # S at lambda = 0 and vectorisation over a grid
    z = np.linspace(0, 1, 7)[:, None]
    beta = np.linspace(-0.9, 0.9, 5)[None, :]
    np.testing.assert_allclose(th.S_k(z, 0.0, 0.3, beta, 0.2), (1 - z) * (1 - beta * z) * (1 - beta ** 2 * z),
                               atol=1e-15)


@pytest.mark.parametrize("tau", [1.0, -1.0])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_renewal_curve_equals_sd_simulation(tau, method):
    p = Problem.synthetic(300, nu=1.3, kappa=1.0, basis=None)
    N = p.N
    configs = [(0.5, 0.0, 1), (0.8, -0.6, 4), (0.05, 0.98, 10), (1.5, 0.3, N), (0.3, 0.9, 1), (1.2, -0.3, 30)]
    T = 1500
    ref = sd.run(p, configs, T, tau=tau, progress=False)
    lr, mom, b = th.split_configs(configs)
    got = th.loss_curve(p, lr, mom, b, T, tau=tau, method=method)
    assert got.shape == (len(configs), T + 1)
    assert got[:, 0] == pytest.approx(p.loss0, rel=1e-14)
    finite = np.isfinite(ref.loss)  # SD stops a config at 1e6 L0
    rel = np.abs(got[finite] - ref.loss[finite]) / ref.loss[finite]
    assert rel.max() < 1e-10, rel.max()
    # configs SD calls divergent grow in the renewal solution too
    for g, s in enumerate(ref.status):
        if s == "diverged":
            assert not np.isfinite(got[g, -1]) or got[g, -1] > 1e6 * p.loss0


def test_renewal_with_replacement_and_grid_shape():
    p = Problem.synthetic(200, nu=1.5, kappa=2.0, basis=None)
    configs = [(0.4, 0.2, 3), (0.9, -0.2, 1)]
    ref = sd.run(p, configs, 400, replacement=True, progress=False)
    lr, mom, b = th.split_configs(configs)
    got = th.loss_curve(p, lr, mom, b, 400, replacement=True)
    np.testing.assert_allclose(got, ref.loss, rtol=1e-10)
    # a 2 x 3 grid at once, logged steps only
    grid = th.loss_curve(p, np.array([[0.2], [0.6]]), np.array([-0.3, 0.0, 0.5]), 5, 300, log_steps=[0, 10, 300])
    assert grid.shape == (2, 3, 3)
    one = th.loss_curve(p, 0.6, 0.5, 5, 300)
    np.testing.assert_allclose(grid[1, 2], one[[0, 10, 300]], rtol=1e-12)


def test_generating_functions_are_z_transforms_of_the_propagators():
    # lambda_min > 0 makes every sequence geometric, so truncated sums converge to round-off
    p = Problem.synthetic(150, nu=1.2, kappa=1.0, lambda_min=0.05, basis=None)
    lr, mom, b = np.array([0.3, 0.3, 0.2]), np.array([0.0, -0.4, 0.6]), np.array([2, 4, 20])
    assert th.is_convergent(p, lr, mom, b).all()
    T = 4000
    Um, Vt = th.propagators(p, lr, mom, b, T)
    assert np.all(Um[:, 0] == 0) and Vt[:, 0] == pytest.approx(p.loss0)
    Lt = th.loss_curve(p, lr, mom, b, T)
    t = np.arange(T + 1)
    for z in (0.2, 0.7, 0.95):
        zt = z ** t
        np.testing.assert_allclose(th.U(z, p, lr, mom, b), Um @ zt, rtol=1e-10)
        np.testing.assert_allclose(th.V(z, p, lr, mom, b), Vt @ zt, rtol=1e-10)
        np.testing.assert_allclose(th.L(z, p, lr, mom, b), Lt @ zt, rtol=1e-10)
    np.testing.assert_allclose(th.U1(p, lr, mom, b), Um.sum(1), rtol=1e-9)
    np.testing.assert_allclose(th.V1(p, lr, mom, b), Vt.sum(1), rtol=1e-9)
    np.testing.assert_allclose(th.total_loss(p, lr, mom, b), Lt.sum(1), rtol=1e-9)
    # plain arrays + w / c give the same as the Problem
    lam, c = p.eigvals.numpy(), p.c.numpy()
    np.testing.assert_allclose(th.V(0.5, lam, lr, mom, b, c=c), th.V(0.5, p, lr, mom, b), rtol=1e-14)
    np.testing.assert_allclose(th.V(0.5, lam, lr, mom, b, w=c / (2 * p.N)), th.V(0.5, p, lr, mom, b), rtol=1e-14)


@pytest.mark.parametrize("call, match", [
    (lambda p: th.U(0.5, p, 0.0, 0.0, 1), r"lr \(alpha\) must be > 0, got lr=0.0"),
    (lambda p: th.U(0.5, p, -1.0, 0.0, 1), r"lr \(alpha\) must be > 0"),
    (lambda p: th.V(0.5, p, 0.1, 1.0, 1), r"momentum \(beta\) must be in \(-1, 1\), got momentum=1.0"),
    (lambda p: th.L(0.5, p, 0.1, -1.2, 1), r"momentum \(beta\) must be in \(-1, 1\)"),
    (lambda p: th.U(0.5, p, 0.1, 0.0, 0), r"batch_size \(b\) must be in \[1, N=50\], got batch_size=0"),
    (lambda p: th.U1(p, 0.1, 0.0, 51), r"batch_size \(b\) must be in \[1, N=50\], got batch_size=51"),
    (lambda p: th.U(1.5, p, 0.1, 0.0, 1), r"z must be in \[0, 1\], got z=1.5"),
    (lambda p: th.V(-0.1, p, 0.1, 0.0, 1), r"z must be in \[0, 1\]"),
    (lambda p: th.S_k(0.5, -1.0, 0.1, 0.0, 0.5), r"lam \(eigenvalue\) must be >= 0"),
    (lambda p: th.U1([], 0.1, 0.0, 1), r"non-empty"),
    (lambda p: th.U1([1.0, -0.5], 0.1, 0.0, 1), r"spectrum \(eigenvalues\) must be >= 0"),
    (lambda p: th.V(0.5, [1.0, 0.5], 0.1, 0.0, 1), r"needs the signal side"),
    (lambda p: th.V(0.5, [1.0, 0.5], 0.1, 0.0, 1, w=[1.0]), r"w must have one entry per eigenvalue"),
    (lambda p: th.loss_curve(p, 0.1, 0.0, 1, -5), r"n_steps must be an integer >= 0, got n_steps=-5"),
    (lambda p: th.loss_curve(p, 0.1, 0.0, 1, 10, log_steps=[20]), r"log_steps must be integers in \[0, n_steps=10\]"),
    (lambda p: th.loss_curve(p, 0.1, 0.0, 1, 10, tau=float("nan")), r"tau must be a finite number"),
    (lambda p: th.loss_curve(p, [0.1, 0.2], [0.0, 0.3, 0.5], 1, 10), r"shape mismatch|broadcast"),
])
def test_rejects_out_of_range_input(call, match):
    p = Problem.synthetic(50, nu=1.5, kappa=1.0, basis=None)
    with pytest.raises(ValueError, match=match):
        call(p)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_renewal_with_growing_propagators_equals_sd(method):
    """Regression: at b = 1 and alpha lambda_max > 1 the reduced per-mode map A_k (with -gamma tau u^2 m11 E)
    has an eigenvalue ~ m^2 - gamma tau u^2 < -1, so V_t and U_m grow like 1.43^t (1e62 at t = 400) although the
    config converges; the plain renewal solve then returned 4e42 / -3e45. Such modes are now separated."""
    p = Problem.synthetic(512, 2.0, 4.0, basis=None)
    a, beta, T = 1.22115517, -0.025, 400
    assert th.is_convergent(p, a, beta, 1)
    Um, _ = th.propagators(p, a, beta, 1, T)
    assert np.abs(Um).max() > 1e50  # the ill-conditioned decomposition is really there
    configs = [(a, beta, 1), (1.3, -0.1, 2), (1.0, 0.3, 2), (0.3, 0.1, 1), (1.9, 0.2, 512)]
    ref = sd.run(p, configs, T, progress=False).loss
    lr, mom, b = th.split_configs(configs)
    got = th.loss_curve(p, lr, mom, b, T, method=method)
    conv = th.is_convergent(p, lr, mom, b)
    assert conv.all()
    rel = np.abs(got[conv] - ref[conv]) / ref[conv]
    assert rel.max() < 1e-10, rel.max()


def test_unstable_mode_detection_matches_eigenvalues():
    from gfsgd.theory.renewal import _unstable_modes
    rng = np.random.default_rng(3)
    G = 400
    lam = np.array([1.0, 0.6, 0.2, 0.0])
    beta = rng.uniform(-0.99, 0.99, G)
    a = rng.uniform(0.01, 2.2, G) * (1 + beta)
    gamma = rng.uniform(0, 1, G)
    for tau in (1.0, -1.0):
        bad = _unstable_modes(lam, a, beta, gamma, tau)
        for g in range(G):
            for k, l in enumerate(lam):
                u = a[g] * l
                m = 1 + beta[g] - u
                mat = np.array([[m * m - tau * gamma[g] * u * u, -2 * beta[g] * m, beta[g] ** 2],
                                [m, -beta[g], 0], [1, 0, 0]])
                rho = np.abs(np.linalg.eigvals(mat)).max()
                if l > 0 and abs(rho - 1) > 1e-6:
                    assert bad[g, k] == (rho > 1), (g, k, rho)
        assert not bad[:, -1].any()
