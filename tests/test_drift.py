"""Kernel drift measured along real training (issue 24, item 1): the nn regime's record against a dense Jacobian
of the same network trained by hand, and a direct eigen-decomposition."""
import numpy as np
import pytest
import torch

from gfsgd import problem_from_network
from gfsgd.errors import InputError
from gfsgd.ntk.drift import drift_steps
from gfsgd.regimes import nn

from _reference import train_by_hand


def _setup(C=2, N=24, width=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, 5, dtype=torch.float64, generator=g)
    Y = torch.randn(N, C, dtype=torch.float64, generator=g)
    torch.manual_seed(seed + 1)
    m = torch.nn.Sequential(torch.nn.Linear(5, width), torch.nn.Tanh(), torch.nn.Linear(width, C)).double()
    return m, X, Y, problem_from_network(m, X, Y, device="cpu")


def _dense_kernel(f, params, Xp):
    """J J^T on the probe points, from one dense torch.func Jacobian [n C, P]."""
    names = list(params)

    def flat(*ps):
        return f(Xp, list(ps)).reshape(-1)

    J = torch.func.jacrev(flat, argnums=tuple(range(len(names))))(*[params[n] for n in names])
    J = torch.cat([j.reshape(j.shape[0], -1) for j in J], 1)
    return (J @ J.T).numpy()


def test_drift_is_the_dense_kernel_of_the_trained_network():
    m, X, Y, p = _setup()
    alpha, beta, T = 1.5, 0.5, 30
    run = nn.run(p, [(alpha, beta, p.N)], T, log_steps=[0, 3, 10, T], progress=False, dtype="float64",
                 drift_probe=8)
    d = run.meta["kernel_drift"]
    assert d["steps"] == [0, 3, 10, T] and d["probe"] == 8
    Xp = X[d["probe_index"]]
    ref = train_by_hand(m, X, Y, alpha * p.meta["lr_nn_per_alpha"], beta, T, set(d["steps"]),
                        lambda f, ps: _dense_kernel(f, ps, Xp))
    K0 = ref[0]
    for j, t in enumerate(d["steps"]):
        rel = np.linalg.norm(ref[t] - K0) / np.linalg.norm(K0)
        ratio = np.linalg.eigvalsh(ref[t])[-1] / np.linalg.eigvalsh(K0)[-1]
        assert d["relative_change"][0][j] == pytest.approx(rel, rel=1e-8, abs=1e-12)
        assert d["lambda_max_ratio"][0][j] == pytest.approx(ratio, rel=1e-8)
    assert d["relative_change"][0][-1] > 1e-3  # the kernel did move, so the comparison is not of zeros


def test_a_larger_step_moves_the_kernel_more_and_a_divergence_is_nan():
    _, _, _, p = _setup(seed=3)
    run = nn.run(p, [(0.2, 0.0, 8), (1.5, 0.0, 8), (60.0, 0.0, 8)], 40, log_steps=[0, 20, 40], progress=False,
                 dtype="float64", drift_probe=6, repeats=2)
    rel = np.asarray(run.meta["kernel_drift"]["relative_change"])
    assert rel[1, -1] > 3 * rel[0, -1] > 0
    assert run.status[2] == "diverged" and np.isnan(rel[2, -1])


def test_drift_steps_and_bad_probe():
    assert drift_steps(range(0, 11)) == list(range(0, 11))
    s = drift_steps(range(0, 1001), n_points=8)
    assert s[0] == 0 and s[-1] == 1000 and len(s) <= 10 and s == sorted(s)
    _, _, _, p = _setup()
    with pytest.raises(InputError, match="drift_probe must be an integer >= 2"):
        nn.run(p, [(0.5, 0.0, 4)], 3, progress=False, drift_probe=1)


def test_a_network_with_non_finite_parameters_measures_nan_not_an_error():
    """A network on its way to diverging (not yet marked diverged) reaches the probe with inf weights: its drift is
    NaN, and the sweep goes on (eigvalsh raised on the inf kernel before)."""
    from gfsgd.ntk.drift import DriftRecorder
    m, X, _, _ = _setup(seed=6)
    rec = DriftRecorder(m, X, 6)
    params = {k: torch.stack([v.detach(), v.detach()]) for k, v in m.named_parameters()}
    first = next(iter(params))
    params[first][1] = float("inf")
    rel, ratio = rec.measure(params, 2)
    assert rel[0].item() == pytest.approx(0.0, abs=1e-12) and ratio[0].item() == pytest.approx(1.0, rel=1e-12)
    assert np.isnan(rel[1].item()) and np.isnan(ratio[1].item())
