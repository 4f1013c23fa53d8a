"""Benchmark: theory.critical_lr against the SD simulation on a fine (alpha, beta) grid.

For each batch size (and tau), every cell of an (alpha, beta) grid is predicted divergent or not by
gfsgd.theory (alpha >= critical_lr(beta, b), i.e. a mode unstable or U(1) >= 1) and simulated with the SD regime
for n_steps; a cell "blew up" when SD flags it diverged (loss non-finite or above 1e6 L_0). Prints the mismatch
count, split into cells adjacent to the predicted boundary (expected: slow divergence near U(1) = 1 may need more
than n_steps to reach 1e6 L_0) and the rest (expected 0), and the ratio alpha / alpha_crit of every mismatch.

    python benchmarks/bench_critical_lr.py                 # 32 x 32 grid, N = 500, b in {1, 10}, 10^4 steps
    python benchmarks/bench_critical_lr.py --n-grid 60 --batch-sizes 1 10 100 --tau -1
    python benchmarks/bench_critical_lr.py --json benchmarks/results/critical_lr.json   # also store the rows
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gfsgd import Problem  # noqa: E402
from gfsgd import theory as th  # noqa: E402
from gfsgd.regimes import spectral_diagonal as sd  # noqa: E402
from gfsgd.theory.stability import boundary_adjacent  # noqa: E402
from _json_out import write_json  # noqa: E402




def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--N", type=int, default=500)
    ap.add_argument("--nu", type=float, default=1.5)
    ap.add_argument("--kappa", type=float, default=1.0)
    ap.add_argument("--n-grid", type=int, default=32, help="grid points per axis (alpha log-spaced, beta linear)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--tau", type=float, default=1.0)
    ap.add_argument("--n-steps", type=int, default=10_000)
    ap.add_argument("--json", default=None, metavar="PATH", help="also write what is printed to this JSON file")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    rows = []

    p = Problem.synthetic(args.N, nu=args.nu, kappa=args.kappa, basis=None)
    alphas = np.geomspace(0.02, 4.0, args.n_grid)
    betas = np.linspace(-0.95, 0.95, args.n_grid)
    A, B = np.meshgrid(alphas, betas, indexing="ij")
    print(f"problem {p.name}, grid {args.n_grid} x {args.n_grid} (alpha in [0.02, 4], beta in [-0.95, 0.95]), "
          f"tau = {args.tau}, {args.n_steps} SD steps")
    print(f"{'b':>5} {'cells':>6} {'pred div':>9} {'SD div':>7} {'mismatch':>9} {'adjacent':>9} {'elsewhere':>10} "
          f"{'theory s':>9} {'SD s':>7}")
    total_else = 0
    for b in args.batch_sizes:
        t0 = time.perf_counter()
        a_crit = th.critical_lr(p, betas, b, tau=args.tau)
        pred = A >= a_crit[None, :]
        t_th = time.perf_counter() - t0
        configs = list(zip(A.ravel(), B.ravel(), [b] * A.size))
        t0 = time.perf_counter()
        ref = sd.run(p, configs, args.n_steps, tau=args.tau, log_steps=[0, args.n_steps], progress=False)
        t_sd = time.perf_counter() - t0
        blew = np.array([s == "diverged" for s in ref.status]).reshape(A.shape)
        mism = pred != blew
        adj = boundary_adjacent(pred)
        n_else = int((mism & ~adj).sum())
        total_else += n_else
        print(f"{b:>5} {A.size:>6} {int(pred.sum()):>9} {int(blew.sum()):>7} {int(mism.sum()):>9} "
              f"{int((mism & adj).sum()):>9} {n_else:>10} {t_th:>9.3f} {t_sd:>7.1f}")
        ratios = [float(A[i, j] / a_crit[j]) for i, j in zip(*np.nonzero(mism))]
        rows.append(dict(b=b, cells=int(A.size), predicted_divergent=int(pred.sum()), sd_diverged=int(blew.sum()),
                         mismatches=int(mism.sum()), adjacent=int((mism & adj).sum()), elsewhere=n_else,
                         theory_seconds=t_th, sd_seconds=t_sd,
                         mismatch_ratio_min=min(ratios) if ratios else None,
                         mismatch_ratio_max=max(ratios) if ratios else None,
                         mismatch_predicted_divergent=int((mism & pred).sum())))
        for i, j in zip(*np.nonzero(mism)):
            kind = "adjacent" if adj[i, j] else "ELSEWHERE"
            print(f"      mismatch ({kind}): alpha = {A[i, j]:.4g}, beta = {B[i, j]:+.3f}, "
                  f"alpha / alpha_crit = {A[i, j] / a_crit[j]:.4f}, predicted "
                  f"{'divergent' if pred[i, j] else 'convergent'}, SD {'diverged' if blew[i, j] else 'ok'}")
    print(f"mismatches away from the boundary: {total_else}")
    if args.json:
        write_json(args.json, "bench_critical_lr", dict(N=args.N, nu=args.nu, kappa=args.kappa, n_grid=args.n_grid,
                                                        tau=args.tau, n_steps=args.n_steps, rows=rows,
                                                        elsewhere_total=total_else), started=started)
    return 0 if total_else == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
