"""theory.weight_travel (E|w_t - w_0|^2 of the linearised network) and relinearize.drift_forecast: against full-batch
heavy-ball GD written out with numpy and the pseudo-inverse of the kernel, against the per-mode second moments of
the renewal solution (theory.mode_second_moments, another code path), and the forecast's rules on a small network."""
import numpy as np
import pytest
import torch

from gfsgd import Problem, problem_from_network, relinearize
from gfsgd import theory as th
from gfsgd.data import load_dataset
from gfsgd.errors import InputError
from gfsgd.models import MLP


@pytest.fixture(scope="module")
def kernel_problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(24, 6, generator=g, dtype=torch.float64)
    K = torch.exp(-torch.cdist(X, X) ** 2 / 6) + 0.05 * X @ X.T
    return Problem.from_kernel(K, torch.randn(24, generator=g, dtype=torch.float64))


def test_full_batch_travel_is_the_written_out_heavy_ball_path(kernel_problem):
    """b = N: no noise; d_t from d_{t+1} = d_t - alpha K d_t + beta (d_t - d_{t-1}) with the normalised kernel, and
    (d_t - d_0)^T K^+ (d_t - d_0) by numpy's pinv."""
    p = kernel_problem
    K = p.K.numpy()
    Kp = np.linalg.pinv(K, rcond=1e-12, hermitian=True)
    for a, beta in ((0.7, 0.0), (0.4, 0.6), (0.9, -0.3)):
        d0 = p.d0.numpy().copy()
        d, prev, want = d0.copy(), d0.copy(), []
        for t in range(41):
            want.append((d - d0) @ Kp @ (d - d0))
            d, prev = d - a * K @ d + beta * (d - prev), d
        got = th.weight_travel(p, a, beta, p.N, np.arange(41))[0]
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)


def test_mini_batch_travel_from_the_renewal_second_moments(kernel_problem):
    """b < N: sum_k (C_k(t) - 2 c_k mu_k(t) + c_k) / lambda_k with C_k(t) from theory.mode_second_moments (the
    renewal solution, not stepped together with the coupling) and mu_k the mean's scalar recursion."""
    p = kernel_problem
    lam, c = p.eigvals.numpy(), p.c.numpy()
    for a, beta, b in ((0.5, 0.0, 3), (0.3, 0.7, 5)):
        T = 30
        mu, mu_prev = np.ones_like(lam), np.ones_like(lam)
        for _ in range(T):
            mu, mu_prev = (1 + beta - a * lam) * mu - beta * mu_prev, mu
        Ck = th.mode_second_moments(p, a, beta, b, T)
        want = np.sum((Ck - 2 * c * mu + c) / lam)
        got = th.weight_travel(p, a, beta, b, [T])[0, 0]
        assert got == pytest.approx(want, rel=1e-8)
    assert np.isinf(th.weight_travel(p, 2.5, 0.0, 1, [400])[0, 0])  # far past the edge
    with pytest.raises(InputError, match="batch_size"):
        th.weight_travel(p, 0.5, 0.0, 100, [3])


def test_drift_forecast_carries_the_probe_along_the_travel():
    X, y = load_dataset("synthetic", 40, seed=0, dim=5)
    p = problem_from_network(MLP(5, width=64, seed=0), X, y, device="cpu")
    edge = float(th.critical_lr(p, 0.0, 4))
    cfgs = [(0.3 * edge, 0.0, 4), (3.0 * edge, 0.0, 4)]
    out = relinearize.drift_forecast(p, cfgs, 200, probe_steps=20, drift_probe=16, log_steps=[0, 20, 100, 200])
    assert out["linear_converges"].tolist() == [True, False]
    j = list(out["steps"]).index(20)
    np.testing.assert_allclose(out["forecast"][0, j], out["probe_drift"][0], rtol=1e-12)  # W(S) / W(S) = 1
    W = th.weight_travel(p, cfgs[0][0], 0.0, 4, [20, 200])[0]
    assert out["forecast"][0, -1] == pytest.approx(out["probe_drift"][0] * np.sqrt(W[1] / W[0]), rel=1e-10)
    assert out["forecast"][0, -1] > out["probe_drift"][0]  # the weights keep travelling below the edge
    # past the edge: the probe's value held (or NaN where the probe itself diverged)
    assert np.isnan(out["probe_drift"][1]) or np.allclose(out["forecast"][1], out["probe_drift"][1])
    with pytest.raises(InputError, match="probe_steps"):
        relinearize.drift_forecast(p, cfgs, 200, probe_steps=200)
