"""The N-point problem predicted from an n-point subset (issue 26): on data with a known operator spectrum
(Gaussian features of variances k^-nu, a linear kernel, targets with c_k ~ k^-(kappa+1)), the fitted exponents
against the known ones, the extrapolated SD curves against the dense N-point problem built independently, and the
identities (n = N, learning-rate units, loss per example)."""
import numpy as np
import pytest
import torch

from gfsgd import Problem
from gfsgd.errors import InputError
from gfsgd.regimes import spectral_diagonal as sd
from gfsgd.spectrum import extrapolate

NU, KAPPA = 1.4, 0.6


def _data(n, M=2000, seed=0):
    """x [n, M] with independent N(0, k^-nu) coordinates (the operator of the linear kernel has eigenvalues k^-nu),
    y = x . theta with mu_k theta_k^2 = k^-(kappa+1)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(1, M + 1, dtype=torch.float64)
    mu = k ** -NU
    X = torch.randn(n, M, generator=g, dtype=torch.float64) * mu.sqrt()
    sign = torch.sign(torch.randn(M, generator=torch.Generator().manual_seed(99), dtype=torch.float64))
    return X, X @ (torch.sqrt(k ** (-KAPPA - 1) / mu) * sign)


@pytest.fixture(scope="module")
def setting():
    N = 2000
    X, y = _data(N)
    full = Problem.from_kernel(X @ X.T, -y)
    sub = Problem.from_kernel(X[:500] @ X[:500].T, -y[:500])
    return full, sub, extrapolate(sub, N)


def test_the_known_exponents_are_recovered(setting):
    _, _, ex = setting
    assert ex.info["nu_ci"][0] - 0.03 <= NU <= ex.info["nu_ci"][1] + 0.03
    assert abs(ex.info["nu"] - NU) < 0.05
    assert abs(ex.info["kappa"] - KAPPA) < 0.3  # from the cumulative energy of one subset: noisy


def test_the_extrapolated_curves_follow_the_dense_n_point_problem(setting):
    full, _, ex = setting
    cfgs = [(0.5, 0.0, 10), (1.0, 0.0, 100), (0.5, 0.5, 10)]
    steps = [0, 30, 100, 300, 1000, 3000]
    ref = sd.run(full, cfgs, 3000, log_steps=steps, progress=False).loss
    got = sd.run(ex.problem, cfgs, 3000, log_steps=steps, progress=False).loss
    gap = np.abs(got / ref - 1)[:, 1:]
    # measured 0.12 (0.10 and 0.17 from the other two disjoint subsets of 500): the subset's loss per example is a
    # mean over 500 examples with a 6% standard error, which the curves inherit
    assert np.median(gap) < 0.2 and gap.max() < 0.35
    naive = sd.run(setting[1], cfgs, 3000, log_steps=steps, progress=False).loss  # the subset's own curves
    assert np.median(np.abs(naive / ref - 1)[:, 1:]) > 1.5 * np.median(gap)  # extrapolating is what helps (0.30)
    band = [sd.run(q, cfgs, 3000, log_steps=steps, progress=False).loss for q in ex.ensemble] + [got]
    inside = (ref >= np.min(band, 0)) & (ref <= np.max(band, 0))
    assert inside[:, 1:].mean() >= 0.75  # the ensemble's band holds the N-point curve (measured 0.93)


def test_units_and_identities(setting):
    full, sub, ex = setting
    p = ex.problem
    assert p.N == full.N and p.n_modes == full.N
    assert p.lambda_max_raw == pytest.approx(sub.lambda_max_raw * full.N / sub.N, rel=1e-12)
    assert p.lambda_max_raw == pytest.approx(full.lambda_max_raw, rel=0.1)  # the estimate of lambda_1(K_N)
    assert p.loss0 == pytest.approx(sub.loss0, rel=1e-9)  # the loss per example is the subset's
    assert float(p.eigvals.sum()) == pytest.approx(float(sub.eigvals.sum()), rel=1e-9)  # the normalised trace
    assert len(ex.ensemble) >= 4 and all(q.N == full.N for q in ex.ensemble)
    same = extrapolate(sub, sub.N)
    assert same.problem is sub and same.ensemble == []


def test_bad_inputs_are_refused_by_name(setting):
    _, sub, _ = setting
    with pytest.raises(InputError, match="N must be"):
        extrapolate(sub, 100)
    with pytest.raises(InputError, match="k_max must be"):
        extrapolate(sub, 4000, k_max=4)
    two = Problem.from_kernel(torch.eye(6, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64))
    with pytest.raises(InputError, match="one output per example"):
        extrapolate(two, 100)


def test_data_scaling_follows_the_dense_problems_at_each_n(setting):
    """theory.data_scaling from the 500-point subset against loss_at on the dense problems of the first N points,
    built independently, N in {500, 1000, 2000}; at N = n it is the subset's own prediction."""
    from gfsgd import theory
    _, sub, _ = setting
    X, y = _data(2000)
    cfgs = [(0.5, 0.0, 10), (1.0, 0.5, 100)]
    out = theory.data_scaling(sub, [500, 1000, 2000], 1000, cfgs)
    for i, N in enumerate(out["N"]):
        dense = Problem.from_kernel(X[:N] @ X[:N].T, -y[:N])
        ref = theory.loss_at(dense, np.array([0.5, 1.0]), np.array([0.0, 0.5]), np.array([10, 100]), 1000)
        tol = 1e-9 if N == 500 else 0.25
        np.testing.assert_allclose(out["loss"][i], ref, rtol=tol)
        assert (out["low"][i] <= out["loss"][i] + 1e-15).all() and (out["high"][i] >= out["loss"][i] - 1e-15).all()
    assert (np.diff(out["loss"], axis=0) > 0).all()  # more data, same steps: more loss left
    with pytest.raises(InputError, match="Ns must be"):
        theory.data_scaling(sub, [100], 10, cfgs)
