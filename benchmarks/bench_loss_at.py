#!/usr/bin/env python
"""Benchmark of theory.loss_at (L_t from a contour integral of L(z)) against theory.loss_curve (the renewal
solver, which steps through every t), in one run on the same machine.

  map    the (alpha, beta) map: 50 momenta in [-0.9, 0.95] x 50 learning rates in (0.02, 0.98) x alpha_crit(beta),
         b = 10, N = 1000 (synthetic power law nu = 1.3, kappa = 0.3), horizon 10^4: 2,500 configs.
  long   one config (alpha = 0.02, beta = 0.3, b = 10) at horizon 10^6 (slow enough that L_t is still 1e-3 L_0
         there, where the renewal value can be trusted).

Both print the wall times, their ratio and the largest relative difference where the renewal value can be
trusted (L_t > 1e-9 L_0: the renewal solver's error is about 1e-16 L_0 in absolute terms). Results go to
benchmarks/results/loss_at.json.

Usage: python benchmarks/bench_loss_at.py [map] [long]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gfsgd import Problem, theory

OUT = Path(__file__).parent / "results"


def compare(p, a, beta, b, t):
    t0 = time.perf_counter()
    val, info = theory.loss_at(p, a, beta, b, t, return_info=True)
    t_at = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = theory.loss_curve(p, a, beta, b, t, log_steps=[t])[..., 0]
    t_curve = time.perf_counter() - t0
    trusted = np.asarray(ref > 1e-9 * p.loss0)
    rel = np.abs(np.asarray(val) / ref - 1)[trusted]
    st = np.asarray(info["status"]).reshape(-1)
    return dict(loss_at_s=t_at, loss_curve_s=t_curve, speedup=t_curve / t_at,
                max_rel_diff=float(rel.max()) if rel.size else None, trusted=int(trusted.sum()),
                configs=int(np.size(val)), status={s: int((st == s).sum()) for s in np.unique(st)})


def main(parts):
    torch.set_num_threads(2)
    p = Problem.synthetic(1000, 1.3, 0.3, basis=None)
    out = dict(N=1000, nu=1.3, kappa=0.3, threads=torch.get_num_threads(), torch=torch.__version__)
    if "map" in parts:
        beta = np.linspace(-0.9, 0.95, 50)
        crit = theory.critical_lr(p, beta, 10)
        a = crit[:, None] * np.linspace(0.02, 0.98, 50)[None, :]
        B = np.broadcast_to(beta[:, None], a.shape)
        theory.loss_at(p, a[:2, :2], B[:2, :2], 10, 100)  # warm-up (imports, thread pools)
        r = compare(p, a, B, 10, 10 ** 4)
        out["map"] = r
        print(f"map (2,500 configs, horizon 1e4): loss_at {r['loss_at_s']:.2f} s, loss_curve {r['loss_curve_s']:.1f} s,"
              f" {r['speedup']:.0f}x; max relative difference {r['max_rel_diff']:.2e} over {r['trusted']} configs; "
              f"status {r['status']}", flush=True)
    if "long" in parts:
        r = compare(p, 0.02, 0.3, 10, 10 ** 6)
        out["long"] = r
        print(f"long (1 config, horizon 1e6): loss_at {r['loss_at_s']:.3f} s, loss_curve {r['loss_curve_s']:.1f} s, "
              f"{r['speedup']:.0f}x; max relative difference {r['max_rel_diff']}; status {r['status']}", flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "loss_at.json").write_text(json.dumps(out, indent=1))
    print(f"written {OUT / 'loss_at.json'}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["map", "long"])
