"""Full datasets without an N x N matrix: the kernel operator, the top eigenpairs, the tail, rank-k problems.

Every check compares against an independent computation: the dense empirical NTK and torch.linalg.eigh, a
synthetic power law whose tail is known, or the dense-kernel SD curves.
"""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gfsgd import Problem, problem_from_network
from gfsgd.models import MLP
from gfsgd.ntk import empirical_ntk, kernel_operator
from gfsgd.regimes import spectral_diagonal as sd
from gfsgd.spectrum import (ConvergenceError, band_problems, problem_from_operator, spectral_tail,
                            top_eigenpairs)

ROOT = Path(__file__).resolve().parents[1]


def _mnist_root():
    root = os.environ.get("GFSGD_DATA_ROOT")
    return root if root and (Path(root) / "mnist").is_dir() else None


class NotLinear(nn.Module):
    """A scalar-output model with a parameter outside Linear layers (forces the jvp/vjp path)."""

    def __init__(self, d):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(d, 32, generator=g) / math.sqrt(d))
        self.scale = nn.Parameter(torch.ones(32))
        self.v = nn.Parameter(torch.randn(32, generator=g) / math.sqrt(32))

    def forward(self, x):
        return torch.tanh(x @ self.w * self.scale) @ self.v


@pytest.mark.parametrize("budget", [None, 2e5])  # the kernel kept in memory / streamed in row blocks
def test_structured_operator_matches_dense_ntk(budget):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(230, 12, generator=g, dtype=torch.float64)
    model = MLP(12, width=40, depth=3, seed=3)
    K = empirical_ntk(model, X, device="cpu", method="jacobian")  # independent per-example Jacobians
    op = kernel_operator(model, X, device="cpu", memory_budget=budget)
    assert op.method == "structured" and op.info["cached"] == (budget is None)
    V = torch.randn(230, 5, generator=g, dtype=torch.float64)
    assert torch.allclose(op @ V, K @ V, rtol=1e-11, atol=1e-11 * float(K.abs().max()))
    assert torch.allclose(op @ V[:, 0], K @ V[:, 0], rtol=1e-11, atol=1e-11 * float(K.abs().max()))
    assert torch.allclose(op.diag(), K.diagonal(), rtol=1e-12)
    assert op.trace() == pytest.approx(float(K.trace()), rel=1e-12)
    assert op.passes == 2


def test_jvp_operator_matches_dense_ntk():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(90, 7, generator=g, dtype=torch.float64)
    model = NotLinear(7)
    op = kernel_operator(model, X, device="cpu", memory_budget=4e5)  # several row blocks and column chunks
    assert op.method == "jvp"
    K = empirical_ntk(model, X, device="cpu")
    V = torch.randn(90, 9, generator=g, dtype=torch.float64)
    assert torch.allclose(op @ V, K @ V, rtol=1e-11, atol=1e-12)
    assert torch.allclose(op.diag(), K.diagonal(), rtol=1e-12)


@pytest.mark.parametrize("k", [1, 20, 120])
def test_top_eigenpairs_match_eigh(k):
    p = Problem.synthetic(600, 1.2, 0.5, seed=4)
    ep = top_eigenpairs(p.K, k, tol=1e-10, apply_to=p.d0)
    lam, U = torch.linalg.eigh(p.K)
    lam, U = lam.flip(0)[:k], U.flip(1)[:, :k]
    assert torch.allclose(ep.eigvals, lam, rtol=1e-10, atol=0)
    # eigenvectors up to sign, residuals recomputed independently
    overlap = (ep.eigvecs * U).sum(0).abs()
    assert torch.allclose(overlap, torch.ones(k, dtype=torch.float64), atol=1e-6)
    res = (p.K @ ep.eigvecs - ep.eigvecs * ep.eigvals).norm(dim=0)
    assert torch.allclose(res, ep.residuals, atol=1e-13)
    # the eigenvalue error bound |r|^2 / delta meets the tolerance, relative to each eigenvalue
    assert bool((ep.error_bounds <= 10 * ep.tol * ep.eigvals).all())
    assert torch.allclose(ep.applied[:, 0], p.K @ p.d0, atol=1e-13)


def test_top_eigenpairs_of_a_network_kernel_float32_and_float64():
    from gfsgd.data import load_dataset
    root = _mnist_root()
    ds = load_dataset("mnist" if root else "digits", 1000 if root else 600, seed=0, root=root)
    model = MLP(ds.X.shape[1], width=300, seed=0)
    lam = torch.linalg.eigvalsh(empirical_ntk(model, ds.X, device="cpu")).flip(0)[:100]
    ep = top_eigenpairs(kernel_operator(model, ds.X, device="cpu"), 100)
    assert float(((ep.eigvals - lam).abs() / lam).max()) < 1e-8
    ep32 = top_eigenpairs(kernel_operator(model, ds.X, device="cpu", dtype="float32"), 100)
    # float32: the residual floor 50 eps lambda_1 limits the accuracy of the eigenvalues far below lambda_1
    assert float(((ep32.eigvals.double() - lam).abs() / lam).max()) < 1e-2


