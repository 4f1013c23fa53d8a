"""gfsgd.data: readers on small generated fixture files, subsampling and normalisation, and clear errors."""
import gzip
import pickle

import numpy as np
import pytest
import torch

from gfsgd.data import DATASETS, default_root, load_dataset
from gfsgd.data.readers import read_idx


def write_idx(path, arr, gz):
    arr = np.asarray(arr)
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    data = head + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def fake_mnist(M=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(M) % 10
    images = rng.integers(0, 256, size=(M, 28, 28), dtype=np.uint8)
    return images, labels.astype(np.uint8)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, gz):
    images, labels = fake_mnist()
    sfx = ".gz" if gz else ""
    write_idx(tmp_path / "mnist" / f"train-images-idx3-ubyte{sfx}", images, gz)
    write_idx(tmp_path / "mnist" / f"train-labels-idx1-ubyte{sfx}", labels, gz)
    assert np.array_equal(read_idx(tmp_path / "mnist" / f"train-images-idx3-ubyte{sfx}"), images)
    ds = load_dataset("mnist", 40, seed=3, root=tmp_path, n_test=10)
    assert ds.X.shape == (40, 784) and ds.y.shape == (40,) and ds.X.dtype == torch.float64
    assert ds.X_test.shape == (10, 784)
    # global standardisation of inputs, standardised targets
    assert abs(ds.X.mean().item()) < 1e-12 and abs(ds.X.std(unbiased=False).item() - 1) < 1e-12
    assert abs(ds.y.mean().item()) < 1e-12 and abs(ds.y.std(unbiased=False).item() - 1) < 1e-12
    # stratified: 4 of each of the 10 classes; labels recoverable from the standardised targets
    lab = np.round(ds.y.numpy() * ds.info["target_std"] + ds.info["target_mean"]).astype(int)
    assert np.bincount(lab, minlength=10).tolist() == [4] * 10
    same = load_dataset("mnist", 40, seed=3, root=tmp_path, n_test=10)
    assert torch.equal(same.X, ds.X) and torch.equal(same.X_test, ds.X_test)
    other = load_dataset("mnist", 40, seed=4, root=tmp_path)
    assert not torch.equal(other.X, ds.X)
    X, y = ds  # unpacks as (X, y)
    assert X is ds.X and y is ds.y


def test_train_and_val_are_disjoint(tmp_path):
    images, labels = fake_mnist(80)
    images = images.copy()
    images.reshape(80, -1)[:, 0] = np.arange(80)  # pixel 0 = row id, to identify rows
    write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", images, True)
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", labels, True)
    ds = load_dataset("mnist", 50, seed=0, root=tmp_path, n_test=30, normalize="none")
    tr, va = set(ds.X[:, 0].int().tolist()), set(ds.X_test[:, 0].int().tolist())
    assert len(tr) == 50 and len(va) == 30 and not tr & va


def test_mnist_npz(tmp_path):
    images, labels = fake_mnist()
    (tmp_path / "mnist").mkdir()
    np.savez(tmp_path / "mnist" / "mnist.npz", x_train=images, y_train=labels, x_test=images[:5], y_test=labels[:5])
    ds = load_dataset("mnist", 20, root=tmp_path, target="parity")
    lab = np.round(ds.y.numpy() * ds.info["target_std"] + ds.info["target_mean"]).astype(int)
    assert sorted(set(lab.tolist())) == [0, 1] and lab.sum() == 10


