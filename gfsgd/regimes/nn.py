"""Real-network regime: mini-batch SGD with momentum on the network itself (docs/theory.md#update, v-form).

With w the parameters, f(x; w) the scalar output, B_t a uniform b-subset of the N training points drawn
afresh each step (without replacement inside the step; `replacement=True` draws with replacement):

    batch loss  L_B(w) = (1/(2b)) sum_{i in B_t} (f(x_i; w) - y_i)^2,      g_t = dL_B/dw (w_t)
    v_{t+1} = -lr_t g_t + beta_t v_t,     w_{t+1} = w_t + v_{t+1},     v_0 = 0          (torch.optim.SGD for constant lr)
    reported loss L_t = (1/(2N)) sum_{i=1}^{N} (f(x_i; w_t) - y_i)^2   (0.5 * MSE on the training points)

Learning-rate units. The configs' lr is alpha, in normalised-kernel units, and the network is trained with

    lr_t = alpha_t * N / lambda_max(K_emp),      K_emp = J J^T at w0 (J = df(X)/dw, [N, P]).

Derivation: g_t = (1/b) J_B^T d_B (d = f(X; w) - y, J_B the batch rows of J), so to first order in the step
the residual moves by J v_{t+1} = -lr_t (1/b) J J_B^T d_B + beta_t J v_t = -lr_t (1/b) K_emp[:, B] d[B] + ...
The kernel regimes use -alpha_t (N/b) K[:, B] d[B] with K = K_emp / lambda_max(K_emp); the two agree iff
lr_t = alpha_t N / lambda_max(K_emp). So at the same --lr the linearised network runs the kernel regimes'
dynamics exactly (tests/test_nn_regime.py checks this at small lr, batch by batch).

Vectorisation. Configs with the same batch size form a group; each group is trained in chunks of configs
whose parameters are stacked with torch.func.stack_module_state ([g, ...] per parameter tensor) and
stepped with vmap(grad(batch loss)): no Python loop over configs. Different batch sizes are separate
groups (a loop over the distinct batch sizes). Divergence as in every regime: a config whose loss is not
finite or exceeds 1e6 * L_0 is marked diverged at that step and frozen; the others continue.

The full training loss (and, with held-out points, the validation loss) is evaluated at the logged steps
only (default: every step up to 100, then 100 log-spaced steps per decade); between logged steps divergence
is detected from the batch loss.
"""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch.func import functional_call, grad_and_value, vmap

from ..configs import check_log_steps, check_n_steps, default_log_steps
from ..curves import Curves
from ..losses import correct, is_classification
from ..ntk import NetworkProblem, params_and_buffers
from ..ntk.drift import DriftRecorder, drift_steps
from ..updates import check_update
from ..losses import check_loss
from ._engine import drive, gaussian_keys, resolve_device, resolve_dtype, sample_batches, stream_keys, streams_for
from ..errors import InputError

REGIME = "nn"
__all__ = ["run", "REGIME", "as_network", "sample_batches"]


def as_network(problem, network=None) -> NetworkProblem:
    """The NetworkProblem to train, from `network=` or from `problem` (a NetworkProblem, a (model, X, y) or
    (model, X, y, X_test, y_test) tuple, or a Problem built by gfsgd.problem_from_network, which carries .network)."""
    for cand in (network, problem):
        if cand is None:
            continue
        if isinstance(cand, NetworkProblem):
            return cand
        if isinstance(cand, (tuple, list)) and len(cand) in (3, 5):
            return NetworkProblem(*cand)
        net = getattr(cand, "network", None)
        if isinstance(net, NetworkProblem):
            return net
    raise InputError("the nn regime needs the network: pass a Problem built by gfsgd.problem_from_network (it carries "
                     ".network), a gfsgd.ntk.NetworkProblem, a (model, X, y) tuple, or network=...; got "
                     f"problem={type(problem).__name__}" + ("" if network is None else
                                                            f", network={type(network).__name__}"))


