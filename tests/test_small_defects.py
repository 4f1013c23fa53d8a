"""Small input defects (issue: sweeps that lose nothing, item 6): each is a clear error or handled exactly."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gfsgd import Grid, Problem, execute
from gfsgd.configs import check_log_steps
from gfsgd.regimes import spectral_diagonal as sd
from gfsgd.schedules import from_name

ROOT = Path(__file__).resolve().parents[1]


def test_negative_chunk_size_is_an_error(tmp_path):
    p = Problem.synthetic(32, 1.5, 1.0, basis=None)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        execute(sd, p, Grid(0.5, 0.0, 4), 10, chunk_size=-2, progress=False)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        sd.run(p, [(0.5, 0.0, 4)], 10, chunk_size=0, progress=False)
    r = subprocess.run([sys.executable, str(ROOT / "train_spectral_diagonal.py"), "--chunk_size", "-2", "--N", "32",
                        "--basis", "none", "--save_dir", str(tmp_path / "x")], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, MPLBACKEND="Agg"))
    assert r.returncode != 0 and "--chunk_size must be >= 1" in r.stderr and "Traceback" not in r.stderr


def test_problem_refuses_an_unnormalised_spectrum():
    with pytest.raises(ValueError, match="top eigenvalue is 1"):
        Problem([2.0, 1.0, 0.5], [1.0, 1.0, 1.0])
    assert Problem([1.0, 0.5], [1.0, 1.0]).N == 2


def test_grid_takes_numpy_scalars_and_drops_duplicates():
    g = Grid(np.float32(0.5), np.float64(0.0), np.int64(10))
    assert g.configs == [(0.5, 0.0, 10)]
    g = Grid(np.array([0.5, 0.5, 1.0]), [0.0], np.array([10, 10]))
    assert g.configs == [(0.5, 0.0, 10), (1.0, 0.0, 10)]
    p = Problem.synthetic(32, 1.5, 1.0, basis=None)
    out = execute(sd, p, [(0.5, 0.0, 4), (0.5, 0.0, 4)], 5, progress=False)
    assert sum(len(c.configs) for c in out) == 1


def test_non_integer_log_steps_are_an_error():
    with pytest.raises(ValueError, match="non-integer"):
        check_log_steps([0, 1.5, 3], 10)
    assert check_log_steps(np.array([0.0, 2.0, 3.0]), 10).tolist() == [0, 2, 3]


@pytest.mark.parametrize("kw", [dict(step_size=0), dict(period=0)])
def test_schedule_zero_is_not_replaced_by_the_default(kw):
    name = "step" if "step_size" in kw else "cyclic"
    with pytest.raises(ValueError, match="must be > 0"):
        from_name(name, 100, **kw)


def test_huge_n_steps_does_not_allocate_per_step(monkeypatch):
    """A run of 10^12 steps with 3 logged steps: the engine must not allocate n_steps + 1 entries; stop it at
    the first step by raising from the step function."""
    from gfsgd.regimes import _engine
    p = Problem.synthetic(16, 1.5, 1.0, basis=None)
    calls = []

    def step(state, h):
        calls.append(h.t)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _engine.drive(regime="x", problem=p, configs=[(0.5, 0.0, 2)], n_steps=10 ** 12, schedule=None,
                      log_steps=[0, 10, 10 ** 12], device=torch.device("cpu"), dtype=torch.float64, chunk_size=1,
                      init=lambda *a: {}, step=step, kill=lambda *a: None, progress=False)
    assert calls == [0]
