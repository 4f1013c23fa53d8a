"""Grids of (learning rate, momentum, batch size) configs and the executor that sweeps them.

`Grid(lr=[..], momentum=[..], batch_size=[..], aggr="prod"|"zip")` lists configs: the Cartesian product
of the lists, or their zip (every list of the same length, or of length 1, which is broadcast).

`execute(regime, problem, grid, n_steps, save_dir=...)` runs any regime over a grid in chunks of configs
(each chunk vectorised on one device), appends every finished chunk to the run folder and, when the
folder already holds some configs (an interrupted sweep), skips them.
"""
from __future__ import annotations

import itertools
import time

import numpy as np
import torch

from .configs import check_configs, config_key
from .results import RunFolder

__all__ = ["Grid", "execute", "unique_configs"]

Config = tuple  # (lr, momentum, batch_size)


def _as_list(x, name):
    if isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_)):
        return [x.item() if hasattr(x, "item") else x]
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x).reshape(-1).tolist()
    try:
        out = list(x)
    except TypeError:
        raise TypeError(f"{name} must be a number or a list of numbers, got {type(x).__name__}") from None
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


class Grid:
    """Configs (lr, momentum, batch_size) from lists, combined by product or zip.

    >>> Grid(lr=[0.1, 0.5], momentum=[0.0, -0.3], batch_size=10).configs
    [(0.1, 0.0, 10), (0.1, -0.3, 10), (0.5, 0.0, 10), (0.5, -0.3, 10)]
    """

    def __init__(self, lr, momentum=0.0, batch_size=1, aggr: str = "prod"):
        self.lr = [float(v) for v in _as_list(lr, "lr")]
        self.momentum = [float(v) for v in _as_list(momentum, "momentum")]
        self.batch_size = [v.item() if hasattr(v, "item") else v for v in _as_list(batch_size, "batch_size")]
        if aggr not in ("prod", "zip"):
            raise ValueError(f"aggr must be 'prod' or 'zip', got aggr={aggr!r}")
        self.aggr = aggr
        if aggr == "prod":
            self.configs = [(a, m, b) for a, m, b in itertools.product(self.lr, self.momentum, self.batch_size)]
        else:
            lengths = {"lr": len(self.lr), "momentum": len(self.momentum), "batch_size": len(self.batch_size)}
            n = max(lengths.values())
            bad = {k: v for k, v in lengths.items() if v not in (1, n)}
            if bad:
                raise ValueError(f"aggr='zip' needs lists of equal length (or length 1); got lengths {lengths}")
            pick = lambda xs, i: xs[0] if len(xs) == 1 else xs[i]  # noqa: E731
            self.configs = [(pick(self.lr, i), pick(self.momentum, i), pick(self.batch_size, i)) for i in range(n)]
        self.configs = unique_configs(self.configs)

    def __len__(self):
        return len(self.configs)

    def __iter__(self):
        return iter(self.configs)

    def __repr__(self):
        return (f"Grid(lr={self.lr}, momentum={self.momentum}, batch_size={self.batch_size}, "
                f"aggr={self.aggr!r}) -> {len(self)} configs")


def unique_configs(configs) -> list:
    """configs without repeats (same config_key), in first-seen order: a duplicate would run twice."""
    seen, out = set(), []
    for c in configs:
        key = config_key(c)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def execute(regime, problem, grid, n_steps: int, *, save_dir=None, chunk_size: int | None = None,
            extra_columns: dict | None = None, progress: bool = True, **run_kwargs):
    """Run `regime.run` over every config of `grid`, chunk by chunk, and return a list of Curves.

    Args:
        regime: a module or object with `run(problem, configs, n_steps, **kw) -> Curves` (gfsgd.regimes.*).
        grid: a Grid or a list of configs.
        save_dir: a run folder (gfsgd.results.RunFolder or a path): each finished chunk is appended there,
            and configs already in it (same regime and extra columns) are skipped, so an interrupted sweep
            resumes where it stopped and keeps what it finished.
        chunk_size: configs per vectorised call (default: all at once).
        extra_columns: constant columns identifying this sweep in the results (e.g. {"tau": 1.0}).
    """
    configs = unique_configs(grid.configs if isinstance(grid, Grid) else grid)
    check_configs(configs, problem.N)  # fail early, before any work
    if chunk_size is not None and (isinstance(chunk_size, bool) or not float(chunk_size).is_integer()
                                   or int(chunk_size) < 1):
        raise ValueError(f"chunk_size must be an integer >= 1 (configs per vectorised call) or None, got "
                         f"chunk_size={chunk_size!r}")
    folder = None if save_dir is None else (save_dir if isinstance(save_dir, RunFolder) else RunFolder(save_dir))
    regime_name = getattr(regime, "REGIME", getattr(regime, "__name__", "regime").rsplit(".", 1)[-1])
    extra_columns = dict(extra_columns or {})
    if folder is not None:
        done = folder.done_configs(regime_name, extra_columns)
        configs = [c for c in configs if config_key(c) not in done]
    chunk_size = chunk_size or max(len(configs), 1)
    out = []
    for start in range(0, len(configs), chunk_size):
        chunk = configs[start:start + chunk_size]
        t0 = time.perf_counter()
        curves = regime.run(problem, chunk, n_steps, progress=progress, **run_kwargs)
        curves.meta.setdefault("wall_time", time.perf_counter() - t0)
        curves.meta.update(extra_columns)
        if folder is not None:
            folder.append(curves)
        out.append(curves)
    return out
