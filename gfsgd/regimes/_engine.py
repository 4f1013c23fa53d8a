"""Machinery shared by the regimes: the batch sampler, the noise level gamma, and the stepping driver.

The driver never waits for the device inside the loop. Each step's loss [g] stays on the device; every
`check_every` steps (and at the end) the losses of those steps are stacked and tested in one go: the first
step whose loss is non-finite or above DIVERGENCE_FACTOR * L_0 is the config's exact diverged step, and its
state is zeroed from then on. Schedules are evaluated on the device; a batch-size schedule is evaluated on
the host (its maximum sets the shapes of the step) and its values are sent to the device without a sync.
Schedule values are checked in the same deferred way.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..configs import check_configs, check_log_steps, check_n_steps
from ..curves import Curves
from ..device import resolve_device, resolve_dtype  # noqa: F401  (re-exported for the regimes)
from ..schedules import Schedule
from ..updates import check_update
from ..errors import InputError

__all__ = ["kill_state", "test_terms", "noise_gamma", "sample_batches", "gaussian_keys", "stream_keys", "streams_for", "drive", "Hyper", "progress_bar", "DIVERGENCE_FACTOR",
           "CHECK_EVERY", "resolve_device", "resolve_dtype"]

DIVERGENCE_FACTOR = 1e6  # a config diverges when its loss exceeds DIVERGENCE_FACTOR * L_0 (or is not finite)
CHECK_EVERY = 64  # steps between two reads of the divergence flags (the only host syncs of the loop)


_M64 = (1 << 64) - 1


def _i64(x: int) -> int:
    """An unsigned 64-bit constant as the signed int64 with the same bits."""
    x &= _M64
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN, _MIX1, _MIX2 = _i64(0x9E3779B97F4A7C15), _i64(0xBF58476D1CE4E5B9), _i64(0x94D049BB133111EB)
_STEP, _POS = _i64(0xD1B54A32D192ED03), _i64(0xABC98388FB8FAC03)


def _srl(z, k):  # logical right shift of int64 tensors
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z):
    """splitmix64's finaliser on int64 tensors (multiplications wrap modulo 2^64): a bijection whose output bits
    pass as independent uniform bits (Steele, Lea, Flood 2014)."""
    z = (z ^ _srl(z, 30)) * _MIX1
    z = (z ^ _srl(z, 27)) * _MIX2
    return z ^ _srl(z, 31)


def stream_keys(streams: torch.Tensor, t: int, n: int, device) -> torch.Tensor:
    """Uniform float64 keys in [0, 1) [rows, n], a pure function of (stream id, step t, position i): counter-based,
    so a stream's draws never depend on what else is drawn, on the chunk it runs in, or on the device."""
    base = _mix(streams.to(device=device, dtype=torch.int64) * _GOLDEN + _i64((int(t) + 1) * 0xD1B54A32D192ED03))
    pos = torch.arange(n, device=device, dtype=torch.int64) * _POS
    z = _mix(_mix(base[:, None] ^ pos[None, :]) + _GOLDEN)
    return _srl(z, 11).to(torch.float64) * (2.0 ** -53)


_GAUSS_SALT = _i64(0x5851F42D4C957F2D)  # Gaussian draws use streams apart from the batch sampler's


def gaussian_keys(streams: torch.Tensor, t: int, n: int, device) -> torch.Tensor:
    """Standard normal float64 draws [rows, n] for step t of each stream (Box-Muller on counter-based keys of
    streams kept apart from the batch sampler's, so a stream's draws are a pure function of (stream id, t,
    position) and independent of its batches)."""
    salted = streams.to(device=device, dtype=torch.int64) ^ _GAUSS_SALT
    u1 = stream_keys(salted, 2 * int(t), n, device)
    u2 = stream_keys(salted, 2 * int(t) + 1, n, device)
    return torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos((2.0 * math.pi) * u2)