def test_spectral_tail_recovers_a_power_law_and_meets_the_constraints():
    N, k, nu, kappa = 5000, 200, 1.3, 0.7
    p = Problem.synthetic(N, nu, kappa, basis=None, seed=1)
    lam, c = p.eigvals.numpy(), p.c.numpy()
    moment = float((lam * c).sum())
    tail = spectral_tail(lam[:k], c[:k], N=N, trace=float(lam.sum()), energy=float(c.sum()), moment=moment)
    assert tail.nu == pytest.approx(nu, abs=1e-6)
    assert tail.fit.nu_ci[0] - 1e-9 <= nu <= tail.fit.nu_ci[1] + 1e-9
    assert lam[:k].sum() + tail.eigvals.sum() == pytest.approx(lam.sum(), rel=1e-12)  # trace
    assert c[:k].sum() + tail.c.sum() == pytest.approx(c.sum(), rel=1e-12)  # |d0|^2
    assert (lam[:k] * c[:k]).sum() + (tail.eigvals * tail.c).sum() == pytest.approx(moment, rel=1e-9)
    # an exact power law is recovered mode by mode
    assert np.allclose(tail.eigvals, lam[k:], rtol=1e-6)
    assert np.allclose(tail.c, c[k:], rtol=1e-6)
    assert tail.warnings == []


def test_a_spectrum_that_is_not_a_power_law_warns():
    N, k = 2000, 100
    lam = np.exp(-np.arange(N) / 15.0)  # exponential decay: no power law
    c = np.full(N, 1.0 / N)
    with pytest.warns(UserWarning, match="spectral tail"):
        p = problem_from_operator(torch.diag(torch.as_tensor(lam)), torch.as_tensor(np.sqrt(c)), rank=k)
    assert p.meta["spectrum"]["warnings"], "the warning must also be recorded in meta"


def test_an_eigenvalue_wider_than_the_block_is_found():
    """A flat tail: lambda_200 = ... = lambda_3000 (multiplicity 2,801, far wider than the block). The block
    Krylov space closes on an invariant subspace after a few passes (a rank-deficient block); the missing
    directions are refilled with fresh vectors and every copy of the repeated eigenvalue inside the top k is
    found. Checked against the exact spectrum and for orthonormal eigenvectors."""
    N = 3000
    j = np.arange(1, N + 1.0)
    lam = np.maximum(j ** -1.1, 200 ** -1.1)
    U = torch.linalg.qr(torch.randn(N, N, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))[0]
    K = (U * torch.as_tensor(lam)) @ U.T
    for k in (150, 300):  # all distinct / 100 copies of the repeated eigenvalue
        ep = top_eigenpairs(K, k)
        assert ep.info["route"] == "krylov" and ep.basis < N
        assert np.abs(ep.eigvals.numpy() - lam[:k]).max() <= 1e-10 * lam[0]
        assert (ep.eigvecs.T @ ep.eigvecs - torch.eye(k, dtype=torch.float64)).abs().max() < 1e-10
        assert float((K @ ep.eigvecs - ep.eigvecs * ep.eigvals).norm(dim=0).max()) < 1e-8


def test_rank_k_sd_curves_converge_to_the_dense_ones():
    """SD curves of the rank-k problem approach the dense-kernel curves as k grows (a Hadamard-basis problem
    whose spectrum is only asymptotically a power law, lambda_j = j^-1.1 (1 + 3 / j), c_j = j^-1.4 (1 + 2 / j): the
    tail the model sees is closer to a power law as k grows)."""
    N = 1024
    j = torch.arange(1, N + 1, dtype=torch.float64)
    lam = j ** -1.1 * (1 + 3 / j)
    c = j ** -1.4 * (1 + 2 / j)
    coef = (c / c.sum()).sqrt() * torch.where(torch.arange(N) % 3 == 0, -1.0, 1.0).double()
    from gfsgd.problem import hadamard
    p = Problem(lam / lam.max(), coef, hadamard(N))
    cfgs = [(0.2, 0.0, 1), (0.8, -0.3, 10), (1.0, 0.0, 100)]  # about half the critical lr of each
    steps = np.unique(np.round(np.logspace(0, 4, 60)).astype(int))
    dense = sd.run(p, cfgs, 10 ** 4, log_steps=steps, progress=False)
    gaps = []
    for k in (20, 80, 320):
        pk = problem_from_operator(p.K, p.d0, rank=k)
        assert pk.N == N and not pk.has_basis
        assert float(pk.eigvals.sum()) == pytest.approx(float(p.eigvals.sum()), rel=1e-9)
        assert pk.loss0 == pytest.approx(p.loss0, rel=1e-12)
        cur = sd.run(pk, cfgs, 10 ** 4, log_steps=steps, progress=False)
        gaps.append(float(np.abs(cur.loss / dense.loss - 1).max()))
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.05


