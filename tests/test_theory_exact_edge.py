"""The exact stability edge of the batch-averaged dynamics (theory.critical_lr(exact=True);
docs/theory.md#stability-edge),
checked two independent ways:
- for a Hadamard basis (delocalised eigenvectors) the SD recursion with tau = 1 is exact, so the exact edge
  must equal the SD edge of the generating-function theory (a different formula) to round-off;
- for a random basis the `full` regime, run well past the edge's time scale, is stable at 0.95 x and diverges
  at 1.05 x the exact edge, on a grid with beta < 0, beta > 0 and b = 1. This includes the case that
  motivated it: N = 200, b = 1, beta = 0, where SD says 0.809 and the full regime diverges at 0.5.
"""
import numpy as np
import pytest

from gfsgd import Problem
from gfsgd import theory as th
from gfsgd.regimes import full


@pytest.mark.parametrize("beta", [-0.4, 0.0, 0.5])
def test_hadamard_basis_exact_edge_equals_sd_edge(beta):
    p = Problem.synthetic(64, 1.5, 1.0, seed=0, basis="hadamard")
    for b in (1, 4, 16):
        exact = float(th.critical_lr(p, beta, b, exact=True, rtol=1e-10))
        sd = float(th.critical_lr(p, beta, b, tau=1.0))
        assert exact == pytest.approx(sd, rel=1e-8)


def test_random_basis_exact_edge_against_the_full_regime():
    p = Problem.synthetic(64, 1.5, 1.0, seed=3)
    cases = [(-0.4, 1), (0.0, 1), (0.5, 1), (-0.3, 4), (0.3, 8)]
    edges = {c: float(th.critical_lr(p, c[0], c[1], exact=True, rtol=1e-6)) for c in cases}
    cfgs = [(f * edges[c], c[0], c[1]) for c in cases for f in (0.95, 1.05)]
    run = full.run(p, cfgs, 8000, log_steps=[0, 8000], progress=False, device="cpu")
    for i, c in enumerate(cases):
        assert run.status[2 * i] == "ok", (c, edges[c])
        assert run.status[2 * i + 1] == "diverged", (c, edges[c])
    sd = th.critical_lr(p, np.array([c[0] for c in cases]), np.array([c[1] for c in cases]))
    assert all(edges[c] < s for c, s in zip(cases, sd))  # localised eigenvectors: less stable than SD says


def test_the_motivating_case():
    p = Problem.synthetic(200, 1.5, 1.0, seed=0)  # train_full.py's default problem
    exact = float(th.critical_lr(p, 0.0, 1, exact=True))
    assert exact == pytest.approx(0.4313, abs=5e-4)
    assert float(th.critical_lr(p, 0.0, 1)) == pytest.approx(0.8093, abs=5e-4)
    run = full.run(p, [(0.5, 0.0, 1), (0.9 * exact, 0.0, 1)], 2000, log_steps=[0, 2000], progress=False,
                   device="cpu")
    assert run.status == ["diverged", "ok"]


def test_exact_edge_errors():
    spectral = Problem.synthetic(32, 1.5, 1.0, basis=None)
    with pytest.raises(ValueError, match="needs the kernel's eigenvectors"):
        th.critical_lr(spectral, 0.0, 1, exact=True)
    with pytest.raises(ValueError, match="needs a Problem"):
        th.critical_lr(np.linspace(1, 0.1, 10), 0.0, 1, exact=True)
