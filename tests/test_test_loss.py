"""Test loss (docs/theory.md#test-loss): r_t = r_0 + Gamma (d_t - d_0), Gamma = K_test K^+.

- the full regime's exact expected test loss against an independent Monte-Carlo: function-space SGD on the
  joint train + test kernel, written here (not the linearized regime's code);
- the same against a weight-space simulation: explicit random features with P < N + M (so K is singular and
  the pseudo-inverse matters), w trained by torch.optim.SGD;
- the linearized regime's per-path test loss, SD's diagonal approximation (and its measured gap), the theory;
- the pseudo-inverse cut-off; bad input.
"""
import math

import numpy as np
import pytest
import torch

from gfsgd import Problem
from gfsgd import theory as th
from gfsgd.regimes import full, linearized
from gfsgd.regimes import spectral_diagonal as sd


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def joint_problem(N, M, P, seed=0, noise=0.3):
    """Random features Phi [N + M, P] with decaying scales, target y = Phi w* + noise, w0 = 0."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.arange(1, P + 1, dtype=torch.float64) ** -0.6
    Phi = torch.randn(N + M, P, generator=gen, dtype=torch.float64) * scales
    w_star = torch.randn(P, generator=gen, dtype=torch.float64)
    y = Phi @ w_star + noise * torch.randn(N + M, generator=gen, dtype=torch.float64)
    Kj = Phi @ Phi[:N].T  # [N + M, N]
    p = Problem.from_kernel(Kj[:N], -y[:N], K_test=Kj[N:], r_test=-y[N:])
    return p, Phi, y


def mc_function_space(p, Kj_norm, d0, r0, cfg, n_steps, R, seed):
    """R paths of v-form SGD on the joint kernel: g = (N/b) K[:, B] d[B] for the N + M points at once."""
    a, beta, b = cfg
    N = d0.numel()
    gen = torch.Generator().manual_seed(seed)
    z = torch.cat([d0, r0]).expand(R, -1).clone()  # [R, N + M]: training then test residuals
    v = torch.zeros_like(z)
    out = [(z[:, N:] ** 2).sum(1) / (2 * (z.shape[1] - N))]
    for _ in range(n_steps):
        B = torch.rand(R, N, generator=gen).argsort(1)[:, :b]  # [R, b] uniform b-subsets
        dB = z[:, :N].gather(1, B)  # [R, b]
        g = (N / b) * torch.einsum("rjb,rb->rj", Kj_norm[:, B].permute(1, 0, 2), dB)  # [R, N + M]
        v = -a * g + beta * v
        z = z + v
        out.append((z[:, N:] ** 2).sum(1) / (2 * (z.shape[1] - N)))
    return torch.stack(out, 1)  # [R, T + 1]


CFGS = [(0.4, -0.3, 1), (1.0, 0.0, 10), (0.6, 0.5, 30)]


def test_full_regime_test_loss_against_function_space_monte_carlo():
    """N = 300, M = 200, 4000 paths per config (beta < 0 at b = 1 included), 60 steps: within 4.5 s.e. at every
    5th step."""
    N, M = 300, 200
    p, Phi, y = joint_problem(N, M, P=400)
    Kj = (Phi @ Phi[:N].T) / p.lambda_max_raw
    f = full.run(p, CFGS, 60, progress=False, device="cpu")
    assert f.test_loss is not None and f.status == ["ok"] * 3
    assert f.test_loss[0, 0] == pytest.approx(p.test_loss0, rel=1e-12)
    steps = np.arange(5, 61, 5)
    worst = 0.0
    for g, cfg in enumerate(CFGS):
        paths = mc_function_space(p, Kj, -y[:N], -y[N:], cfg, 60, R=4000, seed=g)
        mean, se = paths.mean(0).numpy(), (paths.std(0) / math.sqrt(paths.shape[0])).numpy()
        z = np.abs(f.test_loss[g, steps] - mean[steps]) / se[steps]
        worst = max(worst, z.max())
        assert z.max() < 4.5, (cfg, z)
        # the loss moved: the check is not trivially at the initial value
        assert mean[-1] < 0.8 * mean[0]
    assert worst < 4.5


def test_full_regime_test_loss_against_weight_space_sgd():
    """Explicit random features with P = 250 < N + M = 380 and < N = 300: K = Phi Phi^T is singular (rank 250),
    so Gamma needs the pseudo-inverse. w [R, P] is trained with torch.optim.SGD(momentum=beta >= 0: torch
    refuses negative momentum; the function-space test covers beta < 0) on
    0.5 * batch MSE at lr_w = alpha N / lambda_max(K_raw); its test loss averaged over 3000 paths matches the
    full regime within 4.5 s.e."""
    N, M, P = 300, 80, 250
    p, Phi, y = joint_problem(N, M, P=P, seed=1)
    assert p.test_terms()["n_cut"] == N - P  # the null space was cut, not inverted
    cfg = (0.5, 0.3, 5)
    n = 50
    f = full.run(p, [cfg], n, progress=False, device="cpu")
    R = 3000
    gen = torch.Generator().manual_seed(7)
    w = torch.zeros(R, P, dtype=torch.float64, requires_grad=True)
    a, beta, b = cfg
    opt = torch.optim.SGD([w], lr=a * N / p.lambda_max_raw, momentum=beta)
    Xtr, Xte, ytr, yte = Phi[:N], Phi[N:], y[:N], y[N:]
    out = [((Xte @ w.detach().T).T - yte).pow(2).mean(1) / 2]
    for _ in range(n):
        B = torch.rand(R, N, generator=gen).argsort(1)[:, :b]
        pred = torch.einsum("rbp,rp->rb", Xtr[B], w)
        loss = 0.5 * ((pred - ytr[B]) ** 2).mean(1).sum()  # each path's own batch loss; paths independent
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(((Xte @ w.detach().T).T - yte).pow(2).mean(1) / 2)
    paths = torch.stack(out, 1)
    mean, se = paths.mean(0).numpy(), (paths.std(0) / math.sqrt(R)).numpy()
    steps = np.arange(5, n + 1, 5)
    z = np.abs(f.test_loss[0, steps] - mean[steps]) / se[steps]
    assert z.max() < 4.5, z
    assert mean[-1] < 0.9 * mean[0]


def test_linearized_sd_and_theory_test_loss():
    """linearized: at b = N (no sampling) equal to full to 1e-10; sampled (200 paths) within 5 s.e. of full
    at every 10th step. SD and the theory: equal to each other to 1e-10 (two implementations of the same
    approximation), exact at b = N (mean part exact, no covariance), and an approximation otherwise: on this
    random-features problem the SD test gap to full is about the size of SD's own training-loss gap."""
    N, M = 120, 60
    p, _, _ = joint_problem(N, M, P=160, seed=2)
    cfgs = [(0.4, -0.3, 1), (1.0, 0.0, 10), (1.0, 0.0, N)]
    n = 150
    f = full.run(p, cfgs, n, progress=False, device="cpu")
    lin = linearized.run(p, cfgs, n, repeats=200, progress=False, device="cpu", seed=3)
    np.testing.assert_allclose(lin.test_loss[2], f.test_loss[2], rtol=1e-10)
    steps = np.arange(10, n + 1, 10)
    z = np.abs(lin.test_loss[:2, steps] - f.test_loss[:2, steps]) / lin.test_loss_se[:2, steps]
    assert z.max() < 5, z
    s = sd.run(p, cfgs, n, progress=False, device="cpu")
    L, T = th.loss_curve(p, *th.split_configs(cfgs), n, test=True)
    np.testing.assert_allclose(T, s.test_loss, rtol=1e-10)
    np.testing.assert_allclose(L, s.loss, rtol=1e-10)
    np.testing.assert_allclose(s.test_loss[2], f.test_loss[2], rtol=1e-10)
    test_gap = np.max(np.abs(s.test_loss[:2] - f.test_loss[:2]) / f.test_loss[:2])
    train_gap = np.max(np.abs(s.loss[:2] - f.loss[:2]) / f.loss[:2])
    assert 1e-3 < test_gap < 2 * train_gap + 0.05, (test_gap, train_gap)
    # log_steps pick the same values
    L2, T2 = th.loss_curve(p, 1.0, 0.0, 10, n, test=True, log_steps=[0, 50, n])
    np.testing.assert_allclose(T2, s.test_loss[1, [0, 50, n]], rtol=1e-10)


