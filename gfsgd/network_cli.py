"""The driver of the network scripts (train_nn.py, train_4_regimes.py): dataset and model options, the
network's Problem (its empirical NTK at initialisation), and the run of the chosen regimes into one folder.

The shared options (grid, schedule, run) come from gfsgd.cli.build_parser(..., network=True).
"""
from __future__ import annotations

import argparse
import sys
import time as _time
from pathlib import Path

from .cli import (add_model_args, build_parser, dataset_problem, grid_from_args, guarded_run, open_folder,
                  refuse_rank, save_extra_plots, schedule_from_args, summarize)
from .configs import check_configs
from .errors import InputError
from .spectrum import spectrum_summary
from .problem import Problem

__all__ = ["NETWORK_REGIMES", "add_network_args", "network_problem_from_args", "log_steps_from_args",
           "network_main"]

NETWORK_REGIMES = ("nn", "linearized", "sd", "full")


def add_network_args(p: argparse.ArgumentParser) -> None:
    """Dataset and model options of the network scripts (the problem is the network's empirical NTK).
    The parser must come from build_parser(..., network=True), which holds --dataset, --N and --rank."""
    add_model_args(p, network=True)
    p.add_argument("--loss", choices=["mse", "cross_entropy"], default="mse",
                   help="the training loss: mse (0.5 (f - y)^2; exact in every regime) or cross_entropy (softmax over "
                        "the C outputs, with --target onehot; the nn and linearized regimes)")
    p.add_argument("--n_log", type=int, default=0,
                   help="record the loss at about this many log-spaced steps; 0: every step for the kernel "
                        "regimes, and for nn (whose full training loss costs a pass over the data) every step up "
                        "to 100, then 100 per decade")


def network_problem_from_args(args) -> Problem:
    """Dataset -> MLP -> problem_from_network (the returned Problem carries .network for the nn regime)."""
    return dataset_problem(args)


def log_steps_from_args(args):
    import numpy as np
    if not getattr(args, "n_log", 0):
        return None
    pts = np.unique(np.round(np.logspace(0, np.log10(max(args.n_steps, 1)), args.n_log)).astype(int))
    return np.unique(np.concatenate([[0], pts, [args.n_steps]]))


def network_main(regimes, script: str, description: str, argv=None, choose_regimes: bool = False,
                 defaults: dict | None = None) -> Path:
    """Entry point of train_nn.py (regimes=["nn"]) and train_4_regimes.py (choose_regimes=True).

    defaults: the script's own argument defaults (e.g. its grid), overriding the shared ones."""
    regimes = list(regimes)
    p = build_parser(description, NETWORK_REGIMES if choose_regimes else regimes, network=True)
    add_network_args(p)
    p.set_defaults(**(defaults or {}))
    if choose_regimes:
        p.add_argument("--regimes", nargs="+", choices=list(NETWORK_REGIMES), default=regimes,
                       help="regimes to run (nn: the network; linearized: sampled, --repeats averaged; "
                            "sd: once per --tau; full: exact second moments)")
    args = p.parse_args(argv)
    regimes = list(dict.fromkeys(args.regimes)) if choose_regimes else regimes
    refuse_rank(args, regimes)
    if args.loss != "mse":
        exact = [r for r in regimes if r in ("full", "sd")]
        if exact:
            raise SystemExit(f"error: --loss {args.loss} runs in the nn and linearized regimes; {exact} are the exact "
                             f"second moments of the squared loss (choose --regimes nn linearized)")
        if args.target != "onehot":
            raise SystemExit(f"error: --loss {args.loss} needs C outputs per example: add --target onehot")
    try:
        check_configs(grid_from_args(args), args.N)
        schedule_from_args(args)
        t0 = _time.perf_counter()
        problem = network_problem_from_args(args)
        t_problem = _time.perf_counter() - t0
    except (InputError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    folder = open_folder(args, script)
    folder.write_config(dict(script=script, regimes=regimes, argv=sys.argv[1:] if argv is None else list(argv),
                             args=vars(args), problem=problem.name, problem_meta=problem.meta, N=problem.N,
                             loss0=problem.loss0, lambda_max_raw=problem.lambda_max_raw,
                             lr_nn_per_alpha=problem.N / problem.lambda_max_raw, ntk_seconds=t_problem),
                       keep_existing=True)
    print(f"{problem.name}: N={problem.N}, L0={problem.loss0:.4g}, lambda_max(K_emp)={problem.lambda_max_raw:.4g}, "
          f"lr_nn = {problem.N / problem.lambda_max_raw:.4g} * lr  (NTK + eigendecomposition {t_problem:.1f} s)")
    if "spectrum" in problem.meta:
        print(spectrum_summary(problem))
    log_steps = log_steps_from_args(args)
    kw = {name: dict(log_steps=log_steps, **({} if args.loss == "mse" else dict(loss=args.loss))) for name in regimes}
    kw["nn"] = dict(kw.get("nn", {}), network=problem.network)
    from .regimes import nn
    guarded_run(args, problem, regimes, folder, modules={"nn": nn}, regime_kwargs=kw)
    from .results import load
    res = load(folder.path)
    if not args.no_plots:
        from . import plots
        fig = plots.loss_curves(res.curves, title=f"{script}: {problem.name}")
        folder.save_figure(fig, "loss_curves")
        save_extra_plots(res.curves, problem, folder, script)
    print(summarize(folder))
    st = res.status
    if "wall_time" in st:
        wall = st.groupby(["regime"] + (["tau"] if "tau" in st else []), dropna=False)["wall_time"].sum()
        print("\nwall time per regime (s):\n" + wall.to_string(float_format=lambda x: f"{x:.1f}"))
    print(f"\nresults: {folder.path}  (gfsgd.results.load({str(folder.path)!r}))")
    return folder.path
