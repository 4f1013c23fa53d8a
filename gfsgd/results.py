"""The run store: a run folder written chunk by chunk, read back with every part checked.

A run folder holds
    config.json       every argument of the run, package versions, seed, device (written by the scripts)
    sweeps.json       the identity of every sweep in the folder (one per regime and extra columns): a hash of
                      everything that changes a curve, and the fields it was made from
    parts/part-*/     one finished chunk each: curves.parquet (tidy: regime, lr, momentum, batch_size, extra
                      columns, step, loss[, loss_se, test_loss, ...]) and status.parquet (per config: status
                      "ok" | "diverged", diverged_step (-1 if ok), final_loss, wall_time, extra columns)
    lock              while a process writes: its pid, host, start time and token (.lock-guard: see `lock`)
plus PNG plots and invocations.jsonl (the later invocations of the scripts that wrote into the folder).

Commit protocol: a chunk's two files are written (and fsynced) into parts/.tmp-<id>/ and the directory is then
renamed to parts/part-<id>/, one atomic rename, so a kill at any moment leaves either the whole part or a
leftover .tmp directory that `load` ignores. Appending costs O(chunk): no file is ever rewritten.
`load` reads every part, checks that each status row holds its curve, the row counts and that no config appears
twice, and names a damaged part; `repair` moves damaged parts aside so that a resumed sweep recomputes them.
Folders written before parts existed (curves.parquet and status.parquet at the top) are still read. Everything
that writes parts, sweeps.json or config.json holds the folder's lock (`RunFolder.lock`).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import shutil
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .version import __version__

__all__ = ["RunFolder", "Results", "load", "repair", "versions", "RunFolderError", "RunFolderLocked",
           "identity_hash"]

CURVES, STATUS, CONFIG, SWEEPS, PARTS, LOCK, GUARD = ("curves.parquet", "status.parquet", "config.json",
                                                     "sweeps.json", "parts", "lock", ".lock-guard")
KEY = ["regime", "lr", "momentum", "batch_size"]


_HOOK = None  # tests: a callable(label) run at each write point of a commit (to inject a kill between writes)


def _point(label: str):
    if _HOOK is not None:
        _HOOK(label)


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked: damaged parts, a different sweep identity, not writable."""


class RunFolderLocked(RuntimeError):
    """Another live process holds the run folder's lock."""


def versions() -> dict:
    import numpy
    import torch
    return dict(gfsgd=__version__, torch=torch.__version__, numpy=numpy.__version__, pandas=pd.__version__,
                python=sys.version.split()[0], platform=platform.platform())


def _fsync_dir(path: Path):
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, write):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, obj, indent=2):
    _atomic_write(path, lambda p: p.write_text(json.dumps(_jsonable(obj), indent=indent, sort_keys=True)))


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
    if hasattr(x, "tolist"):
        return _jsonable(x.tolist())
    return str(x)


