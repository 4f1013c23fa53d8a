"""The three kernel regimes against each other and against independent computations."""

import mpmath
import numpy as np
import pytest
import torch

from gfsgd import Problem
from gfsgd.regimes import full, linearized, spectral_diagonal as sd


def _gd_curve(problem, lr, momentum, n_steps):
    """Plain heavy-ball GD on d (b = N), written directly: an independent reference."""
    K, d = problem.K.clone(), problem.d0.clone()
    v = torch.zeros_like(d)
    out = [float(d @ d) / (2 * problem.N)]
    for _ in range(n_steps):
        v = -lr * (K @ d) + momentum * v
        d = d + v
        out.append(float(d @ d) / (2 * problem.N))
    return np.array(out)


@pytest.mark.parametrize("momentum", [0.0, 0.6, -0.4])
def test_sample_mean_matches_full_within_4_se(small_problem, momentum):
    N = small_problem.N
    configs = [(0.3, momentum, 1), (0.7, momentum, 6), (1.0, momentum, N)]
    n_steps = 40
    ex = full.run(small_problem, configs, n_steps, progress=False)
    mc = linearized.run(small_problem, configs, n_steps, repeats=3000, seed=11, progress=False)
    assert ex.status == ["ok"] * 3 and mc.status == ["ok"] * 3
    for g in range(2):  # sampled configs: within 4 standard errors at every logged step
        z = np.abs(mc.loss[g, 1:] - ex.loss[g, 1:]) / mc.loss_se[g, 1:]
        assert z.max() < 4.0, (configs[g], z.max())
        assert mc.loss_se[g, 1:].max() > 0
    # b = N: no noise; sampled, exact and plain GD coincide
    gd = _gd_curve(small_problem, 1.0, momentum, n_steps)
    np.testing.assert_allclose(ex.loss[2], gd, rtol=1e-10)
    np.testing.assert_allclose(mc.loss[2], gd, rtol=1e-10)
    np.testing.assert_allclose(mc.loss_se[2], 0.0, atol=1e-14)


def test_with_replacement_mean_matches_full():
    p = Problem.synthetic(16, nu=1.0, kappa=0.5, lambda_min=0.05, seed=1)
    configs = [(0.7, 0.3, 4)]
    ex = full.run(p, configs, 30, replacement=True, progress=False)
    mc = linearized.run(p, configs, 30, repeats=4000, replacement=True, seed=2, progress=False)
    z = np.abs(mc.loss[0, 1:] - ex.loss[0, 1:]) / mc.loss_se[0, 1:]
    assert z.max() < 4.0
    # replacement changes gamma (1/b instead of (N-b)/((N-1)b)): the exact curves must differ
    ex_wo = full.run(p, configs, 30, progress=False)
    assert np.abs(ex_wo.loss[0, -1] / ex.loss[0, -1] - 1) > 1e-3


def _mp_full(K, d0, lr, beta, b, n_steps):
    """The C, J, P recursion of docs/theory.md#full in 40-digit arithmetic, data basis, K C + C K form."""
    mpmath.mp.dps = 40
    N = K.shape[0]
    Km = mpmath.matrix([[mpmath.mpf(float(x)) for x in row] for row in K])
    d = mpmath.matrix([mpmath.mpf(float(x)) for x in d0])
    C = d * d.T
    J = mpmath.zeros(N, N)
    P = mpmath.zeros(N, N)
    gamma = mpmath.mpf(N - b) / ((N - 1) * b)
    a, be = mpmath.mpf(lr), mpmath.mpf(beta)
    out = []
    for _ in range(n_steps):
        diagC = mpmath.diag([C[i, i] for i in range(N)])
        KC = Km * C
        Q = gamma * N * Km * diagC * Km + (1 - gamma) * KC * Km
        Pn = a ** 2 * Q - a * be * (Km * J + J.T * Km) + be ** 2 * P
        Cn = C - a * (KC + C * Km) + be * (J + J.T) + Pn
        Jn = be * J - a * C * Km + Pn
        C, J, P = Cn, Jn, Pn
        out.append(sum(C[i, i] for i in range(N)) / (2 * N))
    return np.array([float(x) for x in out])


