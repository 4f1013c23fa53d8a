#!/usr/bin/env python
"""Empirical-NTK benchmark: gfsgd.ntk.empirical_ntk (structured path) against a Jacobian-contraction
baseline that materialises the full Jacobian J [N, P] with vmap(jacrev) and forms J J^T, in one run.

Network: the paper's, MLP(784, width=1000, depth=2, ReLU), P = 786,001 parameters; Gaussian inputs (the
cost does not depend on the data). Every measurement runs in a fresh subprocess so that its peak resident
memory (ru_maxrss) is its own; we report the wall time of the kernel call, the process peak and the peak
increase over the resident size just before the call. The two kernels are checked to agree.

    python benchmarks/bench_ntk.py                         # baseline and structured at N=1000, structured at 10000
    python benchmarks/bench_ntk.py --Ns 1000 2000 --baseline_Ns 1000 --dtype float32 --threads 2
    python benchmarks/bench_ntk.py --dtype float64 float32 --json benchmarks/results/ntk.json   # both, stored
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import peak_rss_mb, rss_mb  # noqa: E402


def child(method: str, N: int, dtype: str, threads: int, save: str | None, repeats: int = 1):
    import torch

    from gfsgd.models import paper_network
    from gfsgd.ntk import empirical_ntk

    torch.set_num_threads(threads)
    dt = {"float64": torch.float64, "float32": torch.float32}[dtype]
    model = paper_network(seed=0)
    X = torch.randn(N, 784, generator=torch.Generator().manual_seed(0)).to(dt)
    if method == "structured":
        empirical_ntk(model, X[:8], dtype=dt, device="cpu")  # warm-up (first torch.func call)
    rss0 = rss_mb()
    times, K = [], None
    for _ in range(max(1, repeats) if method != "baseline" else 1):
        K = None  # free the previous kernel first: the peak is that of one call
        t0 = time.perf_counter()
        K = _kernel(method, model, X, N, dt)
        times.append(time.perf_counter() - t0)
    wall = min(times)
    peak = peak_rss_mb()
    if save:
        torch.save(K, save)
    print(json.dumps(dict(method=method, N=N, dtype=dtype, threads=threads, wall_s=wall,
                          wall_median_s=sorted(times)[len(times) // 2], runs=len(times), peak_rss_mb=peak,
                          peak_increase_mb=peak - rss0, rss_before_mb=rss0,
                          params=sum(p.numel() for p in model.parameters()))))


def _kernel(method, model, X, N, dt):
    from torch.func import functional_call, jacrev, vmap

    from gfsgd.ntk import empirical_ntk
    if method == "baseline":
        params = {k: v.detach().to(dt) for k, v in model.named_parameters()}

        def f(p, x):
            return functional_call(model, p, (x.unsqueeze(0),)).reshape(())

        J = vmap(jacrev(f), in_dims=(None, 0))(params, X)  # {name: [N, *shape]}: the full Jacobian
        K = sum(j.reshape(N, -1) @ j.reshape(N, -1).T for j in J.values())
        del J
    else:
        K = empirical_ntk(model, X, method=method, dtype=dt, device="cpu")
    return K


def measure(method, N, dtype, threads, save=None, repeats=1):
    cmd = [sys.executable, __file__, "--_child", method, str(N), dtype, str(threads), str(repeats)] + \
        ([save] if save else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return dict(method=method, N=N, dtype=dtype, error=out.stderr.strip().splitlines()[-1:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--Ns", type=int, nargs="+", default=[1000, 10000], help="N for the structured path")
    ap.add_argument("--baseline_Ns", type=int, nargs="*", default=[1000], help="N for the baseline")
    ap.add_argument("--dtype", choices=["float64", "float32"], nargs="+", default=["float64"],
                    help="one or more dtypes, measured one after the other")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5,
                    help="timed calls of the structured path (wall = the fastest; the median is reported too)")
    ap.add_argument("--out", default=None, help="write the measurements (the rows only) as JSON here")
    ap.add_argument("--json", default=None, metavar="PATH",
                    help="write the rows with the command line, torch version, threads and wall time here")
    ap.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        m, n, dt, th, rep = args._child[:5]
        return child(m, int(n), dt, int(th), args._child[5] if len(args._child) > 5 else None, int(rep))
    import torch
    started = time.perf_counter()
    rows = []
    for dtype in args.dtype:
        rows += _run_dtype(args, dtype, torch)
    print("\n| method | N | dtype | threads | wall (s), best | median | peak RSS (MB) | peak increase (MB) |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "wall_s" in r:
            print(f"| {r['method']} | {r['N']} | {r['dtype']} | {r['threads']} | {r['wall_s']:.3f} | "
                  f"{r['wall_median_s']:.3f} | {r['peak_rss_mb']:.0f} | {r['peak_increase_mb']:.0f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    if args.json:
        from _json_out import write_json
        write_json(args.json, "bench_ntk", dict(threads=args.threads, repeats=args.repeats, rows=rows),
                   started=started)
    return rows


def _run_dtype(args, dtype, torch):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for N in sorted(set(args.Ns) | set(args.baseline_Ns)):
            saved = {}
            for method in ("baseline", "structured"):
                if (method == "baseline") != (N in args.baseline_Ns) and method == "baseline":
                    continue
                if method == "structured" and N not in args.Ns and N not in args.baseline_Ns:
                    continue
                path = os.path.join(tmp, f"{method}-{N}.pt") if N in args.baseline_Ns else None
                r = measure(method, N, dtype, args.threads, path, args.repeats)
                rows.append(r)
                print(json.dumps(r), flush=True)
                if path and "error" not in r:
                    saved[method] = path
            if len(saved) == 2:
                Kb, Ks = torch.load(saved["baseline"]), torch.load(saved["structured"])
                err = ((Kb - Ks).norm() / Kb.norm()).item()
                b = next(r for r in rows if r["method"] == "baseline" and r["N"] == N)
                s = next(r for r in rows if r["method"] == "structured" and r["N"] == N)
                summary = dict(N=N, dtype=dtype, rel_diff=err, speedup=b["wall_s"] / s["wall_s"],
                               memory_ratio_peak=b["peak_rss_mb"] / s["peak_rss_mb"],
                               memory_ratio_increase=b["peak_increase_mb"] / max(s["peak_increase_mb"], 1e-9))
                rows.append(summary)
                print(json.dumps(summary), flush=True)
    return rows


if __name__ == "__main__":
    main()
