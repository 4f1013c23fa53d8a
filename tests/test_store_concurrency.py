"""The run store under concurrency, with real processes: a stale lock raced for by six processes, repair and
write_config while another process writes, and the command line's answer when the store's files vanish or the
disk fails (one line naming the folder, never a traceback)."""
import errno
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gfsgd import Problem, execute, results
from gfsgd.regimes import spectral_diagonal as sd
from gfsgd.results import RunFolder, RunFolderLocked

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

# A small SD sweep (4 configs, one part each) that can pause at a write point of its second commit, holding the
# lock, until <folder>.go exists (<folder>.paused says it stopped).
WRITER = textwrap.dedent("""
    import os, sys, time
    from gfsgd import Problem, execute, results
    from gfsgd.regimes import spectral_diagonal as sd
    folder, pause_at = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
    seen = []
    def hook(label):
        seen.append(label)
        if label == pause_at and seen.count(label) == 2:
            open(folder + ".paused", "w").close()
            while not os.path.exists(folder + ".go"):
                time.sleep(0.05)
    results._HOOK = hook
    p = Problem.synthetic(40, 1.5, 1.0, basis=None)
    execute(sd, p, [(0.2, 0.0, 1), (0.5, 0.0, 1), (0.5, -0.3, 4), (1.0, 0.0, 10)], 60, save_dir=folder,
            chunk_size=1, progress=False)
""")

CONFIGS = [(0.2, 0.0, 1), (0.5, 0.0, 1), (0.5, -0.3, 4), (1.0, 0.0, 10)]


def start(code, *args):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout=300):
    t0 = time.time()
    while not Path(path).exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