def test_pseudo_inverse_cutoff_changes_nothing():
    """A singular kernel (P = 90 features for N = 120 points): its 30 null eigenvalues sit at round-off
    (~1e-17) and are cut at any cutoff from 1e-14 to 1e-6, and the test loss is the same to 1e-10 for all of
    them. A cutoff that reaches real eigenvalues (here 1e-1) does change it: the check can fail."""
    N, M = 120, 40
    p, _, _ = joint_problem(N, M, P=90, seed=4)
    cfgs = [(0.8, 0.0, 4), (1.0, -0.3, N)]
    ref = full.run(p, cfgs, 80, progress=False, device="cpu", test_cutoff=1e-10)
    assert p.test_terms(1e-10)["n_cut"] == N - 90
    for cut in (1e-14, 1e-12, 1e-8, 1e-6):
        assert p.test_terms(cut)["n_cut"] == N - 90
        other = full.run(p, cfgs, 80, progress=False, device="cpu", test_cutoff=cut)
        np.testing.assert_allclose(other.test_loss, ref.test_loss, rtol=1e-10)
    coarse = full.run(p, cfgs, 80, progress=False, device="cpu", test_cutoff=1e-1)
    assert np.max(np.abs(coarse.test_loss - ref.test_loss) / ref.test_loss) > 1e-3