def identity_hash(fields: dict) -> str:
    """sha256 (first 16 hex digits) of the canonical JSON of `fields`."""
    text = json.dumps(_jsonable(fields), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:  # not a process (os.kill(-1, 0) would ask about every process)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunFolder:
    """A run folder on disk (created if missing; a clear error if the path is a file or not writable)."""

    def __init__(self, path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"save_dir {str(self.path)!r} is a file, not a folder; choose another save_dir")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"cannot create the run folder {str(self.path)!r}: {exc.strerror}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise RunFolderError(f"the run folder {str(self.path)!r} is not writable; choose another save_dir")
        self._locked, self._token, self._pending = 0, None, None  # _pending: see write_config

    # ------------------------------------------------------------------------------------------ config
    def write_config(self, config: dict, *, keep_existing: bool = False) -> Path:
        """Write config.json, holding the lock. keep_existing=True (the scripts): it waits for this invocation's
        first sweep to pass its checks (record_sweep), so a refused invocation leaves no trace, and is written then
        as config.json if the folder has none, else appended to invocations.jsonl; another script's folder is
        refused then (RunFolderError naming both) unless overwrite: config.json becomes this one, the earlier in it."""
        cfg = dict(config)
        cfg.setdefault("versions", versions())
        cfg.setdefault("written", _dt.datetime.now().isoformat(timespec="seconds"))
        if keep_existing:
            self._pending = cfg
            return self.path / CONFIG
        with self.lock():
            _write_json(self.path / CONFIG, cfg)
        return self.path / CONFIG

    def _config_conflict(self, overwrite: bool):
        """config.json if another script wrote it (None if not); RunFolderError unless overwrite."""
        target, script = self.path / CONFIG, (self._pending or {}).get("script")
        old = json.loads(target.read_text()) if script and target.is_file() else {}
        if old.get("script") in (None, script):
            return None
        if not overwrite:
            raise RunFolderError(
                f"this folder ({str(self.path)!r}) was written by {old['script']}; {script} would add its sweeps to "
                f"it while config.json describes only {old['script']}. Use another --save_dir, or --overwrite (then "
                f"config.json records both, and sweeps made with different settings are replaced)")
        return old

    def sweeps(self) -> dict:
        f = self.path / SWEEPS
        return json.loads(f.read_text()) if f.is_file() else {}

    def record_sweep(self, sweep: str, fields: dict, *, replace: bool = False, overwrite: bool = False,
                     earlier_versions=()) -> str:
        """Record the identity `fields` of `sweep` ("sd tau=1.0 seed=0") in sweeps.json under the lock, once
        gfsgd.grid.check_identity allowed it (replace=True: delete the sweep's parts first; earlier_versions: the
        versions that made them), then write the pending config (`overwrite`: see write_config). Returns the hash."""
        fields = _jsonable(fields)
        h = identity_hash(fields)
        with self.lock():
            conflict = self._config_conflict(overwrite)  # before anything is written
            sweeps = self.sweeps()
            old = sweeps.get(sweep)
            if replace and old is not None:
                self.drop_sweep(old["fields"].get("regime"), old.get("columns", {}))
            sweeps[sweep] = dict(hash=h, fields=fields, columns=fields.get("columns", {}))
            if earlier_versions:
                sweeps[sweep]["earlier_versions"] = list(earlier_versions)
            _write_json(self.path / SWEEPS, sweeps, indent=1)
            cfg, self._pending = self._pending, None
            if cfg is not None and (conflict is not None or not (self.path / CONFIG).is_file()):
                _write_json(self.path / CONFIG, cfg if conflict is None else dict(
                    cfg, earlier_configs=conflict.pop("earlier_configs", []) + [conflict]))
            elif cfg is not None:
                with open(self.path / "invocations.jsonl", "a") as fh:
                    fh.write(json.dumps(_jsonable(cfg), sort_keys=True) + "\n")
        return h

    def drop_sweep(self, regime: str, columns: dict) -> int:
        """Delete the parts of one sweep (this regime, these extra-column values, no other extra column), holding
        the lock; returns their number."""
        n, standard = 0, {"tau", "seed", "repeats"}
        with self.lock():
            for part in self.parts():
                try:
                    st = pd.read_parquet(part / STATUS)
                except Exception:  # noqa: BLE001 - a damaged part is left to repair()
                    continue
                extra = set(key_columns(st)) - set(KEY) - standard
                if not len(st) or extra - set(columns) or not (st["regime"] == regime).all():
                    continue
                sel = pd.Series(True, index=st.index)
                for col, val in columns.items():
                    sel &= ((st[col] == val) | (st[col].isna() & (val != val))) if col in st else False
                if bool(sel.all()):
                    shutil.rmtree(part)
                    n += 1
        return n

    # ------------------------------------------------------------------------------------------- lock
    @contextlib.contextmanager
    def lock(self, *, advice: str | None = None):
        """Hold the folder's lock (re-entrant in this object). A second live writer gets RunFolderLocked (ending with
        `advice`, or the default way out); a dead process's lock on this host is taken over, under the flock of
        .lock-guard (as is a release): else two could both see the dead owner, one deleting the other's new lock."""
        if not self._locked:
            self._acquire(advice)
        self._locked += 1
        try:
            yield self
        finally:
            self._locked -= 1
            if not self._locked:
                with contextlib.suppress(OSError, ValueError, AttributeError), self._guard():  # else left stale
                    if json.loads((self.path / LOCK).read_text()).get("token") == self._token:
                        (self.path / LOCK).unlink()

    @contextlib.contextmanager
    def _guard(self):
        fd = os.open(self.path / GUARD, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            with contextlib.suppress(ImportError, OSError):  # no flock here: the O_EXCL protocol alone
                import fcntl
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _acquire(self, advice=None):
        f = self.path / LOCK
        token = uuid.uuid4().hex
        info = dict(pid=os.getpid(), host=socket.gethostname(), start=_dt.datetime.now().isoformat(timespec="seconds"),
                    token=token)
        with self._guard():
            for _ in range(3):
                try:
                    fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    held = {}
                    for _ in range(20):  # an empty lock may be in the middle of being written by its owner: wait
                        with contextlib.suppress(OSError, ValueError):
                            held = json.loads(f.read_text()) if f.exists() else {}
                            break
                        time.sleep(0.1)
                    held = held if isinstance(held, dict) else {}
                    stale = held.get("host") == socket.gethostname() and not _pid_alive(held.get("pid"))
                    if stale or not held:  # a dead owner, or a lock still empty after 2 s (killed while writing it)
                        with contextlib.suppress(FileNotFoundError):
                            f.unlink()  # only under the guard, and a dead owner never releases: not a fresh lock
                        continue
                    raise RunFolderLocked(
                        f"the run folder {str(self.path)!r} is being written by pid {held.get('pid')} on host "
                        f"{held.get('host')} since {held.get('start')}; "
                        + (advice or f"wait for it, use another --save_dir, or delete {f} if that process is gone")
                    ) from None
                with os.fdopen(fd, "w") as fh:
                    fh.write(json.dumps(info))
                    fh.flush()
                    os.fsync(fh.fileno())
                self._token = token
                return
        raise RunFolderLocked(f"could not take the lock of {str(self.path)!r}")

    # ------------------------------------------------------------------------------------------ parts
    def parts(self) -> list:
        return _parts(self.path)

    def append(self, curves, extra: dict | None = None) -> Path:
        """Commit one Curves object (its curves and status rows, with the extra columns) as one part: both files
        written into a temporary directory, fsynced, then one atomic rename. Holds the lock."""
        cur, st = curves.to_frame(), curves.status_frame()
        for col, val in (extra or {}).items():
            cur[col] = val
            st[col] = val
        with self.lock():
            d = self.path / PARTS
            d.mkdir(exist_ok=True)
            pid = f"{_dt.datetime.now().strftime('%Y%m%d%H%M%S%f')}-{uuid.uuid4().hex[:8]}"
            tmp = d / f".tmp-{pid}"
            tmp.mkdir()
            _point("tmp-created")
            for name, df in ((CURVES, cur), (STATUS, st)):
                df.to_parquet(tmp / name, index=False)
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
                _point(f"wrote-{name}")
            (tmp / "rows.json").write_text(json.dumps(dict(configs=len(st), curve_rows=len(cur))))
            _fsync_dir(tmp)
            _point("before-rename")
            final = d / f"part-{pid}"
            os.rename(tmp, final)
            _fsync_dir(d)
            _point("after-rename")
            return final

    def save_figure(self, fig, name: str, formats=("png",)) -> list:
        out = []
        for fmt in formats:
            target = self.path / f"{name}.{fmt}"
            _atomic_write(target, lambda p, fmt=fmt: fig.savefig(p, format=fmt, dpi=150, bbox_inches="tight"))
            out.append(target)
        return out


@dataclass
class Results:
    """A loaded run folder: config (dict), curves and status (DataFrames), sweeps (identities)."""
    path: Path
    config: dict
    curves: pd.DataFrame
    status: pd.DataFrame
    sweeps: dict = field(default_factory=dict)
    parts: int = 0

    def curve(self, regime=None, **where) -> pd.DataFrame:
        """Rows of `curves` matching regime and column values (e.g. lr=0.5, batch_size=10)."""
        df = self.curves
        if regime is not None:
            df = df[df["regime"] == regime]
        for col, val in where.items():
            df = df[df[col] == val]
        return df


VALUE_COLUMNS = {"step", "loss", "loss_se", "test_loss", "test_loss_se", "status", "diverged_step", "final_loss",
                 "wall_time", "final_test_loss", "best_step", "best_test_loss", "test_accuracy",
                 "test_accuracy_se", "final_test_accuracy"}


def key_columns(df):
    """The columns that identify a config's row: regime, lr, momentum, batch_size and every extra column."""
    return KEY + [c for c in df.columns if c not in VALUE_COLUMNS and c not in KEY]


def _check_part(part: Path):
    """(curves, status) of one part, or raise RunFolderError naming what is wrong."""
    for name in (CURVES, STATUS):
        if not (part / name).is_file():
            raise RunFolderError(f"part {part.name} has no {name}")
    try:
        cur = pd.read_parquet(part / CURVES)
        st = pd.read_parquet(part / STATUS)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds on a truncated file
        raise RunFolderError(f"part {part.name} cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from None
    rows = part / "rows.json"
    if rows.is_file():
        want = json.loads(rows.read_text())
        if want.get("configs") != len(st) or want.get("curve_rows") != len(cur):
            raise RunFolderError(f"part {part.name} holds {len(st)} status and {len(cur)} curve rows, its record "
                                 f"says {want}")
    keys = key_columns(st)
    if st.duplicated(keys).any():
        raise RunFolderError(f"part {part.name} has duplicate status rows")
    ck = cur[keys].drop_duplicates()
    if len(ck) != len(st) or len(ck.merge(st[keys], on=keys)) != len(st):
        raise RunFolderError(f"part {part.name}: its curves and status rows are not the same configs")
    if len(st) and len(cur) % len(st):
        raise RunFolderError(f"part {part.name}: {len(cur)} curve rows for {len(st)} configs")
    return cur, st


def _parts(path: Path) -> list:
    """The committed parts of a run folder, oldest first (leftover .tmp directories are not parts)."""
    d = Path(path) / PARTS
    return sorted(p for p in d.iterdir() if p.is_dir() and p.name.startswith("part-")) if d.is_dir() else []


def _read_all(path: Path):
    good, bad = [], []
    for part in _parts(path):
        try:
            good.append((part, *_check_part(part)))
        except RunFolderError as exc:
            bad.append((part, str(exc)))
    return good, bad


def load(path, *, allow_damaged: bool = False) -> Results:
    """Read a run folder written by the scripts or by gfsgd.grid.execute, checking every part.

    A damaged or partial part (unreadable, missing a file, rows that do not match) raises RunFolderError naming
    it, with the way out (`repair(path)` or the scripts' --repair); allow_damaged=True skips such parts
    instead (with a warning). Configs committed twice (in two parts) raise RunFolderError as well."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no run folder at {path}")
    cfg_file = path / CONFIG
    config = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    good, bad = _read_all(path)
    if bad and not allow_damaged:
        raise RunFolderError(f"{len(bad)} damaged part(s) in {path}: " + "; ".join(m for _, m in bad[:3])
                             + f". Run gfsgd.results.repair({str(path)!r}) (or rerun the script with --repair) to "
                               f"set them aside, then resume the sweep to recompute their configs")
    if bad:
        import warnings
        warnings.warn(f"skipping {len(bad)} damaged part(s) in {path}: " + "; ".join(m for _, m in bad[:3]),
                      stacklevel=2)
    curves = [c for _, c, _ in good]
    status = [s for _, _, s in good]
    for name, lst in ((CURVES, curves), (STATUS, status)):
        if (path / name).is_file():
            lst.append(pd.read_parquet(path / name))
    curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    status = pd.concat(status, ignore_index=True) if status else pd.DataFrame()
    if not status.empty:
        dup = status.duplicated(key_columns(status), keep=False)
        if dup.any():
            raise RunFolderError(f"{int(dup.sum())} status rows in {path} are the same config committed twice (two "
                                 f"writers without the lock?); first: "
                                 f"{status[dup].iloc[0][key_columns(status)].to_dict()}")
    sweeps_file = path / SWEEPS
    sweeps = json.loads(sweeps_file.read_text()) if sweeps_file.is_file() else {}
    if curves.empty and status.empty and not config:
        raise FileNotFoundError(f"{path} holds no {CONFIG}, {CURVES} or {STATUS}: not a gfsgd run folder")
    return Results(path=path, config=config, curves=curves, status=status, sweeps=sweeps, parts=len(good))


def repair(path) -> list:
    """Move damaged parts to parts/damaged/ and delete leftovers of interrupted writes (.tmp directories), so
    that a resumed sweep recomputes the damaged parts' configs. Returns the names of the parts set aside.
    `path`: a path or a RunFolder (its lock may be held). While another live process writes the folder (its part
    in flight is a .tmp directory), repair raises RunFolderLocked."""
    if not isinstance(path, RunFolder) and not Path(path).is_dir():
        raise FileNotFoundError(f"no run folder at {path}")
    folder = path if isinstance(path, RunFolder) else RunFolder(path)
    path, d, moved = folder.path, folder.path / PARTS, []
    with folder.lock(advice="repairing now would delete the part it is writing: wait for it to finish, then "
                            "repair"):
        good, bad = _read_all(path)
        if bad:
            (d / "damaged").mkdir(parents=True, exist_ok=True)
            for part, _ in bad:
                os.rename(part, d / "damaged" / part.name)
                moved.append(part.name)
        for tmp in d.glob(".tmp-*") if d.is_dir() else ():
            shutil.rmtree(tmp, ignore_errors=True)
    return moved
