"""Usage errors reach the user as one 'error: ...' line, never a traceback; Ctrl-C says what was kept."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gfsgd import Problem

ROOT = Path(__file__).resolve().parents[1]


def _run(args, **kw):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, **kw)


def _clean_error(res, msg):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    assert msg in res.stderr, res.stderr[-2000:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_device_cuda_on_a_cpu_machine(tmp_path):
    _clean_error(_run(["train_full.py", "--N", "32", "--n_steps", "10", "--device", "cuda",
                       "--save_dir", str(tmp_path / "r")]), "error: device='cuda' was asked for")


def test_theory_cli_with_a_missing_problem_file():
    _clean_error(_run(["-m", "gfsgd.theory", "--problem", "/nonexistent.pt"]), "error: no problem file")


def test_a_kernel_file_with_nan_eigenvectors(tmp_path):
    p = Problem.synthetic(16, 1.5, 1.0, basis="random")
    p.save(tmp_path / "p.pt")
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    key = next(k for k, v in blob.items() if torch.is_tensor(v) and v.ndim == 2)
    blob[key][0, 0] = float("nan")
    torch.save(blob, tmp_path / "bad.pt")
    _clean_error(_run(["train_full.py", "--kernel", str(tmp_path / "bad.pt"), "--n_steps", "10",
                       "--save_dir", str(tmp_path / "r")]), "error:")


def test_ctrl_c_says_the_finished_configs_are_saved(tmp_path):
    save = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "train_full.py", "--N", "256", "--n_steps", "200000", "--lr", "0.1",
                             "0.2", "--save_dir", str(save), "--no_plots"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (save / "config.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(2.0)  # inside the run
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)  # a loaded 2-core machine can take long to unwind
    assert proc.returncode != 0
    assert "Traceback" not in err, err[-2000:]
    assert "interrupted: the finished configs are saved" in err and "rerun the same command" in err
