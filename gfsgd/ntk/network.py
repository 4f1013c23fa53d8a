"""From a network to a Problem: the network linearised at its initialisation w0 (dense: the empirical NTK and
its eigendecomposition; rank=k: the matrix-free operator, its top k eigenpairs and a power-law tail), and the
NetworkProblem the nn regime trains.

    problem = problem_from_network(model, X, y)           # also exported as gfsgd.problem_from_network
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..device import resolve_device, resolve_dtype
from ..problem import Problem
from .empirical import DEFAULT_MEMORY_BUDGET, empirical_ntk, network_output, structured_support
from .operator import kernel_operator
from ..errors import InputError

__all__ = ["NetworkProblem", "problem_from_network"]


@dataclass
class NetworkProblem:
    """What the nn regime needs to train the real network: the model at init and its data.

    model: the network (scalar output), at its initialisation w0 (never modified by gfsgd);
    X [N, ...], y [N]: training points; X_test, y_test: optional held-out points (validation loss);
    lambda_max_raw: top eigenvalue of the empirical NTK K_emp at w0 (converts the learning rate:
        lr_nn = alpha * N / lambda_max_raw); computed on first use when None.
    """
    model: nn.Module
    X: torch.Tensor
    y: torch.Tensor
    X_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    lambda_max_raw: float | None = None
    name: str = "network"
    ntk_method: str = "auto"
    _loss0: float | None = field(default=None, repr=False)

    def __post_init__(self):
        self.X = torch.as_tensor(self.X)
        self.y = torch.as_tensor(self.y)
        if self.y.ndim not in (1, 2) or self.X.shape[0] != self.y.shape[0]:
            raise InputError(f"X [N, ...] and y [N] (or [N, C] for C outputs) must have the same N, got X "
                             f"{tuple(self.X.shape)} and y {tuple(self.y.shape)}")
        if (self.X_test is None) != (self.y_test is None):
            raise InputError("give both X_test and y_test, or neither")
        if self.X_test is not None:
            self.X_test, self.y_test = torch.as_tensor(self.X_test), torch.as_tensor(self.y_test)
            if self.y_test.ndim != self.y.ndim or self.X_test.shape[0] != self.y_test.shape[0]:
                raise InputError(f"X_test and y_test must have the same length, got {tuple(self.X_test.shape)} "
                                 f"and {tuple(self.y_test.shape)}")

        out = network_output(self.model, self.X[:1], device="cpu")  # the model's outputs per example
        c_model = 1 if out.ndim == 1 else int(out.shape[1])
        if c_model != self.n_outputs:
            raise InputError(f"the model returns {c_model} output(s) per example but y has {self.n_outputs}: give "
                             f"y [N] for a model with one output per example, or y [N, C] (e.g. one-hot labels) for "
                             f"C outputs")

    @property
    def N(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_outputs(self) -> int:
        """C, the outputs per example (y [N] or [N, C])."""
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])

    @property
    def loss0(self) -> float:
        """L_0 = |f(X; w0) - y|^2 / (2N) (float64)."""
        if self._loss0 is None:
            d0 = network_output(self.model, self.X, dtype=torch.float64, device="cpu") - self.y.double()
            self._loss0 = float((d0 ** 2).sum() / (2 * self.N))
        return self._loss0

    def lambda_max(self, device="auto") -> float:
        """lambda_max(K_emp) at w0 (computed once, float64)."""
        if self.lambda_max_raw is None:
            if self.N <= 4096:
                K = empirical_ntk(self.model, self.X, method=self.ntk_method, device=device)
                self.lambda_max_raw = float(torch.linalg.eigvalsh(K)[-1])
            else:  # no N x N matrix: the top eigenpair of the matrix-free operator
                from ..spectrum import top_eigenpairs
                op = kernel_operator(self.model, self.X, method=self.ntk_method, device=device)
                self.lambda_max_raw = float(top_eigenpairs(op, 1, tol=1e-10, verify=False).eigvals[0])
        return self.lambda_max_raw

    def lr_scale(self, device="auto") -> float:
        """lr_nn / alpha = N / lambda_max(K_emp)."""
        return self.N / self.lambda_max(device)


def _network_data(X, y, X_test, y_test):
    """(X [N, ...], y [N] or [N, C], X_test [M, ...] or None, y_test [M] / [M, C] or None) as tensors, checked
    (y [N, 1] is y [N])."""
    def tensor(a):
        return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)

    X_t, y_t = tensor(X), tensor(y)
    if y_t.ndim == 2 and y_t.shape[1] == 1:
        y_t = y_t[:, 0]
    if y_t.ndim not in (1, 2) or X_t.ndim < 2 or y_t.shape[0] != X_t.shape[0]:
        raise InputError(f"X must be [N, ...] and y [N] (or [N, C]: C outputs, e.g. one-hot labels) with the same "
                         f"N, got X {tuple(X_t.shape)}, y {tuple(y_t.shape)}")
    if (X_test is None) != (y_test is None):
        raise InputError("give both X_test and y_test, or neither")
    if X_test is not None:
        X_test, y_test = tensor(X_test), tensor(y_test)
        if y_test.ndim == 2 and y_test.shape[1] == 1:
            y_test = y_test[:, 0]
        if y_test.shape[1:] != y_t.shape[1:] or X_test.shape[0] != y_test.shape[0] or X_test.shape[1:] != X_t.shape[1:]:
            raise InputError(f"X_test must be [M, {', '.join(map(str, X_t.shape[1:]))}] and y_test [M], got "
                             f"X_test {tuple(X_test.shape)}, y_test {tuple(y_test.shape)}")
    return X_t, y_t, X_test, y_test


def problem_from_network(model, X, y, *, X_test=None, y_test=None, method: str = "auto", dtype=None,
                         device="auto", memory_budget: float | None = None, name: str | None = None,
                         meta: dict | None = None, rank: int | None = None, tol: float = 1e-8,
                         progress: bool = False):
    """Problem of the network linearised at its initialisation w0.

        K = K_emp / lambda_max(K_emp),   K_emp = J(X) J(X)^T at w0      [N, N]
        d0 = f(X; w0) - y                                              [N]
        problem.lambda_max_raw = lambda_max(K_emp)   (lr_nn = alpha * N / lambda_max_raw)

    With held-out points (X_test [M, ...], y_test [M]) the problem also carries the test set of the
    linearised model: K_test = K_emp(X_test, X) / lambda_max(K_emp) and r_test = f(X_test; w0) - y_test.

    The returned gfsgd.Problem carries `problem.network`, a NetworkProblem (model, X, y, X_test, y_test,
    lambda_max_raw) that gfsgd.regimes.nn trains; `problem.meta` holds only light, JSON-able facts (model
    description, N, lambda_max_raw, the lr conversion factor N / lambda_max_raw, the NTK method).
    Problem.to() and Problem.save() drop `network`; pass it to the nn regime explicitly then (network=...).

    rank=k (full datasets, docs/theory.md#full-datasets): the kernel is a matrix-free operator
    (kernel_operator), its top k eigenpairs come from gfsgd.spectrum.top_eigenpairs (relative residual tol) and
    the modes beyond k from the power-law tail (gfsgd.spectrum.spectral_tail). memory_budget (default 1 GiB)
    bounds the whole computation: the per-layer features, the Krylov basis with its working blocks and Ritz
    step, and the kernel's row blocks (which shrink as the basis grows). No N x N matrix is formed unless it
    fits in half the budget (the operator then keeps it: its passes are much cheaper). Peak resident memory is
    the process with its model and data plus at most about memory_budget; a basis that would outgrow the
    budget raises ConvergenceError naming the budget it needs. Measured (MNIST, MLP width 1000, rank 200,
    float64, default budget; benchmarks/results/memory.json): the peak rises 896 MB above the process with its
    model and data at N = 15,000 (peak RSS 1.47 GB; the dense float64 kernel alone is 1.8 GB) and 684 MB at
    N = 10,000 (2,312 MB before the budget bounded the run). At small N the Krylov basis nears N and the dense
    path is leaner (N = 2,000: 198 MB, the kernel 32 MB). The result is a spectral-only Problem of N modes (no
    eigenvectors: the SD regime and the theory run on it; full and linearized need the basis and refuse it);
    `meta["spectrum"]` records the fit (and `meta["spectrum"]["memory"]` the memory accounting). With held-out
    points the network keeps them (the nn regime measures the test loss) but the problem has no test set (the
    test loss of the kernel regimes needs the basis).
    """
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    if rank is not None:
        return _rank_problem(model, X, y, X_test=X_test, y_test=y_test, method=method, dtype=dt, device=dev,
                             memory_budget=memory_budget, name=name, meta=meta, rank=rank, tol=tol,
                             progress=progress)
    X_t, y_t, X_test, y_test = _network_data(X, y, X_test, y_test)
    K = empirical_ntk(model, X_t, method=method, dtype=dt, device=dev, memory_budget=memory_budget)
    f0 = network_output(model, X_t, dtype=dt, device=dev)
    if f0.shape != y_t.shape:
        raise InputError(f"the model's output on X has shape {tuple(f0.shape)} but y has shape {tuple(y_t.shape)}: "
                         f"give y [N, C] for a model with C outputs (e.g. one-hot labels)")
    d0 = (f0 - y_t.to(dev, dt)).cpu().double()  # [N] or [N, C] (C outputs: Problem.from_kernel flattens it)
    K_test = r_test = None
    if X_test is not None:  # the held-out set of the linearised model (C outputs: [M C, N C], example-major)
        K_test = empirical_ntk(model, X_test, X_t, method=method, dtype=dt, device=dev,
                               memory_budget=memory_budget).cpu().double()
        r_test = (network_output(model, X_test, dtype=dt, device=dev) - y_test.to(dev, dt)).cpu().double().reshape(-1)
    used = "structured" if method != "jacobian" and y_t.ndim == 1 and structured_support(model)[0] else "jacobian"
    info = dict(kind="network", N=int(X_t.shape[0]), ntk_method=used, ntk_dtype=str(dt).replace("torch.", ""))
    if hasattr(model, "describe"):
        info["model"] = model.describe()
    info.update(meta or {})
    psd_tol = 1e-8 if dt == torch.float64 else 1e-4
    problem = Problem.from_kernel(K.cpu().double(), d0, name=name or f"network(N={X_t.shape[0]})", meta=info,
                                  psd_tol=psd_tol, sym_tol=1e-8 if dt == torch.float64 else 1e-5,
                                  K_test=K_test, r_test=r_test)
    problem.meta.update(lambda_max_raw=problem.lambda_max_raw, lr_nn_per_alpha=problem.N / problem.lambda_max_raw)
    problem.network = NetworkProblem(model=model, X=X_t, y=y_t, X_test=X_test, y_test=y_test,
                                     lambda_max_raw=problem.lambda_max_raw, name=problem.name,
                                     ntk_method=method, _loss0=problem.loss0)
    return problem


def _rank_problem(model, X, y, *, X_test, y_test, method, dtype, device, memory_budget, name, meta, rank, tol,
                  progress):
    from ..spectrum import problem_from_operator
    from ..spectrum.memory import release_freed_memory
    X_t, y_t, X_test, y_test = _network_data(X, y, X_test, y_test)
    if y_t.ndim == 2:
        raise InputError("rank=k with C outputs per example is not supported yet: use the dense kernel (rank=None)")
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget  # the whole run's bound
    # d0 first, in blocks of 1,024 rows: its activations are freed before the operator's features exist
    d0 = (network_output(model, X_t, dtype=dtype, device=device, block_size=1024)
          - y_t.to(device, dtype)).cpu().double()
    release_freed_memory()
    op = kernel_operator(model, X_t, dtype=dtype, device=device, memory_budget=budget, method=method)
    info = dict(kind="network", N=int(X_t.shape[0]), ntk_method=op.method, ntk_dtype=str(dtype).replace("torch.", ""),
                operator=dict(op.info))
    if hasattr(model, "describe"):
        info["model"] = model.describe()
    info.update(meta or {})
    problem = problem_from_operator(op, d0, rank=rank, tol=tol, name=name or f"network(N={X_t.shape[0]}, rank={rank})",
                                    meta=info, progress=progress, memory_budget=budget)
    problem.meta.update(lambda_max_raw=problem.lambda_max_raw, lr_nn_per_alpha=problem.N / problem.lambda_max_raw,
                        operator_passes=op.passes, operator_seconds=op.seconds)
    problem.network = NetworkProblem(model=model, X=X_t, y=y_t, X_test=X_test, y_test=y_test,
                                     lambda_max_raw=problem.lambda_max_raw, name=problem.name,
                                     ntk_method=method, _loss0=problem.loss0)
    return problem
