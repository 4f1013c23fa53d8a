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
