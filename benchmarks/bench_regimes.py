#!/usr/bin/env python
"""Speed of the vectorised kernel regimes against per-config baselines measured in the same run.

    python benchmarks/bench_regimes.py [--device auto] [--quick]

Prints, per regime, the time per config-step of gfsgd's implementation and of the baseline, and their
ratio (the targets of issue 2 are printed beside them):
- full, N = 1000: baseline = a loop over configs in the data basis with five N x N matmuls a step
  (K C, C K, K C K, K diag(C) K, K J); target ratio >= 2 (ceiling about 2.5). Also the step time divided by
  the time of two N x N matmuls measured here (target < 1.3).
- SD, 50 x 50 (lr, momentum) grid, N = 1000: baseline = a Python loop over configs running the C, J, P
  recursion on [N] vectors; target >= 30.
- linearized, same grid, b = 10: baseline = a Python loop over configs, each drawing its batch with randperm
  and computing (N/b) K[:, B] d[B]; target >= 20.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gfsgd import Grid, Problem  # noqa: E402
from gfsgd.regimes import full, linearized, spectral_diagonal as sd  # noqa: E402
from gfsgd.device import resolve_device  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def bench_full(N, G, n_steps, device):
    p = Problem.synthetic(N, 1.5, 1.0, seed=0).to(device)
    configs = [(0.5 + 0.1 * i, 0.1 * (i % 3), 10) for i in range(G)]
    K, d0 = p.K, p.d0
    A = torch.randn(N, N, dtype=torch.float64, device=device)
    t_mm = timed(lambda: [A @ K for _ in range(4)], device, repeat=3) / 4

    def baseline():
        for lr, beta, b in configs:
            gamma = (N - b) / ((N - 1) * b)
            C = torch.outer(d0, d0)
            J = torch.zeros_like(C)
            P = torch.zeros_like(C)
            for _ in range(n_steps):
                KC = K @ C                                   # 1
                CK = C @ K                                   # 2
                KCK = KC @ K                                 # 3
                KdK = (K * torch.diagonal(C)) @ K            # 4
                KJ = K @ J                                   # 5
                Pn = lr ** 2 * (gamma * N * KdK + (1 - gamma) * KCK) - lr * beta * (KJ + KJ.T) + beta ** 2 * P
                Cn = C - lr * (KC + CK) + beta * (J + J.T) + Pn
                J = beta * J - lr * CK + Pn
                C, P = Cn, Pn
                float(torch.trace(C))

    t_base = timed(baseline, device) / (G * n_steps)
    full.run(p, configs[:1], 2, device=device, progress=False)  # warm-up
    t_ours = timed(lambda: full.run(p, configs, n_steps, device=device, progress=False), device) / (G * n_steps)
    return dict(regime="full", N=N, configs=G, steps=n_steps, baseline_s=t_base, ours_s=t_ours,
                ratio=t_base / t_ours, target=">= 2", two_matmuls_s=2 * t_mm, step_over_two_matmuls=t_ours / (2 * t_mm))


def grid_2500():
    return Grid(lr=torch.linspace(0.05, 1.9, 50).tolist(), momentum=torch.linspace(-0.9, 0.9, 50).tolist(),
                batch_size=10).configs


def bench_sd(N, n_steps, n_loop, device):
    p = Problem.synthetic(N, 1.5, 1.0, basis=None).to(device)
    configs = grid_2500()
    lam, c = p.eigvals, p.c

    def baseline():
        for lr, beta, b in configs[:n_loop]:
            gamma, tau = (N - b) / ((N - 1) * b), 1.0
            C, J, P = c.clone(), torch.zeros_like(c), torch.zeros_like(c)
            for _ in range(n_steps):
                Pn = (lr * lam) ** 2 * ((1 - gamma * tau) * C + gamma * C.sum()) - 2 * lr * beta * lam * J \
                    + beta ** 2 * P
                C, J, P = C - 2 * lr * lam * C + 2 * beta * J + Pn, beta * J - lr * lam * C + Pn, Pn
                float(C.sum())

    t_base = timed(baseline, device) / (n_loop * n_steps)
    sd.run(p, configs[:8], 2, device=device, progress=False)
    t_ours = timed(lambda: sd.run(p, configs, n_steps, device=device, progress=False), device, repeat=2) \
        / (len(configs) * n_steps)
    return dict(regime="sd", N=N, configs=len(configs), steps=n_steps, baseline_s=t_base, ours_s=t_ours,
                ratio=t_base / t_ours, target=">= 30")


def bench_linearized(N, n_steps, n_loop, device):
    p = Problem.synthetic(N, 1.5, 1.0, seed=0).to(device)
    configs = grid_2500()
    K, d0 = p.K, p.d0
    gen = torch.Generator(device=device).manual_seed(0)

    def baseline():
        for lr, beta, b in configs[:n_loop]:
            d, v = d0.clone(), torch.zeros_like(d0)
            for _ in range(n_steps):
                B = torch.randperm(N, generator=gen, device=device)[:b]
                g = (N / b) * (K[:, B] @ d[B])
                v = -lr * g + beta * v
                d = d + v
                float(d @ d)

    t_base = timed(baseline, device) / (n_loop * n_steps)
    linearized.run(p, configs[:8], 2, device=device, progress=False)
    t_ours = timed(lambda: linearized.run(p, configs, n_steps, device=device, progress=False), device,
                   repeat=2) / (len(configs) * n_steps)
    return dict(regime="linearized", N=N, configs=len(configs), steps=n_steps, baseline_s=t_base, ours_s=t_ours,
                ratio=t_base / t_ours, target=">= 20")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="fewer steps (noisier numbers)")
    ap.add_argument("--only", nargs="*", default=["full", "sd", "linearized"])
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    q = args.quick
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = []
    if "full" in args.only:
        rows.append(bench_full(1000, 4, 5 if q else 20, device))
    if "sd" in args.only:
        rows.append(bench_sd(1000, 50 if q else 200, 40 if q else 100, device))
    if "linearized" in args.only:
        rows.append(bench_linearized(1000, 50 if q else 200, 40 if q else 100, device))
    for r in rows:
        line = (f"{r['regime']:>10}  N={r['N']}  configs={r['configs']}  steps={r['steps']}:  "
                f"baseline {r['baseline_s'] * 1e6:9.2f} us/config-step,  gfsgd {r['ours_s'] * 1e6:9.2f} "
                f"us/config-step,  ratio {r['ratio']:6.1f}x  (target {r['target']})")
        if "two_matmuls_s" in r:
            line += (f"\n{'':>12}two N x N matmuls {r['two_matmuls_s'] * 1e3:.1f} ms; full step / two matmuls = "
                     f"{r['step_over_two_matmuls']:.2f} (target < 1.3)")
        print(line)
    if args.json:
        import json
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
