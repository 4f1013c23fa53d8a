"""Every kernel regime in float32 against itself in float64 (same problem, configs and seed).

Tolerance: 5e-4 relative at every step. Round-off of one float32 step is ~ N eps (eps = 6e-8) relative
to the state, and these converging configs damp it, so the error stays near its one-step size rather
than growing with the number of steps; measured worst cases over 500 steps: full 3.4e-5, SD 4.7e-5
(tau = 1) and 9e-6 (tau = -1), linearized 3.3e-6 (same batches: the sampler draws float64 keys whatever
the dtype). A config diverges at the same step in both.
"""
import numpy as np
import pytest

from gfsgd import Problem
from gfsgd.regimes import full, linearized
from gfsgd.regimes import spectral_diagonal as sd

CFGS = [(1.0, 0.0, 1), (0.5, -0.3, 8), (1.5, 0.5, 16), (1.2, 0.0, 64)]


@pytest.mark.parametrize("mod,kw", [(full, {}), (sd, {}), (sd, {"tau": -1.0}), (linearized, {"repeats": 4})],
                         ids=["full", "sd", "sd_tau-1", "linearized"])
def test_float32_tracks_float64(mod, kw):
    p = Problem.synthetic(64, 1.5, 1.0, seed=0)
    a = mod.run(p, CFGS, 500, dtype="float64", progress=False, device="cpu", **kw)
    b = mod.run(p, CFGS, 500, dtype="float32", progress=False, device="cpu", **kw)
    assert b.meta["dtype"] == "float32" and a.meta["dtype"] == "float64"
    assert a.status == b.status == ["diverged", "ok", "ok", "ok"]
    assert a.diverged_step == b.diverged_step
    ok = slice(1, None)
    rel = np.abs(a.loss[ok] - b.loss[ok]) / a.loss[ok]
    assert np.nanmax(rel) < 5e-4, np.nanmax(rel)
    assert (a.loss[ok, -1] < 0.01 * a.loss[ok, 0]).all()  # the loss fell by 100x or more: a real test
