"""Schedules: the Jacobi heavy-ball closed form, and every regime applying schedules in the v-form."""
import numpy as np
import pytest
import torch
from scipy.special import eval_jacobi

from gfsgd import Problem, Schedule
from gfsgd import schedules as S
from gfsgd.regimes import full, linearized, spectral_diagonal as sd


@pytest.mark.parametrize("a, b", [(0.0, 0.0), (1.0, 0.5), (-0.5, 2.0)])
def test_jacobi_schedule_gives_jacobi_residual_polynomials(a, b):
    """docs/theory.md#jacobi: noiseless heavy ball with the Jacobi schedule has residual P_n(1-lr*lam)/P_n(1)."""
    p = Problem.synthetic(16, nu=1.0, kappa=0.5, seed=1)
    lr, n = 0.9, 40
    lam, c, N = p.eigvals.numpy(), p.c.numpy(), p.N
    ref = [np.sum(c * (eval_jacobi(t, a, b, 1 - lr * lam) / eval_jacobi(t, a, b, 1.0)) ** 2) / (2 * N)
           for t in range(n + 1)]
    sched = S.jacobi(a, b)
    for regime in (full, linearized, sd):
        c_ = regime.run(p, [(lr, 0.0, N)], n, schedule=sched, progress=False)
        np.testing.assert_allclose(c_.loss[0], ref, rtol=1e-9, err_msg=regime.REGIME)
    # starting the index at 1 breaks it (the test can fail)
    shifted = Schedule(lr=lambda t, base: S.jacobi_lr(a, b)(t + 1, base),
                       momentum=lambda t, base: S.jacobi_momentum(a, b)(t + 1, base))
    bad = sd.run(p, [(lr, 0.0, N)], n, schedule=shifted, progress=False)
    assert np.abs(bad.loss[0, -1] / ref[-1] - 1) > 1e-3


def test_schedules_values():
    base = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert torch.allclose(S.step_decay(10, 0.5)(25, base), base * 0.25)
    assert torch.allclose(S.linear_warmup(10)(5, base), base * 0.5)
    assert torch.allclose(S.linear_warmup(10)(50, base), base)
    assert torch.allclose(S.cosine(100)(0, base), base)
    assert torch.allclose(S.cosine(100, final_factor=0.1)(100, base), base * 0.1)
    assert torch.allclose(S.cyclic(10, 0.0)(5, base), base)
    assert torch.allclose(S.cyclic(10, 0.0)(0, base), 0 * base)
    with pytest.raises(ValueError, match="Jacobi parameters must satisfy a > -1 and b > -1, got a=-2"):
        S.jacobi(-2, 0)
    with pytest.raises(ValueError, match="sched must be one of"):
        S.from_name("exponential", 100)
    with pytest.raises(ValueError, match="step_size must be > 0"):
        S.step_decay(0)


def _vform_reference(K, d0, lrs, betas, n):
    d, v = d0.clone(), torch.zeros_like(d0)
    out = [float(d @ d) / (2 * len(d))]
    for t in range(n):
        v = -lrs[t] * (K @ d) + betas[t] * v
        d = d + v
        out.append(float(d @ d) / (2 * len(d)))
    return np.array(out)


def test_schedule_uses_v_form_in_every_regime():
    p = Problem.synthetic(16, nu=1.0, kappa=0.5, seed=2)
    sched = Schedule(lr=S.cosine(30, 0.0, warmup_steps=5), momentum=lambda t, base: base * (t % 3) / 2)
    n, lr, beta = 30, 1.2, 0.6
    lrs = [float(sched.lr(t, torch.tensor(lr, dtype=torch.float64))) for t in range(n)]
    betas = [float(sched.momentum(t, torch.tensor(beta, dtype=torch.float64))) for t in range(n)]
    ref = _vform_reference(p.K, p.d0, lrs, betas, n)
    for regime in (full, linearized, sd):
        got = regime.run(p, [(lr, beta, p.N)], n, schedule=sched, progress=False).loss[0]
        np.testing.assert_allclose(got, ref, rtol=1e-9, err_msg=regime.REGIME)


