"""Datasets -> (X, y) tensors for the network regimes.

    ds = load_dataset("mnist", N=1000, seed=0, root="data")     # or root=None: $GFSGD_DATA_ROOT, else "data"
    X, y = ds                                                   # X [N, D] float64, y [N] float64
    ds.X_test, ds.y_test                                          # n_test held-out points (None when n_test=0)

Datasets: mnist, cifar10, bike_sharing, sgemm (standard files under the data root, see data/README.md and
gfsgd.data.readers; nothing is ever downloaded), digits (scikit-learn's bundled set) and synthetic (Gaussian
inputs with a smooth teacher; no files). `DATASETS` lists them.

Preparation (the paper's normalisation):
1. Stratified subsampling of N training points (and n_test held-out points, disjoint from them) from the
   dataset's training pool: per class for classification (proportional allocation), per decile of the
   target for regression; the order is then shuffled. Everything is seeded by `seed`.
2. Targets: classification -> the class label as a number (target="label") or its parity ("parity");
   regression -> the dataset's target (bike_sharing: cnt; sgemm: log mean run time). Then standardised:
   y = (t - mean) / std with the mean and std of the N training targets.
3. Inputs standardised with statistics of the N training points: per feature ("feature", the default for
   tabular data; constant features become 0) or with one mean and std over all entries ("global", the
   default for images, which keeps rarely-lit pixels from being blown up). Held-out points use the
   training statistics.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import readers
from ..errors import InputError

__all__ = ["load_dataset", "Dataset", "DATASETS", "default_root", "synthetic_inputs"]

_READERS = {
    "mnist": readers.read_mnist,
    "cifar10": readers.read_cifar10,
    "bike_sharing": readers.read_bike_sharing,
    "sgemm": readers.read_sgemm,
    "digits": readers.read_digits,
}
DATASETS = tuple(_READERS) + ("synthetic",)
_IMAGES = {"mnist", "cifar10", "digits"}
_ALIASES = {"cifar": "cifar10", "cifar-10": "cifar10", "bike": "bike_sharing", "bike-sharing": "bike_sharing",
            "sgemm_product": "sgemm", "synthetic_inputs": "synthetic"}


def default_root() -> Path:
    """$GFSGD_DATA_ROOT when set, else ./data."""
    return Path(os.environ.get("GFSGD_DATA_ROOT") or "data")


@dataclass
class Dataset:
    """N training points (X [N, D], y [N]) and optional held-out points; unpacks as X, y = dataset."""
    X: torch.Tensor
    y: torch.Tensor
    X_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    name: str = ""
    info: dict = field(default_factory=dict)

    def __iter__(self):
        return iter((self.X, self.y))

    @property
    def N(self) -> int:
        return int(self.X.shape[0])

    def __repr__(self):
        val = 0 if self.X_test is None else self.X_test.shape[0]
        return f"Dataset({self.name}, N={self.N}, D={self.X.shape[1]}, n_test={val})"


def synthetic_inputs(n: int, dim: int = 16, seed: int = 0):
    """Gaussian inputs x ~ N(0, I_dim) and a smooth teacher t = sin(2 x.u) + 0.5 (x.v)^2 (u, v unit vectors).

    Returns (X [n, dim], t [n]) as numpy float64 (fed through the same standardisation as real data)."""
    rng = np.random.default_rng(int(seed) + 7919)
    X = rng.standard_normal((n, dim))
    u, v = rng.standard_normal(dim), rng.standard_normal(dim)
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    return X, np.sin(2 * X @ u) + 0.5 * (X @ v) ** 2


def _check_int(value, name, low):
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < low:
        raise InputError(f"{name} must be an integer >= {low}, got {name}={value!r}")
    return int(value)


def _stratified(groups: np.ndarray, n: int, rng) -> np.ndarray:
    """n indices without replacement, allocated to groups proportionally (largest remainders)."""
    labels, counts = np.unique(groups, return_counts=True)
    quota = counts / counts.sum() * n
    take = np.floor(quota).astype(int)
    short = n - take.sum()
    order = np.argsort(-(quota - take), kind="stable")
    for k in order:
        if short == 0:
            break
        if take[k] < counts[k]:
            take[k] += 1
            short -= 1
    idx = [rng.choice(np.flatnonzero(groups == lab), size=t, replace=False) for lab, t in zip(labels, take) if t]
    idx = np.concatenate(idx) if idx else np.zeros(0, dtype=int)
    return rng.permutation(idx)


def _strata(target, kind):
    if kind == "classification":
        return target
    edges = np.quantile(target, np.linspace(0, 1, 11)[1:-1])
    return np.searchsorted(edges, target, side="right")


def load_dataset(name: str, N: int, seed: int = 0, root=None, *, n_test: int = 0, target: str = "label",
                 normalize: str = "auto", dim: int = 16, dtype=torch.float64) -> Dataset:
    """Load, subsample (stratified) and standardise a dataset; see the module docstring.

    Args:
        name: one of DATASETS (mnist, cifar10, bike_sharing, sgemm, digits, synthetic).
        N: training points (<= the dataset's training pool minus n_test).
        seed: seeds the subsample (and the synthetic inputs).
        root: data root (default: $GFSGD_DATA_ROOT, else "data").
        n_test: held-out points, disjoint from the training points, standardised with training statistics.
        target: classification sets: "label" (class index), "parity" (label mod 2), or "onehot": y [N, C], the
            centred one-hot labels e_label - 1/C (C = the number of classes; not standardised), for networks with
            C outputs; "label" and "parity" are ignored for regression.
        normalize: "auto" ("global" for images, "feature" for tabular), "feature", "global" or "none".
        dim: input dimension of the synthetic dataset.
    Returns: Dataset(X [N, D], y [N], X_test, y_test, name, info) with float tensors of `dtype`.
    """
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in DATASETS:
        raise InputError(f"dataset must be one of {list(DATASETS)}, got name={name!r}")
    N = _check_int(N, "N", 1)
    n_test = _check_int(n_test, "n_test", 0)
    if target not in ("label", "parity", "onehot"):
        raise InputError(f"target must be 'label', 'parity' or 'onehot', got target={target!r}")
    if normalize not in ("auto", "feature", "global", "none"):
        raise InputError(f"normalize must be 'auto', 'feature', 'global' or 'none', got normalize={normalize!r}")
    root = default_root() if root is None else Path(root)
    rng = np.random.default_rng(int(seed))
    if key == "synthetic":
        dim = _check_int(dim, "dim", 1)
        Xall, tall = synthetic_inputs(N + n_test, dim, seed)
        kind, source = "regression", "synthetic"
    else:
        Xall, tall, kind, source = _READERS[key](root)
    M = Xall.shape[0]
    if N + n_test > M:
        raise InputError(f"N={N} (+ n_test={n_test}) is larger than the dataset: {key} has {M} training points")
    if kind == "classification" and target == "parity":
        tall = tall % 2
    strata = _strata(tall, kind)
    idx = _stratified(strata, N, rng) if key != "synthetic" else np.arange(N)
    if n_test:
        rest = np.setdiff1d(np.arange(M), idx)
        vidx = rest[_stratified(strata[rest], n_test, rng)] if key != "synthetic" else np.arange(N, N + n_test)
    X, t = Xall[idx], tall[idx].astype(np.float64)
    mode = ("global" if key in _IMAGES else "feature") if normalize == "auto" else normalize
    if mode == "feature":
        mu, sd = X.mean(0), X.std(0)
        sd = np.where(sd > 1e-12 * max(1.0, float(np.abs(mu).max(initial=0))), sd, np.inf)  # constant -> 0
    elif mode == "global":
        mu, sd = X.mean(), X.std()
        sd = sd if sd > 0 else np.inf
    else:
        mu, sd = 0.0, 1.0
    t_mu, t_sd = t.mean(), t.std()
    if not t_sd > 0:
        raise InputError(f"the N={N} sampled targets of {key} are all equal ({t_mu}); cannot standardise "
                         f"(take a larger N)")
    conv = (lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype))
    Xt = yt = None
    if n_test:
        Xt = conv((Xall[vidx] - mu) / sd)
        yt = conv((tall[vidx].astype(np.float64) - t_mu) / t_sd)
    info = dict(dataset=key, source=str(source), N=N, n_test=n_test, seed=int(seed), pool=M, D=int(X.shape[1]),
                kind=kind, target=target if kind == "classification" else "regression", normalize=mode,
                target_mean=float(t_mu), target_std=float(t_sd))
    if not math.isfinite(float(np.abs(X).max(initial=0.0))):
        raise InputError(f"{source}: the inputs hold non-finite values")
    if target == "onehot":  # C outputs: centred one-hot labels e_label - 1/C (docs/theory.md#outputs)
        if kind != "classification":
            raise InputError(f"target='onehot' needs a classification dataset; {key} is a regression set")
        C = int(tall.max()) + 1
        onehot = (lambda lab: conv(np.eye(C)[lab.astype(np.int64)] - 1.0 / C))
        info.update(target="onehot", n_classes=C, target_mean=None, target_std=None)
        return Dataset(conv((X - mu) / sd), onehot(tall[idx]), Xt, None if not n_test else onehot(tall[vidx]),
                       name=f"{key}(N={N}, seed={seed}, one-hot C={C})", info=info)
    return Dataset(conv((X - mu) / sd), conv((t - t_mu) / t_sd), Xt, yt, name=f"{key}(N={N}, seed={seed})",
                   info=info)
