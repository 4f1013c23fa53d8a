"""What a benchmark stores with --json PATH: its printed numbers and how they were obtained.

    from _json_out import write_json          # a benchmark's directory is on sys.path when it runs
    write_json(path, "bench_x", results, started=t0)

The JSON holds the benchmark's name, the command line, the wall time of the whole run, torch's version and
thread count, the machine (CPU count, platform; the machine is shared with other jobs) with its load average
when the run ended, the date and `results`, the numbers the benchmark prints. tests/test_bench_readme.py
checks the README's quoted numbers against these files.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path


def environment() -> dict:
    import torch
    return dict(torch=torch.__version__, threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
                machine=f"{os.cpu_count()}-core CPU ({platform.machine()}), shared with other jobs",
                load_average=[round(x, 2) for x in os.getloadavg()],  # 1, 5, 15 min, when the JSON is written
                python=platform.python_version())


def write_json(path, name: str, results, *, started: float, argv=None) -> Path:
    """Write {benchmark, command, wall_seconds, torch, threads, machine, date, results} to path."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).name if argv else f"{name}.py"
    out = dict(benchmark=name, command=" ".join(["python", f"benchmarks/{script}"] + list(argv[1:])),
               wall_seconds=time.perf_counter() - started, **environment(),
               date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), results=results)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
    return path
