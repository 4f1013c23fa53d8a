"""The re-linearised prediction (issue 24, item 2): the kernel and residual at w_t0 against a dense Jacobian of the
same network trained by hand, the continuation against gradient descent on that kernel written out, and the
stitching against the plain regimes."""
import numpy as np
import pytest
import torch

from gfsgd import problem_from_network, relinearize
from gfsgd.errors import InputError
from gfsgd.regimes import nn, spectral_diagonal as sd

from _reference import train_by_hand


def _setup(C=2, N=20, width=24, seed=0, test=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N + 8, 4, dtype=torch.float64, generator=g)
    Y = torch.randn(N + 8, C, dtype=torch.float64, generator=g)
    torch.manual_seed(seed + 1)
    m = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Tanh(), torch.nn.Linear(width, C)).double()
    kw = dict(X_test=X[N:], y_test=Y[N:]) if test else {}
    return m, X[:N], Y[:N], problem_from_network(m, X[:N], Y[:N], device="cpu", **kw)


def _dense(f, params, X, Y):
    names = list(params)

    def flat(*ps):
        return f(X, list(ps)).reshape(-1)

    J = torch.func.jacrev(flat, argnums=tuple(range(len(names))))(*[params[n] for n in names])
    J = torch.cat([j.reshape(j.shape[0], -1) for j in J], 1)
    return (J @ J.T).numpy(), (f(X) - Y).detach().reshape(-1).numpy()


def test_the_problem_at_t0_is_the_dense_kernel_of_the_trained_network():
    m, X, Y, p = _setup()
    alpha, beta, t0 = 1.2, 0.5, 25
    run = nn.run(p, [(alpha, beta, p.N)], t0, log_steps=[0, t0], progress=False, keep_state=True)
    q = relinearize.problem_at(p, run.meta["final_state"][0]["params"])
    ref = train_by_hand(m, X, Y, alpha * p.meta["lr_nn_per_alpha"], beta, t0, {t0}, lambda f, ps: _dense(f, ps, X, Y))
    K, d = ref[t0]
    np.testing.assert_allclose((q.K * q.lambda_max_raw).numpy(), K, rtol=1e-8, atol=1e-10 * np.abs(K).max())
    np.testing.assert_allclose(q.d0.reshape(-1).numpy(), d, rtol=1e-8, atol=1e-12)
    assert np.linalg.norm(K - (p.K * p.lambda_max_raw).numpy()) > 1e-3 * np.linalg.norm(K)  # the kernel moved


def test_the_continuation_is_gradient_descent_on_the_kernel_at_t0():
    """Full batch, beta = 0: after t0 the exact regime is d_{t+1} = (I - lr K_emp(w_t0) / N) d_t, written out here
    with the hand-trained network's dense kernel; before t0 the curve is the network's own loss."""
    m, X, Y, p = _setup(seed=2)
    alpha, t0, T = 1.5, 20, 60
    steps = [0, 5, t0, 30, 45, T]
    c = relinearize.run(p, [(alpha, 0.0, p.N)], T, t0=t0, regime="full", log_steps=steps)
    lr = alpha * p.meta["lr_nn_per_alpha"]
    ref = train_by_hand(m, X, Y, lr, 0.0, t0, {0, 5, t0}, lambda f, ps: _dense(f, ps, X, Y))
    N = p.N
    for s in (0, 5, t0):  # the network's own loss
        assert c.loss[0, steps.index(s)] == pytest.approx(0.5 * np.sum(ref[s][1] ** 2) / N, rel=1e-9)
    K, d = ref[t0]
    A = np.eye(K.shape[0]) - lr * K / N
    for s in (30, 45, T):
        ds = np.linalg.matrix_power(A, s - t0) @ d
        assert c.loss[0, steps.index(s)] == pytest.approx(0.5 * ds @ ds / N, rel=1e-8)
    assert c.meta["lambda_ratio"][0] == pytest.approx(np.linalg.eigvalsh(K)[-1] / p.lambda_max_raw, rel=1e-8)
    assert c.meta["kernel_change"][0] > 1e-3