def sample_batches(streams, t: int, N: int, bmax: int, replacement: bool, device) -> torch.Tensor:
    """Indices [rows, bmax] for step t of each random stream (one row per stream id in `streams`, a LongTensor):
    each row a uniformly random ordered bmax-subset of range(N), so that any prefix of a row is itself a uniform
    subset; or i.i.d. uniform indices with replacement.

    A row is a pure function of (stream id, t): the regimes give path r of a run with seed s the stream s + r, and
    every config of a run the same rows (common random numbers; a config of batch size b takes the first b), so a
    config's path depends only on (seed, its own batch size, repeat index), never on the configs beside it.
    Without replacement the row is the top-bmax of N i.i.d. uniform keys, in descending key order: the largest
    key's index is uniform, the next one uniform among the rest, and so on, which is sequential sampling without
    replacement (ties have probability ~ N^2 2^-53). No host sync.
    """
    keys = stream_keys(streams, t, N if not replacement else bmax, device)
    if replacement:
        return (keys * N).long().clamp_(max=N - 1)
    if bmax == N:
        return keys.argsort(dim=1, descending=True)
    return keys.topk(bmax, dim=1, sorted=True).indices


def streams_for(seed: int, repeats: int, device=None) -> torch.Tensor:
    """The stream ids of a run: seed + r for path r = 0..repeats-1."""
    return torch.arange(int(seed), int(seed) + int(repeats), dtype=torch.int64, device=device)


def test_terms(problem, test, cutoff, device, dtype):
    """The held-out set's terms in the eigenbasis (Problem.test_terms) on `device`, or None.

    test: None (use the held-out set when the problem has one), True (require it: a clear error otherwise)
    or False (no test loss)."""
    if test not in (None, True, False):
        raise InputError(f"test must be None, True or False, got test={test!r}")
    if test is False or (test is None and not getattr(problem, "has_test", False)):
        return None
    if test is None and not problem.has_basis:
        return None
    problem.require_test("the test loss")
    t = problem.test_terms(cutoff)
    return dict(e2=t["e2"], h=t["h"].to(device, dtype), W=t["W"].to(device, dtype), M=t["M"], n_cut=t["n_cut"])


def kill_state(st: dict, mask: torch.Tensor, dim: int = 0) -> None:
    """Zero the configs `mask` [g] of every tensor of a state dict whose dimension `dim` is the config axis (a
    diverged config then costs nothing and stays finite; the state of a rule's own piece is covered too)."""
    index = (slice(None),) * dim + (mask,)
    for v in st.values():
        if torch.is_tensor(v) and v.dim() > dim and v.shape[dim] == mask.numel():
            v[index] = 0.0


def noise_gamma(batch_size: torch.Tensor, N: int, replacement: bool = False) -> torch.Tensor:
    """gamma = (N - b) / ((N - 1) b) without replacement (0 at b = N), 1 / b with replacement."""
    if replacement:
        return 1.0 / batch_size
    if N == 1:
        return torch.zeros_like(batch_size)
    return (N - batch_size) / ((N - 1) * batch_size)


def progress_bar(total, desc, enabled):
    """A step bar (tqdm on a terminal, periodic plain lines in a redirected log; gfsgd.progress)."""
    from ..progress import progress_bar as bar
    return bar(total, desc, unit="step", enabled=enabled)


@dataclass
class Hyper:
    """Hyperparameters at one step for a chunk of configs (each [g]); bmin and bmax are the smallest and
    largest batch sizes of the chunk at this step, as host integers (they set shapes, without a sync)."""
    lr: torch.Tensor
    momentum: torch.Tensor
    batch_size: torch.Tensor
    gamma: torch.Tensor
    t: int
    bmin: int
    bmax: int
    rule: object = None  # the training rule (gfsgd.updates); SVAG's lr and gamma are already scaled here


