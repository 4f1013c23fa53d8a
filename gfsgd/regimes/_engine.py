"""Machinery shared by the regimes: Curves, log steps, devices, and the vectorised stepping driver."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..device import resolve_device, resolve_dtype  # noqa: F401  (re-exported for the regimes)
from ..grid import check_configs
from ..schedules import Schedule

__all__ = ["Curves", "default_log_steps", "resolve_device", "resolve_dtype", "noise_gamma", "sample_batches", "drive",
           "DIVERGENCE_FACTOR"]

DIVERGENCE_FACTOR = 1e6  # a config diverges when its loss exceeds DIVERGENCE_FACTOR * L_0 (or is not finite)


@dataclass
class Curves:
    """Loss curves of G configs from one regime.

    steps: the logged steps [T] (step 0 is the initial loss); loss: [G, T] (NaN after a divergence);
    configs: the G (lr, momentum, batch_size) triples; status[g]: "ok" | "diverged";
    diverged_step[g]: the first step whose loss was non-finite or above 1e6 * L_0 (None if ok);
    loss_se: standard error of the mean loss over sample paths [G, T] (sampled regimes with repeats);
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

    def __len__(self):
        return len(self.configs)

    @property
    def final_loss(self) -> np.ndarray:
        """Loss at the last logged step [G] (NaN for diverged configs)."""
        return self.loss[:, -1]

    def _ids(self):
        return dict(regime=self.regime, tau=float(self.meta.get("tau", math.nan)),
                    seed=int(self.meta.get("seed", 0)), repeats=int(self.meta.get("repeats", 1)))

    def to_frame(self):
        """Tidy table: regime, lr, momentum, batch_size, tau, seed, repeats, step, loss[, loss_se]."""
        import pandas as pd
        G, T = self.loss.shape
        cfg = np.asarray([(float(a), float(m), int(b)) for a, m, b in self.configs], dtype=float).reshape(G, 3)
        ids = self._ids()
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
        return df

    def status_frame(self):
        """Per config: regime, lr, momentum, batch_size, tau, seed, status, diverged_step, final_loss, wall_time."""
        import pandas as pd
        ids = self._ids()
        rows = []
        for g, (a, m, b) in enumerate(self.configs):
            rows.append(dict(regime=ids["regime"], lr=float(a), momentum=float(m), batch_size=int(b),
                             tau=ids["tau"], seed=ids["seed"], repeats=ids["repeats"], status=self.status[g],
                             diverged_step=-1 if self.diverged_step[g] is None else int(self.diverged_step[g]),
                             final_loss=float(self.loss[g, -1]),
                             wall_time=float(self.meta.get("wall_time", math.nan)) / max(len(self.configs), 1)))
        return pd.DataFrame(rows)

    def __repr__(self):
        n_div = sum(s == "diverged" for s in self.status)
        return (f"Curves(regime={self.regime!r}, configs={len(self)}, steps={len(self.steps)} logged up to "
                f"{int(self.steps[-1])}, diverged={n_div})")


def default_log_steps(n_steps: int, dense_until: int = 10_000, per_decade: int = 100) -> np.ndarray:
    """Every step up to `dense_until`, then `per_decade` log-spaced steps per decade; always 0 and n_steps."""
    n_steps = int(n_steps)
    dense = np.arange(0, min(n_steps, dense_until) + 1)
    if n_steps <= dense_until:
        return dense
    n_pts = int(math.ceil(per_decade * math.log10(n_steps / dense_until)))
    tail = np.unique(np.round(np.logspace(math.log10(dense_until), math.log10(n_steps), n_pts + 1)).astype(int))
    return np.unique(np.concatenate([dense, tail, [n_steps]]))


def check_log_steps(log_steps, n_steps):
    if log_steps is None:
        return default_log_steps(n_steps)
    steps = np.unique(np.asarray(log_steps, dtype=np.int64).reshape(-1))
    if steps.size == 0 or steps[0] < 0 or steps[-1] > n_steps:
        raise ValueError(f"log_steps must be integers in [0, n_steps={n_steps}], got range "
                         f"[{steps.min() if steps.size else None}, {steps.max() if steps.size else None}]")
    return steps


