"""The batch sampler shared by the linearized and nn regimes: each row is a uniformly random *ordered*
subset, so that a config with a smaller batch size can take a prefix of a shared draw, and a pure function of
(stream, step) (counter-based), so that a config's path never depends on the configs beside it. Checked with a
chi-square test over all ordered triples of range(6), across streams and across steps, on the b = N
(permutation) branch, and by running a config alone and beside others."""
import itertools

import numpy as np
import torch
from scipy import stats

from gfsgd import Problem
from gfsgd.regimes import linearized
from gfsgd.regimes._engine import sample_batches, stream_keys


def across_streams(n_rows, N, b, replacement=False, t=0):
    return sample_batches(torch.arange(n_rows), t, N, b, replacement, "cpu")


def across_steps(n_rows, N, b, stream=7):
    return torch.cat([sample_batches(torch.tensor([stream]), t, N, b, False, "cpu") for t in range(n_rows)])


def chi2_uniform(rows, N, b):
    index = {t: i for i, t in enumerate(itertools.permutations(range(N), b))}
    counts = np.zeros(len(index))
    for r in map(tuple, rows.tolist()):
        counts[index[r]] += 1
    return stats.chisquare(counts).pvalue


def test_rows_are_uniform_ordered_subsets():
    rows = across_streams(60_000, 6, 3)
    assert rows.shape == (60_000, 3)
    srt = rows.sort(1).values
    assert not (srt[:, 1:] == srt[:, :-1]).any()  # no repeated index in a row
    assert chi2_uniform(rows, 6, 3) > 1e-3  # 120 ordered triples equally likely
    assert chi2_uniform(rows[:, :1], 6, 1) > 1e-3  # a prefix is a uniform subset too
    # the same test rejects a sampler whose order is biased (sorted rows): it can fail
    assert chi2_uniform(rows.sort(1).values, 6, 3) < 1e-10


def test_full_permutations_and_with_replacement():
    perm = across_streams(24_000, 4, 4)
    assert (perm.sort(1).values == torch.arange(4)).all()
    assert chi2_uniform(perm, 4, 4) > 1e-3
    rep = across_streams(20_000, 5, 2, replacement=True, t=3)
    counts = np.bincount((rep[:, 0] * 5 + rep[:, 1]).numpy(), minlength=25)
    assert stats.chisquare(counts).pvalue > 1e-3 and (rep[:, 0] == rep[:, 1]).any()


def test_steps_of_one_stream_are_uniform_and_keys_are_uniform():
    rows = across_steps(12_000, 5, 2)
    assert chi2_uniform(rows, 5, 2) > 1e-3
    u = stream_keys(torch.arange(50), 11, 2000, "cpu").reshape(-1).numpy()
    assert 0 <= u.min() and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # neighbouring streams and steps are uncorrelated
    a, b = stream_keys(torch.tensor([3, 4]), 0, 100_000, "cpu")
    assert abs(np.corrcoef(a.numpy(), b.numpy())[0, 1]) < 0.02
    c = stream_keys(torch.tensor([3]), 1, 100_000, "cpu")[0]
    assert abs(np.corrcoef(a.numpy(), c.numpy())[0, 1]) < 0.02


def test_a_config_follows_the_same_path_alone_and_beside_others():
    p = Problem.synthetic(64, 1.2, 0.5, seed=0)
    cfg = (0.3, 0.0, 1)
    alone = linearized.run(p, [cfg], 300, repeats=3, seed=5, progress=False)
    beside = linearized.run(p, [(0.5, -0.3, 40), cfg, (0.2, 0.5, 64)], 300, repeats=3, seed=5, progress=False,
                            chunk_size=2)
    np.testing.assert_array_equal(alone.loss[0], beside.loss[1])
    # path r of seed s is path 0 of seed s + r
    single = linearized.run(p, [cfg], 300, repeats=1, seed=6, progress=False)
    three = linearized.run(p, [cfg], 300, repeats=3, seed=5, progress=False)
    assert not np.array_equal(single.loss[0], three.loss[0])
    one = linearized.run(p, [cfg], 300, repeats=1, seed=5, progress=False)
    assert not np.array_equal(one.loss[0], single.loss[0])
