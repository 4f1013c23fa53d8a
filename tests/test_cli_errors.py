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
    # the child's output goes to files, not pipes: a progress bar filling an unread pipe would block the child
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "train_full.py", "--N", "256", "--n_steps", "200000", "--lr", "0.1",
                                 "0.2", "--save_dir", str(save), "--no_plots"], cwd=ROOT, stdout=out, stderr=err,
                                text=True)
        deadline = time.time() + 120
        while not (save / "config.json").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        time.sleep(2.0)  # inside the run
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=300)  # a loaded 2-core machine can take long to unwind
        finally:
            proc.kill()
    err = (tmp_path / "err.txt").read_text()
    assert proc.returncode != 0
    assert "Traceback" not in err, err[-2000:]
    assert "interrupted: the finished configs are saved" in err and "rerun the same command" in err


@pytest.mark.parametrize("raised, one_line", [("input", True), ("bug", False)])
def test_only_input_errors_become_one_line(tmp_path, monkeypatch, raised, one_line):
    """The command line turns the project's own InputError into 'error: ...'; any other exception (a bug, even a
    ValueError) keeps its traceback instead of being hidden behind one line."""
    from gfsgd import cli
    from gfsgd.errors import InputError
    from gfsgd.regimes import full

    def broken(*a, **kw):
        if raised == "input":
            raise InputError("lr must be > 0, got lr=-1")
        raise ValueError("an internal shape mismatch")
    monkeypatch.setattr(full, "run", broken)
    argv = ["--N", "16", "--n_steps", "3", "--save_dir", str(tmp_path / "run"), "--no_plots", "--no_progress"]
    if one_line:
        with pytest.raises(SystemExit, match="error: lr must be > 0, got lr=-1"):
            cli.main(["full"], script="train_full", description="test", argv=argv)
    else:
        with pytest.raises(ValueError, match="an internal shape mismatch"):
            cli.main(["full"], script="train_full", description="test", argv=argv)


def test_every_input_error_of_the_library_is_an_input_error():
    """Bad arguments raise InputError (a ValueError, so `except ValueError` keeps working)."""
    from gfsgd.errors import InputError
    from gfsgd.regimes import full
    from gfsgd.updates import SVAG, UnsupportedUpdate
    p = Problem.synthetic(8, 1.5, 1.0)
    for call in (lambda: full.run(p, [(-1.0, 0.0, 2)], 3, progress=False), lambda: SVAG(0.5),
                 lambda: full.run(p, [(0.5, 0.0, 2)], 3, update="normalized", progress=False),
                 lambda: Problem.synthetic(-3, 1.5, 1.0)):
        with pytest.raises(InputError):
            call()
    assert issubclass(InputError, ValueError) and issubclass(UnsupportedUpdate, InputError)
