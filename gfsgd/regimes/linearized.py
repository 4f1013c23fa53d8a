"""Linearized regime: the residual dynamics with sampled mini-batches (docs/theory.md#update).

    g_t = (N/b) K[:, B_t] d_t[B_t];   v_{t+1} = -alpha_t g_t + beta_t v_t;   d_{t+1} = d_t + v_{t+1};   v_0 = 0,

B_t a uniform b-subset drawn afresh each step (without replacement inside the step; `replacement=True` draws
with replacement). Loss L_t = |d_t|^2 / (2N). With `repeats=R` every config runs R independent sample paths;
Curves.loss is their mean and Curves.loss_se its standard error (std / sqrt(R)).

Vectorised over configs and paths: the state is [R, g, N]. Common random numbers: at each step, path r of
every config in a chunk uses the same uniformly random ordered subset of size b_max (a config with batch size
b takes its first b indices, itself a uniform b-subset). Each config's paths are therefore exact, independent
SGD sample paths (the R paths of one config never share batches), while different configs see correlated
batches, which makes comparisons across the grid less noisy. The batch gradient of all configs is then one
batched matmul [R, g, b_max] x [R, b_max, N] with the b_max gathered rows of K.

Test loss: with a held-out set each path also carries its test residual r [R, g, M], moved by the same
function-space update through the cross-kernel, v_te' = -alpha (N/b) K_test[:, B] d[B] + beta v_te, r' = r + v_te
(exact for the linearized model; docs/theory.md#test-loss); Curves.test_loss is the mean of |r|^2 / (2M)
over the paths and Curves.test_loss_se its standard error. When the problem comes from a network whose held-out
targets are class labels (gfsgd.losses.is_classification), Curves.test_accuracy is the mean fraction of held-out
examples that the linearized outputs f = r + y_test classify right (argmax of the C outputs; the sign for one).
C outputs: r has M C rows, example-major, and the test loss is |r|^2 / (2M) over the M held-out examples.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch

from ..losses import check_loss, correct, is_classification
from ..outputs import example_rows
from ._engine import (drive, gaussian_keys, kill_state, resolve_device, resolve_dtype, sample_batches, stream_keys,
                      streams_for, test_terms)
from ..errors import InputError

REGIME = "linearized"
__all__ = ["run", "REGIME"]


def run(problem, configs, n_steps, *, repeats: int = 1, schedule=None, log_steps=None, seed: int = 0,
        device="auto", dtype="float64", replacement: bool = False, chunk_size: int | None = None,
        progress: bool = True, test: bool | None = None, update=None, loss="mse"):
    """Sampled mini-batch SGD on the linearized model for G configs at once; returns Curves.

    repeats: independent sample paths per config (their mean and standard error are reported).
    seed: path r draws its batches from random stream seed + r (gfsgd.regimes._engine.sample_batches); every
        config sees the same batches (a config of batch size b takes the first b of each), so a config's
        path depends only on (seed, its batch size, r), not on the configs beside it or on chunk_size.
    test: track the test residual of every path (None: when the problem has a held-out set; True: required).
    update: the training rule (gfsgd.updates; docs/theory.md#updates, #penalties, #normalized): SGD (default);
        Normalized (the step rescaled to a target parameter norm, |delta w|^2 = u^T K_BB u); SVAG(l), two independent
        batches a step (the streams' draws of steps 2t and 2t + 1) weighted r1, r2 with lr / l, l steps per SGD
        step; NoisyGD, g = K (d + eta) with eta = sqrt(gamma N) d * (z - mean(z)), z ~ N(0, I) per path and step
        (shared by the configs, like the batches), which has the batch gradient's covariance given d.
        A rule's own piece (rule.linearized_pieces) gets the context: problem, N, R, K, KtT (K_test^T or None),
        device, dtype, cache, constant, replacement, finish(st) (d += v, r += v_te, the loss and its s.e.),
        gaussian(t, n) and uniform_keys(t, n) (the paths' random streams at step t, [R, n]).
    loss: the loss (gfsgd.losses): "mse", the squared loss 0.5 (f - y)^2 (the residual form of this regime).
    """
    if isinstance(repeats, bool) or not float(repeats).is_integer() or int(repeats) < 1:
        raise InputError(f"repeats must be an integer >= 1, got repeats={repeats!r}")
    R = int(repeats)
    problem.require_basis("the linearized regime")
    loss_fn = check_loss(loss, REGIME, problem.n_outputs)
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    N, Co, NC = problem.N, problem.n_outputs, problem.n_modes  # examples, outputs per example, rows N Co
    K = problem.K.to(device, dtype).contiguous()  # [NC, NC]
    d0 = problem.d0.to(device, dtype)  # [NC]
    streams = streams_for(seed, R, device)  # path r: random stream seed + r, shared by every config
    if chunk_size is None:
        chunk_size = max(1, (2 ** 19 // NC) // R) if device.type == "cpu" else max(1, 2 ** 24 // (NC * R))
    constant = schedule is None or schedule.is_constant
    cache = {}
    with_test = test_terms(problem, test, 1e-10, device, dtype) is not None
    if with_test:
        KtT = problem.K_test.T.to(device, dtype).contiguous()  # [N, M]: K_test^T, rows at training points
        r0 = problem.r_test.to(device, dtype)  # [M]
        M = r0.numel() // Co  # held-out examples (r has M Co rows)

    def init(lr, mom, b):
        d = d0.expand(R, lr.numel(), NC).clone()  # [R, g, NC]
        st = dict(d=d, v=torch.zeros_like(d))
        if with_test:
            st["r"] = r0.expand(R, lr.numel(), r0.numel()).clone()  # [R, g, M Co]
            st["vt"] = torch.zeros_like(st["r"])
        return st

    # the function-space gradient the step moves along: the residual d itself for the squared loss; for another
    # loss (cross-entropy) its gradient at the logits f = d + y, softmax(f) - p(y) per example (docs/theory.md#outputs)
    if loss_fn.problem_loss:
        grad_of = path_loss_of = None
    else:
        Y = _targets(problem).to(device, dtype)  # [NC]

        def grad_of(d):  # [..., NC] -> [..., NC]
            return loss_fn.gradient((d + Y).unflatten(-1, (N, Co)), Y.view(N, Co)).flatten(-2)

        def path_loss_of(d):  # [R, g, NC] -> [R, g]
            return loss_fn.value((d + Y).unflatten(-1, (N, Co)), Y.view(N, Co)).sum((-2, -1)) / N

    def finish(st):  # d' = d + v' (and r' = r + v_te'); the mean path loss and its standard error
        d = st["d"]
        d.add_(st["v"])
        if with_test:
            st["r"].add_(st["vt"])
        path_loss = torch.linalg.vecdot(d, d) / (2 * N) if path_loss_of is None else path_loss_of(d)  # [R, g]
        mean = path_loss.mean(0)
        return st, mean, (path_loss.std(0) / math.sqrt(R) if R > 1 else torch.zeros_like(mean))

    def step(st, h):
        pieces = ctx.pieces  # the rule's piece (gfsgd.updates.base): batch weights, an extra term, a whole step
        if h.t == 0 or not constant:  # per-config coefficients, once per chunk when constant
            b = h.batch_size
            bmax = h.bmax
            pos = torch.arange(bmax, device=device, dtype=dtype)
            # weight of batch position j for config g: -alpha_g N / b_g if j < b_g else 0     # [g, bmax]
            w = torch.where(pos[None, :] < b[:, None], (-h.lr * N / b)[:, None], torch.zeros((), dtype=dtype,
                                                                                                 device=device))
            full_batch = h.bmin == N and not replacement and pieces.full_batch_shortcut
            if Co > 1:  # every output of a batch example carries its example's weight
                w = w.repeat_interleave(Co, dim=1)  # [g, bmax Co]
            cache["c"] = (bmax, w, h.momentum[None, :, None], (-h.lr)[None, :, None], full_batch)
        bmax, w, beta, neg_lr, full_batch = cache["c"]
        d, v = st["d"], st["v"]
        if grad_of is not None:
            d = grad_of(d)  # the loss's gradient in function space takes the residual's place below
        v.mul_(beta)
        if with_test:
            st["vt"].mul_(beta)
        if full_batch:  # g = K d, no sampling
            dn = d * neg_lr
            v.add_(torch.matmul(dn, K))
            if with_test:
                st["vt"].add_(torch.matmul(dn, KtT))
        else:
            draws = ctx.rule.draws
            for k, r in enumerate(draws):  # SVAG: two independent batches (the draws of steps 2t, 2t + 1), weights r1, r2
                t_key = len(draws) * h.t + k if len(draws) > 1 else h.t
                idx = example_rows(sample_batches(streams, t_key, N, bmax, replacement, device), Co)  # [R, bmax Co]
                Kb = K[idx]  # rows of K at the batch: [R, bmax Co, NC]
                dB = d.gather(2, idx[:, None, :].expand(R, d.shape[1], idx.shape[1]))  # [R, g, bmax Co]
                vals = dB * w if r == 1.0 else dB * (w * r)
                if pieces.weights is not None:  # a rule's own weights (a rescaled step, a penalty's term)
                    vals = pieces.weights(st, h, idx, Kb, dB, vals)
                v.baddbmm_(vals, Kb)  # [R, g, bmax] x [R, bmax, N]
                if with_test:
                    st["vt"].baddbmm_(vals, KtT[idx])  # the same update at the test points: [R, g, M]
        if pieces.extra is not None:
            pieces.extra(st, h)
        return finish(st)

    def test_loss(st):
        path = torch.linalg.vecdot(st["r"], st["r"]) / (2 * M)  # [R, g]
        mean = path.mean(0)
        return mean, (path.std(0) / math.sqrt(R) if R > 1 else torch.zeros_like(mean))

    # the held-out accuracy, where the held-out targets are class labels: the outputs f = r + y_test
    y_te = _test_targets(problem) if with_test else None
    if y_te is not None:
        y_te = y_te.to(device, dtype).reshape(M, Co) if Co > 1 else y_te.to(device, dtype).reshape(M)

        def test_accuracy(st):
            r = st["r"] if Co == 1 else st["r"].unflatten(-1, (M, Co))
            path = correct(r + y_te, y_te).mean(-1)  # [R, g]
            mean = path.mean(0)
            return mean, (path.std(0) / math.sqrt(R) if R > 1 else torch.zeros_like(mean))

    def kill(st, mask):
        kill_state(st, mask, dim=1)  # the state is [R, g, ...]

    # what a rule's piece may use (gfsgd.updates.base)
    ctx = SimpleNamespace(problem=problem, N=N, R=R, K=K, KtT=KtT if with_test else None, device=device, dtype=dtype,
                          cache=cache, constant=constant, replacement=replacement, finish=finish,
                          gaussian=lambda t, n: gaussian_keys(streams, t, n, device).to(dtype),
                          uniform_keys=lambda t, n: stream_keys(streams, t, n, device))

    return drive(regime=REGIME, problem=problem, configs=configs, n_steps=n_steps, schedule=schedule,
                 log_steps=log_steps, device=device, dtype=dtype, chunk_size=chunk_size, init=init, step=step,
                 kill=kill, replacement=replacement, progress=progress, with_se=True,
                 test=test_loss if with_test else None, accuracy=test_accuracy if y_te is not None else None,
                 meta=dict(seed=seed, repeats=R), update=update, ctx=ctx,
                 loss0=None if path_loss_of is None else float(path_loss_of(d0[None, None])[0, 0]))


def _targets(problem) -> torch.Tensor:
    """The training targets [N C] of a network's problem (the linearized cross-entropy needs the logits f = d + y)."""
    net = getattr(problem, "network", None)
    if net is None or getattr(net, "y", None) is None:
        raise InputError("the linearized regime runs a loss other than mse on the logits f = d0 + y, so it needs the "
                         "targets: build the problem with gfsgd.problem_from_network(model, X, Y)")
    return net.y.reshape(-1)


def _test_targets(problem):
    """The held-out targets of a network's problem when they are class labels (an accuracy then means something),
    else None."""
    net = getattr(problem, "network", None)
    y = None if net is None else getattr(net, "y_test", None)
    return y if y is not None and is_classification(y) else None
