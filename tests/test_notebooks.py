"""Every notebook runs top to bottom in quick mode (GFSGD_QUICK=1) from a fresh kernel, and its closing
assertion cell passes. Each notebook is executed from a copy, with cwd = notebooks/ (so relative paths behave as
in Jupyter); figures go to a temporary folder; the committed notebooks and figures are never modified."""
import copy
import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
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


def test_notebooks_are_present():
    assert set(NAMES) >= {"RegimeComparison.ipynb", "BudgetIndependence.ipynb", "NegativeMomentum.ipynb",
                          "PhaseDiagram.ipynb", "SGD_generating_funcs.ipynb"}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_quick_mode(name, kernel_env, tmp_path, monkeypatch):
    import os
    monkeypatch.setenv("GFSGD_QUICK", "1")
    monkeypatch.setenv("GFSGD_FIG_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [str(kernel_env), os.environ.get("JUPYTER_PATH")])))
    original = (NOTEBOOKS / name).read_bytes()
    nb = copy.deepcopy(nbformat.read(NOTEBOOKS / name, as_version=4))
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError (with the failing cell and traceback) on any error
    nbformat.write(nb, tmp_path / name)  # the executed copy, for inspection
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "all assertions passed" in outputs, "the closing assertion cell did not run"
    assert (NOTEBOOKS / name).read_bytes() == original, "the committed notebook was modified"
    assert list((tmp_path / "figures").glob("*.png")), "the notebook saved no figure"
