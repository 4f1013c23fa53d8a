"""Grids of (learning rate, momentum, batch size) configs and the executor that sweeps them.

`Grid(lr=[..], momentum=[..], batch_size=[..], aggr="prod"|"zip")` lists configs: the Cartesian product
of the lists, or their zip (every list of the same length, or of length 1, which is broadcast).

`execute(regime, problem, grid, n_steps, save_dir=...)` runs any regime over a grid in chunks of configs
(each chunk vectorised on one device), appends every finished chunk to the run folder and, when the
folder already holds some configs (an interrupted sweep), skips them.
"""
from __future__ import annotations

import contextlib
import itertools
import time

import numpy as np
import torch

from . import version as _version
from .configs import check_configs, config_key
from .updates import as_update
from .errors import InputError

__all__ = ["Grid", "execute", "dask_client", "unique_configs", "sweep_identity", "problem_fingerprint", "schedule_fingerprint",
           "check_identity", "describe_difference", "done_configs"]

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
        raise InputError(f"{name} must not be empty")
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
            raise InputError(f"aggr must be 'prod' or 'zip', got aggr={aggr!r}")
        self.aggr = aggr
        if aggr == "prod":
            self.configs = [(a, m, b) for a, m, b in itertools.product(self.lr, self.momentum, self.batch_size)]
        else:
            lengths = {"lr": len(self.lr), "momentum": len(self.momentum), "batch_size": len(self.batch_size)}
            n = max(lengths.values())
            bad = {k: v for k, v in lengths.items() if v not in (1, n)}
            if bad:
                raise InputError(f"aggr='zip' needs lists of equal length (or length 1); got lengths {lengths}")
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


def schedule_fingerprint(schedule, n_steps: int) -> dict:
    """What a schedule does, as data: its name and its values (for base lr = momentum = 0.5, batch size 1000)
    at 40 log-spaced steps in [0, n_steps]; any change of a parameter changes them."""
    if schedule is None or schedule.is_constant:
        return dict(name="constant")
    ts = sorted({0, int(n_steps)} | {int(round(x)) for x in np.geomspace(1, max(int(n_steps), 1), 40)})
    base = torch.tensor([0.5], dtype=torch.float64)
    vals = []
    for t in ts:
        a, m = schedule.lr_momentum(t, base, base)
        b = schedule.batch_sizes(t, torch.tensor([1000.0], dtype=torch.float64), 10 ** 9)
        vals.append([round(float(a[0]), 12), round(float(m[0]), 12), int(b[0])])
    return dict(name=schedule.name, steps=ts, values=vals)


def problem_fingerprint(problem) -> str:
    """sha256 (16 hex digits) of the problem's data: spectrum, coefficients, basis, held-out set; for a network
    problem its parameters and data."""
    import hashlib
    h = hashlib.sha256()

    def add(t):
        if t is not None:
            t = torch.as_tensor(t).detach().cpu().contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.numpy().tobytes())

    if hasattr(problem, "eigvals"):
        for t in (problem.eigvals, problem.coef, problem.eigvecs, problem.K_test, problem.r_test):
            add(t)
        h.update(repr(float(problem.lambda_max_raw)).encode())
        if getattr(problem, "n_outputs", 1) > 1:  # C outputs (one output adds nothing: old identities hold)
            h.update(f"n_outputs={problem.n_outputs}".encode())
    net = getattr(problem, "network", None) if hasattr(problem, "eigvals") else problem
    if net is not None and hasattr(net, "model"):
        for k, v in sorted(net.model.state_dict().items()):
            h.update(k.encode())
            add(v)
        for t in (net.X, net.y, net.X_test, net.y_test):
            add(t)
    return h.hexdigest()[:16]


_NOT_IDENTITY = {"progress", "device", "chunk_size", "network", "memory_budget"}