def run(problem, configs, n_steps, *, network=None, repeats: int = 1, init: str = "shared", schedule=None,
        log_steps=None, seed: int = 0, device="auto", dtype="float64", replacement: bool = False,
        chunk_size: int | None = None, memory_budget: float = 2e9, record_batches: bool = False,
        progress: bool = True, update=None, loss="mse", drift_probe: int = 0, keep_state: bool = False,
        loss_probe: int = 0) -> Curves:
    """Train the real network with mini-batch SGD + momentum for G configs (lr, momentum, batch_size).

    Args:
        problem: a Problem from gfsgd.problem_from_network, a NetworkProblem or a (model, X, y) tuple
            (see as_network); `network=` overrides it (e.g. when `problem` is a plain Problem).
        configs: (alpha, beta, b) triples, alpha in normalised-kernel units (module docstring).
        repeats: R independent training paths per config, vectorised with the configs; Curves.loss is their
            mean and Curves.loss_se its standard error. Path r draws its batches from its own generator,
            random stream seed + r, so path r equals a single run (repeats=1) with seed + r; every config sees the
            same batches (a config of batch size b takes the first b), so a config's path depends only on (seed,
            its batch size, r), not on the configs beside it or on chunk_size.
        init: "shared" (every path starts from the model's own initialisation: only the batches differ) or
            "independent" (path r starts from model.reinitialized(seed + r); the model must provide it, as
            gfsgd.models.MLP does).
        log_steps: the steps at which the full training loss is evaluated (one pass over the N points, in
            row blocks); default: every step up to 100, then 100 log-spaced steps per decade.
        n_steps, schedule, seed, device, dtype, replacement: as in every regime.
        chunk_size: configs trained together (default: as many as fit in memory_budget bytes, R paths each).
        record_batches: keep the drawn batch indices in meta["batches"] (a list with one LongTensor
            [n_steps, b_max] per config, of path 0; only the first b_t entries of a row are used), for tests.
        drift_probe: measure how far the kernel moves (gfsgd.ntk.drift; docs/theory.md#drift) on this many
            training examples (0: off): meta["kernel_drift"] then holds, at about 16 log-spaced logged steps, the
            relative change |K_t - K_0|_F / |K_0|_F and lambda_max(K_t) / lambda_max(K_0) of the probe block per
            config (mean over paths; NaN after a divergence).
        loss_probe: evaluate the logged training loss on a fixed uniform random subset of this many training
            points (0 or >= N: all N), drawn once from seed; the logged loss, L_0 included, is then the mean over
            that subset, an unbiased estimate of the full one at a fraction of the cost of a pass over N points
            (meta["loss_probe"] holds its size, meta["loss_probe_index"] the points; the standard error of a mean over the probe's examples is not in
            loss_se, which is the spread over paths).
        keep_state: keep, per config, path 0's parameters and velocity after the last step in
            meta["final_state"] (a list of {"params": {name: tensor}, "velocity": {name: tensor}}, None where the
            config diverged); gfsgd.relinearize continues the prediction from them.

    Returns Curves(regime="nn"); meta holds lambda_max_raw and lr_scale (= N / lambda_max_raw, so
    lr_nn = alpha * lr_scale). When the network has held-out points, Curves.test_loss [G, T] is the measured
    0.5 * MSE on them at the logged steps (mean over paths; test_loss_se its standard error with repeats), and
    when the held-out targets are class labels (gfsgd.losses.is_classification) Curves.test_accuracy [G, T] is
    the fraction classified right (argmax of the C outputs; the sign for one output).

    update: the training rule (gfsgd.updates; docs/theory.md#updates): SGD (default); SVAG(l), two batches a step
        (the streams' draws of steps 2t and 2t + 1); NoisyGD, the full-batch gradient of 0.5 mean (f - y)^2 plus
        (1/N) J^T eta with eta as in the linearized regime (one full-batch pass a step); GradientPenalty and
        MicroBatchPenalty, whose penalty gradients are taken by double backprop (torch.func.grad of a function
        that calls torch.func.grad), with strength / lambda_max(K_emp) as the penalty on the network's loss.
    loss: the per-example loss (gfsgd.losses) of the batch loss and of the reported loss: "mse", 0.5 (f - y)^2,
        or "cross_entropy" (softmax over the C >= 2 outputs; y: one-hot rows, centred or not). The learning rate
        keeps its kernel units, lr_nn = alpha N / lambda_max(K_emp), whatever the loss.
    """
    rule = check_update(update, REGIME)
    draws = rule.draws  # SVAG: two independent batches a step, weights r1, r2
    net = as_network(problem, network)
    loss_fn = check_loss(loss, REGIME, net.n_outputs)  # the per-example loss (gfsgd.losses)
    if isinstance(repeats, bool) or not float(repeats).is_integer() or int(repeats) < 1:
        raise InputError(f"repeats must be an integer >= 1, got repeats={repeats!r}")
    R = int(repeats)
    if init not in ("shared", "independent"):
        raise InputError(f"init must be 'shared' or 'independent', got init={init!r}")
    if init == "independent" and not hasattr(net.model, "reinitialized"):
        raise InputError(f"init='independent' needs a model with a reinitialized(seed) method (gfsgd.models.MLP "
                         f"has one); {type(net.model).__name__} has none: use init='shared'")
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    n_steps = check_n_steps(n_steps)
    if log_steps is None:  # the full-data loss costs a pass over all N points: log-spaced by default
        log_steps = default_log_steps(n_steps, dense_until=100, per_decade=100)
    steps = check_log_steps(log_steps, n_steps)
    logged = set(int(s) for s in steps)  # a set, not an array of n_steps + 1 (n_steps may be huge)
    t_start = time.perf_counter()
    model = net.model
    N = net.N
    scale = net.lr_scale(device)
    params0, fixed = params_and_buffers(model, device, dtype)
    names = list(params0)
    if init == "independent":
        inits = [params_and_buffers(model.reinitialized(int(seed) + r), device, dtype)[0] for r in range(R)]
    else:
        inits = [params0] * R
    P = sum(p.numel() for p in params0.values())
    drift = None
    if drift_probe:
        drift = DriftRecorder(model, net.X, drift_probe, seed=seed, device=device)
        drift_at = set(drift_steps(steps))
    X = net.X.to(device, dtype)  # [N, ...]
    y = net.y.to(device, dtype)  # [N]
    if isinstance(loss_probe, bool) or not float(loss_probe).is_integer() or loss_probe < 0:
        raise InputError(f"loss_probe must be an integer >= 0 (training points to evaluate the loss on), "
                         f"got loss_probe={loss_probe!r}")
    Xe, ye = X, y  # the points the logged training loss is evaluated on
    if 0 < int(loss_probe) < N:
        pick = torch.randperm(N, generator=torch.Generator().manual_seed(int(seed) + 7919))[:int(loss_probe)]
        Xe, ye = X[pick.to(X.device)], y[pick.to(y.device)]
    Xt = None if net.X_test is None else net.X_test.to(device, dtype)
    yt = None if net.y_test is None else net.y_test.to(device, dtype)
    item = torch.finfo(dtype).bits // 8
    if chunk_size is None:
        chunk_size = max(1, int(memory_budget // (4 * P * item * R)))
    streams = streams_for(seed, R, device)  # path r: random stream seed + r, shared by every config
    constant = schedule is None or schedule.is_constant

    C = net.n_outputs  # outputs per example (docs/theory.md#outputs): f [n] or [n, C], y [N] or [N, C]

    def f(p, x):  # one config: x [n, ...] -> [n] (or [n, C])
        out = functional_call(model, (p, fixed), (x,))
        return out.reshape(x.shape[0]) if C == 1 else out.reshape(x.shape[0], C)

    def per_example(out, y):  # the loss of each example: [..., n] (summed over its C outputs)
        v = loss_fn.value(out, y)
        return v if C == 1 else v.sum(-1)

    def batch_loss(p, xb, yb, wb):  # xb [bmax, ...], yb [bmax], wb [bmax] = 1/b (0 beyond b)
        return (wb * per_example(f(p, xb), yb)).sum()

    grad_fn = vmap(grad_and_value(batch_loss))
    out_fn = vmap(f, in_dims=(0, None))

    def mse(p, Xs, ys, n, accuracy=False):  # the mean loss of n stacked networks on Xs [n] (and their accuracy [n])
        rows = max(64, int(memory_budget // (8 * n * max(1, Xs[0].numel()) * item * 8)))
        tot = torch.zeros(n, dtype=dtype, device=device)
        right = torch.zeros(n, dtype=dtype, device=device)
        for s in range(0, Xs.shape[0], rows):
            out = out_fn(p, Xs[s:s + rows])
            tot += per_example(out, ys[s:s + rows]).sum(1)  # [n, rows] -> [n]
            if accuracy:
                right += correct(out, ys[s:s + rows]).sum(1)
        return (tot / Xs.shape[0], right / Xs.shape[0]) if accuracy else tot / Xs.shape[0]

    def path_mean(x, g):  # [R g] (path-major) -> mean [g], standard error [g]
        x = x.reshape(R, g)
        mean = x.mean(0)
        return mean, (x.std(0) / math.sqrt(R) if R > 1 else torch.zeros_like(mean))

    # group the configs by batch size (same b: one vmapped group)
    cfgs = [tuple(c) for c in (configs.configs if hasattr(configs, "configs") else configs)]
    if not cfgs:
        raise InputError("configs must hold at least one (lr, momentum, batch_size) triple")
    groups = {}
    for i, c in enumerate(cfgs):
        try:
            key = int(c[2])
        except (TypeError, ValueError, IndexError):
            raise InputError(f"config {i} must be a triple (lr, momentum, batch_size), got {c!r}") from None
        groups.setdefault(key, []).append(i)

    # L_0 of this loss at the initial parameters (the problem's own for the squared loss)
    probing = Xe is not X
    loss0 = None if (loss_fn.problem_loss and not probing) else float(
        mse({k: torch.stack([inits[r][k] for r in range(R)]) for k in names}, Xe, ye, R).mean())
    results, drift_rows = [], []
    final_state = {}
    for b_key, members in groups.items():
        states = []

        def init_state(lr, mom, b):
            g = lr.numel()
            # stacked parameters [R g, ...], path-major: entry r g + j is path r of config j
            p = {k: torch.stack([inits[r][k] for r in range(R) for _ in range(g)]).clone() for k in names}
            st = dict(p=p, v={k: torch.zeros_like(t) for k, t in p.items()}, g=g,
                      live=torch.ones(R * g, dtype=dtype, device=device), val=[], batches=[], cache={}, drift=[])
            states.append(st)
            return st

        def step(st, h):
            p, v, cache, g = st["p"], st["v"], st["cache"], st["g"]
            if h.t == 0 or not constant:
                bmax = h.bmax
                pos = torch.arange(bmax, device=device)
                w = torch.where(pos[None, :] < h.batch_size[:, None], 1.0 / h.batch_size[:, None],
                                torch.zeros((), dtype=dtype, device=device))  # [g, bmax]
                cache.update(bmax=bmax, w=w.repeat(R, 1))  # [R g, bmax]
            bmax, w = cache["bmax"], cache["w"]
            lr = (h.lr.repeat(R) * scale * st["live"]).to(dtype)  # [R g]  lr_nn = alpha N / lambda_max(K_emp)
            beta = h.momentum.repeat(R).to(dtype)
            grads, bl = gradients(st, p, h, g, bmax, w)
            for k in names:
                shape = (R * g,) + (1,) * (p[k].ndim - 1)
                v[k].mul_(beta.view(shape)).sub_(lr.view(shape) * grads[k])
                p[k].add_(v[k])
            done, part = divmod(h.t + 1, rule.steps_per_sgd_step)  # SGD steps done (SVAG: l rule steps each)
            if part == 0 and done in logged:
                loss, se = path_mean(mse(p, Xe, ye, R * g), g)
                if Xt is not None:
                    tl, acc = mse(p, Xt, yt, R * g, accuracy=True)
                    st["val"].append((done, *path_mean(tl, g), *path_mean(acc, g)))
                if drift is not None and done in drift_at:
                    rel, ratio = drift.measure(p, R * g)
                    st["drift"].append((done, rel.reshape(R, g).mean(0), ratio.reshape(R, g).mean(0)))
                return st, loss, se
            return st, bl.reshape(R, g).mean(0), None

        def batch(h, g, bmax, t_key):
            idx = sample_batches(streams, t_key, N, bmax, replacement, device)  # [R, bmax]
            xb = X[idx]  # [R, bmax, ...]: one draw per path, shared by the configs (common random numbers)
            xb = xb[:, None].expand(R, g, *xb.shape[1:]).reshape(R * g, *xb.shape[1:])
            yi = y[idx]  # [R, bmax] (or [R, bmax, C])
            yb = yi[:, None].expand(R, g, *yi.shape[1:]).reshape(R * g, *yi.shape[1:])
            return idx, xb, yb

        def paths(x, g):  # [R, ...] -> [R g, ...] (path-major, shared by the configs)
            return x[:, None].expand(R, g, *x.shape[1:]).reshape(R * g, *x.shape[1:])

        def record(st, idx, g, bmax):
            if record_batches:
                st["batches"].append(idx[:1].expand(g, bmax).cpu())

        def gradients(st, p, h, g, bmax, w):
            """The step's gradient for the [R g] stacked networks, and a loss estimate [R g]: the rule's own piece
            (gfsgd.updates.base), or the batch gradient (the weighted sum over the rule's independent draws)."""
            if ctx.pieces.gradient is not None:
                return ctx.pieces.gradient(st, p, h, g, bmax, w)
            terms, bl = [], None
            for k, r in enumerate(draws):
                idx, xb, yb = batch(h, g, bmax, len(draws) * h.t + k if len(draws) > 1 else h.t)
                grads, loss_b = grad_fn(p, xb, yb, w)
                if k == 0:
                    record(st, idx, g, bmax)
                    bl = loss_b
                terms.append((r, grads))
            if len(terms) == 1:
                return terms[0][1], bl
            return {n: sum(r * t[n] for r, t in terms) for n in names}, bl

        # what a rule's piece may use (gfsgd.updates.base)
        ctx = SimpleNamespace(N=N, R=R, loss=loss_fn, X=X, y=y, f=f, out_fn=out_fn, grad_fn=grad_fn, batch=batch, paths=paths,
                              record=record, scale=scale, device=device, dtype=dtype, names=names,
                              gaussian=lambda t, n: gaussian_keys(streams, t, n, device).to(dtype),
                              uniform_keys=lambda t, n: stream_keys(streams, t, n, device))

        def kill(st, mask):
            mask = mask.repeat(R)
            st["live"][mask] = 0.0
            for k in names:
                st["p"][k][mask] = params0[k].to(st["p"][k].dtype)
                st["v"][k][mask] = 0.0

        sub = [cfgs[i] for i in members]
        cur = drive(regime=REGIME, problem=net, configs=sub, n_steps=n_steps, schedule=schedule,
                    log_steps=steps, device=device, dtype=dtype, chunk_size=chunk_size, init=init_state,
                    step=step, kill=kill, replacement=replacement, progress=progress, with_se=True,
                    meta=dict(seed=seed, repeats=R), update=update, ctx=ctx, loss0=loss0)
        val = None  # held-out loss, its s.e., accuracy, its s.e.: [g, T] each
        if Xt is not None:
            val = [np.full((len(sub), len(steps)), math.nan) for _ in range(4)]
            col = {int(s): j for j, s in enumerate(steps)}
            start = 0
            at0 = mse({k: torch.stack([inits[r][k] for r in range(R)]) for k in names}, Xt, yt, R, accuracy=True)
            for st in states:
                g = st["g"]
                if 0 in col:
                    for out, v0 in zip(val, (at0[0].mean().item(), 0.0, at0[1].mean().item(),
                                             path_mean(at0[1], 1)[1].item())):
                        out[start:start + g, col[0]] = v0
                for t, *vals in st["val"]:
                    for out, v in zip(val, vals):
                        out[start:start + g, col[t]] = v.cpu().double().numpy()
                start += g
            for j, ds in enumerate(cur.diverged_step):
                if ds is not None:
                    for out in val:
                        out[j, steps >= ds] = math.nan
        batches = [bt for st in states for bt in (torch.stack(st["batches"], 1).unbind(0) if st["batches"] else
                                                   [torch.zeros(0, 0, dtype=torch.long)] * st["g"])]
        results.append((members, cur, val, batches))
        off = 0
        for st in states:  # the chunks of this group, in order: configs members[off:off + g]
            drift_rows += [(t, members[off:off + st["g"]], r, q) for t, r, q in st["drift"]]
            if keep_state:  # path 0 of config j is entry j (path-major)
                for j in range(st["g"]):
                    final_state[members[off + j]] = None if cur.diverged_step[off + j] is not None else dict(
                        params={k: st["p"][k][j].detach().clone() for k in names},
                        velocity={k: st["v"][k][j].detach().clone() for k in names})
            off += st["g"]

    G, T = len(cfgs), len(steps)
    loss = np.full((G, T), math.nan)
    loss_se = np.full((G, T), math.nan)
    held = [np.full((G, T), math.nan) for _ in range(4)] if Xt is not None else None  # as `val` above
    status, div = [None] * G, [None] * G
    out_cfgs, batches = [None] * G, [None] * G
    for members, cur, val, bts in results:
        for j, i in enumerate(members):
            loss[i], status[i], div[i], out_cfgs[i] = cur.loss[j], cur.status[j], cur.diverged_step[j], cur.configs[j]
            loss_se[i] = cur.loss_se[j]
            if val is not None:
                for out, v in zip(held, val):
                    out[i] = v[j]
            batches[i] = bts[j] if record_batches else None
    meta = dict(results[0][1].meta)
    meta.update(seed=seed, repeats=R, init=init, wall_time=time.perf_counter() - t_start,
                lambda_max_raw=net.lambda_max(), lr_scale=scale, n_params=P, batch_groups=len(groups),
                loss_probe=int(Xe.shape[0]))
    if probing:
        meta["loss_probe_index"] = pick
    if init == "independent":  # L_0 differs between paths: the mean initial loss over paths
        loss[:, steps == 0] = mse({k: torch.stack([inits[r][k] for r in range(R)]) for k in names},
                                  Xe, ye, R).mean().item()
    classify = Xt is not None and is_classification(yt)
    if held is not None:
        meta.update(n_test=int(Xt.shape[0]))
    if record_batches:
        meta["batches"] = batches
    if drift is not None:
        meta["kernel_drift"] = _drift_table(drift, drift_rows, results, G, steps)
    if keep_state:
        meta["final_state"] = [final_state[i] for i in range(G)]
    return Curves(regime=REGIME, steps=steps, loss=loss, configs=out_cfgs, status=status, diverged_step=div,
                  loss_se=loss_se if R > 1 else None, meta=meta, test_loss=None if held is None else held[0],
                  test_loss_se=held[1] if (R > 1 and held is not None) else None,
                  test_accuracy=held[2] if classify else None, test_accuracy_se=held[3] if classify and R > 1 else None)


def _drift_table(drift, rows, results, G, steps):
    """meta["kernel_drift"]: the drift rows (step, config indices, change, ratio) as [G, S] lists at the S measured
    steps (step 0: change 0, ratio 1; NaN from a config's divergence on)."""
    at = sorted({t for t, *_ in rows} | ({0} if 0 in set(int(s) for s in steps) else set()))
    col = {t: j for j, t in enumerate(at)}
    rel, ratio = np.full((G, len(at)), math.nan), np.full((G, len(at)), math.nan)
    if 0 in col:
        rel[:, col[0]], ratio[:, col[0]] = 0.0, 1.0
    for t, idx, r, q in rows:
        rel[idx, col[t]], ratio[idx, col[t]] = r.cpu().double().numpy(), q.cpu().double().numpy()
    for members, cur, *_ in results:
        for j, i in enumerate(members):
            if cur.diverged_step[j] is not None:
                bad = np.asarray(at) >= cur.diverged_step[j]
                rel[i, bad], ratio[i, bad] = math.nan, math.nan
    return dict(probe=int(drift.index.numel()), probe_index=drift.index.tolist(), steps=at,
                relative_change=rel.tolist(), lambda_max_ratio=ratio.tolist(), lambda_max0_probe=drift.lam0)
