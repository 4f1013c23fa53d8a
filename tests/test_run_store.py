"""The run store: kills at random moments and between writes, two writers, sweep identity, damaged parts,
stale locks, bad folders. The reference is always an uninterrupted run of the same sweep in another folder,
compared bitwise."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gfsgd import Grid, Problem, execute, results
from gfsgd.regimes import spectral_diagonal as sd
from gfsgd.results import RunFolderError, RunFolderLocked

ROOT = Path(__file__).resolve().parents[1]

SWEEP = textwrap.dedent("""
    import sys, os
    from gfsgd import Problem, Grid, execute, results
    from gfsgd.regimes import linearized
    folder, kill_at = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
    if kill_at.startswith("pause:"):  # stop at this write point of the second commit (holding the lock) until
        import time                   # <folder>.go exists; <folder>.paused says it stopped
        label, seen = kill_at[len("pause:"):], []
        def hook(label_):
            seen.append(label_)
            if label_ == label and seen.count(label_) == 2:
                open(folder + ".paused", "w").close()
                while not os.path.exists(folder + ".go"):
                    time.sleep(0.05)
        results._HOOK = hook
    elif kill_at:  # die at this write point of the second commit
        seen = []
        def hook(label):
            seen.append(label)
            if label == kill_at and seen.count(label) == 2:
                os._exit(137)
        results._HOOK = hook
    p = Problem.synthetic(48, 1.2, 0.5, seed=0)
    grid = Grid(lr=[0.1, 0.3, 0.6], momentum=[0.0, -0.3], batch_size=[1, 4])
    execute(linearized, p, grid, 1500, save_dir=folder, chunk_size=2, repeats=3, seed=1,
            extra_columns={"seed": 1}, progress=False)
