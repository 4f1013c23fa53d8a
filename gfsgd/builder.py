"""The one problem builder: command-line options -> Problem (docs/design.md#the-problem-builder).

Every command line (train_*.py, python -m gfsgd.recommend, python -m gfsgd.theory) declares its problem options
with `add_problem_args` and builds its Problem with `problem_from_args`, so the sources and their options are the
same everywhere:

    --kernel FILE (alias --problem)   a saved Problem (Problem.save)
    --dataset NAME                    the empirical NTK at initialisation of an MLP on a dataset (files under
                                      --data_root; digits and synthetic need none)
    synthetic (no --dataset/--kernel) a power-law problem: lambda_k = k^-nu, c_k ~ k^-(kappa+1)
    --rank K                          any kernel source: its top K eigenpairs (matrix-free block Krylov) plus a
                                      fitted power-law tail, spectral only
    --subset n                        the kernel of n of the N points, extrapolated to N (spectral only;
                                      gfsgd.spectrum.extrapolate)

A command line chooses its own defaults (N, the synthetic basis, whether --dataset defaults to "synthetic") through
`set_defaults` on its parser; the meaning of every option is fixed here.
"""
from __future__ import annotations

import argparse

from .errors import InputError
from .problem import Problem

__all__ = ["add_problem_args", "add_model_args", "problem_from_args", "network_problem", "RANK_HELP"]

IMAGE_SHAPES = {"mnist": (1, 28, 28), "digits": (1, 8, 8), "cifar10": (3, 32, 32)}  # (channels, height, width)

RANK_HELP = ("full datasets: keep the top K eigenpairs of the kernel (block Krylov on a matrix-free operator, no "
             "N x N matrix) and model the other modes by a power-law tail; the problem is then spectral only "
             "(regimes sd and nn, and the theory). 0: the dense kernel")


def add_problem_args(p: argparse.ArgumentParser, *, network: bool = False, synthetic: bool = True,
                     rank_default: int | None = 0, title: str = "problem") -> argparse._ArgumentGroup:
    """The problem options on parser `p` (module docstring); returns their group.

    network: the dataset is fed through a network that the nn regime trains (no --kernel, no synthetic spectrum:
        --dataset synthetic means Gaussian inputs). synthetic: offer the synthetic power-law spectrum.
    rank_default: 0 (--rank 0 is the dense kernel) or None (--rank must then be >= 1 when given)."""
    from .data import DATASETS
    g = p.add_argument_group(title)
    real = [d for d in DATASETS if d != "synthetic"]
    if network:
        g.add_argument("--dataset", default="digits", choices=list(DATASETS),
                       help="dataset fed through the network: mnist, cifar10, bike_sharing, sgemm (files under "
                            "--data_root, see data/README.md), digits (scikit-learn's bundled set) or synthetic "
                            "(Gaussian inputs); no files are downloaded")
    else:
        g.add_argument("--dataset", default=None, choices=["synthetic"] + real,
                       help="a dataset name: the empirical NTK of an MLP (see the model options) on that dataset "
                            "(files under --data_root); None or 'synthetic': the synthetic power-law problem")
        g.add_argument("--kernel", "--problem", dest="kernel", default=None, metavar="FILE",
                       help="a saved Problem (Problem.save); overrides --dataset")
    g.add_argument("--N", type=int, default=256, help="number of training points (modes of a synthetic problem)")
    g.add_argument("--n_test", type=int, default=0,
                   help="held-out points (disjoint from the training points; synthetic: drawn from the same model): "
                        "the regimes then report the test loss")
    if synthetic and not network:
        g.add_argument("--nu", type=float, default=1.5, help="synthetic: eigenvalues lambda_k = k^-nu")
        g.add_argument("--kappa", type=float, default=1.0, help="synthetic: target coefficients c_k ~ k^-(kappa+1)")
        g.add_argument("--lambda_min", type=float, default=0.0, help="synthetic: eigenvalue floor")
        g.add_argument("--basis", default="random", choices=["random", "hadamard", "none", "auto"],
                       help="synthetic: eigenbasis ('none' = spectral only: SD regime and theory only; 'auto': "
                            "random up to N = 2000, none beyond)")
    g.add_argument("--rank", type=int, default=rank_default, metavar="K", help=RANK_HELP)
    g.add_argument("--subset", type=int, default=None, metavar="n",
                   help="the kernel of a random subset of n of the N points (--dataset) or the given kernel's own n "
                        "points (--kernel), extrapolated to N (gfsgd.spectrum.extrapolate; docs/theory.md#subset): "
                        "a spectral-only problem for SD and the theory")
    return g


