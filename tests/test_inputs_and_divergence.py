"""Bad input gets a clear error; a diverging config is marked and the others go on."""
import math

import numpy as np
import pytest
import torch

from gfsgd import Grid, Problem
from gfsgd.grid import check_configs
from gfsgd.regimes import full, linearized, spectral_diagonal as sd

REGIMES = [full, linearized, sd]


@pytest.mark.parametrize("regime", REGIMES, ids=lambda m: m.REGIME)
@pytest.mark.parametrize("config, match", [
    ((0.0, 0.0, 4), r"lr must be a finite number > 0, got lr=0.0"),
    ((-1.0, 0.0, 4), r"lr must be .*got lr=-1.0"),
    ((float("nan"), 0.0, 4), r"lr must be"),
    ((0.5, 1.0, 4), r"momentum must be in \(-1, 1\), got momentum=1.0"),
    ((0.5, -1.2, 4), r"momentum must be in \(-1, 1\), got momentum=-1.2"),
    ((0.5, 0.0, 0), r"batch_size must be in \[1, N=16\], got batch_size=0"),
    ((0.5, 0.0, 17), r"batch_size must be in \[1, N=16\], got batch_size=17"),
    ((0.5, 0.0, 2.5), r"batch_size must be an integer, got batch_size=2.5"),
])
def test_bad_configs(regime, config, match):
    p = Problem.synthetic(16, 1.5, 1.0, seed=0)
    with pytest.raises(ValueError, match=match):
        regime.run(p, [(0.5, 0.0, 4), config], 5, progress=False)


def test_bad_kernels():
    K = torch.eye(4)
    with pytest.raises(ValueError, match="K has 1 non-finite"):
        Problem.from_kernel(K.clone().index_put_((torch.tensor([0]), torch.tensor([1])), torch.tensor(math.inf)),
                            torch.ones(4))
    A = torch.eye(4)
    A[0, 1] = 0.5
    with pytest.raises(ValueError, match="K must be symmetric"):
        Problem.from_kernel(A, torch.ones(4))
    with pytest.raises(ValueError, match=r"d0 must have length N=4 .* got shape \(5,\)"):
        Problem.from_kernel(K, torch.ones(5))
    with pytest.raises(ValueError, match="positive semi-definite"):
        Problem.from_kernel(torch.diag(torch.tensor([1.0, -0.5, 0.2, 0.1])), torch.ones(4))
    with pytest.raises(ValueError, match="square"):
        Problem.from_kernel(torch.ones(3, 4), torch.ones(3))


def test_bad_synthetic_and_spectral_only():
    with pytest.raises(ValueError, match="nu must be > 0"):
        Problem.synthetic(10, nu=0.0, kappa=1.0)
    with pytest.raises(ValueError, match="N must be >= 1"):
        Problem.synthetic(0, nu=1.0, kappa=1.0)
    with pytest.raises(ValueError, match="power of 2"):
        Problem.synthetic(12, nu=1.0, kappa=1.0, basis="hadamard")
    p = Problem.synthetic(100, 1.5, 1.0, basis=None)
    with pytest.raises(ValueError, match="spectral only"):
        full.run(p, [(0.5, 0.0, 1)], 3, progress=False)
    with pytest.raises(ValueError, match="spectral only"):
        linearized.run(p, [(0.5, 0.0, 1)], 3, progress=False)
    sd.run(p, [(0.5, 0.0, 1)], 3, progress=False)  # works without a basis


def test_grid_prod_zip_and_errors():
    g = Grid(lr=[0.1, 0.2], momentum=[0.0, 0.5], batch_size=[1, 10])
    assert len(g) == 8 and g.configs[1] == (0.1, 0.0, 10)
    z = Grid(lr=[0.1, 0.2, 0.3], momentum=0.5, batch_size=[1, 2, 3], aggr="zip")
    assert z.configs == [(0.1, 0.5, 1), (0.2, 0.5, 2), (0.3, 0.5, 3)]
    with pytest.raises(ValueError, match=r"aggr='zip' needs lists of equal length .*'lr': 3.*'batch_size': 2"):
        Grid(lr=[0.1, 0.2, 0.3], momentum=0.0, batch_size=[1, 2], aggr="zip")
    with pytest.raises(ValueError, match="aggr must be 'prod' or 'zip', got aggr='sum'"):
        Grid(lr=[0.1], aggr="sum")
    with pytest.raises(ValueError, match="lr must not be empty"):
        Grid(lr=[])
    lr, mom, b = check_configs(g, 10)
    assert lr.shape == (8,) and b.dtype == torch.float64


