"""Progress reporting for long runs: a tqdm bar on a terminal, periodic plain lines otherwise.

A tqdm bar redraws itself with carriage returns; redirected to a file (`python train_nn.py > log 2>&1`) that is
hundreds of `\\r` updates on one line. When stderr is not a terminal, `progress_bar` returns a `PlainProgress`
instead, which writes one readable line every `interval` seconds and one when it closes.
"""
from __future__ import annotations

import sys
import time

__all__ = ["progress_bar", "PlainProgress"]


class PlainProgress:
    """The part of tqdm's interface the project uses (update, set_postfix, close, context manager), printing
    `desc: n/total unit (pct%), elapsed s, ETA s [postfix]` lines to `file` at most every `interval` seconds."""

    def __init__(self, total, desc="", unit="it", file=None, interval=30.0):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.file = file if file is not None else sys.stderr
        self.interval = float(interval)
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line(now)

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self):
        if not self.closed:
            self.closed = True
            self._line(time.monotonic(), done=True)

    def _line(self, now, done=False):
        el = now - self.start
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({100.0 * self.n / self.total:.0f}%)"
        parts.append(f"{el:.0f} s elapsed")
        if self.total and 0 < self.n < self.total and not done:
            parts.append(f"ETA {el * (self.total - self.n) / self.n:.0f} s")
        if self.postfix:
            parts.append(self.postfix)
        print(", ".join(parts) + (" (done)" if done else ""), file=self.file, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def progress_bar(total, desc, *, unit="it", enabled=True, file=None, leave=False, interval=30.0):
    """A progress bar for `total` units: tqdm when `file` (default stderr) is a terminal, else PlainProgress;
    None when not enabled."""
    if not enabled:
        return None
    file = file if file is not None else sys.stderr
    isatty = getattr(file, "isatty", None)
    if isatty is not None and isatty():
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, file=file, leave=leave, mininterval=0.5, unit=unit)
    return PlainProgress(total, desc=desc, unit=unit, file=file, interval=interval)