""")


def wait_for(path, proc, timeout=300):
    """Wait until `path` exists (a paused writer's flag); fail if `proc` ends first."""
    t0 = time.time()
    while not Path(path).exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


def run_sweep(folder, *args, wait=True):
    cmd = [sys.executable, "-c", SWEEP, str(folder), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        out, err = proc.communicate(timeout=600)
        return proc.returncode, err
    return proc


def table(folder):
    res = results.load(folder)
    key = ["regime", "lr", "momentum", "batch_size", "seed"]
    cur = res.curves.sort_values(key + ["step"]).reset_index(drop=True)
    st = res.status.sort_values(key).reset_index(drop=True)
    assert not st.duplicated(key).any() and not cur.duplicated(key + ["step"]).any()
    assert set(map(tuple, st[key].values)) == set(map(tuple, cur[key].drop_duplicates().values))
    return cur, st


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ref")
    rc, err = run_sweep(folder)
    assert rc == 0, err
    return table(folder)


def same(a, b):
    cur_a, st_a = a
    cur_b, st_b = b
    assert len(cur_a) == len(cur_b) and len(st_a) == len(st_b) == 12
    assert np.array_equal(cur_a["loss"].values, cur_b["loss"].values, equal_nan=True)  # bitwise
    assert np.array_equal(cur_a["loss_se"].values, cur_b["loss_se"].values, equal_nan=True)
    assert (st_a["status"].values == st_b["status"].values).all()


def test_sigkill_at_random_moments_then_resume_is_bitwise_identical(tmp_path, reference):
    folder = tmp_path / "run"
    rng = random.Random(0)
    kills, mid = 0, []
    for attempt in range(40):
        proc = run_sweep(folder, wait=False)
        delay = rng.uniform(1.0, 6.0)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            parts = list((folder / "parts").glob("part-*")) if (folder / "parts").is_dir() else []
            mid.append(0 < len(parts) < 6)
        else:
            assert proc.returncode == 0, proc.stderr.read()
            if kills >= 5 and any(mid):
                break
            # finished before the kill: start again from scratch to get more kills
            import shutil
            shutil.rmtree(folder)
    assert kills >= 5 and any(mid)  # at least one kill landed in the middle of the sweep
    rc, err = run_sweep(folder)  # a final resume (nothing left, or the rest)
    assert rc == 0, err
    same(table(folder), reference)


@pytest.mark.parametrize("point", ["tmp-created", "wrote-curves.parquet", "wrote-status.parquet", "before-rename",
                                   "after-rename"])
def test_kill_between_any_two_writes(tmp_path, reference, point):
    folder = tmp_path / "run"
    rc, _ = run_sweep(folder, point)
    assert rc == 137
    leftover = list((folder / "parts").glob(".tmp-*"))
    assert len(leftover) == (0 if point == "after-rename" else 1)  # the part in flight, if it was not renamed
    res = results.load(folder)  # what was committed is whole; the interrupted part is invisible
    assert len(res.status) == (4 if point == "after-rename" else 2) and res.parts == len(res.status) // 2
    rc, err = run_sweep(folder)  # the lock of the killed writer is stale: taken over
    assert rc == 0, err
    assert list((folder / "parts").glob(".tmp-*")) == leftover  # still there: load ignores it ...
    same(table(folder), reference)
    assert results.repair(folder) == []  # ... and repair deletes it (no part is damaged)
    assert not list((folder / "parts").glob(".tmp-*"))
    same(table(folder), reference)


def test_two_writers_at_once(tmp_path, reference):
    """The first writer stops in the middle of its second commit, holding the lock; a second writer started
    then is refused before writing anything, naming the first's pid; the first then finishes the sweep."""
    folder = tmp_path / "run"
    first = run_sweep(folder, "pause:wrote-curves.parquet", wait=False)
    try:
        wait_for(f"{folder}.paused", first)
        assert json.loads((folder / "lock").read_text())["pid"] == first.pid
        parts = sorted(p.name for p in (folder / "parts").iterdir())
        rc, err = run_sweep(folder)
        assert rc != 0
        last = err.strip().splitlines()[-1]
        assert last.startswith("gfsgd.results.RunFolderLocked: ") and f"is being written by pid {first.pid} " in last
        assert sorted(p.name for p in (folder / "parts").iterdir()) == parts  # it wrote nothing
    finally:
        Path(f"{folder}.go").touch()
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert not (folder / "lock").exists()
    same(table(folder), reference)


def test_identity_refuses_a_different_command_and_overwrite_recomputes(tmp_path):
    p = Problem.synthetic(40, 1.5, 1.0, basis=None)
    grid = Grid(lr=[0.2, 0.5], momentum=[0.0], batch_size=[1, 10])
    folder = tmp_path / "run"
    execute(sd, p, grid, 50, save_dir=folder, tau=1.0, extra_columns={"tau": 1.0}, progress=False)
    # the refusal names each differing setting with its old and new values, not hashes
    for kw, shown in ((dict(n_steps=60), "(n_steps: 50 → 60)"), (dict(seed=3), "(seed: (default) → 3)"),
                      (dict(log_steps=[0, 10, 50]), "(log_steps: (default) → [0, 10, 50])"),
                      (dict(n_steps=60, tau=-1.0), "(n_steps: 50 → 60; tau: 1.0 → -1.0)"),
                      (dict(update="svag"), "(update: sgd → svag(svag_l=1))")):
        args = dict(tau=1.0, extra_columns={"tau": 1.0}, progress=False)
        n = kw.pop("n_steps", 50)
        args.update(kw)
        with pytest.raises(RunFolderError) as exc:
            execute(sd, p, grid, n, save_dir=folder, **args)
        assert f"already holds sweep 'sd tau=1.0' made with different settings {shown};" in str(exc.value)
    from gfsgd.schedules import from_name
    with pytest.raises(RunFolderError, match=r"\(schedule: constant → cosine\)"):
        execute(sd, p, grid, 50, save_dir=folder, tau=1.0, extra_columns={"tau": 1.0}, progress=False,
                schedule=from_name("cosine", 50))
    execute(sd, p, grid, 50, save_dir=tmp_path / "step", schedule=from_name("step", 50, step_size=10),
            progress=False)  # decays at step 10 (then 20, ...); step_size=20 first differs at step 10
    with pytest.raises(RunFolderError, match=r"\(schedule: step with other parameters \(its values differ from "
                                             r"step 10\)\)"):
        execute(sd, p, grid, 50, save_dir=tmp_path / "step", schedule=from_name("step", 50, step_size=20),
                progress=False)
    with pytest.raises(RunFolderError, match=r"\(problem: other data"):
        execute(sd, Problem.synthetic(40, 1.4, 1.0, basis=None), grid, 50, save_dir=folder, tau=1.0,
                extra_columns={"tau": 1.0}, progress=False)
    # an extra column is part of the sweep, and is written to both tables
    execute(sd, p, grid, 50, save_dir=folder, tau=1.0, extra_columns={"tau": 1.0, "width": 7}, progress=False)
    res = results.load(folder)
    assert (res.status["width"] == 7).sum() == 4 and (res.curves["width"] == 7).sum() == 4 * 51
    # overwrite replaces the sweep with the new command
    execute(sd, p, grid, 60, save_dir=folder, tau=1.0, extra_columns={"tau": 1.0}, progress=False, overwrite=True)
    res = results.load(folder)
    sel = res.curves[res.curves["width"].isna()]
    assert sel["step"].max() == 60 and len(res.status) == 8


def test_damaged_part_is_reported_and_repaired(tmp_path):
    p = Problem.synthetic(40, 1.5, 1.0, basis=None)
    grid = Grid(lr=[0.2, 0.5, 1.0], momentum=[0.0, 0.5], batch_size=[1])
    folder = tmp_path / "run"
    execute(sd, p, grid, 50, save_dir=folder, chunk_size=2, progress=False)
    fresh = table_sd(folder)
    part = sorted((folder / "parts").iterdir())[1]
    data = (part / "curves.parquet").read_bytes()
    (part / "curves.parquet").write_bytes(data[: len(data) // 2])  # a truncated file
    with pytest.raises(RunFolderError, match=f"damaged part.*{part.name}"):
        results.load(folder)
    assert results.repair(folder) == [part.name]
    assert len(results.load(folder).status) == 4
    execute(sd, p, grid, 50, save_dir=folder, chunk_size=2, progress=False)  # recomputes the 2 configs
    again = table_sd(folder)
    assert np.array_equal(again[0]["loss"].values, fresh[0]["loss"].values)
    # the scripts' --repair
    part = sorted((folder / "parts").glob("part-*"))[0]
    (part / "status.parquet").unlink()
    r = subprocess.run([sys.executable, str(ROOT / "train_spectral_diagonal.py"), "--N", "40", "--basis", "none",
                        "--save_dir", str(tmp_path / "cli"), "--n_steps", "20", "--no_plots", "--no_progress"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    cli_part = sorted((tmp_path / "cli" / "parts").glob("part-*"))[0]
    (cli_part / "curves.parquet").write_bytes(b"garbage")
    r = subprocess.run([sys.executable, str(ROOT / "train_spectral_diagonal.py"), "--N", "40", "--basis", "none",
                        "--save_dir", str(tmp_path / "cli"), "--n_steps", "20", "--no_plots", "--no_progress",
                        "--repair"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "1 damaged part(s) set aside" in r.stdout, r.stderr
    assert len(results.load(tmp_path / "cli").status) == 1


def table_sd(folder):
    res = results.load(folder)
    key = ["lr", "momentum", "batch_size"]
    return res.curves.sort_values(key + ["step"]).reset_index(drop=True), res.status


def test_stale_lock_is_taken_over_and_a_live_one_refuses(tmp_path):
    p = Problem.synthetic(20, 1.5, 1.0, basis=None)
    folder = tmp_path / "run"
    folder.mkdir()
    import socket
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (folder / "lock").write_text(json.dumps(dict(pid=int(dead), host=socket.gethostname(), start="x", token="t")))
    execute(sd, p, [(0.5, 0.0, 2)], 10, save_dir=folder, progress=False)
    assert not (folder / "lock").exists()
    (folder / "lock").write_text(json.dumps(dict(pid=os.getppid(), host=socket.gethostname(), start="x", token="t")))
    with pytest.raises(RunFolderLocked, match="is being written by pid"):
        execute(sd, p, [(0.6, 0.0, 2)], 10, save_dir=folder, progress=False)


def test_bad_save_dir(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    p = Problem.synthetic(20, 1.5, 1.0, basis=None)
    with pytest.raises(RunFolderError, match="is a file"):
        execute(sd, p, [(0.5, 0.0, 2)], 10, save_dir=f, progress=False)
    r = subprocess.run([sys.executable, str(ROOT / "train_spectral_diagonal.py"), "--N", "20", "--basis", "none",
                        "--save_dir", str(f)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "is a file" in r.stderr and "Traceback" not in r.stderr
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(RunFolderError, match="not writable"):
            execute(sd, p, [(0.5, 0.0, 2)], 10, save_dir=ro, progress=False)
