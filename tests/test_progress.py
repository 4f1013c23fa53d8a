"""Progress reporting: a tqdm bar on a terminal, plain periodic lines in a redirected log (no carriage returns)."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from gfsgd.progress import PlainProgress, progress_bar

ROOT = Path(__file__).resolve().parents[1]


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_redirected_stream_gets_plain_lines_and_a_terminal_gets_tqdm():
    out = io.StringIO()
    bar = progress_bar(10, "steps", unit="step", file=out, interval=0.0)
    assert isinstance(bar, PlainProgress)
    for _ in range(10):
        bar.update(1)
    bar.set_postfix(worst="1e-3")
    bar.close()
    bar.close()  # idempotent
    text = out.getvalue()
    assert "\r" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 11 and lines[-1].endswith("(done)") and "10/10 step (100%)" in lines[-1]
    assert "worst=1e-3" in lines[-1] and "ETA" in lines[0]
    assert progress_bar(10, "x", enabled=False) is None
    tty = progress_bar(10, "steps", file=_Tty())
    assert not isinstance(tty, PlainProgress)
    tty.close()


def test_a_script_redirected_to_a_file_writes_no_carriage_returns(tmp_path):
    res = subprocess.run([sys.executable, "train_spectral_diagonal.py", "--N", "64", "--n_steps", "300",
                          "--save_dir", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "\r" not in res.stderr and "\r" not in res.stdout
    assert "(done)" in res.stderr  # the closing line of the step bar