def drive(*, regime: str, problem, configs, n_steps, schedule: Schedule | None, log_steps, device, dtype,
          chunk_size: int, init: Callable, step: Callable, kill: Callable, replacement: bool = False,
          progress: bool = True, meta: dict | None = None, with_se: bool = False,
          test: Callable | None = None, accuracy: Callable | None = None, check_every: int = CHECK_EVERY,
          update=None, ctx=None,
          loss0: float | None = None) -> Curves:
    """Run a regime's `step` over all configs, chunk by chunk, recording the loss and divergences.

    init(lr, momentum, batch_size) -> state for a chunk of g configs (tensors on `device`);
    step(state, hyper) -> (state, loss [g], se [g] or None) advances one step and returns the loss after it
        (and, for sampled regimes averaging R paths, the standard error of that mean); the returned loss must
        be a new tensor (it is kept until the next divergence check);
    kill(state, mask) zeroes the state of configs that diverged (so they cost nothing and stay finite);
    test(state) -> (test_loss [g], se [g] or None), called at the logged steps (after `step`) when given: the
        loss on the problem's held-out set (Curves.test_loss; its value at step 0 is problem.test_loss0).
    accuracy(state) -> (accuracy [g], se [g] or None), the same for the held-out classification accuracy
        (Curves.test_accuracy), when given.
    update: the training rule (gfsgd.updates; None = SGD), checked against the regime. A rule with l steps per
        SGD step (SVAG(l)) runs l * n_steps steps with lr / l and noise level l * gamma in `hyper`; the
        schedule is read at SGD step t // l, and every time (log_steps, diverged_step) stays in SGD steps.
    ctx: the regime's context (a namespace of its tensors and helpers). The checked rule is asked for its piece
        for this regime (`rule.pieces(regime, ctx)`, gfsgd.updates.base); its init, step and test replace the
        regime's own, and the checked rule and its whole piece are left in ctx.rule and ctx.pieces for the
        regime's step to use.
    """
    t_start = time.perf_counter()
    n_steps = check_n_steps(n_steps)
    steps = check_log_steps(log_steps, n_steps)
    N = problem.N
    lr_all, mom_all, b_all = check_configs(configs, N, device=device, dtype=dtype)
    b_host_all = [int(b) for b in b_all.tolist()]
    # the configs as given (float64), whatever the simulation's dtype: a float32 run must not record
    # momentum -0.30000001 for -0.3 (it would no longer match the same config run in float64)
    lr64, mom64, _ = check_configs(configs, N, dtype=torch.float64)
    configs = [(float(a), float(m), int(b)) for a, m, b in zip(lr64.tolist(), mom64.tolist(), b_host_all)]
    G = len(configs)
    rule = check_update(update, regime, momenta=[m for _, m, _ in configs], replacement=replacement or None, N=N,
                        batch_sizes=[b for _, _, b in configs], schedule=schedule,
                        n_outputs=getattr(problem, "n_outputs", 1))
    replacement = rule.sampling_replacement(replacement)
    pieces = rule.pieces(regime, ctx)
    if ctx is not None:
        ctx.rule, ctx.pieces = rule, pieces
    init, step = pieces.init or init, pieces.step or step
    if test is not None:
        test = pieces.test or test
    per = rule.steps_per_sgd_step  # rule steps per SGD step
    lr_div, noise = rule.lr_divisor, rule.noise_scale
    schedule = schedule or Schedule()
    check_every = max(1, int(check_every))
    loss0 = problem.loss0 if loss0 is None else float(loss0)  # the regime's own L_0 for another loss than mse
    bound = DIVERGENCE_FACTOR * loss0
    log_at = {int(s) * per: j for j, s in enumerate(steps)}  # rule step -> column (a dict: n_steps may be huge)
    loss_out = torch.full((G, len(steps)), math.nan, dtype=torch.float64)
    se_out = torch.full((G, len(steps)), math.nan, dtype=torch.float64) if with_se else None
    div_step = np.full(G, -1, dtype=np.int64)
    test_out = torch.full((G, len(steps)), math.nan, dtype=torch.float64) if test is not None else None
    test_se_out = torch.full((G, len(steps)), math.nan, dtype=torch.float64) if test is not None and with_se \
        else None
    acc_out = torch.full((G, len(steps)), math.nan, dtype=torch.float64) if accuracy is not None else None
    acc_se_out = torch.full((G, len(steps)), math.nan, dtype=torch.float64) if acc_out is not None and with_se \
        else None
    # (where a logged value goes, its callable): the held-out loss and accuracy, each with its standard error
    held_out = [(o, e, fn) for o, e, fn in ((test_out, test_se_out, test), (acc_out, acc_se_out, accuracy))
                if o is not None]
    if isinstance(chunk_size, bool) or not float(chunk_size).is_integer() or int(chunk_size) < 1:
        raise InputError(f"chunk_size must be an integer >= 1 (configs per vectorised block), got "
                         f"chunk_size={chunk_size!r}")
    chunk_size = min(int(chunk_size), G)
    n_rule = n_steps * per
    bar = progress_bar(n_rule * math.ceil(G / chunk_size), f"{regime} ({G} configs)", progress and n_steps > 0)

    for start in range(0, G, chunk_size):
        sl = slice(start, min(start + chunk_size, G))
        lr, mom, b = lr_all[sl], mom_all[sl], b_all[sl]
        b_host = torch.tensor(b_host_all[sl], dtype=torch.float64)
        state = init(lr, mom, b)
        if 0 in log_at:
            loss_out[sl, log_at[0]] = loss0
            if se_out is not None:
                se_out[sl, log_at[0]] = 0.0
            for out, out_se, fn in held_out:
                v0, se0 = fn(state)
                out[sl, log_at[0]] = v0.to("cpu", torch.float64)
                if out_se is not None:
                    out_se[sl, log_at[0]] = 0.0 if se0 is None else se0.to("cpu", torch.float64)
        brange = (int(b_host.min()), int(b_host.max()))
        const_hyper = Hyper(lr / lr_div, mom, b, noise * noise_gamma(b, N, replacement), 0, *brange, rule) \
            if schedule.is_constant else None
        rows, se_rows, cols = [], [], []  # logged losses [g], kept on the device, flushed in blocks
        pairs = [(loss_out, rows), (se_out, se_rows)]  # (where a logged row goes, its buffer)
        for out, out_se, _ in held_out:
            pairs += [(out, []), (out_se, [])]
        recent, sched_vals = [], []  # losses (and schedule values) since the last divergence check
        t_checked = 0  # steps 1..t_checked are checked
        for t in range(n_rule):
            if const_hyper is not None:
                hyper = const_hyper
                hyper.t = t
            else:
                a_t, m_t = schedule.lr_momentum(t // per, lr, mom)
                if schedule.batch_size is None:
                    b_t, b_rng = b, brange
                else:
                    bh = schedule.batch_sizes(t // per, b_host, N)
                    b_t, b_rng = bh.to(device=device, dtype=dtype, non_blocking=True), (int(bh.min()), int(bh.max()))
                sched_vals.append((a_t, m_t))
                hyper = Hyper(a_t / lr_div, m_t, b_t, noise * noise_gamma(b_t, N, replacement), t, *b_rng, rule)
            state, loss, se = step(state, hyper)
            recent.append(loss)
            if t + 1 in log_at:
                cols.append(log_at[t + 1])
                rows.append(loss)
                if se_out is not None:
                    se_rows.append(se)
                for k, (_, out_se, fn) in enumerate(held_out):
                    v, v_se = fn(state)
                    pairs[2 + 2 * k][1].append(v)
                    if out_se is not None:
                        pairs[3 + 2 * k][1].append(v_se if v_se is not None else torch.zeros_like(v))
            if len(recent) >= check_every or t + 1 == n_rule:
                _check_schedule(sched_vals, t_checked)
                _check_divergence(recent, t_checked, bound, div_step, sl, state, kill, device)
                t_checked = t + 1
                recent, sched_vals = [], []
            if len(rows) >= 512:
                _flush(sl, cols, pairs)
            if bar is not None:
                bar.update(1)
        _flush(sl, cols, pairs)
        if per > 1:  # rule step k lies in SGD step ceil(k / per)
            gone = div_step[sl] >= 0
            div_step[sl][gone] = -(-div_step[sl][gone] // per)
        # NaN from the divergence step on
        for j in np.flatnonzero(div_step[sl] >= 0):
            after = torch.as_tensor(steps >= int(div_step[start + j]))
            for out in (loss_out, se_out, test_out, test_se_out, acc_out, acc_se_out):
                if out is not None:
                    out[start + j, after] = math.nan
    if bar is not None:
        bar.close()
    status = ["diverged" if s >= 0 else "ok" for s in div_step.tolist()]
    meta = dict(meta or {})
    meta.update(device=str(device), dtype=str(dtype).replace("torch.", ""), n_steps=n_steps,
                schedule=schedule.name, wall_time=time.perf_counter() - t_start, **rule.describe())
    return Curves(regime=regime, steps=steps, loss=loss_out.numpy(), configs=configs, status=status,
                  diverged_step=[None if s < 0 else int(s) for s in div_step.tolist()],
                  loss_se=None if se_out is None else se_out.numpy(), meta=meta,
                  test_loss=None if test_out is None else test_out.numpy(),
                  test_loss_se=None if test_se_out is None else test_se_out.numpy(),
                  test_accuracy=None if acc_out is None else acc_out.numpy(),
                  test_accuracy_se=None if acc_se_out is None else acc_se_out.numpy())


def _check_divergence(recent, t0, bound, div_step, sl, state, kill, device):
    """Steps t0+1 .. t0+len(recent): record the first bad step of configs still alive and kill them.
    One small transfer to the host (the only sync of the loop)."""
    L = torch.stack(recent, 1)  # [g, k]
    bad = ~(L <= bound)  # NaN compares False, so NaN is bad
    first = torch.where(bad.any(1), bad.to(torch.int8).argmax(1), -1)  # [g]
    first = first.cpu().numpy()
    alive = div_step[sl] < 0
    new = alive & (first >= 0)
    if new.any():
        div_step[sl][new] = t0 + 1 + first[new]
        kill(state, torch.as_tensor(new, device=device))


def _check_schedule(sched_vals, t0):
    if not sched_vals:
        return
    a = torch.stack([v[0] for v in sched_vals])  # [k, g]
    m = torch.stack([v[1] for v in sched_vals])
    ok_a = (torch.isfinite(a) & (a >= 0)).all(1)
    ok_m = ((m > -1) & (m < 1)).all(1)
    flags = torch.stack([ok_a, ok_m]).cpu()
    if not bool(flags[0].all()):
        k = int((~flags[0]).nonzero()[0])
        raise InputError(f"the lr schedule gave a negative or non-finite lr at step {t0 + k}: "
                         f"{a[k].min().item()}")
    if not bool(flags[1].all()):
        k = int((~flags[1]).nonzero()[0])
        raise InputError(f"the momentum schedule left (-1, 1) at step {t0 + k}: {m[k].tolist()[:5]}")


def _flush(sl, cols, pairs):
    """Write the buffered rows of the logged steps `cols` into their outputs ([(out [G, T] or None, rows)])."""
    if not cols:
        return
    idx = torch.as_tensor(cols)
    for out, buf in pairs:
        if out is not None:
            out[sl, idx] = torch.stack(buf, 1).to("cpu", torch.float64)  # [g, len(rows)]
        buf.clear()
    cols.clear()