def check_n_steps(n_steps):
    if isinstance(n_steps, bool) or not float(n_steps).is_integer() or int(n_steps) < 0:
        raise ValueError(f"n_steps must be an integer >= 0, got n_steps={n_steps!r}")
    return int(n_steps)


def sample_batches(gen, rows: int, N: int, bmax: int, replacement: bool, device) -> torch.Tensor:
    """Indices [rows, bmax]: each row a uniform bmax-subset of range(N) (any prefix of it is uniform too),
    or i.i.d. uniform indices with replacement."""
    if replacement:
        return torch.randint(0, N, (rows, bmax), generator=gen, device=device)
    if bmax * bmax <= N:  # rejection: redraw rows with a repeated index (rare when b^2 <= N)
        idx = torch.randint(0, N, (rows, bmax), generator=gen, device=device)
        while bmax > 1:
            srt = idx.sort(1).values
            dup = (srt[:, 1:] == srt[:, :-1]).any(1).nonzero().squeeze(1)
            if dup.numel() == 0:
                break
            idx[dup] = torch.randint(0, N, (dup.numel(), bmax), generator=gen, device=device)
        return idx
    u = torch.rand(rows, N, generator=gen, device=device)
    return u.argsort(dim=1)[:, :bmax]  # prefix of a uniform random permutation (topk's order is not uniform)


def noise_gamma(batch_size: torch.Tensor, N: int, replacement: bool = False) -> torch.Tensor:
    """gamma = (N - b) / ((N - 1) b) without replacement (0 at b = N), 1 / b with replacement."""
    if replacement:
        return 1.0 / batch_size
    if N == 1:
        return torch.zeros_like(batch_size)
    return (N - batch_size) / ((N - 1) * batch_size)


def progress_bar(total, desc, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, mininterval=0.5, unit="step")


@dataclass
class Hyper:
    """Hyperparameters at one step for a chunk of configs (each [g])."""
    lr: torch.Tensor
    momentum: torch.Tensor
    batch_size: torch.Tensor
    gamma: torch.Tensor
    t: int


