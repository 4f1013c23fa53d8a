"""The fast exact edge (gfsgd.theory.exact_edge: Newton steps on rho(alpha) = 1 with Hellmann-Feynman slopes)
against the earlier bisection with a cold Lanczos eigensolver (a second implementation, method="bisection"),
and its slope against a finite difference of rho."""
import numpy as np
import pytest

from gfsgd import Problem
from gfsgd import theory as th
from gfsgd.theory.exact_edge import _gain_and_slope, _perron, apply_noise_operator


@pytest.mark.parametrize("beta, b", [(0.0, 1), (0.5, 4), (-0.4, 2), (0.85, 1), (0.2, 64)])
def test_newton_edge_equals_the_bisection_edge(beta, b):
    p = Problem.synthetic(64, 1.3, 0.5, seed=7)
    newton = th.exact_critical_lr(p, beta, b)
    bisect = th.exact_critical_lr(p, beta, b, method="bisection", rtol=1e-8)
    assert newton == pytest.approx(bisect, rel=3e-8)
    ok, rho, _ = th.exact_stability(p, newton * (1 - 1e-6), beta, b)
    assert ok and rho < 1  # the returned edge is on the stable side
    assert not th.exact_stability(p, newton * (1 + 1e-6), beta, b)[0]


def test_the_hellmann_feynman_slope_is_the_derivative_of_rho():
    p = Problem.synthetic(48, 1.5, 1.0, seed=2)
    U = p.eigvecs.double().numpy()
    lam = p.eigvals.double().numpy()
    N, beta, gamma, a = 48, 0.3, (48 - 2) / (47 * 2), 0.6
    v0 = np.full(N, N ** -0.5)

    def rho(x):
        H, _ = _gain_and_slope(lam, x, beta, gamma, N)
        return _perron(U, U.T.copy(), H, v0, m=40)

    r, v = rho(a)
    _, dH = _gain_and_slope(lam, a, beta, gamma, N)
    slope = float(v @ apply_noise_operator(U, U.T.copy(), dH, v))
    h = 1e-6 * a
    fd = (rho(a + h)[0] - rho(a - h)[0]) / (2 * h)
    assert slope == pytest.approx(fd, rel=1e-6)
    assert r == pytest.approx(th.exact_stability(p, a, beta, 2, tol=1e-12)[1], rel=1e-10)
