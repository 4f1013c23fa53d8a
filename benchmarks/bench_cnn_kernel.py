#!/usr/bin/env python
"""The C-output kernel of a convolutional network: gfsgd.ntk.empirical_ntk (blocked Jacobian path, bounded by
memory_budget) against a plain torch.func reference, vmap(jacrev) for the whole Jacobian [N, C, P] and one
einsum for Theta [N C, N C], in one run (issue 23).

Network: the shipped gfsgd.models.CNN (28 x 28 x 1 inputs, channels 8 and 16, hidden 64, C = 10 outputs),
P = 52,138 parameters; Gaussian inputs (the cost does not depend on the data). Every measurement runs in a fresh
subprocess so that its peak resident memory (ru_maxrss) is its own: we report the wall time of the kernel call,
the process peak and the increase over the resident size just before the call. The two kernels are checked to
agree through Theta Z for a fixed random Z [N C, 8] (no N C x N C file is written).

    python benchmarks/bench_cnn_kernel.py                                   # N = 2,000, C = 10, float32
    python benchmarks/bench_cnn_kernel.py --N 500 --dtype float64
    python benchmarks/bench_cnn_kernel.py --json benchmarks/results/cnn_kernel.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import peak_rss_mb, rss_mb  # noqa: E402


def _kernel(method, model, X, dt, budget):
    from torch.func import functional_call, jacrev, vmap

    from gfsgd.ntk import empirical_ntk
    if method == "reference":
        import torch
        params = {k: v.detach().to(dt) for k, v in model.named_parameters()}

        def f(p, x):  # one example -> its C outputs
            return functional_call(model, p, (x.unsqueeze(0),)).reshape(-1)

        J = vmap(jacrev(f), in_dims=(None, 0))(params, X)  # {name: [N, C, *shape]}: the whole Jacobian
        N, C = X.shape[0], model.outputs
        K = sum(torch.einsum("iap,jcp->iajc", j.reshape(N, C, -1), j.reshape(N, C, -1)) for j in J.values())
        del J
        return K.reshape(N * C, N * C)
    return empirical_ntk(model, X, dtype=dt, device="cpu", memory_budget=budget)


def child(method, N, C, dtype, threads, budget_mb):
    import torch

    from gfsgd.models import CNN
    torch.set_num_threads(threads)
    dt = {"float64": torch.float64, "float32": torch.float32}[dtype]
    model = CNN(outputs=C, seed=0, dtype=dt)
    X = torch.randn(N, 784, generator=torch.Generator().manual_seed(0)).to(dt)
    _kernel(method, model, X[:4], dt, budget_mb * 2 ** 20)  # warm-up (the first torch.func call)
    rss0 = rss_mb()
    t0 = time.perf_counter()
    K = _kernel(method, model, X, dt, budget_mb * 2 ** 20)
    wall = time.perf_counter() - t0
    peak = peak_rss_mb()
    Z = torch.randn(K.shape[0], 8, generator=torch.Generator().manual_seed(1)).to(dt)
    probe = (K @ Z).double()
    print(json.dumps(dict(method=method, N=N, C=C, dtype=dtype, threads=threads, wall_s=wall, peak_rss_mb=peak,
                          peak_increase_mb=peak - rss0, rss_before_mb=rss0, kernel_mb=K.numel() * K.element_size()
                          / 2 ** 20, params=sum(p.numel() for p in model.parameters()),
                          memory_budget_mb=budget_mb if method == "gfsgd" else None,
                          probe=probe.flatten().tolist())))


def measure(method, args, dtype):
    cmd = [sys.executable, __file__, "--_child", method, str(args.N), str(args.C), dtype, str(args.threads),
           str(args.memory_budget_mb)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return dict(method=method, N=args.N, dtype=dtype, error=(out.stderr.strip().splitlines() or ["killed"])[-1],
                    returncode=out.returncode)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--N", type=int, default=2000, help="examples (the kernel is N C x N C)")
    ap.add_argument("--C", type=int, default=10, help="outputs per example")
    ap.add_argument("--dtype", choices=["float64", "float32"], nargs="+", default=["float32"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory_budget_mb", type=int, default=512, help="gfsgd's memory_budget, in MB")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the rows and how they were obtained here")
    ap.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        m, n, c, dt, th, mb = args._child[:6]
        return child(m, int(n), int(c), dt, int(th), int(mb))
    import numpy as np
    started = time.perf_counter()
    rows = []
    for dtype in args.dtype:
        pair = {m: measure(m, args, dtype) for m in ("reference", "gfsgd")}
        for r in pair.values():
            probe = r.pop("probe", None)
            r["_probe"] = probe
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "_probe"}), flush=True)
        ref, ours = pair["reference"], pair["gfsgd"]
        if "error" not in ref and "error" not in ours:
            a, b = np.asarray(ref["_probe"]), np.asarray(ours["_probe"])
            summary = dict(N=args.N, C=args.C, dtype=dtype, rel_diff_probe=float(np.linalg.norm(a - b) /
                                                                                   np.linalg.norm(a)),
                           speedup=ref["wall_s"] / ours["wall_s"],
                           memory_ratio_peak=ref["peak_rss_mb"] / ours["peak_rss_mb"],
                           memory_ratio_increase=ref["peak_increase_mb"] / max(ours["peak_increase_mb"], 1e-9))
            rows.append(summary)
            print(json.dumps(summary), flush=True)
    for r in rows:
        r.pop("_probe", None)
    print("\n| method | N | C | dtype | wall (s) | peak RSS (MB) | peak increase (MB) | kernel (MB) |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "wall_s" in r:
            print(f"| {r['method']} | {r['N']} | {r['C']} | {r['dtype']} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                  f"{r['peak_increase_mb']:.0f} | {r['kernel_mb']:.0f} |")
    if args.json:
        from _json_out import write_json
        write_json(args.json, "bench_cnn_kernel", dict(threads=args.threads, rows=rows), started=started)
    return rows


if __name__ == "__main__":
    main()
