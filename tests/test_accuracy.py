"""Held-out sets with C outputs and the held-out accuracy (issue 23, item 4): each value against an independent
computation (a hand-checked case, the network evaluated directly, the function-space iteration in numpy, Monte
Carlo of the sampled regime)."""
import numpy as np
import pytest
import torch

from gfsgd import Problem, problem_from_network
from gfsgd.losses import correct, is_classification
from gfsgd.regimes import full, linearized, nn

from _reference import train_by_hand


def test_correct_and_is_classification_by_hand():
    y = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
    out = torch.tensor([[[2.0, 1, 0], [0, 3, 1], [0, 5, 1]]])  # right, wrong, right
    assert correct(out, y).tolist() == [[1.0, 0.0, 1.0]]
    assert correct(torch.tensor([0.3, -2.0, 1.0]), torch.tensor([1.0, 1.0, -1.0])).tolist() == [1.0, 0.0, 0.0]
    assert is_classification(y) and is_classification(y - 0.1)  # centred one-hot too
    assert is_classification(torch.tensor([1.0, -1.0, 1.0]))
    assert not is_classification(torch.tensor([0.2, -1.0, 1.0]))  # real-valued targets: no accuracy
    assert not is_classification(torch.tensor([[1.0, 1.0, 0.0]]))  # a tie: no single class


def _data(N=40, M=30, C=3, D=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, C, dtype=torch.float64, generator=g)
    X = torch.randn(N + M, D, dtype=torch.float64, generator=g)
    Y = torch.nn.functional.one_hot((X @ W).argmax(1), C).double() - 1.0 / C  # centred one-hot labels
    return X[:N], Y[:N], X[N:], Y[N:]


def _net(C=3, D=6, width=64, seed=1):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(D, width), torch.nn.Tanh(), torch.nn.Linear(width, C)).double()


def test_a_c_output_problem_carries_its_held_out_set():
    X, Y, Xt, Yt = _data()
    m = _net()
    p = problem_from_network(m, X, Y, X_test=Xt, y_test=Yt, device="cpu")
    assert p.has_test and p.M == 30 and p.K_test.shape == (90, 120)  # M C rows, N C columns
    with torch.no_grad():
        r = (m(Xt) - Yt).reshape(-1)
    torch.testing.assert_close(p.r_test, r, rtol=1e-12, atol=1e-12)
    assert p.test_loss0 == pytest.approx(float((r ** 2).sum()) / (2 * 30), rel=1e-12)  # |F - Y|^2 / (2M)


def test_nn_accuracy_is_the_networks_own_on_the_held_out_points():
    """Full batch, one path: the nn regime's accuracy at each logged step against the same network trained here
    by hand (heavy ball on 0.5 mean |f - y|^2) and evaluated directly."""
    X, Y, Xt, Yt = _data()
    m = _net()
    p = problem_from_network(m, X, Y, X_test=Xt, y_test=Yt, device="cpu")
    alpha, beta, T = 0.5, 0.5, 40
    run = nn.run(p, [(alpha, beta, p.N)], T, log_steps=[0, 10, T], progress=False, dtype="float64")
    assert run.test_accuracy is not None and run.test_accuracy.shape == (1, 3)
    lr = alpha * p.meta["lr_nn_per_alpha"]
    acc = train_by_hand(m, X, Y, lr, beta, T, (0, 10, T),
                        lambda f, _: float((f(Xt).argmax(1) == Yt.argmax(1)).double().mean()))
    np.testing.assert_array_equal(run.test_accuracy[0], [acc[0], acc[10], acc[T]])
    assert acc[T] > acc[0]  # it learned something, so the check compares moving values
    df = run.to_frame()
    assert "test_accuracy" in df and run.status_frame()["final_test_accuracy"].iloc[0] == acc[T]


def test_linearized_accuracy_is_the_function_space_iteration():
    """b = N: f_test' = f_test + v_te', v_te' = beta v_te - alpha K_test d, written out with numpy."""
    X, Y, Xt, Yt = _data()
    p = problem_from_network(_net(), X, Y, X_test=Xt, y_test=Yt, device="cpu")
    alpha, beta, T = 0.8, 0.3, 60
    run = linearized.run(p, [(alpha, beta, p.N)], T, log_steps=[0, T], progress=False)
    K, Kt = p.K.numpy(), p.K_test.numpy()
    d, r = p.d0.numpy(), p.r_test.numpy()
    v, vt = np.zeros_like(d), np.zeros_like(r)
    y = Yt.numpy()
    acc0 = float(((r.reshape(-1, 3) + y).argmax(1) == y.argmax(1)).mean())
    for _ in range(T):
        v, vt = beta * v - alpha * K @ d, beta * vt - alpha * Kt @ d
        d, r = d + v, r + vt
    acc = float(((r.reshape(-1, 3) + y).argmax(1) == y.argmax(1)).mean())
    assert run.test_accuracy[0].tolist() == [acc0, acc]
    assert run.test_loss[0, -1] == pytest.approx(float(r @ r) / (2 * 30), rel=1e-10)
    assert acc != acc0


def test_c_output_test_loss_of_the_full_regime_is_the_monte_carlo_mean():
    """The exact held-out loss with C = 3 outputs and example batches against the mean of sampled paths."""
    X, Y, Xt, Yt = _data(N=16, M=10)
    p = problem_from_network(_net(width=32), X, Y, X_test=Xt, y_test=Yt, device="cpu")
    configs = [(0.8, 0.0, 4), (0.5, 0.5, 8)]
    T = 25
    exact = full.run(p, configs, T, progress=False, log_steps=[0, 10, T])
    mc = linearized.run(p, configs, T, repeats=4000, progress=False, log_steps=[0, 10, T])
    assert exact.test_loss[0, 0] == pytest.approx(p.test_loss0, rel=1e-12)
    z = (mc.test_loss[:, 1:] - exact.test_loss[:, 1:]) / mc.test_loss_se[:, 1:]
    assert np.all(np.abs(z) < 4.5), z
    assert mc.test_accuracy is not None and exact.test_accuracy is None  # an accuracy needs sampled outputs


def test_a_held_out_set_must_have_whole_examples():
    p = Problem.from_kernel(torch.eye(6, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64))
    from gfsgd.errors import InputError
    with pytest.raises(InputError, match="M C rows"):
        Problem(p.eigvals, p.coef, p.eigvecs, n_outputs=2, K_test=torch.ones(3, 6, dtype=torch.float64),
                r_test=torch.ones(3, dtype=torch.float64))
