"""The driver of the network scripts (train_nn.py, train_4_regimes.py): dataset and model options, the
network's Problem (its empirical NTK at initialisation), and the run of the chosen regimes into one folder.

The shared options (grid, schedule, run) come from gfsgd.cli.build_parser(..., network=True).
"""
from __future__ import annotations

import argparse
import sys
import time as _time
from pathlib import Path

from .cli import (build_parser, default_save_dir, grid_from_args, run_regimes, save_extra_plots,
                  schedule_from_args, summarize)
from .configs import check_configs
from .problem import Problem
from .results import RunFolder

__all__ = ["NETWORK_REGIMES", "add_network_args", "network_problem_from_args", "log_steps_from_args",
           "network_main"]

NETWORK_REGIMES = ("nn", "linearized", "sd", "full")


def add_network_args(p: argparse.ArgumentParser) -> None:
    """Dataset and model options of the network scripts (the problem is the network's empirical NTK).
    The parser must come from build_parser(..., network=True), which holds --dataset and --N."""
    from .models import ACTIVATIONS
    from .ntk import METHODS
    g = p.add_argument_group("network (K = J J^T / lambda_max at initialisation, d0 = f(X; w0) - y)")
    g.add_argument("--data_root", default=None,
                   help="folder holding the dataset files; None: $GFSGD_DATA_ROOT, else ./data")
    g.add_argument("--n_test", type=int, default=0,
                   help="held-out points (disjoint from the training points, standardised with the training "
                        "statistics): every regime then reports the test loss")
    g.add_argument("--target", choices=["label", "parity"], default="label",
                   help="classification sets: regress the class label or its parity (standardised)")
    g.add_argument("--dim", type=int, default=16, help="synthetic: input dimension")
    g.add_argument("--width", type=int, default=1000, help="hidden units per layer (paper: 1000)")
    g.add_argument("--depth", type=int, default=2, help="linear layers (2 = one hidden layer, the paper's)")
    g.add_argument("--activation", choices=list(ACTIVATIONS), default="relu", help="hidden-layer nonlinearity")
    g.add_argument("--sigma_w", type=float, default=1.0, help="weight init std (NTK parameterisation)")
    g.add_argument("--sigma_b", type=float, default=0.0, help="bias init std")
    g.add_argument("--model_seed", type=int, default=None, help="network init seed; None: --seed")
    g.add_argument("--ntk_method", choices=list(METHODS), default="auto", help="empirical NTK method")
    g.add_argument("--n_log", type=int, default=0,
                   help="record the loss at about this many log-spaced steps; 0: every step for the kernel "
                        "regimes, and for nn (whose full training loss costs a pass over the data) every step up "
                        "to 100, then 100 per decade")


def network_problem_from_args(args) -> Problem:
    """Dataset -> MLP -> Problem.from_network (the returned Problem carries .network for the nn regime)."""
    from .data import load_dataset
    from .models import MLP
    ds = load_dataset(args.dataset, args.N, seed=args.seed, root=args.data_root, n_test=args.n_test,
                      target=args.target, dim=args.dim)
    seed = args.seed if args.model_seed is None else args.model_seed
    model = MLP(ds.X.shape[1], width=args.width, depth=args.depth, activation=args.activation,
                sigma_w=args.sigma_w, sigma_b=args.sigma_b, seed=seed)
    name = f"{ds.name}, MLP(width={args.width}, depth={args.depth}, {args.activation})"
    return Problem.from_network(model, ds.X, ds.y, X_test=ds.X_test, y_test=ds.y_test, method=args.ntk_method,
                                device=args.device, name=name, meta=dict(dataset=ds.info, model_seed=seed))


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
    try:
        check_configs(grid_from_args(args), args.N)
        schedule_from_args(args)
        t0 = _time.perf_counter()
        problem = network_problem_from_args(args)
        t_problem = _time.perf_counter() - t0
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    folder = RunFolder(args.save_dir or default_save_dir(script))
    folder.write_config(dict(script=script, regimes=regimes, argv=sys.argv[1:] if argv is None else list(argv),
                             args=vars(args), problem=problem.name, problem_meta=problem.meta, N=problem.N,
                             loss0=problem.loss0, lambda_max_raw=problem.lambda_max_raw,
                             lr_nn_per_alpha=problem.N / problem.lambda_max_raw, ntk_seconds=t_problem))
    print(f"{problem.name}: N={problem.N}, L0={problem.loss0:.4g}, lambda_max(K_emp)={problem.lambda_max_raw:.4g}, "
          f"lr_nn = {problem.N / problem.lambda_max_raw:.4g} * lr  (NTK + eigendecomposition {t_problem:.1f} s)")
    log_steps = log_steps_from_args(args)
    kw = {name: dict(log_steps=log_steps) for name in regimes}
    kw["nn"] = dict(kw.get("nn", {}), network=problem.network)
    from .regimes import nn
    run_regimes(args, problem, regimes, folder, modules={"nn": nn}, regime_kwargs=kw)
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
