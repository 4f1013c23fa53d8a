"""The notebooks: jupytext percent scripts (the source) paired with executed .ipynb files.

- every script runs top to bottom at the quick (CI) sizes in a fresh kernel, from notebooks/ as cwd, with
  QUICK = True injected after its "parameters" cell (papermill's convention), and its closing assertion cell
  passes; figures go to a temporary folder and the committed files are never modified;
- `jupytext --sync` and `jupytext --to notebook --update` leave every committed pair byte for byte unchanged;
- the committed .ipynb were executed at paper scale (QUICK=False in their first output, with the wall time);
- the scripts compile and pass pyflakes (when installed).
"""
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
jupytext = pytest.importorskip("jupytext")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
import run_notebooks  # noqa: E402

NAMES = run_notebooks.NAMES
CELL_TIMEOUT = 300  # seconds per cell


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A "python3" kernelspec that runs this interpreter (sys.executable), first on JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (gfsgd tests)", "language": "python"}))
    return root


def test_every_notebook_is_a_pair():
    scripts = sorted(p.stem for p in NOTEBOOKS.glob("*.py") if p.stem != "run_notebooks")
    notebooks = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert scripts == notebooks == sorted(NAMES)
    for name in NAMES:
        text = (NOTEBOOKS / f"{name}.py").read_text()
        assert "formats: ipynb,py:percent" in text, f"{name}.py is not paired (jupytext header)"
        nb = jupytext.read(NOTEBOOKS / f"{name}.py")
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "QUICK = False" in tagged[0].source, f"{name}: one parameters cell, paper scale"


@pytest.mark.parametrize("name", NAMES)
def test_jupytext_leaves_the_committed_pair_unchanged(name, tmp_path):
    from jupytext.cli import jupytext as jupytext_cli
    for ext in (".py", ".ipynb"):
        shutil.copy(NOTEBOOKS / f"{name}{ext}", tmp_path / f"{name}{ext}")
    original = {ext: (tmp_path / f"{name}{ext}").read_bytes() for ext in (".py", ".ipynb")}
    jupytext_cli(["--sync", str(tmp_path / f"{name}.py")])
    jupytext_cli(["--to", "notebook", "--update", str(tmp_path / f"{name}.py")])
    for ext in (".py", ".ipynb"):
        assert (tmp_path / f"{name}{ext}").read_bytes() == original[ext], f"{name}{ext} changed under jupytext"


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_ran_at_paper_scale(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") is not None for c in code)
    first = next(c for c in code if c.get("outputs"))
    text = "".join(o.get("text", "") for o in first.outputs)
    assert "[run_notebooks.py] executed at paper scale in" in text and "QUICK=False" in text, text[:500]
    outputs = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
    assert "all assertions passed" in outputs
    assert not any(c.get("metadata", {}).get("tags") == ["injected-parameters"] for c in code)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_shows_every_figure_it_saved(name):
    """Every figure a committed notebook saved under notebooks/figures/ also appears inline in it."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    images = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    saved = sorted((NOTEBOOKS / "figures").glob(f"{name}_*.png"))
    assert saved and len(images) == len(saved), f"{len(saved)} figures saved, {len(images)} shown inline"


@pytest.mark.parametrize("name", NAMES)
def test_script_compiles_and_lints(name):
    source = (NOTEBOOKS / f"{name}.py").read_text()
    compile(source, f"{name}.py", "exec")
    if importlib.util.find_spec("pyflakes") is None:
        pytest.skip("pyflakes is not installed (pip install pyflakes): the lint half of this test did not run")
    from pyflakes.api import check
    from pyflakes.reporter import Reporter
    import io
    out = io.StringIO()
    assert check(source, f"{name}.py", Reporter(out, out)) == 0, out.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_quick_mode(name, kernel_env, tmp_path, monkeypatch):
    import os
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [str(kernel_env), os.environ.get("JUPYTER_PATH")])))
    committed = {ext: (NOTEBOOKS / f"{name}{ext}").read_bytes() for ext in (".py", ".ipynb")}
    nb = run_notebooks.read(name, quick=True, fig_dir=str(tmp_path / "figures"))
    run_notebooks.execute(nb, timeout=CELL_TIMEOUT)  # raises CellExecutionError (cell + traceback) on any error
    nbformat.write(nb, tmp_path / f"{name}.ipynb")  # the executed copy, for inspection
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "QUICK=True" in outputs and "all assertions passed" in outputs, "the closing assertion cell did not run"
    for ext, data in committed.items():
        assert (NOTEBOOKS / f"{name}{ext}").read_bytes() == data, f"the committed {name}{ext} was modified"
    saved = list((tmp_path / "figures").glob("*.png"))
    assert saved, "the notebook saved no figure"
    # every saved figure is also shown inline (a reader on GitHub or in the docs sees it)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == len(saved), f"{len(saved)} figures saved, {len(images)} shown inline"
