"""The shared argument parser of the train_*.py scripts, and the driver of the kernel scripts.

The network scripts (train_nn.py, train_4_regimes.py) use the same parser with network=True and their own
driver, gfsgd.network_cli.

Every script: parse arguments -> build the Problem -> build the Grid -> run the regime(s) over the grid with
gfsgd.grid.execute into one run folder (config.json, parts of curves and status; gfsgd.results) -> save PNG plots ->
print a summary. Learning rates are in normalised-kernel units everywhere (see LR_UNITS).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from . import builder as _builder
from . import schedules as _schedules
from . import updates as _updates
from .configs import check_configs
from .errors import InputError
from .grid import Grid, execute
from .results import RunFolder

__all__ = ["build_parser", "add_problem_args", "add_rank_arg", "add_model_args", "dataset_problem", "refuse_rank", "add_grid_args", "add_run_args", "problem_from_args",
           "grid_from_args", "schedule_from_args", "run_regimes", "save_extra_plots", "summarize", "main",
           "LR_UNITS", "default_save_dir"]

LR_UNITS = ("Learning rates are in normalised-kernel units: K is scaled so its top eigenvalue is 1, so "
            "alpha < 2(1 + beta) is the per-mode stability limit of every problem. The real network is "
            "trained with lr_nn = alpha * N / lambda_max(K_emp) (K_emp = J J^T at initialisation), so that all "
            "four regimes run the same dynamics at the same --lr. Loss = |f - y|^2 / (2N) (0.5 * MSE).")


def add_problem_args(p: argparse.ArgumentParser, *, network: bool = False) -> None:
    """The problem options of the train_*.py scripts (gfsgd.builder.add_problem_args; N defaults to 200 for the
    kernel scripts, 256 for the network scripts)."""
    _builder.add_problem_args(p, network=network)
    p.set_defaults(N=256 if network else 200)


def add_rank_arg(g) -> None:
    """--rank K on an argument group (gfsgd.builder.RANK_HELP)."""
    g.add_argument("--rank", type=int, default=0, metavar="K", help=_builder.RANK_HELP)


add_model_args = _builder.add_model_args
dataset_problem = _builder.network_problem  # the name the scripts used: dataset -> MLP -> Problem


def refuse_rank(args, regimes) -> None:
    """Checks before any work: --rank gives a spectral-only problem, so refuse the regimes that need the
    eigenvectors; --rank and --chunk_size must be in range."""
    need = [r for r in regimes if r in ("full", "linearized")]
    if getattr(args, "rank", 0) and need:
        raise SystemExit(f"error: --rank {args.rank} builds a spectral-only problem (top-{args.rank} eigenpairs plus a "
                         f"power-law tail, no eigenvectors), but regime(s) {need} need the kernel's eigenvectors; "
                         f"run them without --rank (dense kernel) or choose regimes sd / nn")
    if getattr(args, "rank", 0) < 0:
        raise SystemExit(f"error: --rank must be >= 0 (0: the dense kernel), got --rank {args.rank}")
    if getattr(args, "chunk_size", None) is not None and args.chunk_size < 1:
        raise SystemExit(f"error: --chunk_size must be >= 1 (configs per vectorised block), got --chunk_size "
                         f"{args.chunk_size}")


def add_grid_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("grid", "learning rates in normalised-kernel units (see the description above)")
    g.add_argument("--lr", type=float, nargs="+", default=[0.5], help="learning rate(s) alpha")
    g.add_argument("--momentum", type=float, nargs="+", default=[0.0], help="momentum(s) beta in (-1, 1)")
    g.add_argument("--batch_size", type=int, nargs="+", default=[10], help="batch size(s) b in [1, N]")
    g.add_argument("--aggr_type", choices=["prod", "zip"], default="prod",
                   help="combine the lists by Cartesian product or zip")


def add_run_args(p: argparse.ArgumentParser, regimes) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--n_steps", type=int, default=1000, help="SGD steps")
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
    g.add_argument("--sched_file", default=None, metavar="JSON",
                   help="a schedule saved as JSON (gfsgd.Schedule.save, e.g. gfsgd.design_schedule's result; "
                        "lr, momentum and batch size over time); replaces --sched")
    if "sd" in regimes:
        g.add_argument("--tau", type=float, nargs="+", default=[1.0],
                       help="SD parameter(s): 1 = mean field, -1 = Gaussian features")
    if "linearized" in regimes or "nn" in regimes:
        g.add_argument("--repeats", type=int, default=1, help="independent sample paths per config (averaged)")
        g.add_argument("--n_seeds", type=int, default=1, help="serial seeds seed, seed+1, ... (sampled regimes)")
    g.add_argument("--replacement", action="store_true", help="draw each batch with replacement")
    g.add_argument("--update", choices=list(_updates.RULE_NAMES), default="sgd",
                   help="training rule (docs/theory.md#updates): sgd; svag (two batches a step, lr / l, l steps "
                        "per SGD step); sde (the SGD SDE, momentum 0; full and sd); ngd (noisy full-batch GD); "
                        "gd_penalty (full-batch GD + gradient penalty over chunks; batch size N); mb_penalty "
                        "(SGD + micro-batch gradient-norm penalty); normalized (the batch's direction with a target "
                        "step norm: grafting)")
    g.add_argument("--svag_l", type=int, default=2, help="svag: the parameter l >= 1")
    g.add_argument("--sde_substeps", type=int, default=8, help="sde: integrator steps per SGD step (full, sd)")
    g.add_argument("--penalty", type=float, default=0.0,
                   help="gd_penalty / mb_penalty: strength, in normalised-kernel units like --lr")
    g.add_argument("--micro_batch_size", type=int, default=None,
                   help="gd_penalty: chunk size (divides N); mb_penalty: micro-batch size (divides every batch)")
    g.add_argument("--penalty_split", choices=["fixed", "reshuffle"], default="fixed",
                   help="gd_penalty: the same chunks every step, or a fresh partition")
    g.add_argument("--normalized_target", default="small_batch",
                   help="normalized: 'small_batch' (the norm of the step of the first --small_batch_size points of "
                        "the batch) or a step norm > 0 in normalised-kernel units")
    g.add_argument("--small_batch_size", type=int, default=None, help="normalized: the small batch whose norm is used")
    g.add_argument("--penalty_kind", choices=["grad_norm", "fisher"], default="grad_norm",
                   help="mb_penalty: gradients at the labels, or at labels drawn from the model (unit variance)")
    g.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="floating-point type of the simulation (float32 is faster, less accurate)")
    g.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    g.add_argument("--seed", type=int, default=0, help="seed of the batch sampler and of synthetic data")
    g.add_argument("--chunk_size", type=int, default=None, help="configs per vectorised block")
    g.add_argument("--save_dir", default=None, help="run folder; None: runs/<script>-<time>; "
                                                    "an existing folder is resumed")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")
    g.add_argument("--no_plots", action="store_true", help="do not write PNG plots")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the sweeps of --save_dir that were made with different settings (without it, "
                        "resuming a folder with another command is refused)")
    g.add_argument("--allow_version_change", action="store_true",
                   help="resume sweeps of --save_dir that another gfsgd version made (without it, such a resume "
                        "is refused, naming both versions)")
    g.add_argument("--dask_scheduler", default=None, metavar="ADDRESS",
                   help="run the chunks of configs on a Dask cluster (e.g. tcp://host:8786; see the README for "
                        "SLURM/PBS with dask-jobqueue); only this process writes the run folder")
    g.add_argument("--dask_workers", type=int, default=None, metavar="N",
                   help="run the chunks on a local Dask cluster of N worker processes (1 thread each)")
    g.add_argument("--repair", action="store_true",
                   help="set aside damaged parts of --save_dir (a truncated file after a crash) and recompute them")


def build_parser(description: str, regimes=("linearized", "full", "sd"), *,
                 network: bool = False) -> argparse.ArgumentParser:
    """The shared parser: problem (kernel or network flavour), grid and run options."""
    p = argparse.ArgumentParser(description=description + "\n\n" + LR_UNITS,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_problem_args(p, network=network)
    add_grid_args(p)
    add_run_args(p, regimes)
    return p


problem_from_args = _builder.problem_from_args  # the one problem builder


def grid_from_args(args) -> Grid:
    return Grid(args.lr, args.momentum, args.batch_size, aggr=args.aggr_type)


def schedule_from_args(args):
    if getattr(args, "sched_file", None):
        if args.sched != "constant":
            raise InputError(f"give --sched_file or --sched, not both (got --sched {args.sched})")
        return _schedules.load(args.sched_file)
    return _schedules.from_name(args.sched, args.n_steps, step_size=args.sched_step_size,
                                factor=args.sched_factor, warmup_steps=args.warmup_steps,
                                final_factor=args.final_factor, period=args.period, low_factor=args.low_factor,
                                jacobi_a=args.jacobi_a, jacobi_b=args.jacobi_b)


def default_save_dir(script: str) -> Path:
    return Path("runs") / f"{script}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def update_from_args(args):
    """The training rule of --update (with --svag_l, --sde_substeps, --replacement, --penalty, --micro_batch_size,
    --penalty_split, --penalty_kind); a bad value exits with an error line."""
    name = getattr(args, "update", "sgd")
    try:
        return _updates.RULE_NAMES[name].from_args(args)  # each rule reads its own options
    except InputError as exc:
        raise SystemExit(f"error: --update {name}: {exc}") from None


def run_regimes(args, problem, regimes, folder: RunFolder, modules=None, regime_kwargs=None, client=None) -> None:
    """Run each named regime over the grid into `folder` (SD once per tau, sampled regimes once per seed).

    modules: extra regimes by name (e.g. {"nn": gfsgd.regimes.nn}); regime_kwargs: per-regime keyword
    arguments (e.g. {"nn": {"network": ...}}).
    """
    from .regimes import full, linearized, spectral_diagonal
    modules = dict({"linearized": linearized, "full": full, "sd": spectral_diagonal}, **(modules or {}))
    grid = grid_from_args(args)
    schedule = schedule_from_args(args)
    common = dict(schedule=schedule, device=args.device, dtype=args.dtype, replacement=args.replacement,
                  update=update_from_args(args),
                  chunk_size=args.chunk_size, progress=not args.no_progress,
                  overwrite=getattr(args, "overwrite", False),
                  allow_version_change=getattr(args, "allow_version_change", False), client=client)
    for name in regimes:
        mod = modules[name]
        kw = dict(common, **(regime_kwargs or {}).get(name, {}))
        if name == "sd":
            for tau in args.tau:
                execute(mod, problem, grid, args.n_steps, save_dir=folder, tau=tau, seed=args.seed,
                        extra_columns={"tau": float(tau), "seed": args.seed}, **kw)
        elif name in ("linearized", "nn"):
            for seed in range(args.seed, args.seed + getattr(args, "n_seeds", 1)):
                kw["repeats"] = args.repeats
                execute(mod, problem, grid, args.n_steps, save_dir=folder, seed=seed,
                        extra_columns={"seed": seed}, **kw)
        else:
            execute(mod, problem, grid, args.n_steps, save_dir=folder, seed=args.seed,
                    extra_columns={"seed": args.seed}, **kw)


def open_folder(args, script: str) -> RunFolder:
    """The run folder of --save_dir (or a new one), repaired with --repair (holding its lock: refused while another
    live process writes it); clear errors, no traceback."""
    from .results import RunFolderError, RunFolderLocked, repair
    target = args.save_dir or default_save_dir(script)
    try:
        folder = RunFolder(target)
        if getattr(args, "repair", False):
            moved = repair(folder)
            print(f"--repair: {len(moved)} damaged part(s) set aside in {folder.path / 'parts' / 'damaged'}"
                  + (f" ({', '.join(moved[:3])})" if moved else ""))
    except (RunFolderError, RunFolderLocked) as exc:
        raise SystemExit(f"error: {exc}") from None
    except OSError as exc:
        raise SystemExit(f"error: {_store_failure(exc, target)}") from None
    return folder


def _from_store(exc: OSError, where) -> bool:
    """Whether an OSError came from the run folder `where`: it names a path inside it, or it is a disk error."""
    import errno
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        return True
    if where is None:
        return False
    text = " ".join(str(x) for x in (exc.filename, exc.filename2, exc) if x is not None)
    return any(str(w) in text for w in {str(where), str(Path(where).resolve())})


def _store_failure(exc: OSError, where) -> str:
    """One line for an OSError of the run store (a part that vanished, a full disk), naming the folder."""
    return (f"the run folder {str(where)!r} could not be read or written ({type(exc).__name__}: {exc}); the parts "
            f"committed before are kept: was the folder repaired, moved or deleted while this ran, or is the disk "
            f"full? Fix that and rerun the same command to resume (with --repair if a part is reported damaged)")


def guarded_run(args, *a, **kw) -> None:
    """run_regimes with the run store's refusals (another writer, a different sweep) and an unreachable Dask
    scheduler as clear errors; with --dask_scheduler / --dask_workers the chunks run on Dask."""
    from .grid import dask_client
    from .results import RunFolderError, RunFolderLocked
    client = None
    try:
        if getattr(args, "dask_scheduler", None) or getattr(args, "dask_workers", None):
            if args.dask_workers is not None and args.dask_workers < 1:
                raise InputError(f"--dask_workers must be >= 1, got {args.dask_workers}")
            client = dask_client(scheduler=args.dask_scheduler, workers=args.dask_workers)
            print(f"dask: {client}")
        run_regimes(args, *a, client=client, **kw)
    except (RunFolderError, RunFolderLocked, ConnectionError, ImportError, InputError) as exc:
        raise SystemExit(f"error: {exc}") from None  # usage errors found while running (e.g. --device cuda); a bug keeps its traceback
    except OSError as exc:  # the run store's file system: a part that vanished, a disk error
        folder = next((x for x in a if isinstance(x, RunFolder)), None)
        where = folder.path if folder is not None else args.save_dir
        if _from_store(exc, where):
            raise SystemExit(f"error: {_store_failure(exc, where)}") from None
        if isinstance(exc, FileNotFoundError):  # a missing input file
            raise SystemExit(f"error: {exc}") from None
        raise
    except KeyboardInterrupt:
        folder = next((x for x in a if isinstance(x, RunFolder)), None)
        where = f" in {folder.path}" if folder is not None else ""
        raise SystemExit(f"\ninterrupted: the finished configs are saved{where}; rerun the same command to "
                         f"resume") from None
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and args.dask_workers:
                cluster.close()


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
    p = build_parser(description, regimes)
    add_model_args(p, network=False)
    args = p.parse_args(argv)
    refuse_rank(args, regimes)
    try:
        problem = problem_from_args(args)
        check_configs(grid_from_args(args), problem.N)  # validate early
        schedule_from_args(args)
    except (InputError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    if "spectrum" in problem.meta:
        from .spectrum import spectrum_summary
        print(spectrum_summary(problem))
    folder = open_folder(args, script)
    # kept until the first sweep passes its checks (under the lock), then written (RunFolder.write_config)
    folder.write_config(dict(script=script, regimes=regimes, argv=sys.argv[1:] if argv is None else list(argv),
                             args=vars(args), problem=problem.name, problem_meta=problem.meta, N=problem.N,
                             loss0=problem.loss0), keep_existing=True)
    guarded_run(args, problem, regimes, folder)
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
