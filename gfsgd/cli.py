"""The shared argument parser and driver of the train_*.py scripts.

Every script: parse arguments -> build the Problem -> build the Grid -> run the regime(s) over the grid with
gfsgd.grid.execute into one run folder (config.json, curves.parquet, status.parquet) -> save PNG plots ->
print a summary. Learning rates are in normalised-kernel units everywhere (see LR_UNITS).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time as _time
from pathlib import Path

from . import schedules as _schedules
from .grid import Grid, execute
from .problem import Problem
from .results import RunFolder

__all__ = ["build_parser", "add_problem_args", "problem_from_args", "grid_from_args", "schedule_from_args",
           "run_regimes", "save_extra_plots", "main", "LR_UNITS"]

LR_UNITS = ("Learning rates are in normalised-kernel units: K is scaled so its top eigenvalue is 1, so "
            "alpha < 2(1 + beta) is the per-mode stability limit of every problem. The real network is "
            "trained with lr_nn = alpha * N / lambda_max(K_emp) (K_emp = J J^T at initialisation), so that all "
            "four regimes run the same dynamics at the same --lr. Loss = |f - y|^2 / (2N) (0.5 * MSE).")


def add_problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problem")
    g.add_argument("--dataset", default="synthetic",
                   help="'synthetic' (power-law spectrum, no files; default) or a dataset name when the "
                        "script supports networks")
    g.add_argument("--kernel", default=None, metavar="FILE",
                   help="a saved Problem (Problem.save); overrides --dataset")
    g.add_argument("--N", type=int, default=200, help="number of training points (default 200)")
    g.add_argument("--nu", type=float, default=1.5, help="synthetic: eigenvalues lambda_k = k^-nu (default 1.5)")
    g.add_argument("--kappa", type=float, default=1.0,
                   help="synthetic: target coefficients c_k ~ k^-(kappa+1) (default 1.0)")
    g.add_argument("--lambda_min", type=float, default=0.0, help="synthetic: eigenvalue floor (default 0)")
    g.add_argument("--basis", default="random", choices=["random", "hadamard", "none"],
                   help="synthetic: eigenbasis ('none' = spectral only: SD regime and theory only)")


def add_grid_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("grid (" + LR_UNITS + ")")
    g.add_argument("--lr", type=float, nargs="+", default=[0.5], help="learning rate(s) alpha (default 0.5)")
    g.add_argument("--momentum", type=float, nargs="+", default=[0.0], help="momentum(s) beta in (-1, 1)")
    g.add_argument("--batch_size", type=int, nargs="+", default=[10], help="batch size(s) b in [1, N]")
    g.add_argument("--aggr_type", choices=["prod", "zip"], default="prod",
                   help="combine the lists by Cartesian product (default) or zip")


def add_run_args(p: argparse.ArgumentParser, regimes) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--n_steps", type=int, default=1000, help="SGD steps (default 1000)")
    g.add_argument("--sched", choices=list(_schedules.SCHEDULE_NAMES), default="constant",
                   help="lr schedule (jacobi also sets the momentum schedule)")
    g.add_argument("--sched_step_size", type=int, default=None, help="step: decay every this many steps")
    g.add_argument("--sched_factor", type=float, default=0.1, help="step: decay factor")
    g.add_argument("--warmup_steps", type=int, default=None, help="warmup / cosine: warm-up length")
    g.add_argument("--final_factor", type=float, default=0.0, help="cosine: final lr / initial lr")
    g.add_argument("--period", type=int, default=None, help="cyclic: period in steps")
    g.add_argument("--low_factor", type=float, default=0.1, help="cyclic: lowest lr / lr")
    g.add_argument("--jacobi_a", type=float, default=0.0, help="jacobi: parameter a > -1")
    g.add_argument("--jacobi_b", type=float, default=0.0, help="jacobi: parameter b > -1")
    if "sd" in regimes:
        g.add_argument("--tau", type=float, nargs="+", default=[1.0],
                       help="SD parameter(s): 1 = mean field, -1 = Gaussian features (default 1)")
    if "linearized" in regimes or "nn" in regimes:
        g.add_argument("--repeats", type=int, default=1, help="independent sample paths per config (averaged)")
        g.add_argument("--n_seeds", type=int, default=1, help="serial seeds seed, seed+1, ... (sampled regimes)")
    g.add_argument("--replacement", action="store_true", help="draw each batch with replacement")
    g.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    g.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--chunk_size", type=int, default=None, help="configs per vectorised block")
    g.add_argument("--save_dir", default=None, help="run folder (default runs/<script>-<time>); "
                                                    "an existing folder is resumed")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")
    g.add_argument("--no_plots", action="store_true", help="do not write PNG plots")


def build_parser(description: str, regimes=("linearized", "full", "sd")) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description + "\n\n" + LR_UNITS,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_problem_args(p)
    add_grid_args(p)
    add_run_args(p, regimes)
    return p


def problem_from_args(args) -> Problem:
    if args.kernel:
        return Problem.load(args.kernel)
    if args.dataset != "synthetic":
        raise SystemExit(f"error: --dataset {args.dataset!r} needs a network; this script supports only "
                         f"--dataset synthetic or --kernel FILE (see train_nn.py / train_4_regimes.py)")
    basis = None if args.basis == "none" else args.basis
    return Problem.synthetic(args.N, args.nu, args.kappa, args.lambda_min, seed=args.seed, basis=basis)


def grid_from_args(args) -> Grid:
    return Grid(args.lr, args.momentum, args.batch_size, aggr=args.aggr_type)


def schedule_from_args(args):
    return _schedules.from_name(args.sched, args.n_steps, step_size=args.sched_step_size,
                                factor=args.sched_factor, warmup_steps=args.warmup_steps,
                                final_factor=args.final_factor, period=args.period, low_factor=args.low_factor,
                                jacobi_a=args.jacobi_a, jacobi_b=args.jacobi_b)


def default_save_dir(script: str) -> Path:
    return Path("runs") / f"{script}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_regimes(args, problem, regimes, folder: RunFolder, modules=None, regime_kwargs=None) -> None:
    """Run each named regime over the grid into `folder` (SD once per tau, sampled regimes once per seed).

    modules: extra regimes by name (e.g. {"nn": gfsgd.regimes.nn}); regime_kwargs: per-regime keyword
    arguments (e.g. {"nn": {"network": ...}}).
    """
    from .regimes import full, linearized, spectral_diagonal
    modules = dict({"linearized": linearized, "full": full, "sd": spectral_diagonal}, **(modules or {}))
    grid = grid_from_args(args)
    schedule = schedule_from_args(args)
    common = dict(schedule=schedule, device=args.device, dtype=args.dtype, replacement=args.replacement,
                  chunk_size=args.chunk_size, progress=not args.no_progress)
    for name in regimes:
        mod = modules[name]
        kw = dict(common, **(regime_kwargs or {}).get(name, {}))
        if name == "sd":
            for tau in args.tau:
                execute(mod, problem, grid, args.n_steps, save_dir=folder, tau=tau, seed=args.seed,
                        extra_columns={"tau": float(tau), "seed": args.seed}, **kw)
        elif name in ("linearized", "nn"):
            for seed in range(args.seed, args.seed + getattr(args, "n_seeds", 1)):
                if name == "linearized":
                    kw["repeats"] = args.repeats
                execute(mod, problem, grid, args.n_steps, save_dir=folder, seed=seed,
                        extra_columns={"seed": seed}, **kw)
        else:
            execute(mod, problem, grid, args.n_steps, save_dir=folder, seed=args.seed,
                    extra_columns={"seed": args.seed}, **kw)


def summarize(folder: RunFolder) -> str:
    from .results import load
    st = load(folder.path).status
    cols = [c for c in ("regime", "tau", "seed", "lr", "momentum", "batch_size", "status", "diverged_step",
                        "final_loss") if c in st]
    return st[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}")


# ---------------------------------------------------------------------------------- extra plots (issue 5)
def save_extra_plots(curves, problem, folder: RunFolder, script: str, max_maps: int = 8) -> list:
    """The plots a run folder gets besides loss_curves.png (what the notebooks show, for script users):

    - regime_comparison.png when the run holds more than one regime (or SD tau);
    - alpha_beta_map_<regime>[_tau<tau>]_b<b>.png for each full / sd sweep over an (lr, momentum) grid of at least
      3 x 3 cells (one per batch size, at most `max_maps`), with the theory lines of gfsgd.theory
      (alpha_crit, the two asymptotes); without them if the theory cannot be evaluated.
    Returns the names written. Never raises: a plot that fails is reported and skipped.
    """
    import matplotlib.pyplot as plt

    from . import plots
    written = []

    def attempt(name, make):
        try:
            fig = make()
        except Exception as exc:  # noqa: BLE001 - a plot must never fail a finished run
            print(f"warning: plot {name} skipped: {exc}", file=sys.stderr)
            return
        folder.save_figure(fig, name)
        plt.close(fig)
        written.append(name)

    tau = curves["tau"] if "tau" in curves else 0.0
    keys = curves.assign(_tau=tau).groupby(["regime", "_tau"], dropna=False).size().index.tolist()
    if len(keys) > 1:
        attempt("regime_comparison", lambda: plots.regime_comparison(curves, title=f"{script}: {problem.name}"))
    n_maps = 0
    for regime, tau_value in keys:
        if regime not in ("full", "sd"):
            continue
        sub = curves[(curves["regime"] == regime) & ((curves["tau"] == tau_value) | (tau_value != tau_value)
                                                     if "tau" in curves else True)]
        if sub["lr"].nunique() < 3 or sub["momentum"].nunique() < 3:
            continue
        t = float(tau_value) if tau_value == tau_value and regime == "sd" else 1.0
        for b in sorted(sub["batch_size"].unique())[:max(0, max_maps - n_maps)]:
            one = sub[sub["batch_size"] == b]
            name = f"alpha_beta_map_{regime}" + (f"_tau{t:g}" if regime == "sd" else "") + f"_b{int(b)}"
            title = f"{regime}{f' τ={t:g}' if regime == 'sd' else ''}, b = {int(b)}: {problem.name}"

            def make(one=one, b=b, title=title, t=t):
                try:
                    return plots.alpha_beta_map(one, problem=problem, batch_size=int(b), tau=t, title=title)
                except Exception as exc:  # noqa: BLE001 - fall back to the map without theory lines
                    print(f"warning: theory lines left out of {title}: {exc}", file=sys.stderr)
                    plt.close("all")
                    return plots.alpha_beta_map(one, theory=False, title=title)
            attempt(name, make)
            n_maps += 1
    return written


def main(regimes, script: str, description: str, argv=None) -> Path:
    """Entry point of train_linearized.py / train_full.py / train_spectral_diagonal.py."""
    regimes = list(regimes)
    args = build_parser(description, regimes).parse_args(argv)
    try:
        problem = problem_from_args(args)
        grid_from_args(args)  # validate early
        from .grid import check_configs
        check_configs(grid_from_args(args), problem.N)
        schedule_from_args(args)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    folder = RunFolder(args.save_dir or default_save_dir(script))
    folder.write_config(dict(script=script, regimes=regimes, argv=sys.argv[1:] if argv is None else list(argv),
                             args=vars(args), problem=problem.name, problem_meta=problem.meta, N=problem.N,
                             loss0=problem.loss0))
    run_regimes(args, problem, regimes, folder)
    if not args.no_plots:
        from . import plots
        from .results import load
        res = load(folder.path)
        fig = plots.loss_curves(res.curves, title=f"{script}: {problem.name}")
        folder.save_figure(fig, "loss_curves")
        save_extra_plots(res.curves, problem, folder, script)
    print(summarize(folder))
    print(f"\nresults: {folder.path}  (gfsgd.results.load({str(folder.path)!r}))")
    return folder.path


# ====================================================================================================
# Network scripts (train_nn.py, train_4_regimes.py): dataset and model options, and their driver.
# Kept separate from the kernel scripts' parser above; only these functions know about networks.
# ====================================================================================================
NETWORK_REGIMES = ("nn", "linearized", "sd", "full")


def add_network_args(p: argparse.ArgumentParser, *, dataset: str = "digits", N: int = 256) -> None:
    """Dataset and model options of the network scripts (the problem is the network's empirical NTK)."""
    from .data import DATASETS
    from .models import ACTIVATIONS
    from .ntk import METHODS
    for action in p._actions:  # the kernel scripts' --dataset means something else: re-document it here
        if action.dest == "dataset":
            action.choices = list(DATASETS)
            action.help = ("dataset fed through the network: mnist, cifar10, bike_sharing, sgemm (files under "
                           "--data_root, see data/README.md), digits (scikit-learn's bundled set) or synthetic "
                           "(Gaussian inputs); no files are downloaded")
        if action.dest in ("nu", "kappa", "lambda_min", "basis", "kernel"):
            action.help = argparse.SUPPRESS  # power-law options: not used by the network scripts
    p.set_defaults(dataset=dataset, N=N)
    g = p.add_argument_group("network (K = J J^T / lambda_max at initialisation, d0 = f(X; w0) - y)")
    g.add_argument("--data_root", default=None,
                   help="folder holding the dataset files (default $GFSGD_DATA_ROOT, else ./data)")
    g.add_argument("--n_val", type=int, default=0, help="held-out points for the nn validation loss")
    g.add_argument("--target", choices=["label", "parity"], default="label",
                   help="classification sets: regress the class label or its parity (standardised)")
    g.add_argument("--dim", type=int, default=16, help="synthetic: input dimension")
    g.add_argument("--width", type=int, default=1000, help="hidden units per layer (paper: 1000)")
    g.add_argument("--depth", type=int, default=2, help="linear layers (2 = one hidden layer, the paper's)")
    g.add_argument("--activation", choices=list(ACTIVATIONS), default="relu")
    g.add_argument("--sigma_w", type=float, default=1.0, help="weight init std (NTK parameterisation)")
    g.add_argument("--sigma_b", type=float, default=0.0, help="bias init std")
    g.add_argument("--model_seed", type=int, default=None, help="network init seed (default --seed)")
    g.add_argument("--ntk_method", choices=list(METHODS), default="auto", help="empirical NTK method")
    g.add_argument("--n_log", type=int, default=0,
                   help="record the loss at about this many log-spaced steps (default 0: every step); the nn "
                        "regime evaluates its full training loss only at recorded steps")


def network_problem_from_args(args) -> Problem:
    """Dataset -> MLP -> Problem.from_network (the returned Problem carries .network for the nn regime)."""
    from .data import load_dataset
    from .models import MLP
    if getattr(args, "kernel", None):
        raise ValueError(f"--kernel {args.kernel} cannot be used here: the network scripts build the kernel "
                         f"from the network (use --dataset)")
    ds = load_dataset(args.dataset, args.N, seed=args.seed, root=args.data_root, n_val=args.n_val,
                      target=args.target, dim=args.dim)
    seed = args.seed if args.model_seed is None else args.model_seed
    model = MLP(ds.X.shape[1], width=args.width, depth=args.depth, activation=args.activation,
                sigma_w=args.sigma_w, sigma_b=args.sigma_b, seed=seed)
    name = f"{ds.name}, MLP(width={args.width}, depth={args.depth}, {args.activation})"
    return Problem.from_network(model, ds.X, ds.y, X_val=ds.X_val, y_val=ds.y_val, method=args.ntk_method,
                                device=args.device, name=name, meta=dict(dataset=ds.info, model_seed=seed))


def log_steps_from_args(args):
    import numpy as np
    if not getattr(args, "n_log", 0):
        return None
    pts = np.unique(np.round(np.logspace(0, np.log10(max(args.n_steps, 1)), args.n_log)).astype(int))
    return np.unique(np.concatenate([[0], pts, [args.n_steps]]))


class _NNWithValidation:
    """The nn regime for gfsgd.grid.execute, also appending the validation curves ("nn_val") when present."""
    REGIME = "nn"

    def __init__(self, folder: RunFolder):
        self.folder = folder

    def run(self, problem, configs, n_steps, **kw):
        from .regimes import nn
        curves = nn.run(problem, configs, n_steps, **kw)
        if "val_loss" in curves.meta:
            self.folder.append(nn.validation_curves(curves))
        return curves


def network_main(regimes, script: str, description: str, argv=None, choose_regimes: bool = False,
                 defaults: dict | None = None) -> Path:
    """Entry point of train_nn.py (regimes=["nn"]) and train_4_regimes.py (choose_regimes=True).

    defaults: the script's own argument defaults (e.g. its grid), overriding the shared ones."""
    regimes = list(regimes)
    p = build_parser(description, NETWORK_REGIMES if choose_regimes else regimes)
    add_network_args(p)
    p.set_defaults(**(defaults or {}))
    if choose_regimes:
        p.add_argument("--regimes", nargs="+", choices=list(NETWORK_REGIMES), default=regimes,
                       help="regimes to run (nn: the network; linearized: sampled, --repeats averaged; "
                            "sd: once per --tau; full: exact second moments)")
    args = p.parse_args(argv)
    regimes = list(dict.fromkeys(args.regimes)) if choose_regimes else regimes
    try:
        from .grid import check_configs
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
    run_regimes(args, problem, regimes, folder, modules={"nn": _NNWithValidation(folder)}, regime_kwargs=kw)
    from .results import load
    res = load(folder.path)
    if not args.no_plots:
        from . import plots
        fig = plots.loss_curves(res.curves, title=f"{script}: {problem.name}")
        folder.save_figure(fig, "loss_curves")
        save_extra_plots(res.curves[res.curves["regime"] != "nn_val"], problem, folder, script)
    print(summarize(folder))
    st = res.status[res.status["regime"] != "nn_val"] if "regime" in res.status else res.status
    if "wall_time" in st:
        wall = st.groupby(["regime"] + (["tau"] if "tau" in st else []), dropna=False)["wall_time"].sum()
        print("\nwall time per regime (s):\n" + wall.to_string(float_format=lambda x: f"{x:.1f}"))
    print(f"\nresults: {folder.path}  (gfsgd.results.load({str(folder.path)!r}))")
    return folder.path