def drive(*, regime: str, problem, configs, n_steps, schedule: Schedule | None, log_steps, device, dtype,
          chunk_size: int, init: Callable, step: Callable, kill: Callable, replacement: bool = False,
          progress: bool = True, meta: dict | None = None, with_se: bool = False) -> Curves:
    """Run a regime's `step` over all configs, chunk by chunk, recording the loss and divergences.

    init(lr, momentum, batch_size) -> state for a chunk of g configs (tensors on `device`);
    step(state, hyper) -> (state, loss [g], se [g] or None) advances one step and returns the loss after it
        (and, for sampled regimes averaging R paths, the standard error of that mean);
    kill(state, mask) zeroes the state of configs that diverged (so they cost nothing and stay finite).
    """
    t_start = time.perf_counter()
    n_steps = check_n_steps(n_steps)
    steps = check_log_steps(log_steps, n_steps)
    N = problem.N
    lr_all, mom_all, b_all = check_configs(configs, N, device=device, dtype=dtype)
    configs = [(float(a), float(m), int(b)) for a, m, b in zip(lr_all.tolist(), mom_all.tolist(), b_all.tolist())]
    G = len(configs)
    schedule = schedule or Schedule()
    loss0 = problem.loss0
    bound = DIVERGENCE_FACTOR * loss0
    log_at = np.full(n_steps + 1, -1, dtype=np.int64)
    log_at[steps] = np.arange(len(steps))
    loss_out = torch.full((G, len(steps)), math.nan, dtype=torch.float64)
    se_out = torch.full((G, len(steps)), math.nan, dtype=torch.float64) if with_se else None
    div_step = torch.full((G,), -1, dtype=torch.int64)
    chunk_size = max(1, min(int(chunk_size), G))
    bar = progress_bar(n_steps * math.ceil(G / chunk_size), f"{regime} ({G} configs)", progress and n_steps > 0)

    for start in range(0, G, chunk_size):
        sl = slice(start, min(start + chunk_size, G))
        lr, mom, b = lr_all[sl], mom_all[sl], b_all[sl]
        g = lr.numel()
        state = init(lr, mom, b)
        alive = torch.ones(g, dtype=torch.bool, device=device)
        if log_at[0] >= 0:
            loss_out[sl, log_at[0]] = loss0
            if se_out is not None:
                se_out[sl, log_at[0]] = 0.0
        const_hyper = Hyper(lr, mom, b, noise_gamma(b, N, replacement), 0) if schedule.is_constant else None
        rows, se_rows, cols = [], [], []  # losses [g] kept on the device, flushed in blocks (few host syncs)
        for t in range(n_steps):
            if const_hyper is not None:
                hyper = const_hyper
                hyper.t = t
            else:
                a_t, m_t, b_t = schedule(t, lr, mom, b, N)
                _check_scheduled(a_t, m_t, t)
                hyper = Hyper(a_t, m_t, b_t, noise_gamma(b_t, N, replacement), t)
            state, loss, se = step(state, hyper)
            # one reduction and one sync a step; the detailed check only when something is wrong
            # (diverged configs are zeroed by kill, so they never trigger it again)
            if not float(loss.max()) <= bound:
                bad = ~(torch.isfinite(loss) & (loss <= bound)) & alive
                div_step[sl][bad.cpu()] = t + 1
                alive = alive & ~bad
                kill(state, bad)
            if log_at[t + 1] >= 0:
                cols.append(int(log_at[t + 1]))
                rows.append(loss)
                if se_out is not None:
                    se_rows.append(se)
            if len(rows) >= 512:
                _flush(loss_out, se_out, sl, cols, rows, se_rows)
            if bar is not None:
                bar.update(1)
        _flush(loss_out, se_out, sl, cols, rows, se_rows)
        # NaN from the divergence step on (the state was zeroed there)
        dead = div_step[sl]
        for j in (dead >= 0).nonzero().flatten().tolist():
            after = torch.as_tensor(steps >= int(dead[j]))
            loss_out[start + j, after] = math.nan
            if se_out is not None:
                se_out[start + j, after] = math.nan
    if bar is not None:
        bar.close()
    status = ["diverged" if s >= 0 else "ok" for s in div_step.tolist()]
    meta = dict(meta or {})
    meta.update(device=str(device), dtype=str(dtype).replace("torch.", ""), n_steps=n_steps,
                schedule=schedule.name, wall_time=time.perf_counter() - t_start)
    return Curves(regime=regime, steps=steps, loss=loss_out.numpy(), configs=configs, status=status,
                  diverged_step=[None if s < 0 else int(s) for s in div_step.tolist()],
                  loss_se=None if se_out is None else se_out.numpy(), meta=meta)


def _flush(loss_out, se_out, sl, cols, rows, se_rows):
    if not rows:
        return
    idx = torch.as_tensor(cols)
    loss_out[sl, idx] = torch.stack(rows, 1).to("cpu", torch.float64)  # [g, len(rows)]
    if se_out is not None:
        se_out[sl, idx] = torch.stack(se_rows, 1).to("cpu", torch.float64)
    for buf in (cols, rows, se_rows):
        buf.clear()


def _check_scheduled(a_t, m_t, t):
    if not torch.isfinite(a_t).all() or (a_t < 0).any():
        raise ValueError(f"the lr schedule gave a negative or non-finite lr at step {t}: {a_t.min().item()}")
    if not ((m_t > -1) & (m_t < 1)).all():
        raise ValueError(f"the momentum schedule left (-1, 1) at step {t}: {m_t.tolist()[:5]}")