def sweep_identity(regime_name, problem, n_steps, extra_columns, run_kwargs) -> dict:
    """Everything that changes a curve of this sweep (the fields of its identity hash), and the gfsgd version that
    made it (a resume by another version is refused unless allowed: check_identity)."""
    opts = {}
    for k, v in sorted(run_kwargs.items()):
        if k in _NOT_IDENTITY or k in ("schedule", "update"):
            continue
        if k == "log_steps":
            v = None if v is None else np.asarray(v).reshape(-1).tolist()
        opts[k] = v if isinstance(v, (int, float, str, bool, type(None), list)) else repr(v)
    net = run_kwargs.get("network")
    return dict(regime=regime_name, problem=problem_fingerprint(net if net is not None else problem), n_steps=int(n_steps),
                schedule=schedule_fingerprint(run_kwargs.get("schedule"), n_steps), options=opts,
                columns=dict(extra_columns), update=_update_fingerprint(run_kwargs.get("update")),
                version=str(_version.__version__))


def _update_fingerprint(update):
    """"sgd" for plain SGD (as before rules existed, so old run folders keep their identity), else the rule's
    record (its name and parameters)."""
    rule = as_update(update)
    return "sgd" if rule.name == "sgd" else rule.describe()


def _version_of(fields: dict) -> str:
    v = fields.get("version")  # 1 (a constant) or none in folders recorded before the version was kept
    return v if isinstance(v, str) else "(unknown: recorded before run folders kept the gfsgd version)"


def _show(v, width: int = 70) -> str:
    """A setting's value in a message: numbers and strings as they are, a rule as name(k=v), long lists cut."""
    if isinstance(v, dict):
        v = f"{v.get('update', v.get('name', ''))}(" + ", ".join(
            f"{k}={_show(x, 30)}" for k, x in sorted(v.items()) if k not in ("update", "name")) + ")"
    elif isinstance(v, list):
        v = "[" + ", ".join(_show(x, 30) for x in v) + "]"
    return str(v) if len(str(v)) <= width else str(v)[:width - 4] + " ..."


def describe_difference(old: dict, new: dict) -> str:
    """The settings in which two sweep identities differ, by name, old → new ("n_steps: 50 → 60; seed: 0 → 3")."""
    out, unset = [], "(default)"
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, unset), new.get(key, unset)
        if a == b:
            continue
        if key in ("options", "columns") and isinstance(a, dict) and isinstance(b, dict):  # each by its name
            out += [f"{'column ' * (key == 'columns')}{k}: {_show(a.get(k, unset))} → {_show(b.get(k, unset))}"
                    for k in sorted(set(a) | set(b)) if a.get(k, unset) != b.get(k, unset)]
        elif key == "schedule" and isinstance(a, dict) and isinstance(b, dict):
            at = next((t for t, x, y in zip(a.get("steps", []), a.get("values", []), b.get("values", [])) if x != y),
                      "?")
            out.append(f"schedule: {a.get('name')} → {b.get('name')}" if a.get("name") != b.get("name") else
                       f"schedule: {a.get('name')} with other parameters (its values differ from step {at})")
        elif key == "problem":
            out.append(f"problem: other data (spectrum, coefficients, basis, held-out set or network; fingerprint "
                       f"{a} → {b})")
        else:
            out.append(f"version: {_version_of(old)} → {_version_of(new)}" if key == "version" else
                       f"{key}: {_show(a)} → {_show(b)}")
    return "; ".join(out)