def test_full_float64_matches_40_digit_recursion():
    p = Problem.synthetic(12, nu=1.0, kappa=0.5, lambda_min=0.4, seed=5)
    configs = [(1.2, 0.0, 6), (0.15, -0.3, 1), (0.6, 0.3, 8), (1.6, 0.0, 12)]
    n_steps = 50
    ex = full.run(p, configs, n_steps, progress=False)
    decay = ex.loss[:, -1] / ex.loss[:, 0]
    assert decay.min() < 1e-5, decay  # the test covers configs that decay by 10^5
    K, d0 = p.K.numpy(), p.d0.numpy()
    for g, (lr, beta, b) in enumerate(configs):
        ref = _mp_full(K, d0, lr, beta, b, n_steps)
        rel = np.abs(ex.loss[g, 1:] / ref - 1)
        assert rel.max() < 1e-10, (configs[g], rel.max())


def test_data_basis_transposed_form_drifts():
    """The pitfall of docs/theory.md#pitfalls is real: K C + (K C)^T in float64 drifts from 40 digits."""
    p = Problem.synthetic(16, nu=1.0, kappa=0.5, lambda_min=0.3, seed=7)
    K = p.K
    N, lr, b, beta = 16, 1.2, 8, 0.0
    gamma = (N - b) / ((N - 1) * b)
    C = torch.outer(p.d0, p.d0)
    J = torch.zeros_like(C)
    P = torch.zeros_like(C)
    naive = []
    for _ in range(40):
        KC = K @ C
        Q = gamma * N * K @ torch.diag(torch.diagonal(C)) @ K + (1 - gamma) * KC @ K
        Pn = lr ** 2 * Q - lr * beta * (K @ J + (K @ J).T) + beta ** 2 * P
        Cn = C - lr * (KC + KC.T) + beta * (J + J.T) + Pn
        J = beta * J - lr * C @ K + Pn
        C, P = Cn, Pn
        naive.append(float(torch.trace(C)) / (2 * N))
    ref = _mp_full(K.numpy(), p.d0.numpy(), lr, beta, b, 40)
    ours = full.run(p, [(lr, beta, b)], 40, progress=False).loss[0, 1:]
    assert np.abs(ours / ref - 1).max() < 1e-10
    assert np.abs(np.array(naive) / ref - 1).max() > 1e-6


@pytest.mark.parametrize("N", [16, 32])
def test_sd_tau1_equals_full_for_delocalised_basis(N):
    p = Problem.synthetic(N, nu=1.2, kappa=1.0, seed=4, basis="hadamard")
    configs = [(0.3, 0.0, 1), (0.5, 0.5, 3), (1.0, -0.5, N // 2), (1.9, 0.0, N)]
    a = full.run(p, configs, 200, progress=False)
    s = sd.run(p, configs, 200, tau=1.0, progress=False)
    assert a.status == ["ok"] * len(configs)
    np.testing.assert_allclose(s.loss, a.loss, rtol=1e-10)
    # and not for a random basis (the test can fail)
    q = Problem.synthetic(N, nu=1.2, kappa=1.0, seed=4, basis="random")
    a2 = full.run(q, configs[:1], 200, progress=False)
    s2 = sd.run(q, configs[:1], 200, tau=1.0, progress=False)
    assert np.abs(s2.loss[0, -1] / a2.loss[0, -1] - 1) > 1e-3


def test_sd_matches_its_documented_cjp_recursion():
    """SD (two-time implementation) equals the C, J, P recursion of docs/theory.md#full written out directly."""
    p = Problem.synthetic(50, nu=1.5, kappa=1.0, basis=None)
    lam, c, N = p.eigvals, p.c, p.N
    for lr, beta, b, tau in [(0.3, 0.5, 1, -1.0), (1.1, -0.4, 5, 1.0), (0.1, 0.95, 2, 0.5)]:
        gamma = (N - b) / ((N - 1) * b)
        C, J, P = c.clone(), torch.zeros_like(c), torch.zeros_like(c)
        ref = []
        for _ in range(300):
            Pn = (lr * lam) ** 2 * ((1 - gamma * tau) * C + gamma * C.sum()) - 2 * lr * beta * lam * J + beta ** 2 * P
            C, J, P = C - 2 * lr * lam * C + 2 * beta * J + Pn, beta * J - lr * lam * C + Pn, Pn
            ref.append(float(C.sum()) / (2 * N))
        got = sd.run(p, [(lr, beta, b)], 300, tau=tau, progress=False).loss[0, 1:]
        np.testing.assert_allclose(got, ref, rtol=1e-10)