def test_batch_size_schedule_mean_matches_full():
    p = Problem.synthetic(20, nu=1.2, kappa=0.8, lambda_min=0.05, seed=3)
    sched = Schedule(lr=S.linear_warmup(5, 0.2), batch_size=lambda t, base: base * (1 + t // 10))
    configs = [(0.6, 0.3, 2)]
    ex = full.run(p, configs, 30, schedule=sched, progress=False)
    mc = linearized.run(p, configs, 30, schedule=sched, repeats=3000, seed=5, progress=False)
    z = np.abs(mc.loss[0, 1:] - ex.loss[0, 1:]) / mc.loss_se[0, 1:]
    assert z.max() < 4.0
    # the batch schedule matters: a constant batch of 2 gives a different exact curve
    const = full.run(p, configs, 30, schedule=Schedule(lr=S.linear_warmup(5, 0.2)), progress=False)
    assert np.abs(const.loss[0, -1] / ex.loss[0, -1] - 1) > 1e-2


# ---------------------------------------------------------------- the data form (JSON)
def _hand(kind, t):
    """Hand-written values of each shape at step t (independent of gfsgd.schedules' numpy formulas)."""
    import math
    if kind == "wsd":  # total 100, warm-up 10, decay over the last 30 to 0.1
        return (t + 1) / 10 if t < 10 else (1.0 if t < 70 else 1 - 0.9 * min((t - 70) / 30, 1))
    if kind == "linear":  # total 100, warm-up 5, to 0
        return (t + 1) / 5 if t < 5 else 1 - min((t - 5) / 95, 1)
    if kind == "geometric":  # x8 over 40 steps
        return 8 ** min(t / 40, 1)
    if kind == "piecewise":
        return 1.0 if t < 3 else (0.5 if t < 50 else 0.1)
    if kind == "cosine":  # total 100, warm-up 10, to 0.05
        return (t + 1) / 10 if t < 10 else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min((t - 10) / 90, 1)))
    raise KeyError(kind)


@pytest.mark.parametrize("kind, fn", [("wsd", lambda: S.wsd(100, 30, 10, 0.1)),
                                      ("linear", lambda: S.linear_decay(100, 5)),
                                      ("geometric", lambda: S.geometric(40, 8.0)),
                                      ("piecewise", lambda: S.piecewise([0, 3, 50], [1.0, 0.5, 0.1])),
                                      ("cosine", lambda: S.cosine(100, 0.05, 10))])
def test_shapes_match_hand_formulas_per_step_and_vectorised(kind, fn):
    f = fn()
    base = torch.tensor([2.0], dtype=torch.float64)
    ts = np.arange(0, 130)
    hand = np.array([_hand(kind, int(t)) for t in ts])
    np.testing.assert_allclose(f.values(ts), hand, rtol=1e-12)
    np.testing.assert_allclose([float(f(int(t), base)[0]) for t in ts], 2 * hand, rtol=1e-12)


def _designed_like():
    return Schedule(lr=S.piecewise([0, 5, 20, 35], [0.3, 1.0, 0.6, 0.1]),
                    momentum=S.piecewise([0, 5, 20, 35], [0.0, 0.5, 0.7, 0.2], scale="value"),
                    batch_size=S.geometric(30, 4.0), name="designed-like")


