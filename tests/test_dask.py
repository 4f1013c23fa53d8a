"""Sweeps on Dask: a real LocalCluster (2 worker processes, 1 thread each). The reference is the serial sweep."""
import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from gfsgd import Grid, Problem, execute, results  # noqa: E402
from gfsgd.grid import dask_client  # noqa: E402
from gfsgd.regimes import linearized  # noqa: E402
from gfsgd.regimes import spectral_diagonal as sd  # noqa: E402

KEY = ["lr", "momentum", "batch_size", "step"]


@pytest.fixture(scope="module")
def client():
    c = dask_client(workers=2, threads_per_worker=1)
    yield c
    cluster = c.cluster
    c.close()
    cluster.close()


def frame(curves_list):
    return pd.concat([c.to_frame() for c in curves_list]).sort_values(KEY).reset_index(drop=True)


def stored(folder):
    return results.load(folder).curves.sort_values(KEY).reset_index(drop=True)


def test_dask_equals_serial(client, tmp_path):
    p = Problem.synthetic(200, 1.3, 0.6, basis=None)
    grid = Grid(lr=[0.1, 0.5, 1.0, 1.5], momentum=[0.0, -0.3, 0.5], batch_size=[1, 10])
    execute(sd, p, grid, 300, save_dir=tmp_path / "d", client=client, chunk_size=3, progress=False)
    serial = frame(execute(sd, p, grid, 300, progress=False))
    got = stored(tmp_path / "d")
    assert len(got) == len(serial)
    assert np.array_equal(got["loss"].values, serial["loss"].values, equal_nan=True)  # SD: bitwise
    # sampled regime: the same paths (counter-based streams); threads differ, so allow round-off
    q = Problem.synthetic(48, 1.2, 0.5, seed=0)
    g2 = Grid(lr=[0.1, 0.3], momentum=[0.0, -0.3], batch_size=[1, 4])
    execute(linearized, q, g2, 200, save_dir=tmp_path / "l", client=client, repeats=2, seed=3, progress=False)
    ref = frame(execute(linearized, q, g2, 200, repeats=2, seed=3, progress=False))
    np.testing.assert_allclose(stored(tmp_path / "l")["loss"].values, ref["loss"].values, rtol=1e-9)


def test_resume_across_cluster_runs(client, tmp_path):
    p = Problem.synthetic(100, 1.3, 0.6, basis=None)
    grid = Grid(lr=[0.1, 0.5, 1.0], momentum=[0.0, -0.3], batch_size=[1, 10])
    folder = tmp_path / "r"
    execute(sd, p, grid.configs[:5], 100, save_dir=folder, client=client, chunk_size=2, progress=False)
    assert len(results.load(folder).status) == 5
    execute(sd, p, grid, 100, save_dir=folder, client=client, chunk_size=2, progress=False)
    st = results.load(folder).status
    assert len(st) == 12 and not st.duplicated(["lr", "momentum", "batch_size"]).any()
    np.testing.assert_array_equal(stored(folder)["loss"].values, frame(execute(sd, p, grid, 100,
                                                                                progress=False))["loss"].values)


def test_a_killed_worker_loses_nothing(client, tmp_path):
    p = Problem.synthetic(400, 1.2, 0.5, seed=0)
    grid = Grid(lr=[0.05, 0.1, 0.2, 0.3], momentum=[0.0, -0.3], batch_size=[1, 8])
    folder = tmp_path / "k"
    pids = list(client.run(os.getpid).values())
    killed = []

    def kill_one():
        time.sleep(2.0)
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    th = threading.Thread(target=kill_one)
    th.start()
    execute(linearized, p, grid, 1500, save_dir=folder, client=client, chunk_size=1, repeats=2, seed=0,
            progress=False)
    th.join()
    assert killed
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the worker
    st = results.load(folder).status
    assert len(st) == 16 and not st.duplicated(["lr", "momentum", "batch_size"]).any()
    ref = frame(execute(linearized, p, grid, 1500, repeats=2, seed=0, progress=False))
    np.testing.assert_allclose(stored(folder)["loss"].values, ref["loss"].values, rtol=1e-9)


def test_unreachable_scheduler_is_a_clear_error():
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler"):
        dask_client(scheduler="tcp://127.0.0.1:9", timeout=2)
    assert time.perf_counter() - t0 < 30
