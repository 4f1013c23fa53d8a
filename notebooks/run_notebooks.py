"""Execute the notebooks from their jupytext scripts and write the paired .ipynb with outputs.

The scripts notebooks/<Name>.py (jupytext percent format, paired with <Name>.ipynb) are the source of truth.

    python notebooks/run_notebooks.py                      # every notebook at paper scale (the committed outputs)
    python notebooks/run_notebooks.py RegimeComparison     # one notebook
    python notebooks/run_notebooks.py --quick --out /tmp/nb   # the CI sizes, written elsewhere

Each notebook runs in a fresh kernel with notebooks/ as its working directory. Parameters are injected after the
cell tagged "parameters" (papermill's convention: a cell tagged "injected-parameters"), here only QUICK = True
with --quick, and FIG_DIR with --fig_dir. The wall time of the run is written at the top of the first code
output, so every committed notebook states its parameters (printed by its setup cell) and how long it ran.
Without --out the .ipynb next to the script is overwritten (jupytext.write keeps the pairing metadata, so
`jupytext --sync` leaves the pair unchanged).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ["RegimeComparison", "BudgetIndependence", "NegativeMomentum", "PhaseDiagram", "SGD_generating_funcs",
         "SDEValidity", "Schedules", "BeyondLinearisation"]


def read(name: str, quick: bool = False, fig_dir: str | None = None):
    """The notebook of notebooks/<name>.py, with the injected-parameters cell when anything is injected."""
    import jupytext
    from nbformat.v4 import new_code_cell

    nb = jupytext.read(HERE / f"{name}.py")
    lines = (["QUICK = True"] if quick else []) + ([f"FIG_DIR = {str(fig_dir)!r}"] if fig_dir else [])
    if lines:
        at = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
        if at is None:
            raise ValueError(f"{name}.py has no cell tagged 'parameters' to inject QUICK/FIG_DIR after")
        cell = new_code_cell("# injected parameters\n" + "\n".join(lines), metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(at + 1, cell)
    return nb


def execute(nb, *, timeout: int | None = None, kernel_name: str = "python3"):
    """Run every cell in a fresh kernel (cwd = notebooks/); drops execution timestamps; returns the wall time."""
    from nbclient import NotebookClient

    t0 = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                   resources={"metadata": {"path": str(HERE)}}).execute()
    wall = time.time() - t0
    for cell in nb.cells:  # reproducible files: no execution timestamps
        cell.get("metadata", {}).pop("execution", None)
    return wall


def stamp(nb, wall: float, quick: bool) -> None:
    """Write the run's wall time (and scale) at the top of the first code cell's output."""
    from nbformat.v4 import new_output

    scale = "quick (CI) sizes" if quick else "paper scale"
    text = (f"[run_notebooks.py] executed at {scale} in {wall:.0f} s ({wall / 60:.1f} min) on "
            f"{platform.machine()} with {_cores()} CPU cores, {time.strftime('%Y-%m-%d')}\n")
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("outputs"):
            cell.outputs.insert(0, new_output("stream", name="stdout", text=text))
            return


def _cores() -> int:
    import os
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def main(argv=None) -> int:
    import jupytext

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", default=NAMES, help=f"notebooks to run (default: all of {', '.join(NAMES)})")
    ap.add_argument("--quick", action="store_true", help="inject QUICK = True (the CI sizes)")
    ap.add_argument("--out", default=None, help="folder for the executed .ipynb (default: next to the scripts)")
    ap.add_argument("--fig_dir", default=None, help="inject FIG_DIR (default: the notebooks' own, figures/)")
    args = ap.parse_args(argv)
    from nbclient.exceptions import CellExecutionError

    names = [Path(n).stem for n in args.names]
    for name in names:
        if name not in NAMES:
            ap.error(f"unknown notebook {name!r}; choose from {', '.join(NAMES)}")
    out = Path(args.out) if args.out else HERE
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:  # one failure does not stop the others; the failed notebook is kept for inspection
        nb = read(name, args.quick, args.fig_dir)
        print(f"{name}: running ({'quick' if args.quick else 'paper scale'}) ...", flush=True)
        try:
            wall = execute(nb)
        except CellExecutionError as exc:
            failed.append(name)
            target = out / f"{name}.failed.ipynb"
            jupytext.write(nb, target)
            print(f"{name}: FAILED, executed cells kept in {target}\n{str(exc)[-1500:]}", flush=True)
            continue
        stamp(nb, wall, args.quick)
        jupytext.write(nb, out / f"{name}.ipynb")
        print(f"{name}: {wall:.0f} s -> {out / f'{name}.ipynb'}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
