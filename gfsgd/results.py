"""The results table of a run folder: write, append, load.

A run folder holds
    config.json       every argument of the run, package versions, seed, device
    curves.parquet    tidy: regime, lr, momentum, batch_size, tau, seed, repeats, step, loss[, loss_se]
    status.parquet    per config: regime, lr, momentum, batch_size, tau, seed, status ("ok" | "diverged"),
                      diverged_step (-1 if ok), final_loss, wall_time (seconds per config)
plus PNG plots. Every write is atomic (temporary file + rename), and curves are appended chunk by chunk, so
an interrupted sweep keeps what it finished and `gfsgd.grid.execute` resumes by skipping done configs.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .configs import config_keys
from .version import __version__

__all__ = ["RunFolder", "Results", "load", "versions"]

CURVES, STATUS, CONFIG = "curves.parquet", "status.parquet", "config.json"


def versions() -> dict:
    import numpy
    import torch
    return dict(gfsgd=__version__, torch=torch.__version__, numpy=numpy.__version__, pandas=pd.__version__,
                python=sys.version.split()[0], platform=platform.platform())


def _atomic_write(path: Path, write):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        return x.item()
    return str(x)


class RunFolder:
    """A run folder on disk (created if missing)."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict) -> Path:
        cfg = dict(config)
        cfg.setdefault("versions", versions())
        target = self.path / CONFIG
        _atomic_write(target, lambda p: p.write_text(json.dumps(_jsonable(cfg), indent=2, sort_keys=True)))
        return target

    def _read(self, name):
        f = self.path / name
        return pd.read_parquet(f) if f.is_file() else None

    def append(self, curves) -> None:
        """Append one Curves object (curves and status rows), atomically."""
        for name, new in ((CURVES, curves.to_frame()), (STATUS, curves.status_frame())):
            old = self._read(name)
            df = new if old is None else pd.concat([old, new], ignore_index=True)
            _atomic_write(self.path / name, lambda p, df=df: df.to_parquet(p, index=False))

    def done_configs(self, regime: str, extra: dict | None = None) -> set:
        """(lr, momentum, batch_size) keys already saved for this regime (and matching extra columns)."""
        st = self._read(STATUS)
        if st is None or st.empty:
            return set()
        sel = st["regime"] == regime
        for col, val in (extra or {}).items():
            if col in st:
                sel &= (st[col] == val) | (st[col].isna() & (val != val))
        st = st[sel]
        return config_keys(zip(st["lr"], st["momentum"], st["batch_size"]))

    def save_figure(self, fig, name: str, formats=("png",)) -> list:
        out = []
        for fmt in formats:
            target = self.path / f"{name}.{fmt}"
            _atomic_write(target, lambda p, fmt=fmt: fig.savefig(p, format=fmt, dpi=150, bbox_inches="tight"))
            out.append(target)
        return out


@dataclass
class Results:
    """A loaded run folder: config (dict), curves and status (DataFrames)."""
    path: Path
    config: dict
    curves: pd.DataFrame
    status: pd.DataFrame

    def curve(self, regime=None, **where) -> pd.DataFrame:
        """Rows of `curves` matching regime and column values (e.g. lr=0.5, batch_size=10)."""
        df = self.curves
        if regime is not None:
            df = df[df["regime"] == regime]
        for col, val in where.items():
            df = df[df[col] == val]
        return df


def load(path) -> Results:
    """Read a run folder written by the scripts or by gfsgd.grid.execute."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no run folder at {path}")
    cfg_file = path / CONFIG
    config = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    curves = pd.read_parquet(path / CURVES) if (path / CURVES).is_file() else pd.DataFrame()
    status = pd.read_parquet(path / STATUS) if (path / STATUS).is_file() else pd.DataFrame()
    if curves.empty and status.empty and not config:
        raise FileNotFoundError(f"{path} holds no {CONFIG}, {CURVES} or {STATUS}: not a gfsgd run folder")
    return Results(path=path, config=config, curves=curves, status=status)