@pytest.mark.parametrize("regime", REGIMES, ids=lambda m: m.REGIME)
def test_divergence_is_marked_and_others_go_on(regime):
    p = Problem.synthetic(32, 1.2, 1.0, seed=2)
    configs = [(0.5, 0.0, 8), (3.0, 0.0, 8), (0.5, 0.2, 32), (2.5, 0.1, 32)]  # 2nd and 4th exceed 2(1+beta)
    kw = dict(repeats=4) if regime is linearized else {}
    c = regime.run(p, configs, 300, progress=False, **kw)
    assert c.status == ["ok", "diverged", "ok", "diverged"]
    for g in (1, 3):
        s = c.diverged_step[g]
        assert 1 <= s < 300
        assert np.isnan(c.loss[g, s:]).all() and np.isfinite(c.loss[g, :s]).all()
        assert c.loss[g, s - 1] <= 1e6 * p.loss0
    for g in (0, 2):
        assert c.diverged_step[g] is None and np.isfinite(c.loss[g]).all()
    # the surviving configs are unaffected by their diverging neighbours
    alone = regime.run(p, [configs[2]], 300, progress=False, **kw)
    np.testing.assert_allclose(c.loss[2], alone.loss[0], rtol=1e-12)


def test_log_steps_and_n_steps_validation():
    p = Problem.synthetic(8, 1.5, 1.0)
    c = sd.run(p, [(0.5, 0.0, 2)], 20, log_steps=[0, 5, 20], progress=False)
    assert list(c.steps) == [0, 5, 20] and c.loss.shape == (1, 3)
    with pytest.raises(ValueError, match="log_steps must be integers in \\[0, n_steps=20\\]"):
        sd.run(p, [(0.5, 0.0, 2)], 20, log_steps=[0, 25], progress=False)
    with pytest.raises(ValueError, match="n_steps must be an integer >= 0"):
        sd.run(p, [(0.5, 0.0, 2)], -3, progress=False)
    with pytest.raises(ValueError, match="tau must be finite"):
        sd.run(p, [(0.5, 0.0, 2)], 3, tau=math.nan, progress=False)
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        linearized.run(p, [(0.5, 0.0, 2)], 3, repeats=0, progress=False)


def test_diverged_step_is_exact_although_checked_in_blocks():
    """The engine reads its divergence flags only every 64 steps, yet reports the exact first step whose loss is
    above 1e6 L_0 (or not finite): here against the theory's renewal solution of the same SD dynamics (an
    independent computation), for configs that cross the bound at different steps inside a check block,
    and while logging only a few steps."""
    from gfsgd import theory as th
    p = Problem.synthetic(64, 1.5, 1.0, seed=0, basis=None)
    configs = [(2.05, 0.0, 64), (2.2, 0.0, 64), (3.0, 0.1, 64), (1.0, 0.0, 1), (0.5, 0.0, 8)]
    c = sd.run(p, configs, 400, log_steps=[0, 400], progress=False)
    L = th.loss_curve(p, *th.split_configs(configs), 400)
    for g in range(len(configs)):
        bad = np.flatnonzero(~(L[g] <= 1e6 * p.loss0))
        expected = None if bad.size == 0 else int(bad[0])
        assert c.diverged_step[g] == expected, (configs[g], c.diverged_step[g], expected)
    assert len({s for s in c.diverged_step if s is not None}) >= 3  # several different steps
    assert any(s is not None and s % 64 not in (0, 1) for s in c.diverged_step)