def add_model_args(p: argparse.ArgumentParser, *, network: bool = True) -> None:
    """The dataset and MLP options (the problem is the MLP's empirical NTK at initialisation)."""
    from .models import ACTIVATIONS
    from .ntk import METHODS
    g = p.add_argument_group("network (K = J J^T / lambda_max at initialisation, d0 = f(X; w0) - y)")
    g.add_argument("--data_root", default=None,
                   help="folder holding the dataset files; None: $GFSGD_DATA_ROOT, else ./data")
    if network:
        g.add_argument("--dim", type=int, default=16, help="synthetic: input dimension")
    g.add_argument("--target", choices=["label", "parity", "onehot"], default="label",
                   help="classification sets: regress the class label or its parity (standardised), or 'onehot': "
                        "C outputs, one per class, on centred one-hot labels (the kernel is then [N C, N C])")
    g.add_argument("--model", choices=["mlp", "cnn"], default="mlp",
                   help="mlp: the NTK-parameterised MLP (the width/depth/activation options); cnn: gfsgd.models.CNN, "
                        "a small standard convolutional network (image datasets: mnist, cifar10, digits)")
    g.add_argument("--width", type=int, default=1000, help="hidden units per layer (paper: 1000)")
    g.add_argument("--depth", type=int, default=2, help="linear layers (2 = one hidden layer, the paper's)")
    g.add_argument("--activation", choices=list(ACTIVATIONS), default="relu", help="hidden-layer nonlinearity")
    g.add_argument("--sigma_w", type=float, default=1.0, help="weight init std (NTK parameterisation)")
    g.add_argument("--sigma_b", type=float, default=0.0, help="bias init std")
    g.add_argument("--model_seed", type=int, default=None, help="network init seed; None: --seed")
    g.add_argument("--ntk_method", choices=list(METHODS), default="auto", help="empirical NTK method")
    g.add_argument("--ntk_dtype", choices=["float64", "float32"], default="float64",
                   help="dtype of the NTK and of its eigenpairs (float32: about twice as fast, relative "
                        "eigen-residuals about 1e-5)")


def _rank(args) -> int | None:
    rank = getattr(args, "rank", None)
    if rank is None:
        return None
    if rank < 0 or (rank == 0 and getattr(args, "rank_must_be_positive", False)):
        low = 1 if getattr(args, "rank_must_be_positive", False) else 0
        raise InputError(f"--rank must be >= {low}" + (" (0: the dense kernel)" if low == 0 else "")
                         + f", got --rank {rank}")
    return rank or None


