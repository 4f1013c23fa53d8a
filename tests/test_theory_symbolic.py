"""gfsgd.theory.symbolic: the sympy derivation against the closed forms and the numeric module."""
import numpy as np

from gfsgd import theory as th
from gfsgd.theory import symbolic


def test_derived_expressions_equal_closed_forms():
    assert symbolic.check_closed_forms() == {"S": True, "U": True, "V": True}
    assert symbolic.check_gamma_tau()
    assert symbolic.check_lambda_zero()
    assert symbolic.check_values_at_one() == {"S": True, "U": True, "V": True}


def test_lambdified_functions_equal_numeric_module():
    f = symbolic.numeric_functions()
    rng = np.random.default_rng(3)
    n = 500
    z, lam = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    beta = rng.uniform(-0.95, 0.95, n)
    a = rng.uniform(0.01, 2, n) * (1 + beta)
    gt = rng.uniform(-1, 1, n)
    np.testing.assert_allclose(f["S"](z, lam, a, beta, gt), th.S_k(z, lam, a, beta, gt), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(f["U"](z, lam, a, beta, gt), th.U_k(z, lam, a, beta, gt), rtol=1e-9)
    np.testing.assert_allclose(f["V"](z, lam, a, beta, gt), th.V_k(z, lam, a, beta, gt), rtol=1e-9)
    # d/dz [z U_k] against a central difference of the numeric U_k
    zz = np.clip(z, 1e-3, 1 - 1e-3)
    h = 1e-6
    fd = ((zz + h) * th.U_k(zz + h, lam, a, beta, gt) - (zz - h) * th.U_k(zz - h, lam, a, beta, gt)) / (2 * h)
    np.testing.assert_allclose(f["dzU"](zz, lam, a, beta, gt), fd, rtol=1e-5, atol=1e-6)


def test_positivity_and_monotonicity_over_stability_region():
    res = symbolic.check_positivity(n_samples=100_000, seed=1)
    assert res["violations_S"] == 0 and res["violations_dzU"] == 0
    assert res["min_S"] > 0