def test_t0_zero_is_the_plain_prediction_and_the_head_is_the_networks_path():
    _, _, _, p = _setup(seed=4, test=True)
    cfgs = [(0.8, 0.0, 5), (1.5, 0.5, 10)]
    steps = [0, 10, 40, 80]
    plain = sd.run(p, cfgs, 80, log_steps=steps, progress=False)
    c0 = relinearize.run(p, cfgs, 80, t0=0, log_steps=steps)
    np.testing.assert_allclose(c0.loss, plain.loss, rtol=1e-12)
    np.testing.assert_allclose(c0.test_loss, plain.test_loss, rtol=1e-12)
    c = relinearize.run(p, cfgs, 80, t0=40, log_steps=steps, seed=3)
    net = nn.run(p, cfgs, 40, log_steps=[0, 10, 40], seed=3, progress=False)
    np.testing.assert_allclose(c.loss[:, :3], net.loss, rtol=1e-12)
    np.testing.assert_allclose(c.test_loss[:, :3], net.test_loss, rtol=1e-12)
    assert np.isfinite(c.loss[:, 3]).all() and np.isfinite(c.test_loss[:, 3]).all()
    assert c.meta["loss_t0"] == pytest.approx(list(net.loss[:, 2]), rel=1e-9)


def test_a_divergence_before_or_after_t0_is_reported():
    _, _, _, p = _setup(seed=5)
    c = relinearize.run(p, [(80.0, 0.0, 5), (0.5, 0.0, 5)], 60, t0=20, log_steps=[0, 20, 60])
    assert c.status == ["diverged", "ok"] and c.diverged_step[0] <= 20


def test_bad_arguments_are_refused_by_name():
    _, _, _, p = _setup()
    with pytest.raises(InputError, match="t0 must be"):
        relinearize.run(p, [(1.0, 0.0, 5)], 50, t0=50)
    with pytest.raises(InputError, match="regime must be"):
        relinearize.run(p, [(1.0, 0.0, 5)], 50, t0=5, regime="nn")
    with pytest.raises(InputError, match="params must name"):
        relinearize.network_at(p.network.model, {"w": torch.zeros(1)})


@pytest.mark.parametrize("check_kernel", [False, True])
def test_the_network_edge_brackets_the_hand_checked_transition(check_kernel):
    """Full batch, beta = 0: the linear edge is alpha = 2 (gradient descent, 2 / lambda_max). The bracket (lo, hi)
    must hold a network that trains at lo and fails at hi, checked by hand: the loss after S steps finite and below
    L_0 and, with check_kernel, lr lambda_max(K_emp(w_S)) / N < 2 (numpy's eigvalsh of the dense Jacobian Gram of
    the hand-trained network)."""
    m, X, Y, p = _setup(seed=7, N=16, width=16)
    S = 40
    e = relinearize.network_edge(p, 0.0, p.N, probe_steps=S, points=9, low=0.25, high=16.0, refine=1,
                                 check_kernel=check_kernel)
    assert e["linear"] == pytest.approx(2.0, rel=1e-6)
    lo, hi = e["bracket"]
    assert lo is not None and hi is not None and lo < e["edge"] < hi and hi / lo < 1.5

    def by_hand(alpha):
        lr = alpha * p.meta["lr_nn_per_alpha"]
        ref = train_by_hand(m, X, Y, lr, 0.0, S, {0, S}, lambda f, ps: _dense(f, ps, X, Y))
        (_, d0), (K, d) = ref[0], ref[S]
        finite = np.isfinite(K).all() and np.isfinite(d).all()
        return bool(finite and d @ d < d0 @ d0 and (not check_kernel or lr * np.linalg.eigvalsh(K)[-1] / p.N < 2))

    assert by_hand(lo) and not by_hand(hi)
    assert all(ok == by_hand(a) for a, ok in e["probes"][:3])  # the smallest probes, by hand too


def test_network_edge_refuses_bad_probes():
    _, _, _, p = _setup()
    with pytest.raises(InputError, match="probe_steps must be"):
        relinearize.network_edge(p, 0.0, 5, probe_steps=0)