def sorted_curves(folder):
    res = results.load(folder)
    return res.curves.sort_values(["lr", "momentum", "batch_size", "step"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ref") / "run"
    execute(sd, Problem.synthetic(40, 1.5, 1.0, basis=None), CONFIGS, 60, save_dir=folder, chunk_size=1,
            progress=False)
    return sorted_curves(folder)


@pytest.fixture
def paused_writer(tmp_path):
    """A writer stopped after writing curves.parquet of its second part (its .tmp directory in flight, the lock
    held); resumed (and waited for) at the end of the test."""
    folder = tmp_path / "run"
    proc = start(WRITER, folder, "wrote-curves.parquet")
    go = Path(f"{folder}.go")
    try:
        wait_for(f"{folder}.paused", proc)
        yield folder, proc
    finally:
        go.touch()
        proc.communicate(timeout=300)


# ------------------------------------------------------------------------------------------- the stale lock
RACER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from gfsgd import results
    folder, rounds = sys.argv[1], int(sys.argv[2])
    alive = results._pid_alive
    def slow(pid):  # widen the window between seeing the dead owner and taking its lock over
        if not alive(pid):
            time.sleep(0.3)
            return False
        return True
    results._pid_alive = slow
    f = results.RunFolder(folder)
    open(f"{folder}.ready-{os.getpid()}", "w").close()
    for r in range(rounds):
        while not os.path.exists(f"{folder}.go-{r}"):
            time.sleep(0.001)
        out = dict(pid=os.getpid(), won=False)
        try:
            with f.lock():
                t0 = time.time()
                time.sleep(1.0)  # hold it while the others try
                try:
                    holder = json.loads((Path(folder) / "lock").read_text())["pid"]
                except (OSError, ValueError):  # another process deleted it
                    holder = None
                out.update(won=True, t0=t0, t1=time.time(), kept=holder == os.getpid())
        except results.RunFolderLocked as exc:
            out["refused"] = str(exc)
        Path(f"{folder}.result-{r}-{os.getpid()}").write_text(json.dumps(out))
""")


def check_running(procs):
    dead = [p for p in procs if p.poll() is not None]
    assert not dead, [p.communicate()[1][-2000:] for p in dead]


def dead_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_six_processes_race_for_one_stale_lock_and_exactly_one_wins(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    n, rounds = 6, 4
    procs = [start(RACER, folder, rounds) for _ in range(n)]
    try:
        t0 = time.time()
        while len(list(tmp_path.glob("run.ready-*"))) < n:
            check_running(procs)
            assert time.time() - t0 < 300
            time.sleep(0.05)
        for r in range(rounds):
            assert not (folder / "lock").exists()
            (folder / "lock").write_text(json.dumps(dict(pid=dead_pid(), host=socket.gethostname(), start="x",
                                                         token="stale")))
            (tmp_path / f"run.go-{r}").touch()
            t0 = time.time()
            while len(list(tmp_path.glob(f"run.result-{r}-*"))) < n:
                check_running(procs)
                assert time.time() - t0 < 120
                time.sleep(0.05)
            out = [json.loads(f.read_text()) for f in tmp_path.glob(f"run.result-{r}-*")]
            winners = [o for o in out if o["won"]]
            assert len(winners) == 1, f"round {r}: {len(winners)} processes took the stale lock: {winners}"
            assert winners[0]["kept"]  # nobody deleted the winner's lock while it held it
            assert all(f"is being written by pid {winners[0]['pid']} " in o["refused"] for o in out if not o["won"])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


def test_a_lock_names_its_owner_and_a_release_removes_only_its_own(tmp_path):
    """A lock taken by this process names it; releasing leaves no lock; a lock whose token is someone else's is
    left in place by a release."""
    f = RunFolder(tmp_path / "run")
    with f.lock():
        info = json.loads((f.path / "lock").read_text())
        assert info["pid"] == os.getpid() and info["token"]
        with f.lock():  # re-entrant in one object
            pass
        assert (f.path / "lock").exists()
    assert not (f.path / "lock").exists()
    other = RunFolder(tmp_path / "run")
    (f.path / "lock").write_text(json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), start="x", token="t")))
    with pytest.raises(RunFolderLocked, match=f"is being written by pid {os.getpid()} "):
        with other.lock():
            pass
    assert json.loads((f.path / "lock").read_text())["token"] == "t"


# --------------------------------------------------------------------------------- repair and write_config
def test_repair_refuses_while_a_writer_holds_the_lock(paused_writer, reference):
    folder, proc = paused_writer
    in_flight = list((folder / "parts").glob(".tmp-*"))
    assert len(in_flight) == 1 and (in_flight[0] / "curves.parquet").is_file()
    with pytest.raises(RunFolderLocked, match=f"is being written by pid {proc.pid} .*repairing now would delete "
                                              f"the part it is writing"):
        results.repair(folder)
    assert list((folder / "parts").glob(".tmp-*")) == in_flight  # the writer's part in flight is untouched
    Path(f"{folder}.go").touch()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err  # the writer finishes
    got = sorted_curves(folder)
    assert np.array_equal(got["loss"].values, reference["loss"].values)  # bitwise the uninterrupted sweep


def test_cli_repair_refuses_while_a_writer_holds_the_lock(paused_writer):
    folder, proc = paused_writer
    in_flight = list((folder / "parts").glob(".tmp-*"))
    r = subprocess.run([sys.executable, str(ROOT / "train_spectral_diagonal.py"), "--N", "40", "--basis", "none",
                        "--n_steps", "20", "--save_dir", str(folder), "--repair", "--no_plots", "--no_progress"],
                       capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: ")
    assert f"is being written by pid {proc.pid} " in r.stderr and "repairing now would delete" in r.stderr
    assert "set aside" not in r.stdout
    assert list((folder / "parts").glob(".tmp-*")) == in_flight
    assert not (folder / "config.json").exists()  # the refused command left no record


def test_write_config_takes_the_lock(paused_writer):
    """write_config writes only while holding the lock; the scripts' config (keep_existing=True) is written when
    their first sweep passes its checks, under the lock, so a sweep refused by the lock leaves no record."""
    folder, proc = paused_writer
    f = RunFolder(folder)
    with pytest.raises(RunFolderLocked, match=f"is being written by pid {proc.pid} "):
        f.write_config(dict(script="x", args={}))
    f.write_config(dict(script="x", args={}), keep_existing=True)
    with pytest.raises(RunFolderLocked, match=f"is being written by pid {proc.pid} "):
        execute(sd, Problem.synthetic(40, 1.5, 1.0, basis=None), CONFIGS, 60, save_dir=f, progress=False)
    assert not (folder / "config.json").exists() and not (folder / "invocations.jsonl").exists()


# ------------------------------------------------------------------------------------ OSErrors of the store
CLI = textwrap.dedent("""
    import os, runpy, sys, time
    from gfsgd import results
    folder = sys.argv[1]
    seen = []
    def hook(label):  # stop at the second part's curves.parquet until <folder>.go exists
        seen.append(label)
        if label == "wrote-curves.parquet" and seen.count(label) == 2:
            open(folder + ".paused", "w").close()
            while not os.path.exists(folder + ".go"):
                time.sleep(0.05)
    results._HOOK = hook
    sys.argv = ["train_spectral_diagonal.py"] + sys.argv[2:]
    runpy.run_path("train_spectral_diagonal.py", run_name="__main__")
""")


def test_cli_a_part_that_vanishes_mid_write_is_one_line_naming_the_folder(tmp_path):
    """What a user met: a repair (or an rm) deleted the writer's part in flight; the writer died with a raw
    OSError traceback. Now: one line naming the folder, and a rerun of the same command completes the sweep."""
    import shutil
    folder = tmp_path / "run"
    argv = ["--N", "40", "--basis", "none", "--lr", "0.2", "0.5", "--momentum", "0", "--batch_size", "1", "4",
            "--n_steps", "20", "--chunk_size", "1", "--save_dir", str(folder), "--no_plots", "--no_progress"]
    proc = start(CLI, folder, *argv)
    try:
        wait_for(f"{folder}.paused", proc)
        (tmp,) = (folder / "parts").glob(".tmp-*")
        shutil.rmtree(tmp)  # what the old repair() did to a live writer
    finally:
        Path(f"{folder}.go").touch()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert err.strip().count("\n") == 0, err
    assert err.startswith(f"error: the run folder {str(folder)!r} could not be read or written (")
    assert "rerun the same command to resume" in err
    assert not (folder / "lock").exists()  # released on the way out
    r = subprocess.run([sys.executable, str(ROOT / "train_spectral_diagonal.py"), *argv], capture_output=True,
                       text=True, cwd=ROOT, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(results.load(folder).status) == 4


def test_cli_a_disk_error_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    from gfsgd import cli

    def full_disk(label):
        if label == "before-rename":
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(results, "_HOOK", full_disk)
    folder = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        cli.main(["sd"], script="train_spectral_diagonal", description="test",
                 argv=["--N", "20", "--basis", "none", "--n_steps", "5", "--save_dir", str(folder), "--no_plots",
                       "--no_progress"])
    msg = str(exc.value.code)
    assert msg.startswith(f"error: the run folder {str(folder)!r} could not be read or written (OSError: [Errno "
                          f"{errno.ENOSPC}] No space left on device)") and "\n" not in msg
    assert not (folder / "lock").exists()


def test_cli_an_oserror_elsewhere_keeps_its_traceback(tmp_path, monkeypatch):
    """Only the store's OSErrors become one line; another one (a bug) keeps its traceback."""
    from gfsgd import cli

    def broken(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", "/nonexistent/elsewhere")
    monkeypatch.setattr(sd, "run", broken)
    with pytest.raises(PermissionError):
        cli.main(["sd"], script="train_spectral_diagonal", description="test",
                 argv=["--N", "20", "--basis", "none", "--n_steps", "5", "--save_dir", str(tmp_path / "run"),
                       "--no_plots", "--no_progress"])