def test_band_problems_bracket_the_tail():
    p = Problem.synthetic(2000, 1.2, 0.5, seed=0, basis="random")
    pk = problem_from_operator(p.K, p.d0, rank=60)
    lo, hi = band_problems(pk)
    k = 60
    assert torch.allclose(lo.eigvals[:k], pk.eigvals[:k]) and torch.allclose(hi.eigvals[:k], pk.eigvals[:k])
    for q in (lo, hi):  # the constraints hold on both ends of the band
        assert float(q.eigvals.sum()) == pytest.approx(float(pk.eigvals.sum()), rel=1e-9)
        assert q.loss0 == pytest.approx(pk.loss0, rel=1e-12)


# --------------------------------------------------------------------------------------------- bad input
def test_bad_input_errors():
    p = Problem.synthetic(100, 1.2, 0.5, seed=0)
    for k in (0, -3, 100, 250):
        with pytest.raises(ValueError, match="k must be in"):
            top_eigenpairs(p.K, k)
    with pytest.raises(ValueError, match="rank must be in"):
        problem_from_operator(p.K, p.d0, rank=100)
    A = torch.randn(100, 100, dtype=torch.float64)
    with pytest.raises(ValueError, match="not symmetric"):
        top_eigenpairs(A, 5)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        top_eigenpairs(p.K - 0.5 * torch.eye(100, dtype=torch.float64), 5)
    with pytest.raises(ConvergenceError, match="did not converge"):
        top_eigenpairs(Problem.synthetic(3000, 0.3, 0.5, seed=0).K, 5, max_passes=2, tol=1e-12)
    with pytest.raises(ValueError, match="d0 must have length"):
        problem_from_operator(p.K, torch.zeros(7), rank=5)


def test_non_scalar_model_is_refused():
    X = torch.randn(20, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="one scalar per example"):
        kernel_operator(nn.Linear(5, 3), X, device="cpu")


# ------------------------------------------------------------------------------------ network problems
def test_from_network_rank_runs_sd_and_nn_and_refuses_the_basis_regimes():
    from gfsgd.data import load_dataset
    from gfsgd.regimes import full, nn as nn_regime
    ds = load_dataset("digits", 400, seed=0)
    model = MLP(ds.X.shape[1], width=200, seed=0)
    dense = problem_from_network(model, ds.X, ds.y, device="cpu")
    pk = problem_from_network(model, ds.X, ds.y, device="cpu", rank=60)
    assert pk.lambda_max_raw == pytest.approx(dense.lambda_max_raw, rel=1e-10)
    assert torch.allclose(pk.eigvals[:60], dense.eigvals[:60], rtol=1e-8)
    assert pk.loss0 == pytest.approx(dense.loss0, rel=1e-12)
    assert pk.meta["spectrum"]["rank"] == 60 and "tail" in pk.meta["spectrum"]
    cur = sd.run(pk, [(0.5, 0.0, 10)], 50, progress=False)
    assert cur.status == ["ok"]
    nn_cur = nn_regime.run(pk, [(0.5, 0.0, 10)], 5, progress=False)
    assert nn_cur.meta["lambda_max_raw"] == pytest.approx(dense.lambda_max_raw, rel=1e-10)
    with pytest.raises(ValueError, match="eigenvectors"):
        full.run(pk, [(0.5, 0.0, 10)], 5, progress=False)


def test_cli_rank_refuses_basis_regimes_and_runs_sd(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, str(ROOT / "train_4_regimes.py"), "--N", "128", "--rank", "20", "--regimes",
                        "nn", "full", "--save_dir", str(tmp_path / "a")], capture_output=True, text=True, env=env,
                       cwd=ROOT)
    assert r.returncode != 0 and "need the kernel's eigenvectors" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, str(ROOT / "train_4_regimes.py"), "--N", "128", "--width", "64", "--rank",
                        "20", "--regimes", "nn", "sd", "--n_steps", "20", "--no_plots", "--no_progress",
                        "--save_dir", str(tmp_path / "b")], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "spectrum: top 20 of N=128" in r.stdout
    r = subprocess.run([sys.executable, "-m", "gfsgd.theory", "--dataset", "digits", "--N", "200", "--width", "64",
                        "--rank", "30", "--budget", "100"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "spectrum: top 30 of N=200" in r.stdout and "critical lr" in r.stdout
