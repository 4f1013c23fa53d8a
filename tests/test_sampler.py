"""The batch sampler shared by the linearized and nn regimes: each row is a uniformly random *ordered*
subset, so that a config with a smaller batch size can take a prefix of a chunk's shared draw. Checked
with a chi-square test over all ordered triples of range(6), and on the b = N (permutation) branch."""
import itertools

import numpy as np
import torch
from scipy import stats

from gfsgd.regimes._engine import sample_batches


def chi2_uniform(rows, N, b):
    index = {t: i for i, t in enumerate(itertools.permutations(range(N), b))}
    counts = np.zeros(len(index))
    for r in map(tuple, rows.tolist()):
        counts[index[r]] += 1
    return stats.chisquare(counts).pvalue


def test_rows_are_uniform_ordered_subsets():
    gen = torch.Generator().manual_seed(0)
    rows = sample_batches(gen, 60_000, 6, 3, False, "cpu")
    assert rows.shape == (60_000, 3)
    srt = rows.sort(1).values
    assert not (srt[:, 1:] == srt[:, :-1]).any()  # no repeated index in a row
    assert chi2_uniform(rows, 6, 3) > 1e-3  # 120 ordered triples equally likely
    assert chi2_uniform(rows[:, :1], 6, 1) > 1e-3  # a prefix is a uniform subset too
    # the same test rejects a sampler whose order is biased (sorted rows): it can fail
    assert chi2_uniform(rows.sort(1).values, 6, 3) < 1e-10


def test_full_permutations_and_with_replacement():
    gen = torch.Generator().manual_seed(1)
    perm = sample_batches(gen, 24_000, 4, 4, False, "cpu")
    assert (perm.sort(1).values == torch.arange(4)).all()
    assert chi2_uniform(perm, 4, 4) > 1e-3
    rep = sample_batches(gen, 20_000, 5, 2, True, "cpu")
    counts = np.bincount((rep[:, 0] * 5 + rep[:, 1]).numpy(), minlength=25)
    assert stats.chisquare(counts).pvalue > 1e-3 and (rep[:, 0] == rep[:, 1]).any()
