"""Curves: what every regime returns, and its tidy tables.

A Curves holds the loss of G configs of one regime at the logged steps, their status ("ok" | "diverged"
with the first bad step), for sampled regimes the standard error of the mean over sample paths, and free
meta (regime options, device, wall time). `to_frame()` and `status_frame()` give the tidy tables that the
run store writes (the curves and status tables of each part; gfsgd.results).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Curves"]


@dataclass
class Curves:
    """Loss curves of G configs from one regime.

    steps: the logged steps [T] (step 0 is the initial loss); loss: [G, T] (NaN after a divergence);
    configs: the G (lr, momentum, batch_size) triples; status[g]: "ok" | "diverged";
    diverged_step[g]: the first step whose loss was non-finite or above 1e6 * L_0 (None if ok);
    loss_se: standard error of the mean loss over sample paths [G, T] (sampled regimes with repeats);
    test_loss: the expected loss on the problem's held-out set [G, T] (|r_t|^2 / (2M)), None without one
        (full: exact; linearized: mean over paths; sd: the diagonal approximation; nn: measured);
    test_loss_se: its standard error over sample paths (sampled regimes);
    test_accuracy: the held-out classification accuracy [G, T] (argmax of the C outputs against the target's, or
        the sign for one output with targets +-1; nn and linearized regimes), None otherwise;
    test_accuracy_se: its standard error over sample paths;
    meta: regime name, seed, tau, repeats, device, wall time, ...
    """
    regime: str
    steps: np.ndarray
    loss: np.ndarray
    configs: list
    status: list
    diverged_step: list
    loss_se: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    test_loss: np.ndarray | None = None
    test_loss_se: np.ndarray | None = None
    test_accuracy: np.ndarray | None = None
    test_accuracy_se: np.ndarray | None = None

    def __len__(self):
        return len(self.configs)

    @property
    def final_loss(self) -> np.ndarray:
        """Loss at the last logged step [G] (NaN for diverged configs)."""
        return self.loss[:, -1]

    def best_test(self):
        """The predicted early-stopping point: per config the logged step of the smallest test loss and that
        loss (arrays [G]; step -1 and NaN without a test loss)."""
        G = len(self.configs)
        if self.test_loss is None:
            return np.full(G, -1, dtype=np.int64), np.full(G, np.nan)
        tl = np.where(np.isfinite(self.test_loss), self.test_loss, np.inf)
        j = tl.argmin(1)
        best = tl[np.arange(G), j]
        ok = np.isfinite(best)
        return (np.where(ok, np.asarray(self.steps)[j], -1).astype(np.int64), np.where(ok, best, np.nan))

    def ids(self) -> dict:
        """The columns that identify this run besides the config: regime, tau, seed, repeats."""
        return dict(regime=self.regime, tau=float(self.meta.get("tau", math.nan)),
                    seed=int(self.meta.get("seed", 0)), repeats=int(self.meta.get("repeats", 1)))

    def to_frame(self):
        """Tidy table: regime, lr, momentum, batch_size, tau, seed, repeats, step, loss, and loss_se, test_loss,
        test_loss_se, test_accuracy, test_accuracy_se when the curves have them."""
        import pandas as pd
        G, T = self.loss.shape
        cfg = np.asarray([(float(a), float(m), int(b)) for a, m, b in self.configs], dtype=float).reshape(G, 3)
        ids = self.ids()
        df = pd.DataFrame({
            "regime": ids["regime"],
            "lr": np.repeat(cfg[:, 0], T), "momentum": np.repeat(cfg[:, 1], T),
            "batch_size": np.repeat(cfg[:, 2], T).astype(np.int64),
            "tau": ids["tau"], "seed": ids["seed"], "repeats": ids["repeats"],
            "step": np.tile(np.asarray(self.steps, dtype=np.int64), G),
            "loss": self.loss.reshape(-1),
        })
        if self.loss_se is not None:
            df["loss_se"] = self.loss_se.reshape(-1)
        if self.test_loss is not None:
            df["test_loss"] = np.asarray(self.test_loss, dtype=float).reshape(-1)
            if self.test_loss_se is not None:
                df["test_loss_se"] = np.asarray(self.test_loss_se, dtype=float).reshape(-1)
        for name in ("test_accuracy", "test_accuracy_se"):
            if getattr(self, name) is not None:
                df[name] = np.asarray(getattr(self, name), dtype=float).reshape(-1)
        return df

    def status_frame(self):
        """Per config: regime, lr, momentum, batch_size, tau, seed, status, diverged_step, final_loss, wall_time,
        and with a test loss: final_test_loss, best_step and best_test_loss (the predicted early stop), and
        final_test_accuracy with an accuracy."""
        import pandas as pd
        ids = self.ids()
        best_step, best_loss = self.best_test()
        rows = []
        for g, (a, m, b) in enumerate(self.configs):
            rows.append(dict(regime=ids["regime"], lr=float(a), momentum=float(m), batch_size=int(b),
                             tau=ids["tau"], seed=ids["seed"], repeats=ids["repeats"], status=self.status[g],
                             diverged_step=-1 if self.diverged_step[g] is None else int(self.diverged_step[g]),
                             final_loss=float(self.loss[g, -1]),
                             wall_time=float(self.meta.get("wall_time", math.nan)) / max(len(self.configs), 1)))
            if self.test_loss is not None:
                rows[-1].update(final_test_loss=float(self.test_loss[g, -1]), best_step=int(best_step[g]),
                                best_test_loss=float(best_loss[g]))
            if self.test_accuracy is not None:
                rows[-1].update(final_test_accuracy=float(self.test_accuracy[g, -1]))
        return pd.DataFrame(rows)

    def __repr__(self):
        n_div = sum(s == "diverged" for s in self.status)
        return (f"Curves(regime={self.regime!r}, configs={len(self)}, steps={len(self.steps)} logged up to "
                f"{int(self.steps[-1])}, diverged={n_div})")
