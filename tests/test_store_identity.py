"""What a run folder records about who wrote it: the gfsgd version in each sweep's identity (a resume across
versions is refused, naming both, unless allowed), the script that made it (another script is refused), and the
invocations (only those that passed the checks)."""
import json

import pytest

import gfsgd
from gfsgd import Grid, Problem, cli, execute, results
from gfsgd import version as gfsgd_version
from gfsgd.regimes import spectral_diagonal as sd
from gfsgd.results import RunFolderError, identity_hash

P = Problem.synthetic(30, 1.5, 1.0, basis=None)
GRID = Grid(lr=[0.2, 0.5], momentum=[0.0], batch_size=[1, 10])


def sweep(folder, **kw):
    return execute(sd, P, GRID, 30, save_dir=folder, chunk_size=2, progress=False, **kw)


def parts(folder):
    return sorted(p.name for p in (folder / "parts").glob("part-*"))


def test_the_identity_records_the_version_and_a_resume_across_versions_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    sweep(folder)
    old = gfsgd.__version__
    rec = results.RunFolder(folder).sweeps()["sd"]
    assert rec["fields"]["version"] == old
    before = parts(folder)
    monkeypatch.setattr(gfsgd_version, "__version__", "99.0.0")
    with pytest.raises(RunFolderError) as exc:
        sweep(folder)
    msg = str(exc.value)
    assert f"made by gfsgd {old}; this is gfsgd 99.0.0" in msg and "--allow_version_change" in msg
    assert "allow_version_change=True" in msg and "\n" not in msg
    assert parts(folder) == before
    sweep(folder, allow_version_change=True)  # resumed: the finished parts are kept, nothing recomputed
    assert parts(folder) == before
    rec = results.RunFolder(folder).sweeps()["sd"]
    assert rec["fields"]["version"] == "99.0.0" and rec["earlier_versions"] == [old]
    sweep(folder)  # now recorded at 99.0.0: no flag needed
    monkeypatch.setattr(gfsgd_version, "__version__", "100.0.0")
    sweep(folder, overwrite=True)  # --overwrite recomputes the sweep instead
    assert not set(parts(folder)) & set(before) and len(parts(folder)) == 2
    # a version change together with a setting: the settings are named (and the versions), --overwrite the way out
    monkeypatch.setattr(gfsgd_version, "__version__", "101.0.0")
    with pytest.raises(RunFolderError, match=r"different settings \(n_steps: 30 → 40; version: 100.0.0 → 101.0.0\)"):
        execute(sd, P, GRID, 40, save_dir=folder, progress=False, allow_version_change=True)


@pytest.mark.parametrize("recorded", ["missing", 1])
def test_a_folder_recorded_before_versions_were_kept(tmp_path, recorded):
    """Folders written before this change hold version=1 (a constant) or no version: a version change too."""
    folder = tmp_path / "run"
    sweep(folder)
    f = results.RunFolder(folder)
    sweeps = f.sweeps()
    fields = sweeps["sd"]["fields"]
    if recorded == "missing":
        del fields["version"]
    else:
        fields["version"] = recorded
    sweeps["sd"]["hash"] = identity_hash(fields)
    (folder / "sweeps.json").write_text(json.dumps(sweeps))
    with pytest.raises(RunFolderError, match=r"made by gfsgd \(unknown: recorded before run folders kept the gfsgd "
                                             rf"version\); this is gfsgd {gfsgd.__version__},"):
        sweep(folder)
    before = parts(folder)
    sweep(folder, allow_version_change=True)
    assert parts(folder) == before and f.sweeps()["sd"]["fields"]["version"] == gfsgd.__version__


ARGV = ["--N", "30", "--basis", "none", "--lr", "0.5", "--batch_size", "1", "4", "--no_plots", "--no_progress"]


def run_cli(folder, *extra, regimes=("sd",), script="train_spectral_diagonal", n_steps=20):
    return cli.main(list(regimes), script=script, description="test",
                    argv=ARGV + ["--n_steps", str(n_steps), "--save_dir", str(folder), *extra])


def invocations(folder):
    f = folder / "invocations.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.is_file() else []


def test_cli_allow_version_change(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    run_cli(folder)
    old = gfsgd_version.__version__
    monkeypatch.setattr(gfsgd_version, "__version__", "99.0.0")
    with pytest.raises(SystemExit) as exc:
        run_cli(folder)
    msg = str(exc.value.code)
    assert msg.startswith("error: ") and "\n" not in msg
    assert f"made by gfsgd {old}; this is gfsgd 99.0.0" in msg and "Pass --allow_version_change" in msg
    assert invocations(folder) == []  # the refused invocation left no record
    run_cli(folder, "--allow_version_change")
    assert [i["args"]["allow_version_change"] for i in invocations(folder)] == [True]


def test_cli_a_refused_invocation_is_not_recorded(tmp_path):
    folder = tmp_path / "run"
    run_cli(folder)
    cfg = json.loads((folder / "config.json").read_text())
    with pytest.raises(SystemExit, match="different settings"):
        run_cli(folder, n_steps=30)
    assert invocations(folder) == [] and json.loads((folder / "config.json").read_text()) == cfg
    run_cli(folder)  # the same command again: resumed (nothing to do), and recorded
    assert [i["args"]["n_steps"] for i in invocations(folder)] == [20]
    assert json.loads((folder / "config.json").read_text()) == cfg


def test_cli_another_script_into_the_same_folder_is_refused(tmp_path):
    """train_linearized into a folder made by train_full was accepted, and config.json described only
    train_full. Now it is refused, naming both; with --overwrite config.json records both."""
    folder = tmp_path / "run"
    basis = ("--basis", "random")  # full and linearized need the eigenvectors
    run_cli(folder, *basis, regimes=("full",), script="train_full")
    cfg = json.loads((folder / "config.json").read_text())
    with pytest.raises(SystemExit) as exc:
        run_cli(folder, *basis, regimes=("linearized",), script="train_linearized")
    msg = str(exc.value.code)
    assert msg.startswith(f"error: this folder ({str(folder)!r}) was written by train_full; train_linearized would "
                          f"add its sweeps to it") and "\n" not in msg
    assert "another --save_dir" in msg and "--overwrite" in msg
    assert json.loads((folder / "config.json").read_text()) == cfg and invocations(folder) == []
    assert set(results.load(folder).status["regime"]) == {"full"}
    run_cli(folder, *basis, "--overwrite", regimes=("linearized",), script="train_linearized")
    new = json.loads((folder / "config.json").read_text())
    assert new["script"] == "train_linearized" and [c["script"] for c in new["earlier_configs"]] == ["train_full"]
    assert set(results.load(folder).status["regime"]) == {"full", "linearized"}
    run_cli(folder, *basis, regimes=("linearized",), script="train_linearized")  # now its folder: a resume
    assert [i["script"] for i in invocations(folder)] == ["train_linearized"]


def test_another_script_is_refused_in_the_library(tmp_path):
    f = results.RunFolder(tmp_path / "run")
    f.write_config(dict(script="train_full"))
    g = results.RunFolder(tmp_path / "run")
    g.write_config(dict(script="train_nn"), keep_existing=True)  # checked when the first sweep is recorded
    with pytest.raises(RunFolderError, match="was written by train_full; train_nn would add"):
        sweep(g)
    assert not (tmp_path / "run" / "sweeps.json").exists() and not (tmp_path / "run" / "invocations.jsonl").exists()
    sweep(g, overwrite=True)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["script"] == "train_nn" and cfg["earlier_configs"][0]["script"] == "train_full"