def check_identity(folder, sweep: str, fields: dict, *, overwrite: bool = False,
                   allow_version_change: bool = False) -> str:
    """Record the identity `fields` of `sweep` (e.g. "sd tau=1.0 seed=0") in the RunFolder `folder`, under its
    lock, or check it against the recorded one; returns its hash.

    Another identity raises RunFolderError naming each setting that differs, old → new (describe_difference),
    unless overwrite=True, which deletes that sweep's parts. When only the gfsgd version differs (a folder recorded
    before the version was kept has none), the refusal names both versions; allow_version_change=True resumes the
    sweep then, keeping its parts and listing the earlier version in sweeps.json ("earlier_versions")."""
    import json

    from .results import RunFolderError, identity_hash
    new = json.loads(json.dumps(fields, default=lambda x: x.item() if hasattr(x, "item") else str(x)))
    but_version = lambda f: identity_hash({k: v for k, v in f.items() if k != "version"})  # noqa: E731
    with folder.lock():
        old = folder.sweeps().get(sweep) or {}
        was, earlier, replace = old.get("fields", {}), old.get("earlier_versions", []), False
        if old and old["hash"] != identity_hash(new):
            only_version = but_version(was) == but_version(new)
            if overwrite:
                earlier, replace = [], True
            elif only_version and allow_version_change:
                earlier = earlier + [_version_of(was)]
            elif only_version:
                raise RunFolderError(
                    f"the run folder {str(folder.path)!r} holds sweep '{sweep}' made by gfsgd {_version_of(was)}; "
                    f"this is gfsgd {_version_of(new)}, whose curves may differ, so resuming would mix two versions' "
                    f"numbers. Pass --allow_version_change (execute(..., allow_version_change=True)) to resume it "
                    f"anyway, --overwrite to recompute it, or use another --save_dir")
            else:
                raise RunFolderError(
                    f"the run folder {str(folder.path)!r} already holds sweep '{sweep}' made with different settings "
                    f"({describe_difference(was, new)}); resuming would mix two different commands. Use --overwrite "
                    f"(execute(..., overwrite=True)) to replace it, or another --save_dir")
        return folder.record_sweep(sweep, new, replace=replace, overwrite=overwrite, earlier_versions=earlier)


def done_configs(folder, regime: str, extra: dict | None = None) -> set:
    """(lr, momentum, batch_size) keys already committed in the RunFolder `folder` for this regime (and matching
    extra columns; rows of a sweep with more extra columns are another sweep's)."""
    import pandas as pd

    from .configs import config_keys
    from .results import KEY, STATUS, key_columns
    frames = []
    for f in [part / STATUS for part in folder.parts()] + [folder.path / STATUS]:  # and a legacy folder's
        with contextlib.suppress(Exception):  # a damaged part is left to repair(); no legacy file
            frames.append(pd.read_parquet(f))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return set()
    st = pd.concat(frames, ignore_index=True)
    extra = dict(extra or {})
    sel = st["regime"] == regime
    for col, val in extra.items():
        sel &= ((st[col] == val) | (st[col].isna() & (val != val))) if col in st else False
    for col in set(key_columns(st)) - set(KEY) - {"tau", "seed", "repeats"} - set(extra):
        sel &= st[col].isna()  # rows of another sweep (one with more extra columns)
    st = st[sel]
    return config_keys(zip(st["lr"], st["momentum"], st["batch_size"]))


