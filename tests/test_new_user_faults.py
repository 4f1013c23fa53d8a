"""What a new user hit in a fresh clone (issue 27, item 7): each fault answers with one clear line, before any work,
and never suggests unsafe loading."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, **kw):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
                          **kw)


@pytest.mark.parametrize("argv", [["train_full.py", "--kernel"], ["-m", "gfsgd.recommend", "--kernel"],
                                  ["-m", "gfsgd.theory", "--problem"]])
def test_a_random_bytes_kernel_file(tmp_path, argv):
    bad = tmp_path / "kernel.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    res = _run(argv + [str(bad)] + (["--n_steps", "5", "--save_dir", str(tmp_path / "run")]
                                    if argv[0] == "train_full.py" else ["--out", str(tmp_path / "o")]
                                    if "recommend" in argv else []))
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "is not a saved gfsgd Problem" in res.stderr
    assert "weights_only" not in res.stderr and "unpickl" not in res.stderr.lower()
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_recommend_checks_out_before_the_computation(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    t0 = time.perf_counter()
    res = _run(["-m", "gfsgd.recommend", "--N", "2000", "--budget_steps", "100000", "--out", str(target)])
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert f"--out {target} exists and is not a folder" in res.stderr
    assert time.perf_counter() - t0 < 60  # refused before the search (which takes minutes at this size)


def test_recommend_default_batch_sizes_fit_n(tmp_path):
    from gfsgd.recommend.__main__ import main
    df = main(["--N", "64", "--budget_steps", "200", "--out", str(tmp_path / "o")])
    assert sorted(df["batch_size"].tolist()) == [1, 10] and not df.attrs["skipped"]


@pytest.mark.parametrize("extra, msg", [(["--update", "mb_penalty", "--penalty", "0.1"],
                                         "--micro_batch_size is required"),
                                        (["--update", "normalized", "--normalized_target", "abc"],
                                         "--normalized_target must be 'small_batch' or a number > 0, got 'abc'")])
def test_a_rule_option_that_is_wrong(tmp_path, extra, msg):
    res = _run(["train_linearized.py", "--N", "16", "--n_steps", "3", "--batch_size", "4", "--no_plots",
                "--save_dir", str(tmp_path / "run")] + extra)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert msg in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
