"""How far a network's kernel moves while it trains (docs/theory.md#drift).

    rec = DriftRecorder(model, X, n_probe=64, seed=0)      # K_0 on a fixed probe subset of X
    rel, ratio = rec.measure(stacked_params, n)            # [n] each, for n stacked networks

The kernel regimes assume the empirical NTK stays at K_0. The nn regime measures, on a fixed random subset of
n_probe training examples (its n_probe C x n_probe C block of the kernel), the relative change
|K_t - K_0|_F / |K_0|_F and the ratio lambda_max(K_t) / lambda_max(K_0) at log-spaced steps: a few hundred
Jacobian rows per network and step, instead of the N C x N C kernel. The probe block's top eigenvalue tracks the
whole kernel's (both are dominated by the same few directions) but is not equal to it.
"""
from __future__ import annotations

import torch

from ..errors import InputError
from .empirical import empirical_ntk

__all__ = ["DriftRecorder", "drift_steps"]


def drift_steps(logged, n_points: int = 16) -> list:
    """About n_points log-spaced steps among the logged ones (always the first and the last)."""
    logged = sorted(int(s) for s in logged)
    if len(logged) <= n_points:
        return logged
    import numpy as np
    pos = np.unique(np.round(np.geomspace(1, len(logged), n_points)).astype(int) - 1)
    return sorted({logged[0], logged[-1], *(logged[i] for i in pos)})


class DriftRecorder:
    """The probe block of the kernel at initialisation, and its change for trained parameters."""

    def __init__(self, model, X, n_probe: int, *, seed: int = 0, device="cpu"):
        if isinstance(n_probe, bool) or not float(n_probe).is_integer() or int(n_probe) < 2:
            raise InputError(f"drift_probe must be an integer >= 2 (training examples in the probe), got "
                             f"drift_probe={n_probe!r}")
        n = min(int(n_probe), int(X.shape[0]))
        g = torch.Generator().manual_seed(int(seed) + 7919)  # a stream of its own, apart from the batches'
        self.index = torch.randperm(int(X.shape[0]), generator=g)[:n].sort().values
        self.model, self.device = model, device
        self.X = X[self.index.to(X.device)].to(device, torch.float64)
        self.K0 = self._kernel(None)
        self.norm0 = float(self.K0.norm())
        self.lam0 = float(torch.linalg.eigvalsh(self.K0)[-1])
        if not self.norm0 > 0:
            raise InputError("the network's kernel on the drift probe is zero: its gradients vanish at initialisation")

    def _kernel(self, params):
        return empirical_ntk(self.model, self.X, params=params, dtype=torch.float64, device=self.device,
                             method="jacobian")

    def measure(self, stacked: dict, n: int):
        """(relative change [n], lambda_max ratio [n]) of the n networks whose parameters are stacked in
        `stacked` ({name: [n, ...]})."""
        rel, ratio = torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64)
        for j in range(n):
            K = self._kernel({k: v[j].detach().to(torch.float64) for k, v in stacked.items()})
            if not bool(torch.isfinite(K).all()):  # a network on its way to diverging, not yet marked so
                rel[j] = ratio[j] = float("nan")
                continue
            rel[j] = float((K - self.K0).norm()) / self.norm0
            ratio[j] = float(torch.linalg.eigvalsh(K)[-1]) / self.lam0
        return rel, ratio
