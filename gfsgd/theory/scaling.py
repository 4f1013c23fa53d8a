"""Data scaling: the loss at a budget against the dataset size N, from the kernel of a subset (docs/theory.md#subset).

    table = gfsgd.theory.data_scaling(problem_n, Ns=[2000, 5000, 20000, 60000], budget=10_000,
                                      configs=[(0.5, 0.0, 100)])

For each N, gfsgd.spectrum.extrapolate(problem_n, N) gives the N-point problem (and its ensemble), and loss_at the
predicted loss after `budget` steps for each config. A config's alpha keeps the network's own step size at every
N (lr_nn = alpha N / lambda_max_raw(N) = alpha n / lambda_max_raw(n)), so a row is one training recipe run on
more data. The curve tells whether more data or more steps pays: at a fixed budget a larger N has more modes
to learn and more of its loss left in the tail.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..spectrum import extrapolate
from .inversion import loss_at

__all__ = ["data_scaling"]


def data_scaling(problem_n, Ns, budget: int, configs, *, tau: float = 1.0, band: bool = True) -> dict:
    """The predicted loss after `budget` steps at each dataset size in Ns, for each (alpha, beta, b) config.

    Returns dict(N [S], configs, loss [S, G], low [S, G], high [S, G] (Extrapolation.band: the ensemble's min and
    max and the split-half checks; equal to loss when band=False), nu, kappa (the tail's fit at the largest N)). N below the subset's n is refused.
    """
    Ns = [int(N) for N in np.atleast_1d(Ns)]
    if not Ns or min(Ns) < problem_n.N:
        raise InputError(f"Ns must be dataset sizes >= the subset's n={problem_n.N}, got Ns={Ns}")
    if isinstance(budget, bool) or not float(budget).is_integer() or int(budget) < 0:
        raise InputError(f"budget must be an integer number of steps >= 0, got budget={budget!r}")
    cfgs = [tuple(c) for c in configs]
    if not cfgs or any(len(c) != 3 for c in cfgs):
        raise InputError(f"configs must be (alpha, beta, b) triples, got {configs!r}")
    a, m, b = (np.array(x, dtype=float) for x in zip(*cfgs))
    if (b > min(Ns)).any():
        raise InputError(f"a batch size exceeds the smallest N={min(Ns)}: {sorted(set(b.astype(int)))}")
    S, G = len(Ns), len(cfgs)
    loss, low, high = (np.empty((S, G)) for _ in range(3))
    info = {}
    for i, N in enumerate(Ns):
        ex = extrapolate(problem_n, N, ensemble=band)
        out = ex.band(lambda q: loss_at(q, a, m, b, int(budget), tau=tau))
        loss[i], low[i], high[i] = out["central"], out["low"], out["high"]
        info = ex.info
    return dict(N=Ns, configs=cfgs, budget=int(budget), loss=loss, low=low, high=high, nu=info.get("nu"),
                kappa=info.get("kappa"))
