"""python -m gfsgd.theory: what the theory predicts for a problem and a batch size, as a table.

    python -m gfsgd.theory --nu 1.5 --kappa 1 --N 10000 --batch_size 10 --budget 10000
    python -m gfsgd.theory --problem kernel.pt --batch_size 32
    python -m gfsgd.theory --dataset mnist --N 60000 --rank 1000 --data_root ../shared/data --ntk_dtype float32

Prints lambda_crit, the critical lr for a few momenta, the phase (fitted (nu, kappa) for a saved kernel),
the predicted loss exponent, and the optimal (alpha, beta) for the step budget against the best beta = 0.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ..builder import add_model_args, add_problem_args, problem_from_args
from ..errors import InputError


def _parser():
    p = argparse.ArgumentParser(prog="python -m gfsgd.theory", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = add_problem_args(p, title="problem (synthetic power law, saved kernel (--problem), dataset through an MLP)")
    src.add_argument("--seed", type=int, default=0, help="--dataset: subsample and (without --model_seed) init seed")
    src.add_argument("--device", default="auto", help="--dataset: 'auto', 'cpu' or 'cuda' for the NTK")
    add_model_args(p, network=False)
    p.set_defaults(N=10000, basis="none")
    p.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=10, help="batch size b")
    p.add_argument("--tau", type=float, default=1.0, help="SE parameter (1 mean field, -1 Gaussian features)")
    p.add_argument("--budget", type=int, default=1000, help="step budget T for the optimal (alpha, beta)")
    p.add_argument("--momentum", "--momenta", dest="momenta", type=float, nargs="+", default=[-0.5, 0.0, 0.5, 0.9],
                   help="momenta at which to print the critical lr")
    p.add_argument("--method", choices=["auto", "renewal", "asymptotic"], default="auto",
                   help="predictor for the optimum: renewal (the exact SD loss at T, by theory.loss_at: O(configs x N) "
                        "by a contour integral, the renewal solver where needed), asymptotic (cheap); "
                        "auto picks renewal when N x T <= 2e7")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    from . import (critical_batch_size, critical_lr, fit_power_law, lambda_crit, loss_exponent,
                   optimal_hyperparameters, phase)

    try:
        problem = problem_from_args(args, progress=True)
    except (InputError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if "spectrum" in problem.meta:
        from ..spectrum import spectrum_summary
        print(spectrum_summary(problem))
    N, b, tau = problem.N, args.batch_size, args.tau
    if not 1 <= b <= N:
        raise SystemExit(f"--batch-size must be in [1, N={N}], got {b}")
    rows = [("problem", problem.name), ("N", f"{N}"), ("batch size b", f"{b}"), ("tau", f"{tau:g}"),
            ("L_0", f"{problem.loss0:.4g}"), ("lambda_crit", f"{lambda_crit(problem, tau):.4g}"),
            ("critical batch size b* (beta = 0)", f"{float(critical_batch_size(problem, 0.0, tau)):.4g}")]
    # a network's problem: also the learning rate in the network's own units, lr_nn = alpha N / lambda_max_raw
    scale = N / problem.lambda_max_raw if ((args.dataset and args.dataset != "synthetic") or problem.lambda_max_raw != 1.0) else None
    nn_units = (lambda a: f", lr_nn = {a * scale:.4g}") if scale else (lambda a: "")
    ac = critical_lr(problem, np.asarray(args.momenta), b, tau=tau)
    for m, a in zip(args.momenta, ac):
        rows.append((f"critical lr at beta = {m:+.2f}", f"{a:.4g}   (alpha_eff = {a / (1 - m):.4g}{nn_units(a)})"))
    if args.kernel or (args.dataset and args.dataset != "synthetic"):
        try:
            fit = fit_power_law(problem)
            nu, kappa = fit.nu, fit.kappa
            rows.append(("fitted nu", f"{fit.nu:.3f}  [{fit.nu_ci[0]:.3f}, {fit.nu_ci[1]:.3f}]"))
            rows.append(("fitted kappa", f"{fit.kappa:.3f}  [{fit.kappa_ci[0]:.3f}, {fit.kappa_ci[1]:.3f}]"))
        except ValueError as exc:
            nu = kappa = None
            rows.append(("power-law fit", f"failed: {exc}"))
    else:
        nu, kappa = args.nu, args.kappa
    if nu is not None and nu > 0 and kappa > 0:
        rows.append(("phase", phase(nu, kappa)))
        rows.append(("loss exponent xi (L_t ~ t^-xi)", f"{loss_exponent(nu, kappa):.4g}"))
    method = args.method
    if method == "auto":
        method = "renewal" if N * args.budget <= 2e7 else "asymptotic"
    t0 = time.perf_counter()
    opt = optimal_hyperparameters(problem, b, horizon=args.budget, tau=tau, method=method)
    rows.append((f"optimal (alpha, beta) at T = {args.budget} [{method}]",
                 f"alpha* = {opt.lr:.4g}{nn_units(opt.lr)}, beta* = {opt.momentum:+.3f}, loss {opt.loss:.4g}"))
    if float(opt.momentum) >= 0.95 - 1e-12 or float(opt.momentum) <= -0.9 + 1e-12:
        rows.append(("warning", f"beta* = {float(opt.momentum):+.3f} lies on the edge of the searched momenta "
                                f"[-0.9, 0.95]: the optimum may lie beyond (optimal_hyperparameters(momenta=...))"))
    rows.append(("best at beta = 0", f"alpha = {opt.lr_beta0:.4g}, loss {opt.loss_beta0:.4g}  "
                                     f"(momentum gains {100 * opt.gain:.2f}%)"))
    rows.append(("search time", f"{time.perf_counter() - t0:.1f} s"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
