"""The rank path's memory: problem_from_network(rank=k, memory_budget=B) stays within B.

The peak is measured in a fresh subprocess: after a warm-up call (torch's code pages in on first use), the
process's peak resident size is reset (Linux /proc/self/clear_refs) and the rank path runs on 2,000 points of
the paper's MLP (784 -> 1000 -> 1, float64): its per-layer features take 45 MB and the dense kernel 32 MB, so
a budget of 80 MB leaves no room for a kernel kept beside the features (the operator before this test kept it
there, and the rank path's peak rose by 128 MB). benchmarks/bench_memory.py measures
the same against N.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gfsgd.models import MLP
from gfsgd.ntk import kernel_operator
from gfsgd.spectrum import ConvergenceError, top_eigenpairs

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6

CHILD = r"""
import gc, json, sys
import torch
import gfsgd
from gfsgd.models import MLP
N, k, budget = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
X = torch.randn(N, 784, generator=g, dtype=torch.float64)
y = torch.randn(N, generator=g, dtype=torch.float64)
model = MLP(784, width=1000, depth=2, seed=0)
gfsgd.problem_from_network(model, X[:300], y[:300], rank=10, device="cpu")  # warm-up: code pages in
gc.collect()

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

open("/proc/self/clear_refs", "w").write("5")
rss0 = status("VmRSS")
p = gfsgd.problem_from_network(model, X, y, rank=k, device="cpu", memory_budget=budget)
peak = status("VmHWM")
print(json.dumps(dict(increase=peak - rss0, operator=p.meta.get("operator"),
                      eigensolver=p.meta["spectrum"].get("memory"), passes=p.meta["spectrum"]["passes"])))
"""


def _can_reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _run(N, k, budget):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, str(N), str(k), str(budget)], capture_output=True, text=True,
                         cwd=str(ROOT), env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _can_reset_peak(), reason="needs Linux /proc/self/clear_refs to reset the peak RSS")
def test_rank_path_peak_stays_within_memory_budget():
    budget = 80 * MB  # features 44.6 MB, dense kernel 32 MB: kept beside the features they leave no room
    r = _run(2000, 20, budget)
    assert r["increase"] <= budget, (f"peak RSS rose by {r['increase'] / MB:.1f} MB, above memory_budget = "
                                     f"{budget / MB:.0f} MB: {r}")
    op = r["operator"]
    assert op["cached"] is False  # the kernel does not fit beside the features
    assert op["memory"]["held_bytes"] + op["memory"]["pass_temporaries"] <= budget
    assert r["eigensolver"]["operator_held"] + r["eigensolver"]["eigensolver_peak"] <= budget


def test_operator_accounts_for_its_features_and_kept_kernel():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(600, 30, generator=g, dtype=torch.float64)
    model = MLP(30, width=200, depth=2, seed=0)
    features = 600 * (30 + 200 + 200 + 1) * 8
    kernel = 600 * 600 * 8
    op = kernel_operator(model, X, device="cpu", memory_budget=2 * kernel)  # kernel fits in half, not with features
    assert op.info["cached"] is False and op.held_bytes == features
    assert op.held_bytes + op.pass_bytes(10) <= 2 * kernel + 600 * 10 * 8
    big = kernel_operator(model, X, device="cpu", memory_budget=4 * kernel)
    assert big.info["cached"] is True and big.held_bytes == features + kernel
    # the passes shrink to what a caller leaves them, and still give the same product
    V = torch.randn(600, 7, generator=g, dtype=torch.float64)
    ref = big @ V
    assert op.set_pass_budget(3 * 600 * 8 * 16) == 3 * 600 * 8 * 16  # 16 rows a block
    assert torch.allclose(op @ V, ref, rtol=1e-12, atol=1e-12 * float(ref.abs().max()))


def test_eigensolver_refuses_to_outgrow_its_budget():
    g = torch.Generator().manual_seed(2)
    lam = torch.logspace(0, -6, 3000, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(3000, 3000, generator=g, dtype=torch.float64))
    K = (Q * lam) @ Q.T
    ep = top_eigenpairs(K, 30, memory_budget=200 * MB)
    assert ep.info["memory"]["eigensolver_peak"] <= 200 * MB
    with pytest.raises(ConvergenceError, match="memory_budget"):
        top_eigenpairs(K, 30, memory_budget=ep.info["memory"]["eigensolver_peak"] * 0.5)
    with pytest.raises(ValueError, match="memory_budget"):
        top_eigenpairs(K, 30, memory_budget=1e5)  # not even the first block
