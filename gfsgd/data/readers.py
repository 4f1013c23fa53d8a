"""Readers of the standard dataset files (no downloads, ever).

Each reader takes the data root and returns (X, target, kind, source):
X [M, D] float64 numpy array of raw features, target [M] (class labels as integers for kind
"classification", real values for kind "regression"), and the path that was read.

Where each file is looked for (first match wins; `root` is the data root, "data" by default):

    mnist        root/mnist/train-images-idx3-ubyte[.gz] + root/mnist/train-labels-idx1-ubyte[.gz],
                 else root/mnist/mnist.npz or root/mnist.npz (keys x_train, y_train), also directly in root/
    cifar10      root/cifar10/cifar-10-batches-py/data_batch_{1..5} or root/cifar-10-batches-py/data_batch_{1..5}
    bike_sharing root/bike_sharing/hour.csv or root/hour.csv
    sgemm        root/sgemm/sgemm_product.csv or root/sgemm_product.csv
    digits       scikit-learn's bundled copy (no file)
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from ..errors import InputError

__all__ = ["read_idx", "read_mnist", "read_cifar10", "read_bike_sharing", "read_sgemm", "read_digits",
           "SOURCES"]

SOURCES = {
    "mnist": "http://yann.lecun.com/exdb/mnist/ (the four *-ubyte.gz files; or Keras' mnist.npz)",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR-10 python version, cifar-10-python.tar.gz, "
               "extracted)",
    "bike_sharing": "https://archive.ics.uci.edu/dataset/275/bike+sharing+dataset (hour.csv from the zip)",
    "sgemm": "https://archive.ics.uci.edu/dataset/440/sgemm+gpu+kernel+performance (sgemm_product.csv from "
             "the zip)",
}


def _missing(name, looked):
    paths = "\n  ".join(str(p) for p in looked)
    return FileNotFoundError(
        f"dataset {name!r}: no file found; looked for\n  {paths}\n"
        f"Get it from {SOURCES[name]} and put it there (see data/README.md), or point the data root "
        f"(root=... / --data_root / $GFSGD_DATA_ROOT) at the folder that holds it. Nothing is downloaded.")


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


# ---------------------------------------------------------------------------------------------- MNIST
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """An IDX file (gzip-compressed or not) as a numpy array; a malformed file is a ValueError naming it."""
    path = Path(path)
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"{path} is not a readable IDX file: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise InputError(f"{path} is not an IDX file: bad magic number {raw[:4].hex() if raw else '(empty)'} "
                         f"(expected 0000 <type byte> <ndim>, e.g. 00000803 for images)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise InputError(f"{path}: IDX header truncated (file has {len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dt = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dt.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise InputError(f"{path}: IDX header says shape {shape} ({expected} bytes of data) but the file holds "
                         f"{len(body)} bytes: truncated or corrupted")
    return np.frombuffer(body, dtype=dt).reshape(shape)


def _find(root: Path, folders, names):
    looked = []
    for folder in folders:
        for name in names:
            p = root / folder / name if folder else root / name
            looked.append(p)
            if p.is_file():
                return p, looked
    return None, looked


def read_mnist(root):
    root = Path(root)
    looked = []
    for folder in ("mnist", "MNIST", ""):
        imgs, l1 = _find(root, [folder], ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"])
        labs, l2 = _find(root, [folder], ["train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte"])
        looked += l1 + l2
        if imgs and labs:
            X, lab = read_idx(imgs), read_idx(labs)
            if X.ndim != 3 or lab.ndim != 1 or X.shape[0] != lab.shape[0]:
                raise InputError(f"MNIST files {imgs} and {labs} disagree: images {X.shape}, labels {lab.shape} "
                                 f"(expected [M, 28, 28] and [M])")
            return X.reshape(X.shape[0], -1).astype(np.float64), lab.astype(np.int64), "classification", imgs
    npz, l3 = _find(root, ["mnist", ""], ["mnist.npz"])
    looked += l3
    if npz is None:
        raise _missing("mnist", looked)
    try:
        with np.load(npz, allow_pickle=False) as z:
            X, lab = z["x_train"], z["y_train"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{npz} is not a valid mnist.npz (needs arrays x_train [M, 28, 28], y_train [M]): "
                         f"{exc}") from None
    if X.ndim != 3 or lab.ndim != 1 or X.shape[0] != lab.shape[0]:
        raise InputError(f"{npz}: x_train {X.shape} and y_train {lab.shape} do not match ([M, 28, 28], [M])")
    return X.reshape(X.shape[0], -1).astype(np.float64), lab.astype(np.int64), "classification", npz


# -------------------------------------------------------------------------------------------- CIFAR-10
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR-10 batch needs nothing else, and a crafted
    file cannot make the reader call anything (find_class refuses every other global)."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only a dict of "
                                     f"arrays, lists and bytes")


def read_cifar10(root):
    root = Path(root)
    looked = []
    for folder in ("cifar10/cifar-10-batches-py", "cifar-10-batches-py", "cifar10"):
        first = root / folder / "data_batch_1"
        looked.append(first)
        if first.is_file():
            xs, ys = [], []
            for k in range(1, 6):
                p = root / folder / f"data_batch_{k}"
                if not p.is_file():
                    raise _missing("cifar10", [p])
                try:
                    with open(p, "rb") as f:
                        d = _ArrayUnpickler(f, encoding="bytes").load()
                    x = np.asarray(d[b"data"], dtype=np.uint8)
                    y = np.asarray(d[b"labels"], dtype=np.int64)
                except Exception as exc:  # noqa: BLE001 - a bad pickle raises many kinds
                    raise InputError(f"{p} is not a CIFAR-10 python batch (a pickled dict with b'data' "
                                     f"[10000, 3072] and b'labels'): {type(exc).__name__}: {exc}") from None
                if x.ndim != 2 or x.shape[1] != 3072 or x.shape[0] != y.shape[0]:
                    raise InputError(f"{p}: data {x.shape} and labels {y.shape} (expected [n, 3072] and [n])")
                xs.append(x), ys.append(y)
            return np.concatenate(xs).astype(np.float64), np.concatenate(ys), "classification", first.parent
    raise _missing("cifar10", looked)


# ------------------------------------------------------------------------------------------ UCI tables
MAX_ABS_VALUE = 1e100  # larger table entries overflow x^2 in the standardisation


def _read_csv(name, path, needed):
    import pandas as pd
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path} is not a readable CSV file: {type(exc).__name__}: {exc}") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(f"{path} is not the UCI {name} table: columns {missing} are missing "
                         f"(found {list(df.columns)[:20]})")
    sub = df[needed].apply(pd.to_numeric, errors="coerce")
    bad = sub.isna().any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}: {int(bad.sum())} rows have missing or non-numeric values (first: data row "
                         f"{row + 1})")
    if len(sub) == 0:
        raise InputError(f"{path} has no data rows")
    vals = np.abs(sub.to_numpy(dtype=np.float64))
    huge = ~(vals <= MAX_ABS_VALUE)  # inf and NaN included
    if huge.any():
        r, c = (int(i[0]) for i in np.nonzero(huge))
        raise InputError(f"{path}: column {needed[c]!r}, data row {r + 1} holds {float(sub.iat[r, c]):g}; values must be "
                         f"finite and within +-{MAX_ABS_VALUE:g} (beyond that the standardisation overflows: the "
                         f"square of the value is not a float)")
    return sub


BIKE_FEATURES = ["season", "yr", "mnth", "hr", "holiday", "weekday", "workingday", "weathersit", "temp", "atemp",
                 "hum", "windspeed"]
SGEMM_FEATURES = ["MWG", "NWG", "KWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "KWI", "VWM", "VWN", "STRM", "STRN",
                  "SA", "SB"]
SGEMM_RUNS = ["Run1 (ms)", "Run2 (ms)", "Run3 (ms)", "Run4 (ms)"]


def read_bike_sharing(root):
    """UCI bike sharing, hourly: 12 features (season ... windspeed), target cnt (rentals per hour)."""
    path, looked = _find(Path(root), ["bike_sharing", "bike-sharing", ""], ["hour.csv"])
    if path is None:
        raise _missing("bike_sharing", looked)
    df = _read_csv("bike sharing (hour.csv)", path, BIKE_FEATURES + ["cnt"])
    return df[BIKE_FEATURES].to_numpy(np.float64), df["cnt"].to_numpy(np.float64), "regression", path


def read_sgemm(root):
    """UCI SGEMM GPU kernel performance: 14 kernel parameters, target log of the mean of the 4 run times."""
    path, looked = _find(Path(root), ["sgemm", ""], ["sgemm_product.csv"])
    if path is None:
        raise _missing("sgemm", looked)
    df = _read_csv("SGEMM (sgemm_product.csv)", path, SGEMM_FEATURES + SGEMM_RUNS)
    runtime = df[SGEMM_RUNS].to_numpy(np.float64).mean(1)
    if (runtime <= 0).any():
        raise InputError(f"{path}: run times must be > 0 ms (the target is log of their mean)")
    return df[SGEMM_FEATURES].to_numpy(np.float64), np.log(runtime), "regression", path


def read_digits(root=None):
    """scikit-learn's bundled 8x8 digits: 1797 images, 64 features in 0..16, labels 0-9 (no file needed)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.data.astype(np.float64), d.target.astype(np.int64), "classification", "sklearn.datasets.load_digits"