def test_schedule_round_trips_through_json_and_runs_identically_in_every_regime(tmp_path):
    from gfsgd.models import MLP
    from gfsgd.regimes import nn
    from gfsgd import problem_from_network
    sched = _designed_like()
    path = sched.save(tmp_path / "s.json")
    back = Schedule.load(path)
    assert back.to_dict() == sched.to_dict() and back.name == "designed-like"
    for t in (0, 4, 5, 19, 20, 36, 100):
        for key in ("lr", "momentum", "batch_size"):
            x = torch.tensor([3.0], dtype=torch.float64)
            assert float(getattr(back, key)(t, x)[0]) == float(getattr(sched, key)(t, x)[0])
    p = Problem.synthetic(24, nu=1.2, kappa=0.8, lambda_min=0.05, seed=3)
    cfg = [(0.8, 0.0, 3)]
    for regime, kw in ((full, {}), (sd, {}), (linearized, dict(repeats=4, seed=2))):
        a = regime.run(p, cfg, 40, schedule=sched, progress=False, **kw).loss
        b = regime.run(p, cfg, 40, schedule=back, progress=False, **kw).loss
        np.testing.assert_array_equal(a, b, err_msg=regime.REGIME)
    X = torch.randn(24, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = X[:, 0].clone()
    pn = problem_from_network(MLP(3, width=16, seed=0).double(), X, y)
    a = nn.run(pn, cfg, 20, schedule=sched, progress=False).loss
    b = nn.run(pn, cfg, 20, schedule=back, progress=False).loss
    np.testing.assert_array_equal(a, b)
    # and the schedule's values are the ones the v-form reference takes (lr and momentum; batch = N here)
    lr_t, m_t, _ = back.values(40, 0.8, 0.0, p.N, p.N)
    ref = _vform_reference(p.K, p.d0, lr_t, m_t, 40)
    got = full.run(p, [(0.8, 0.0, p.N)], 40, schedule=Schedule(lr=back.lr, momentum=back.momentum),
                   progress=False).loss[0]
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_schedule_json_refusals(tmp_path):
    with pytest.raises(ValueError, match="the lr schedule of 'custom' is a Python function without a data form"):
        Schedule(lr=lambda t, base: base).to_dict()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        S.load(bad)
    with pytest.raises(ValueError, match="no such file"):
        S.load(tmp_path / "missing.json")
    d = _designed_like().to_dict()
    with pytest.raises(ValueError, match="kind must be one of"):
        S.schedule_from_dict({**d, "lr": {"kind": "exponential"}})
    with pytest.raises(ValueError, match="wrong parameters for kind 'wsd'"):
        S.schedule_from_dict({**d, "lr": {"kind": "wsd", "total_steps": 10}})
    with pytest.raises(ValueError, match="decay_steps must be at most"):
        S.schedule_from_dict({**d, "lr": {"kind": "wsd", "total_steps": 10, "decay_steps": 20}})
    with pytest.raises(ValueError, match="boundaries must be strictly increasing integers starting at 0"):
        S.piecewise([1, 5], [1.0, 2.0])
    with pytest.raises(ValueError, match="not a saved gfsgd schedule"):
        S.schedule_from_dict({"lr": None})


def test_sched_file_on_the_command_line(tmp_path):
    """--sched_file runs the saved schedule: the same curve as the named --sched it was saved from, another one
    than the constant lr."""
    from gfsgd import cli
    from gfsgd.results import load as load_runs
    path = S.from_name("wsd", 60).save(tmp_path / "w.json")
    base = ["--dataset", "synthetic", "--N", "64", "--n_steps", "60", "--lr", "0.9", "--momentum", "0.3",
            "--batch_size", "4", "--no_plots", "--no_progress"]
    finals = {}
    for tag, extra in (("file", ["--sched_file", str(path)]), ("name", ["--sched", "wsd"]), ("const", [])):
        out = cli.main(["sd"], "train_spectral_diagonal", "test", base + extra + ["--save_dir", str(tmp_path / tag)])
        finals[tag] = float(load_runs(out).status["final_loss"].iloc[0])
    assert finals["file"] == finals["name"]
    assert abs(finals["file"] / finals["const"] - 1) > 1e-3
    with pytest.raises(SystemExit, match="give --sched_file or --sched, not both"):
        cli.main(["sd"], "train_spectral_diagonal", "test",
                 base + ["--sched", "cosine", "--sched_file", str(path), "--save_dir", str(tmp_path / "x")])