def test_synthetic_held_out_set_and_outputs(tmp_path):
    """Problem.synthetic(n_test=M) draws test points from the same model; the held-out set survives
    save/load and to(); the outputs carry test_loss columns and the predicted early-stopping step."""
    p = Problem.synthetic(64, 1.5, 1.0, seed=0, n_test=32)
    assert p.M == 32 and p.K_test.shape == (32, 64)
    q = Problem.load(p.save(tmp_path / "p.pt"))
    assert torch.equal(q.K_test, p.K_test) and torch.equal(q.r_test, p.r_test)
    assert q.to(dtype=torch.float32).K_test.dtype == torch.float32
    # noiseless same-model data: the test residual is Gamma d exactly (e = 0), and the test loss falls
    assert p.test_terms()["e2"] < 1e-20
    c = full.run(p, [(1.0, 0.0, 4), (0.5, 0.0, 64)], 200, progress=False, device="cpu")
    assert c.test_loss[:, -1].max() < 0.5 * p.test_loss0
    df, st = c.to_frame(), c.status_frame()
    assert {"test_loss", "loss"} <= set(df.columns)
    assert {"best_step", "best_test_loss", "final_test_loss"} <= set(st.columns)
    j = np.argmin(c.test_loss[0])
    assert st.loc[0, "best_step"] == c.steps[j] and st.loc[0, "best_test_loss"] == pytest.approx(c.test_loss[0, j])
    # a problem without a held-out set: no test column, no error
    plain = full.run(Problem.synthetic(16, 1.5, 1.0), [(1.0, 0.0, 4)], 5, progress=False, device="cpu")
    assert plain.test_loss is None and "test_loss" not in plain.to_frame()


def test_bad_input_is_a_clear_error():
    K = torch.eye(10, dtype=torch.float64)
    d0 = torch.ones(10, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"K_test must be the \[M, N=10\] cross-kernel"):
        Problem.from_kernel(K, d0, K_test=torch.ones(3, 9), r_test=torch.ones(3))
    with pytest.raises(ValueError, match="K_test has 1 non-finite"):
        bad = torch.ones(3, 10)
        bad[1, 2] = float("nan")
        Problem.from_kernel(K, d0, K_test=bad, r_test=torch.ones(3))
    with pytest.raises(ValueError, match="r_test must have length M=3"):
        Problem.from_kernel(K, d0, K_test=torch.ones(3, 10), r_test=torch.ones(4))
    with pytest.raises(ValueError, match="give both K_test"):
        Problem.from_kernel(K, d0, K_test=torch.ones(3, 10))
    plain = Problem.synthetic(16, 1.5, 1.0)
    for call in (lambda: full.run(plain, [(1.0, 0.0, 4)], 5, test=True, progress=False),
                 lambda: sd.run(plain, [(1.0, 0.0, 4)], 5, test=True, progress=False),
                 lambda: linearized.run(plain, [(1.0, 0.0, 4)], 5, test=True, progress=False),
                 lambda: th.loss_curve(plain, 1.0, 0.0, 4, 5, test=True)):
        with pytest.raises(ValueError, match="needs a held-out set"):
            call()
    with pytest.raises(ValueError, match="n_test=8 needs a basis"):
        Problem.synthetic(16, 1.5, 1.0, basis=None, n_test=8)
    with pytest.raises(ValueError, match="test must be None, True or False"):
        full.run(plain, [(1.0, 0.0, 4)], 5, test="yes", progress=False)
