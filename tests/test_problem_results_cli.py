"""Problem construction and persistence, run folders (append, resume, load) and the scripts."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gfsgd import Grid, Problem, execute, results
from gfsgd.regimes import spectral_diagonal as sd

ROOT = Path(__file__).resolve().parents[1]


def test_synthetic_problem_properties():
    p = Problem.synthetic(64, nu=1.5, kappa=2.0, seed=1)
    lam = p.eigvals
    assert lam[0] == 1 and torch.all(lam[:-1] >= lam[1:])
    np.testing.assert_allclose(lam.numpy(), np.arange(1, 65) ** -1.5, rtol=1e-12)
    c = p.c.numpy()
    np.testing.assert_allclose(c / c[0], np.arange(1, 65) ** -3.0, rtol=1e-10)
    assert abs(float(p.d0 @ p.d0) - 1) < 1e-12 and abs(p.loss0 - 1 / 128) < 1e-15
    # K = U diag(lam) U^T, U orthogonal, coef = U^T d0
    U = p.eigvecs
    assert torch.allclose(U.T @ U, torch.eye(64, dtype=U.dtype), atol=1e-12)
    assert torch.allclose(p.K @ U, U * lam, atol=1e-12)
    assert torch.allclose(U.T @ p.d0, p.coef, atol=1e-12)
    floor = Problem.synthetic(64, nu=1.5, kappa=2.0, lambda_min=0.01, basis=None)
    assert abs(float(floor.eigvals.min()) - 0.01) < 1e-15


def test_from_kernel_normalises_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30, 5, generator=g, dtype=torch.float64)
    K = X @ X.T * 7.0
    d0 = torch.randn(30, generator=g, dtype=torch.float64)
    p = Problem.from_kernel(K, d0, name="gram")
    lmax = float(torch.linalg.eigvalsh(K).max())
    assert abs(p.lambda_max_raw - lmax) < 1e-9 * lmax
    assert torch.allclose(p.K, K / lmax, atol=1e-12)
    assert torch.allclose(p.d0, d0, atol=1e-12)
    path = p.save(tmp_path / "k.pt")
    q = Problem.load(path)
    assert torch.equal(q.eigvals, p.eigvals) and torch.equal(q.eigvecs, p.eigvecs)
    assert q.name == "gram" and q.lambda_max_raw == p.lambda_max_raw
    (tmp_path / "bad.pt").write_bytes(b"not a problem")
    with pytest.raises(ValueError, match="not a saved gfsgd Problem"):
        Problem.load(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="no problem file"):
        Problem.load(tmp_path / "missing.pt")


def test_execute_appends_resumes_and_keeps_finished_chunks(tmp_path, monkeypatch):
    p = Problem.synthetic(40, 1.5, 1.0, basis=None)
    grid = Grid(lr=[0.2, 0.5, 1.0], momentum=[0.0, 0.5], batch_size=[1, 10])
    folder = tmp_path / "run"
    calls = []
    real_run = sd.run

    def flaky_run(problem, configs, n_steps, **kw):
        calls.append(len(configs))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user stops the sweep during the third chunk
        return real_run(problem, configs, n_steps, **kw)

    class Flaky:
        REGIME = "sd"
        run = staticmethod(flaky_run)

    with pytest.raises(KeyboardInterrupt):
        execute(Flaky, p, grid, 50, save_dir=folder, chunk_size=4, extra_columns={"tau": 1.0}, progress=False)
    done = results.load(folder).status
    assert len(done) == 8  # two finished chunks kept
    calls.clear()
    execute(sd, p, grid, 50, save_dir=folder, chunk_size=4, extra_columns={"tau": 1.0}, progress=False)
    res = results.load(folder)
    assert len(res.status) == 12 and res.status[["lr", "momentum", "batch_size"]].duplicated().sum() == 0
    # resumed values equal a fresh run of the whole grid
    fresh = sd.run(p, grid.configs, 50, progress=False).to_frame()
    merged = res.curves.merge(fresh, on=["lr", "momentum", "batch_size", "step"], suffixes=("", "_fresh"))
    assert len(merged) == len(fresh)
    np.testing.assert_allclose(merged["loss"], merged["loss_fresh"], rtol=1e-12)
    # a different tau is a different sweep: nothing is skipped
    execute(sd, p, grid.configs[:2], 10, save_dir=folder, tau=-1.0, extra_columns={"tau": -1.0}, progress=False)
    assert len(results.load(folder).status) == 14


def test_script_writes_run_folder_and_png(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train_spectral_diagonal.py"), "--N", "64", "--lr", "0.5", "1.0",
           "--momentum", "0", "-0.3", "--batch_size", "1", "8", "--tau", "1", "-1", "--n_steps", "100",
           "--save_dir", str(out), "--no_progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    res = results.load(out)
    assert set(res.status["tau"]) == {1.0, -1.0} and len(res.status) == 16
    assert (out / "loss_curves.png").stat().st_size > 10_000
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["args"]["lr"] == [0.5, 1.0] and "torch" in cfg["versions"]
    bad = subprocess.run([sys.executable, str(ROOT / "train_full.py"), "--N", "20", "--batch_size", "30",
                          "--save_dir", str(tmp_path / "bad")], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert bad.returncode != 0 and "batch_size must be in [1, N=20], got batch_size=30" in bad.stderr
