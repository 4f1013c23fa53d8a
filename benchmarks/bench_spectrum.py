#!/usr/bin/env python
"""Benchmark of the full-dataset path (issue: full datasets without an N x N matrix).

Parts (each prints its numbers and writes benchmarks/results/spectrum_<part>.json; run them one at a time, they
use every core):

  dense8000   MNIST N = 8,000, the paper's MLP (width 1000): dense NTK + eigh (what problem_from_network does)
              against kernel_operator + top_eigenpairs(k = 300), in float64 and float32, in the same run;
              the top-k eigenvalues against the dense eigh (relative error).
  mnist60k    all of MNIST, N = 60,000, width 1000: top 1000 eigenpairs in float32 (--dtype float64 too),
              wall time and peak RSS; saves the rank-1000 Problem (for validate_full_mnist.py).
  nn          the nn regime per config-step against a plain torch loop (torch.optim.SGD, one config, the same
              model and batch size), in the same run.

Usage:
    python benchmarks/bench_spectrum.py dense8000 --data_root ../shared/data
    python benchmarks/bench_spectrum.py mnist60k --data_root ../shared/data [--dtype float32] [--rank 1000]
    python benchmarks/bench_spectrum.py nn --data_root ../shared/data
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from gfsgd.data import load_dataset
from gfsgd.models import MLP
from gfsgd.ntk import empirical_ntk, kernel_operator, network_output
from gfsgd.spectrum import problem_from_operator, top_eigenpairs

OUT = Path(__file__).parent / "results"


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux: kB


def dense8000(args):
    ds = load_dataset("mnist", args.N, seed=0, root=args.data_root)
    model = MLP(ds.X.shape[1], width=args.width, seed=0)
    out = dict(N=args.N, k=args.k, width=args.width)
    for dt in ("float64", "float32"):
        t = time.perf_counter()
        K = empirical_ntk(model, ds.X, device="cpu", dtype=dt)
        t_ntk = time.perf_counter() - t
        lam_d = torch.linalg.eigh(K)[0].flip(0)  # in the kernel's own dtype: the fair dense baseline
        t_dense = time.perf_counter() - t
        if dt == "float32":  # accuracy against the float64 eigh of the same (float32-formed) kernel
            lam_d = torch.linalg.eigvalsh(K.double()).flip(0)
        lam_d = lam_d.double()
        del K
        t = time.perf_counter()
        op = kernel_operator(model, ds.X, device="cpu", dtype=dt)
        ep = top_eigenpairs(op, args.k)
        t_op = time.perf_counter() - t
        rel = ((ep.eigvals.double() - lam_d[:args.k]).abs() / lam_d[:args.k]).max().item()
        out[dt] = dict(dense_ntk_s=t_ntk, dense_ntk_eigh_s=t_dense, operator_topk_s=t_op, speedup=t_dense / t_op,
                       passes=ep.passes, basis=ep.basis, tol=ep.tol, max_rel_err_vs_dense=rel,
                       worst_residual=ep.info["worst"])
        print(f"{dt}: dense NTK {t_ntk:.1f} s + eigh = {t_dense:.1f} s | operator + top-{args.k}: {t_op:.1f} s "
              f"({ep.passes} passes, basis {ep.basis}) | speed-up {t_dense / t_op:.2f}x | "
              f"max relative eigenvalue error vs dense eigh ({dt} kernel) {rel:.2e}")
    return out


def mnist60k(args):
    t0 = time.perf_counter()
    ds = load_dataset("mnist", args.N, seed=0, root=args.data_root)
    model = MLP(ds.X.shape[1], width=args.width, seed=0)
    t_load = time.perf_counter() - t0
    t = time.perf_counter()
    op = kernel_operator(model, ds.X, device=args.device, dtype=args.dtype, memory_budget=args.memory_budget)
    d0 = (network_output(model, ds.X, dtype=torch.float64, device="cpu") - ds.y.double())
    t_feat = time.perf_counter() - t
    t = time.perf_counter()
    problem = problem_from_operator(op, d0, rank=args.rank, tol=args.tol, progress=True,
                                    name=f"mnist(N={args.N}), MLP(width={args.width}), rank {args.rank}",
                                    meta=dict(dataset="mnist", N=args.N, width=args.width, model_seed=0,
                                              data_seed=0, dtype=args.dtype))
    t_eig = time.perf_counter() - t
    spec = problem.meta["spectrum"]
    out = dict(N=args.N, rank=args.rank, width=args.width, dtype=args.dtype, device=args.device,
               load_s=t_load, features_s=t_feat, eigen_s=t_eig, total_s=time.perf_counter() - t0,
               passes=spec["passes"], block_size=spec["block_size"], tol=spec["residuals"]["tol"],
               worst_relative_residual=spec["residuals"]["relative_max"], lambda_max_raw=problem.lambda_max_raw,
               lambda_k=spec["lambda_k"], tail={k: v for k, v in spec["tail"].items() if k != "constraints"},
               peak_rss_gb=peak_rss_gb(), pass_seconds=op.seconds / max(op.passes, 1))
    if args.save:
        problem.save(args.save)
        out["problem_file"] = str(args.save)
    print(json.dumps({k: v for k, v in out.items() if k != "tail"}, indent=1))
    print("tail:", {k: out["tail"][k] for k in ("nu", "nu_ci", "kappa", "kappa_ci", "jump", "warnings")})
    return out


def nn_vs_plain(args):
    from gfsgd.regimes import nn
    from gfsgd.ntk import NetworkProblem
    ds = load_dataset("mnist", args.N, seed=0, root=args.data_root)
    model = MLP(ds.X.shape[1], width=args.width, seed=0)
    X, y = ds.X.float(), ds.y.float()
    steps, b, lr = args.steps, args.batch_size, 0.5
    net = NetworkProblem(model=model, X=X, y=y, lambda_max_raw=float(args.N))  # lr_nn = alpha (scale 1)
    out = dict(N=args.N, width=args.width, batch_size=b, steps=steps, dtype="float32", rounds=[])
    for r in range(args.rounds):
        # plain torch loop: one config, torch.optim.SGD, the same batch sampler (uniform b-subset per step)
        m = MLP(ds.X.shape[1], width=args.width, seed=0).float()
        opt = torch.optim.SGD(m.parameters(), lr=lr * 1e-3, momentum=0.0)
        gen = torch.Generator().manual_seed(r)
        def full_loss():  # the full training loss once at the start and once at the end, as the nn regime logs
            with torch.no_grad():
                return sum(float(((m(X[s:s + 4096]) - y[s:s + 4096]) ** 2).sum()) for s in range(0, args.N, 4096))

        t = time.perf_counter()
        full_loss()
        for _ in range(steps):
            idx = torch.randperm(args.N, generator=gen)[:b]
            opt.zero_grad(set_to_none=True)
            loss = 0.5 * ((m(X[idx]) - y[idx]) ** 2).mean()
            loss.backward()
            opt.step()
        full_loss()
        t_plain = (time.perf_counter() - t) / steps
        t = time.perf_counter()
        nn.run(net, [(lr * 1e-3, 0.0, b)], steps, log_steps=[0, steps], dtype="float32", device="cpu",
               progress=False, seed=r)
        t_nn = (time.perf_counter() - t) / steps
        out["rounds"].append(dict(plain_ms=1e3 * t_plain, nn_ms=1e3 * t_nn, ratio=t_nn / t_plain))
        print(f"round {r}: plain torch loop {1e3 * t_plain:.2f} ms/step, nn regime {1e3 * t_nn:.2f} ms/step, "
              f"ratio {t_nn / t_plain:.2f}")
    out["median_ratio"] = float(np.median([x["ratio"] for x in out["rounds"]]))
    print(f"median ratio nn / plain: {out['median_ratio']:.2f}")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=["dense8000", "mnist60k", "nn"])
    p.add_argument("--data_root", default=None)
    p.add_argument("--N", type=int, default=None)
    p.add_argument("--k", type=int, default=300, help="dense8000: eigenpairs")
    p.add_argument("--rank", type=int, default=1000, help="mnist60k: eigenpairs")
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tol", type=float, default=1e-8)
    p.add_argument("--memory_budget", type=float, default=2 ** 30)
    p.add_argument("--save", default=None, help="mnist60k: save the rank-k Problem here")
    p.add_argument("--steps", type=int, default=300, help="nn: steps per timing")
    p.add_argument("--batch_size", type=int, default=100, help="nn: batch size")
    p.add_argument("--rounds", type=int, default=3, help="nn: paired rounds")
    p.add_argument("--tag", default="")
    args = p.parse_args()
    if args.N is None:
        args.N = dict(dense8000=8000, mnist60k=60000, nn=60000)[args.part]
    torch.set_num_threads(torch.get_num_threads())
    res = dict(dense8000=dense8000, mnist60k=mnist60k, nn=nn_vs_plain)[args.part](args)
    res.update(threads=torch.get_num_threads(), torch=torch.__version__, peak_rss_gb=peak_rss_gb())
    OUT.mkdir(exist_ok=True)
    name = f"spectrum_{args.part}{('_' + args.tag) if args.tag else ''}.json"
    (OUT / name).write_text(json.dumps(res, indent=1, default=float))
    print(f"written {OUT / name}")


if __name__ == "__main__":
    main()
