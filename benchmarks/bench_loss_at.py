#!/usr/bin/env python
"""Benchmark of theory.loss_at (L_t from a contour integral of L(z)) against theory.loss_curve (the renewal
solver, which steps through every t), in one run on the same machine.

  map     the (alpha, beta) map: 50 momenta in [-0.9, 0.95] x 50 learning rates in (0.02, 0.98) x alpha_crit(beta),
          b = 10, N = 1000 (synthetic power law nu = 1.3, kappa = 0.3), horizon 10^4: 2,500 configs.
  long    one config (alpha = 0.02, beta = 0.3, b = 10) at horizon 10^6 (slow enough that L_t is still 1e-3 L_0
          there, where the renewal value can be trusted).
  phases  the route taken (fraction contour / renewal, and the contour's node count) and the speed-up against
          loss_curve across phases: a signal-dominated problem (nu = 1.3, kappa = 0.3) and a noise-dominated one
          (nu = 1.5, kappa = 3), N = 1000, b = 10, horizon 10^4, each on three cells of 15 x 15 configs (beta in
          [-0.9, -0.05] and in [0.05, 0.95] with alpha in (0.02, 0.9) x alpha_crit, and the edge: beta in
          [-0.9, 0.95], alpha in (0.95, 0.999) x alpha_crit), plus the noise-dominated 50 x 50 map of `map`.
          Results go to benchmarks/results/loss_at_phases.json.

Each prints the wall times, their ratio and the largest relative difference where the renewal value can be
trusted (L_t > 1e-9 L_0: the renewal solver's error is about 1e-16 L_0 in absolute terms). map and long go to
benchmarks/results/loss_at.json.

Usage: python benchmarks/bench_loss_at.py [map] [long] [phases]
"""
from __future__ import annotations

import json
import os
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
    rel = np.abs(np.asarray(val) / ref - 1)
    st = np.asarray(info["status"])
    on_contour = trusted & (st == "contour")
    nodes = np.asarray(info["nodes"])[st == "contour"]
    return dict(loss_at_s=t_at, loss_curve_s=t_curve, speedup=t_curve / t_at,
                max_rel_diff=float(rel[trusted].max()) if trusted.any() else None, trusted=int(trusted.sum()),
                max_rel_diff_contour=float(rel[on_contour].max()) if on_contour.any() else None,
                max_error_estimate=float(np.nanmax(info["error"])) if (st == "contour").any() else None,
                configs=int(np.size(val)), status={s: int((st == s).sum()) for s in np.unique(st)},
                contour_fraction=float((st == "contour").mean()), renewal_fraction=float((st == "renewal").mean()),
                nodes={int(n): int((nodes == n).sum()) for n in np.unique(nodes)})


def phases(out):
    """Route and speed-up across phases (module docstring); returns the JSON record."""
    rec = dict(N=1000, b=10, horizon=10 ** 4, threads=torch.get_num_threads(), torch=torch.__version__,
               tol=1e-8, load_average_start=os.getloadavg(), cases={})
    T, b, n = 10 ** 4, 10, 15
    cells = {"beta<0": (np.linspace(-0.9, -0.05, n), np.geomspace(0.02, 0.9, n)),
             "beta>0": (np.linspace(0.05, 0.95, n), np.geomspace(0.02, 0.9, n)),
             "edge": (np.linspace(-0.9, 0.95, n), np.linspace(0.95, 0.999, n))}
    for phase, (nu, kappa) in (("signal", (1.3, 0.3)), ("noise", (1.5, 3.0))):
        p = Problem.synthetic(1000, nu, kappa, basis=None)
        assert theory.phase(nu, kappa) == phase
        theory.loss_at(p, [0.1, 0.2], 0.0, b, 100)  # warm-up
        grids = dict(cells)
        if phase == "noise":
            grids["map"] = (np.linspace(-0.9, 0.95, 50), np.linspace(0.02, 0.98, 50))
        for name, (betas, fr) in grids.items():
            crit = theory.critical_lr(p, betas, b)
            a = crit[:, None] * fr[None, :]
            B = np.broadcast_to(betas[:, None], a.shape)
            r = compare(p, a, B, b, T)
            r.update(nu=nu, kappa=kappa, beta=[float(betas.min()), float(betas.max())],
                     lr_over_crit=[float(fr.min()), float(fr.max())])
            rec["cases"][f"{phase} {name}"] = r
            print(f"{phase:6s} {name:6s} ({r['configs']:4d} configs): contour {r['contour_fraction']:.3f}, renewal "
                  f"{r['renewal_fraction']:.3f}, nodes {r['nodes']}; loss_at {r['loss_at_s']:.2f} s, loss_curve "
                  f"{r['loss_curve_s']:.1f} s, {r['speedup']:.0f}x; max rel. diff (contour) "
                  f"{r['max_rel_diff_contour']}", flush=True)
    rec["load_average_end"] = os.getloadavg()  # other jobs on the machine slow both sides alike
    out.mkdir(exist_ok=True)
    (out / "loss_at_phases.json").write_text(json.dumps(rec, indent=1))
    print(f"written {out / 'loss_at_phases.json'}")


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
    if "map" in parts or "long" in parts:
        OUT.mkdir(exist_ok=True)
        (OUT / "loss_at.json").write_text(json.dumps(out, indent=1))
        print(f"written {OUT / 'loss_at.json'}")
    if "phases" in parts:
        phases(OUT)


if __name__ == "__main__":
    main(sys.argv[1:] or ["map", "long", "phases"])