def execute(regime, problem, grid, n_steps: int, *, save_dir=None, chunk_size: int | None = None,
            extra_columns: dict | None = None, progress: bool = True, overwrite: bool = False,
            allow_version_change: bool = False, time_budget: float = 60.0, client=None, **run_kwargs):
    """Run `regime.run` over every config of `grid`, chunk by chunk, and return a list of Curves.

    Args:
        regime: a module or object with `run(problem, configs, n_steps, **kw) -> Curves` (gfsgd.regimes.*).
        grid: a Grid or a list of configs (duplicates are dropped).
        save_dir: a run folder (gfsgd.results.RunFolder or a path). Each finished chunk is committed there as one
            part (gfsgd.results), configs already committed for this sweep are skipped, so an interrupted sweep
            resumes where it stopped. The sweep's identity (a hash of everything that changes a curve: the
            problem's data, n_steps, log_steps, schedule, seed, repeats, the regime's options, the extra columns)
            is kept in the folder: resuming with a different one raises RunFolderError naming the fields that
            differ, old → new (overwrite=True replaces the sweep instead). It records the gfsgd version too: a
            resume by another version is refused, naming both, unless allow_version_change=True (the scripts'
            --allow_version_change; check_identity). The folder is locked while this runs: a second writer gets
            RunFolderLocked, and a lock left by a killed process is taken over.
        chunk_size: configs per vectorised call; default (None) sizes chunks by time: the first holds 8 configs,
            the next ones are scaled so that a chunk takes about `time_budget` seconds (so a kill loses at most
            about that much work).
        extra_columns: constant columns identifying this sweep in the results (e.g. {"tau": 1.0}); they are
            written to both curves and status.
        client: a dask.distributed Client: the chunks run as tasks on its workers (default: the configs,
            ordered by batch size so that a task's configs share it, split into 2 tasks per worker), the problem is sent to each worker once (scatter), only this
            process writes (as results come in), and a task whose worker dies is rerun elsewhere. Each task sets
            torch's threads to its worker's thread count (so 2 workers on 2 cores do not oversubscribe), and a
            worker with CUDA devices uses device (worker index mod device count) when device is "auto".
    """
    from .results import RunFolder
    configs = unique_configs(grid.configs if isinstance(grid, Grid) else grid)
    check_configs(configs, problem.N)  # fail early, before any work
    if chunk_size is not None and (isinstance(chunk_size, bool) or not float(chunk_size).is_integer()
                                   or int(chunk_size) < 1):
        raise InputError(f"chunk_size must be an integer >= 1 (configs per vectorised call) or None, got "
                         f"chunk_size={chunk_size!r}")
    if not (isinstance(time_budget, (int, float)) and time_budget > 0):
        raise InputError(f"time_budget must be > 0 seconds, got time_budget={time_budget!r}")
    folder = None if save_dir is None else (save_dir if isinstance(save_dir, RunFolder) else RunFolder(save_dir))
    regime_name = getattr(regime, "REGIME", getattr(regime, "__name__", "regime").rsplit(".", 1)[-1])
    extra_columns = dict(extra_columns or {})
    runner = _run_chunks if client is None else _run_dask
    extra_kw = {} if client is None else dict(client=client)
    if folder is None:
        return runner(regime, problem, configs, n_steps, None, chunk_size, time_budget, extra_columns, progress,
                      run_kwargs, **extra_kw)
    with folder.lock():
        sweep = " ".join([regime_name] + [f"{k}={v}" for k, v in sorted(extra_columns.items())])
        check_identity(folder, sweep, sweep_identity(regime_name, problem, n_steps, extra_columns, run_kwargs),
                       overwrite=overwrite, allow_version_change=allow_version_change)
        done = done_configs(folder, regime_name, extra_columns)
        configs = [c for c in configs if config_key(c) not in done]
        return runner(regime, problem, configs, n_steps, folder, chunk_size, time_budget, extra_columns, progress,
                      run_kwargs, **extra_kw)


def _run_chunks(regime, problem, configs, n_steps, folder, chunk_size, time_budget, extra_columns, progress,
                run_kwargs):
    out = []
    start = 0
    size = int(chunk_size) if chunk_size else min(8, max(len(configs), 1))
    while start < len(configs):
        chunk = configs[start:start + size]
        t0 = time.perf_counter()
        curves = regime.run(problem, chunk, n_steps, progress=progress, **run_kwargs)
        wall = time.perf_counter() - t0
        curves.meta.setdefault("wall_time", wall)
        curves.meta.update(extra_columns)
        if folder is not None:
            folder.append(curves, extra=extra_columns)
        out.append(curves)
        start += len(chunk)
        if not chunk_size:  # scale the next chunk to about time_budget seconds (at most 8x growth)
            size = max(1, min(8 * size, int(size * time_budget / max(wall, 1e-3))))
    return out


# ----------------------------------------------------------------------------------------------------- dask
def _regime_ref(regime):
    import types
    return ("module", regime.__name__) if isinstance(regime, types.ModuleType) else ("object", regime)


