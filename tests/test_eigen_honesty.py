"""The eigensolver says what it reached, not only what it was asked (issue 27 item 1): a float32 operator stops
at its residual floor, and top_eigenpairs then warns, records the achieved relative bound (overall and per decade
of the spectrum) and, with strict=True, raises."""
import warnings

import pytest
import torch

from gfsgd import Problem, problem_from_operator
from gfsgd.spectrum import ConvergenceError, spectrum_summary, top_eigenpairs
from gfsgd.spectrum.krylov import ToleranceFloorWarning


@pytest.fixture(scope="module")
def kernel():
    p = Problem.synthetic(1500, 1.2, 1.0, seed=0, basis="random")
    exact = torch.linalg.eigvalsh(p.K.double()).flip(0)  # the independent reference
    return p, exact


def test_float32_floor_is_reported_and_the_bound_holds(kernel):
    p, exact = kernel
    with pytest.warns(ToleranceFloorWarning, match=r"float32 residual floor.*a float64 operator"):
        ep = top_eigenpairs(p.K.float(), 120, tol=1e-8)
    acc = ep.info["accuracy"]
    true_rel = ((ep.eigvals.double() - exact[:120]).abs() / exact[:120])
    assert acc["tol"] == 1e-8 and acc["dtype"] == "float32" and acc["floor_bound"] > 0
    assert acc["max_relative_bound"] > 1e-8  # what was reached is worse than what was asked ...
    assert float(true_rel.max()) <= acc["max_relative_bound"]  # ... and the recorded bound covers the true error
    # per decade: the top decade is far better than the bottom one (the floor is relative to lambda_1)
    decades = list(acc["by_decade"].values())
    assert decades[0] < 1e-8 < decades[-1]
    with pytest.raises(ConvergenceError, match="residual floor"):
        top_eigenpairs(p.K.float(), 120, tol=1e-8, strict=True)


def test_float64_meets_tol_silently(kernel):
    p, exact = kernel
    with warnings.catch_warnings():
        warnings.simplefilter("error", ToleranceFloorWarning)
        ep = top_eigenpairs(p.K, 120, tol=1e-8)
    acc = ep.info["accuracy"]
    assert acc["floor_bound"] == 0 and acc["max_relative_bound"] <= 1e-8
    assert float(((ep.eigvals - exact[:120]).abs() / exact[:120]).max()) <= 1e-8


def test_the_problem_records_what_was_reached(kernel):
    p, _ = kernel
    with pytest.warns(ToleranceFloorWarning):
        q = problem_from_operator(p.K.float() * 3.0, p.d0.float(), rank=120)
    res = q.meta["spectrum"]["residuals"]
    assert res["tol"] == 1e-8 and res["achieved"]["max_relative_bound"] > 1e-8
    assert "eigenvalue accuracy reached (float32)" in spectrum_summary(q) and "pairs at the residual floor" in \
        spectrum_summary(q)


def test_an_operator_that_returns_nan_or_is_zero():
    from gfsgd.errors import InputError
    K = torch.eye(40, dtype=torch.float64)
    with pytest.raises(InputError, match="non-finite values"):
        top_eigenpairs(K * float("nan"), 3)
    with pytest.raises(InputError, match="zero on the start block"):
        top_eigenpairs(torch.zeros(40, 40, dtype=torch.float64), 3)