def test_cifar10_batches(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(1, 6):
        d = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": list(range(10)) * 2}
        with open(folder / f"data_batch_{k}", "wb") as f:
            pickle.dump(d, f)
    ds = load_dataset("cifar10", 50, root=tmp_path)
    assert ds.X.shape == (50, 3072) and ds.info["pool"] == 100
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_3"):
        load_dataset("cifar10", 50, root=tmp_path)
    # a crafted pickle that would run code is refused, and the code does not run
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(ValueError, match="refusing to load"):
        load_dataset("cifar10", 50, root=tmp_path)
    assert not marker.exists()


def test_uci_tables(tmp_path):
    import pandas as pd
    rng = np.random.default_rng(0)
    n = 200
    bike = pd.DataFrame({c: rng.integers(0, 5, n) for c in ["instant", "season", "yr", "mnth", "hr", "holiday",
                                                                "weekday", "workingday", "weathersit"]})
    for c in ["temp", "atemp", "hum", "windspeed"]:
        bike[c] = rng.random(n)
    bike["dteday"] = "2011-01-01"
    bike["casual"], bike["registered"] = rng.integers(0, 50, n), rng.integers(0, 50, n)
    bike["cnt"] = bike["casual"] + bike["registered"]
    (tmp_path / "bike_sharing").mkdir()
    bike.to_csv(tmp_path / "bike_sharing" / "hour.csv", index=False)
    ds = load_dataset("bike_sharing", 100, root=tmp_path, n_test=20)
    assert ds.X.shape == (100, 12) and ds.info["normalize"] == "feature"
    assert np.allclose(ds.X.numpy().mean(0), 0, atol=1e-12)
    assert np.allclose(ds.X.numpy().std(0)[ds.X.numpy().std(0) > 0], 1)
    # stratified by target deciles: every decile of the pool is represented
    edges = np.quantile(bike["cnt"], np.linspace(0, 1, 11)[1:-1])
    t = ds.y.numpy() * ds.info["target_std"] + ds.info["target_mean"]
    assert len(np.unique(np.searchsorted(edges, np.round(t), side="right"))) >= 8

    cols = ["MWG", "NWG", "KWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "KWI", "VWM", "VWN", "STRM", "STRN", "SA", "SB"]
    sg = pd.DataFrame({c: rng.integers(1, 8, n) for c in cols})
    for r in range(1, 5):
        sg[f"Run{r} (ms)"] = rng.random(n) * 100 + 1
    sg.to_csv(tmp_path / "sgemm_product.csv", index=False)
    ds = load_dataset("sgemm", 50, root=tmp_path)
    assert ds.X.shape == (50, 14)
    sg.drop(columns=["Run3 (ms)"]).to_csv(tmp_path / "sgemm_product.csv", index=False)
    with pytest.raises(ValueError, match=r"Run3 \(ms\)"):
        load_dataset("sgemm", 50, root=tmp_path)


def test_embedded_datasets():
    ds = load_dataset("digits", 300, seed=1, n_test=100)
    assert ds.X.shape == (300, 64) and ds.X_test.shape == (100, 64)
    lab = np.round(ds.y.numpy() * ds.info["target_std"] + ds.info["target_mean"]).astype(int)
    from sklearn.datasets import load_digits
    pool = np.bincount(load_digits().target)
    assert np.all(np.abs(np.bincount(lab) - 300 * pool / pool.sum()) < 1)  # proportional allocation
    syn = load_dataset("synthetic", 64, seed=2, dim=5)
    assert syn.X.shape == (64, 5) and abs(syn.y.std(unbiased=False).item() - 1) < 1e-12
    assert set(DATASETS) == {"mnist", "cifar10", "bike_sharing", "sgemm", "digits", "synthetic"}


def test_missing_files_name_the_path_and_source(tmp_path):
    for name, what in [("mnist", "train-images-idx3-ubyte"), ("cifar10", "data_batch_1"),
                       ("bike_sharing", "hour.csv"), ("sgemm", "sgemm_product.csv")]:
        with pytest.raises(FileNotFoundError) as exc:
            load_dataset(name, 10, root=tmp_path)
        msg = str(exc.value)
        assert what in msg and str(tmp_path) in msg and "http" in msg and "data/README.md" in msg


def test_malformed_files(tmp_path):
    images, labels = fake_mnist()
    d = tmp_path / "mnist"
    write_idx(d / "train-labels-idx1-ubyte.gz", labels, True)
    (d / "train-images-idx3-ubyte.gz").write_bytes(b"garbage that is not gzip")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", 10, root=tmp_path)
    with gzip.open(d / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(ValueError, match="magic number"):
        load_dataset("mnist", 10, root=tmp_path)
    write_idx(d / "train-images-idx3-ubyte.gz", images, True)
    raw = gzip.open(d / "train-images-idx3-ubyte.gz").read()
    with gzip.open(d / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(ValueError, match="truncated"):
        load_dataset("mnist", 10, root=tmp_path)
    (tmp_path / "hour.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="columns"):
        load_dataset("bike_sharing", 1, root=tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="N=2000 .* larger than the dataset: digits has 1797"):
        load_dataset("digits", 2000)
    with pytest.raises(ValueError, match="n_test"):
        load_dataset("digits", 1700, n_test=200)
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_dataset("imagenet", 10)
    with pytest.raises(ValueError, match="N must be"):
        load_dataset("digits", 0)
    with pytest.raises(ValueError, match="target"):
        load_dataset("digits", 10, target="ranking")
    with pytest.raises(ValueError, match="onehot' needs a classification dataset"):
        load_dataset("synthetic", 10, target="onehot")
    ds = load_dataset("digits", 50, n_test=20, target="onehot")
    assert ds.y.shape == (50, 10) and ds.y_test.shape == (20, 10) and ds.info["n_classes"] == 10
    np.testing.assert_allclose(ds.y.sum(1).numpy(), 0.0, atol=1e-12)  # centred: e_label - 1/C
    assert set(np.round(ds.y.numpy().max(1), 12)) == {0.9}


def _mnist_root():
    root = default_root()
    if any((root / "mnist" / f).is_file() for f in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte",
                                                    "mnist.npz")):
        return root
    return None


@pytest.mark.mnist
@pytest.mark.skipif(_mnist_root() is None, reason="MNIST files not under $GFSGD_DATA_ROOT (or ./data)/mnist")
def test_real_mnist():
    from gfsgd.data.readers import read_mnist
    X, lab, kind, src = read_mnist(_mnist_root())
    assert X.shape == (60000, 784) and kind == "classification"
    assert np.bincount(lab).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(X.mean() - 33.318) < 1e-3
    ds = load_dataset("mnist", 1000, seed=0, root=_mnist_root())
    assert ds.X.shape == (1000, 784)


def test_a_huge_table_entry_is_refused_by_name(tmp_path):
    """1e300 in a CSV used to pass with numpy overflow warnings and a degenerate feature (issue 27, item 7)."""
    import pandas as pd
    from gfsgd.errors import InputError
    rng = np.random.default_rng(1)
    n = 60
    cols = ["MWG", "NWG", "KWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "KWI", "VWM", "VWN", "STRM", "STRN", "SA", "SB"]
    sg = pd.DataFrame({c: rng.integers(1, 8, n).astype(float) for c in cols})
    for r in range(1, 5):
        sg[f"Run{r} (ms)"] = rng.random(n) * 100 + 1
    sg.loc[7, "KWG"] = 1e300
    sg.to_csv(tmp_path / "sgemm_product.csv", index=False)
    with pytest.raises(InputError, match=r"column 'KWG', data row 8 holds 1e\+300"):
        load_dataset("sgemm", 50, root=tmp_path)