def _dask_task(regime_ref, problem, chunk, n_steps, run_kwargs):
    """One chunk on a dask worker: torch threads = the worker's threads; "auto" device = one GPU per worker."""
    import importlib
    kind, ref = regime_ref
    regime = importlib.import_module(ref) if kind == "module" else ref
    kw = dict(run_kwargs)
    try:
        from distributed import get_worker
        worker = get_worker()
        torch.set_num_threads(max(1, int(worker.state.nthreads)))
        if kw.get("device", "auto") in ("auto", None) and torch.cuda.is_available():
            name = str(worker.name)
            index = int(name) if name.isdigit() else abs(hash(worker.address))
            kw["device"] = f"cuda:{index % torch.cuda.device_count()}"
    except (ImportError, ValueError):
        pass
    t0 = time.perf_counter()
    curves = regime.run(problem, chunk, n_steps, progress=False, **kw)
    curves.meta.setdefault("wall_time", time.perf_counter() - t0)
    return curves


def _run_dask(regime, problem, configs, n_steps, folder, chunk_size, time_budget, extra_columns, progress,
              run_kwargs, *, client):
    from distributed import as_completed
    if not configs:
        return []
    n_workers = max(1, len(client.scheduler_info().get("workers", {})) or 1)
    size = int(chunk_size) if chunk_size else max(1, -(-len(configs) // (2 * n_workers)))
    configs = sorted(configs, key=lambda c: (int(c[2]), float(c[1]), float(c[0])))  # same batch size together
    chunks = [configs[i:i + size] for i in range(0, len(configs), size)]
    kw = dict(run_kwargs)
    network = kw.pop("network", None)
    payload = client.scatter((problem, network), broadcast=True, hash=False)  # once per worker, a fresh key
    ref = _regime_ref(regime)

    def task(regime_ref, pair, chunk, n, opts):
        prob, net = pair
        if net is not None:
            opts = dict(opts, network=net)
        return _dask_task(regime_ref, prob, chunk, n, opts)

    futures = [client.submit(task, ref, payload, chunk, n_steps, kw, pure=False, retries=2) for chunk in chunks]
    from .progress import progress_bar
    bar = progress_bar(len(configs), f"dask: {len(chunks)} chunks", unit="config", enabled=bool(progress))
    out = []
    try:
        for fut in as_completed(futures):
            curves = fut.result()
            curves.meta.update(extra_columns)
            if folder is not None:
                folder.append(curves, extra=extra_columns)  # only the driver writes
            out.append(curves)
            if bar is not None:
                bar.update(len(curves.configs))
    finally:
        if bar is not None:
            bar.close()
        for fut in futures:
            fut.cancel()
    return out


def dask_client(*, scheduler: str | None = None, workers: int | None = None, threads_per_worker: int = 1,
                timeout: float = 10.0):
    """A dask.distributed Client: connected to `scheduler` (an address, e.g. tcp://host:8786), or a LocalCluster of
    `workers` processes with `threads_per_worker` threads each. A scheduler that cannot be reached within
    `timeout` seconds is a clear ConnectionError."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("Dask is not installed: pip install 'dask[distributed]' (or pip install -e '.[dask]')") \
            from None
    if scheduler:
        try:
            return Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s "
                                  f"({type(exc).__name__}: {str(exc)[:120]})") from None
    if workers is None or int(workers) < 1:
        raise InputError(f"workers must be an integer >= 1 for a LocalCluster, got workers={workers!r}")
    import dask
    # Dask's nanny starts each worker with MALLOC_TRIM_THRESHOLD_=65536, which hands every freed block above
    # 64 kB back to the OS; torch's per-step tensors are then page-faulted in again. Measured on the nn regime
    # (4 configs, width 1000, b = 128, 300 steps, 1 thread): 4.3-4.8 s in a plain process, 7.6-7.8 s with that
    # variable set. The workers keep glibc's default here (the thread variables stay at 1).
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=int(threads_per_worker), processes=True,
                               dashboard_address=None)
    return Client(cluster)