def network_problem(args, *, progress: bool = True) -> Problem:
    """Dataset -> MLP -> problem_from_network (dense, or --rank K); the Problem carries .network."""
    from .data import load_dataset
    import torch

    from .models import CNN, MLP
    from .ntk import problem_from_network
    ds = load_dataset(args.dataset, args.N, seed=getattr(args, "seed", 0), root=getattr(args, "data_root", None),
                      n_test=getattr(args, "n_test", 0), target=getattr(args, "target", "label"),
                      dim=getattr(args, "dim", 16))
    seed = getattr(args, "seed", 0) if getattr(args, "model_seed", None) is None else args.model_seed
    width, depth = getattr(args, "width", 1000), getattr(args, "depth", 2)
    activation = getattr(args, "activation", "relu")
    C = 1 if ds.y.ndim == 1 else int(ds.y.shape[1])  # --target onehot: C outputs (docs/theory.md#outputs)
    if getattr(args, "model", "mlp") == "cnn":
        if ds.info["dataset"] not in IMAGE_SHAPES:
            raise InputError(f"--model cnn needs an image dataset ({', '.join(IMAGE_SHAPES)}), got --dataset "
                             f"{ds.info['dataset']}")
        model = CNN(IMAGE_SHAPES[ds.info["dataset"]], outputs=C, seed=seed, dtype=torch.float64)
    else:
        model = MLP(ds.X.shape[1], width=width, depth=depth, activation=activation,
                    sigma_w=getattr(args, "sigma_w", 1.0), sigma_b=getattr(args, "sigma_b", 0.0), seed=seed,
                    outputs=C)
    rank = _rank(args)
    parts = [] if isinstance(model, CNN) else [f"width={width}", f"depth={depth}", activation]
    parts += [f"{C} outputs"] if C > 1 else []
    name = (f"{ds.name}, {type(model).__name__}({', '.join(parts)})" + (f", rank {rank} + tail" if rank else ""))
    return problem_from_network(model, ds.X, ds.y, X_test=ds.X_test, y_test=ds.y_test,
                                method=getattr(args, "ntk_method", "auto"), device=getattr(args, "device", "auto"),
                                dtype=getattr(args, "ntk_dtype", None), name=name,
                                meta=dict(dataset=ds.info, model_seed=seed), rank=rank,
                                progress=progress and not getattr(args, "no_progress", False))


def _subset(args, progress):
    """--subset n: the problem of n points (the dataset's, or the --kernel file's), extrapolated to --N."""
    return extrapolation_from_args(args, progress=progress, ensemble=False).problem


def extrapolation_from_args(args, *, progress: bool = True, ensemble: bool = True):
    """--subset n: gfsgd.spectrum.extrapolate of the n-point problem to --N (with its ensemble and split-half
    checks when ensemble=True: a band for every prediction, Extrapolation.band)."""
    import copy

    from .spectrum import extrapolate
    n, N = int(args.subset), int(args.N)
    if _rank(args):
        raise InputError("--subset and --rank are two ways to a large problem: give one of them")
    if getattr(args, "n_test", 0):
        raise InputError("--subset gives a spectral-only problem without a held-out set: drop --n_test")
    if getattr(args, "kernel", None):
        small = Problem.load(args.kernel)
    else:
        if not (2 <= n < N):
            raise InputError(f"--subset must be in [2, N) with N={N} the points to predict for, got --subset {n}")
        sub = copy.copy(args)
        sub.subset, sub.N = None, n
        small = problem_from_args(sub, progress=progress)
    if small.N >= N:
        raise InputError(f"--subset: the subset has {small.N} points, not fewer than --N {N}")
    return extrapolate(small, N, ensemble=ensemble)


def problem_from_args(args, *, progress: bool = True) -> Problem:
    """The Problem the parsed options describe (module docstring); a bad combination raises InputError."""
    if getattr(args, "subset", None):
        return _subset(args, progress)
    rank = _rank(args)
    kernel = getattr(args, "kernel", None)
    dataset = getattr(args, "dataset", None)
    if kernel:
        problem = Problem.load(kernel)
    elif dataset and dataset != "synthetic" or (dataset == "synthetic" and not hasattr(args, "nu")):
        return network_problem(args, progress=progress)
    else:
        if rank:
            raise InputError("--rank takes the top eigenpairs of a kernel: give --dataset or --kernel (a synthetic "
                             "problem is already spectral)")
        basis = getattr(args, "basis", "random")
        if basis == "auto":
            basis = "random" if args.N <= 2000 else "none"
        return Problem.synthetic(args.N, args.nu, args.kappa, getattr(args, "lambda_min", 0.0),
                                 seed=getattr(args, "seed", 0), basis=None if basis == "none" else basis,
                                 n_test=getattr(args, "n_test", 0))
    if rank:  # the top-k of a saved dense kernel as an operator, plus the tail
        from .spectrum import problem_from_operator
        if not problem.has_basis:
            raise InputError(f"--rank needs a kernel to take eigenpairs from; {kernel} is spectral only")
        problem = problem_from_operator(problem.K * problem.lambda_max_raw, problem.d0, rank=rank,
                                        name=f"{problem.name}, rank {rank} + tail",
                                        meta=dict(problem.meta, source=problem.name),
                                        progress=progress and not getattr(args, "no_progress", False))
    return problem
