#!/usr/bin/env python
"""Peak resident memory of the rank path, problem_from_network(rank=k), against N.

    python benchmarks/bench_memory.py --data_root ../shared/data [--Ns 2000 5000 10000 15000] [--rank 200]
        [--width 1000] [--memory_budget BYTES] [--dtype float64] [--threads 2] [--before REV] [--json PATH]

MNIST (the first N of a stratified draw, seed 0), the paper's MLP (784 -> width -> 1, ReLU, NTK
parameterisation, seed 0), problem_from_network(model, X, y, rank=k) on the CPU with its default memory_budget
(1 GiB) unless --memory_budget is given. Each N runs in a fresh subprocess: the data and the model are loaded,
a warm-up call on 400 points pages in torch's code, then the process's peak resident size is reset (Linux
/proc/self/clear_refs) and the rank path runs; the
"increase" is its peak (VmHWM) minus the resident size just before the call, the "peak RSS" the process's
absolute peak including Python, torch, the data and the model. For comparison: the bytes of the dense
[N, N] float64 kernel (what rank=None forms, before its eigendecomposition).

--before REV also measures the package at git revision REV (checked out into a temporary worktree) in the
same way, alternating with the working tree. --json PATH writes (or, with --merge, adds to) a JSON of
everything printed, one entry per (tree, N), each with its command line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6  # decimal megabytes (the dense kernel at N = 15,000 is 1.8 GB)


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # bytes
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args):
    sys.path.insert(0, args.tree)
    import gc

    import torch

    import gfsgd
    from gfsgd.data import load_dataset
    from gfsgd.models import MLP
    torch.set_num_threads(args.threads)
    dt = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    ds = load_dataset("mnist", args.N, seed=0, root=args.data_root)
    model = MLP(ds.X.shape[1], width=args.width, depth=2, seed=0)
    X, y = torch.as_tensor(ds.X).to(dt), torch.as_tensor(ds.y).to(dt)
    # warm-up on 400 points: pages in the code of torch.func, BLAS and LAPACK (hundreds of MB of shared
    # libraries become resident on first use) so that the increase below is the rank path's data alone
    gfsgd.problem_from_network(model, X[:400], y[:400], rank=20, dtype=dt, device="cpu")
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # the peak from here on is the rank path's
        f.write("5")
    rss0 = _status("VmRSS")
    t0 = time.perf_counter()
    p = gfsgd.problem_from_network(model, X, y, rank=args.rank, dtype=dt, device="cpu",
                                   memory_budget=args.memory_budget)
    wall = time.perf_counter() - t0
    peak = _status("VmHWM")
    spec = p.meta["spectrum"]
    print(json.dumps(dict(
        N=args.N, rank=args.rank, width=args.width, dtype=args.dtype, seconds=wall, rss_before_mb=rss0 / MB,
        peak_rss_mb=peak / MB, increase_mb=(peak - rss0) / MB, dense_kernel_mb=args.N ** 2 * 8 / MB,
        memory_budget=args.memory_budget, passes=spec["passes"], block_size=spec["block_size"],
        operator=p.meta.get("operator"), eigensolver_memory=spec.get("memory"), lambda_k=spec["lambda_k"],
        torch=torch.__version__, threads=torch.get_num_threads())))


def measure(tree, N, args):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", "--tree", str(tree), "--N", str(N),
           "--rank", str(args.rank), "--width", str(args.width), "--dtype", args.dtype, "--threads",
           str(args.threads)]
    if args.data_root:
        cmd += ["--data_root", args.data_root]
    if args.memory_budget is not None:
        cmd += ["--memory_budget", str(args.memory_budget)]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise SystemExit(f"measurement at N={N} in {tree} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process_seconds"] = time.perf_counter() - t
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--Ns", type=int, nargs="+", default=[2000, 5000, 10000, 15000])
    ap.add_argument("--N", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, default=200)
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--memory_budget", type=float, default=None, help="bytes (default: the rank path's, 1 GiB)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data_root", default=os.environ.get("GFSGD_DATA_ROOT"))
    ap.add_argument("--before", default=None, help="also measure the package at this git revision")
    ap.add_argument("--json", default=None, help="write the measurements to this JSON file")
    ap.add_argument("--merge", action="store_true", help="add to the entries already in --json (other Ns)")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tree", default=str(ROOT), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        return child(args)
    trees, tmp = [("after", ROOT)], None
    if args.before:
        tmp = tempfile.mkdtemp(prefix="bench_memory_")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", tmp, args.before], check=True,
                       capture_output=True)
        trees.insert(0, ("before", Path(tmp)))
    rows = []
    try:
        for N in args.Ns:
            for label, tree in trees:
                r = measure(tree, N, args)
                r["tree"] = label if label == "after" else f"before ({args.before})"
                r["command"] = " ".join(["python", "benchmarks/bench_memory.py"] + sys.argv[1:])
                rows.append(r)
                print(f"{r['tree']:>18}  N={N:>6}  peak RSS {r['peak_rss_mb']:7.0f} MB  increase "
                      f"{r['increase_mb']:7.0f} MB  (dense float64 kernel {r['dense_kernel_mb']:6.0f} MB)  "
                      f"{r['passes']} passes, block {r['block_size']}, {r['seconds']:.0f} s", flush=True)
    finally:
        if tmp:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tmp], capture_output=True)
    if args.json:
        path = Path(args.json)
        old = json.loads(path.read_text()) if args.merge and path.exists() else {}
        keep = [e for e in old.get("runs", []) if (e["tree"], e["N"]) not in {(r["tree"], r["N"]) for r in rows}]
        runs = sorted(keep + rows, key=lambda e: (e["tree"] != "after", e["N"]))
        out = dict(benchmark="bench_memory", machine=f"{os.cpu_count()}-core CPU ({platform.machine()}), shared "
                   f"with other jobs", python=platform.python_version(), runs=runs,
                   by_N={str(e["N"]): e for e in runs if e["tree"] == "after"},
                   before_by_N={str(e["N"]): e for e in runs if e["tree"] != "after"})
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
