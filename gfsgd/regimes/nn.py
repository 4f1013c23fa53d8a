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

import numpy as np
import torch
from torch.func import functional_call, grad, grad_and_value, vmap

from ..configs import check_log_steps, check_n_steps, default_log_steps
from ..curves import Curves
from ..ntk import NetworkProblem, params_and_buffers
from ..updates import SVAG, GradientPenalty, MicroBatchPenalty, Normalized, NoisyGD, check_update
from ._engine import drive, gaussian_keys, resolve_device, resolve_dtype, sample_batches, stream_keys, streams_for

REGIME = "nn"
__all__ = ["run", "REGIME", "as_network", "sample_batches"]


def as_network(problem, network=None) -> NetworkProblem:
    """The NetworkProblem to train, from `network=` or from `problem` (a NetworkProblem, a (model, X, y) or
    (model, X, y, X_test, y_test) tuple, or a Problem built by Problem.from_network, which carries .network)."""
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
    raise ValueError("the nn regime needs the network: pass a Problem built by Problem.from_network (it carries "
                     ".network), a gfsgd.ntk.NetworkProblem, a (model, X, y) tuple, or network=...; got "
                     f"problem={type(problem).__name__}" + ("" if network is None else
                                                            f", network={type(network).__name__}"))


def run(problem, configs, n_steps, *, network=None, repeats: int = 1, init: str = "shared", schedule=None,
        log_steps=None, seed: int = 0, device="auto", dtype="float64", replacement: bool = False,
        chunk_size: int | None = None, memory_budget: float = 2e9, record_batches: bool = False,
        progress: bool = True, update=None) -> Curves:
    """Train the real network with mini-batch SGD + momentum for G configs (lr, momentum, batch_size).

    Args:
        problem: a Problem from Problem.from_network, a NetworkProblem or a (model, X, y) tuple
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

    Returns Curves(regime="nn"); meta holds lambda_max_raw and lr_scale (= N / lambda_max_raw, so
    lr_nn = alpha * lr_scale). When the network has held-out points, Curves.test_loss [G, T] is the measured
    0.5 * MSE on them at the logged steps (mean over paths; test_loss_se its standard error with repeats).

    update: the training rule (gfsgd.updates; docs/theory.md#updates): SGD (default); SVAG(l), two batches a step
        (the streams' draws of steps 2t and 2t + 1); NoisyGD, the full-batch gradient of 0.5 mean (f - y)^2 plus
        (1/N) J^T eta with eta as in the linearized regime (one full-batch pass a step); GradientPenalty and
        MicroBatchPenalty, whose penalty gradients are taken by double backprop (torch.func.grad of a function
        that calls torch.func.grad), with strength / lambda_max(K_emp) as the penalty on the network's loss.
    """
    rule = check_update(update, REGIME)
    two = isinstance(rule, SVAG) and rule.l > 1
    net = as_network(problem, network)
    if isinstance(repeats, bool) or not float(repeats).is_integer() or int(repeats) < 1:
        raise ValueError(f"repeats must be an integer >= 1, got repeats={repeats!r}")
    R = int(repeats)
    if init not in ("shared", "independent"):
        raise ValueError(f"init must be 'shared' or 'independent', got init={init!r}")
    if init == "independent" and not hasattr(net.model, "reinitialized"):
        raise ValueError(f"init='independent' needs a model with a reinitialized(seed) method (gfsgd.models.MLP "
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
    X = net.X.to(device, dtype)  # [N, ...]
    y = net.y.to(device, dtype)  # [N]
    Xt = None if net.X_test is None else net.X_test.to(device, dtype)
    yt = None if net.y_test is None else net.y_test.to(device, dtype)
    item = torch.finfo(dtype).bits // 8
    if chunk_size is None:
        chunk_size = max(1, int(memory_budget // (4 * P * item * R)))
    streams = streams_for(seed, R, device)  # path r: random stream seed + r, shared by every config
    constant = schedule is None or schedule.is_constant

    def f(p, x):  # one config: x [n, ...] -> [n]
        return functional_call(model, (p, fixed), (x,)).reshape(x.shape[0])

    def batch_loss(p, xb, yb, wb):  # xb [bmax, ...], yb [bmax], wb [bmax] = 1/b (0 beyond b)
        r = f(p, xb) - yb
        return 0.5 * (wb * r * r).sum()

    grad_fn = vmap(grad_and_value(batch_loss))
    out_fn = vmap(f, in_dims=(0, None))
    lam_raw = None if not hasattr(rule, "strength") else rule.strength * scale / N  # strength / lambda_max(K_emp)

    def sq_grad_norms(p, xs, ys):
        """|grad L_j(p)|^2 of the chunks j: xs [m, c, ...], ys [m, c] (labels, or the model's own draws y~ for the
        fisher kind), L_j = 0.5 mean over chunk j of (f - y)^2."""
        def chunk_loss(q, x, yy):
            r = f(q, x) - yy
            return 0.5 * (r * r).mean()
        g = vmap(grad(chunk_loss), in_dims=(None, 0, 0))(p, xs, ys)  # per-chunk gradients [m, ...]
        return sum((t.reshape(t.shape[0], -1) ** 2).sum(1) for t in g.values())  # [m]

    def gd_penalty_loss(p, Xs, ys, parts):  # full-batch loss + lam / (4m) sum_k |grad L_k|^2; parts [m, c]
        r = f(p, Xs) - ys
        return 0.5 * (r * r).mean() + lam_raw / (4 * parts.shape[0]) * sq_grad_norms(p, Xs[parts], ys[parts]).sum()

    def mb_penalty_loss(p, xb, yb, wb, yt_mb):  # batch loss + lam mean_j |grad L_{M_j}|^2; xb [bmax, ...]
        r = f(p, xb) - yb
        mu = rule.micro_batch_size
        J = xb.shape[0] // mu
        norms = sq_grad_norms(p, xb.reshape(J, mu, *xb.shape[1:]), yt_mb.reshape(J, mu))  # [J]
        live = (wb.reshape(J, mu)[:, 0] > 0).to(norms.dtype)  # micro-batches inside this config's batch
        return 0.5 * (wb * r * r).sum() + lam_raw * (norms * live).sum() / live.sum()

    pen_grad = vmap(grad(gd_penalty_loss), in_dims=(0, None, None, 0)) if isinstance(rule, GradientPenalty) else None
    mb_grad = vmap(grad(mb_penalty_loss)) if isinstance(rule, MicroBatchPenalty) else None

    def noisy_loss(p, Xs, coef):  # its gradient is (1/N) J^T (d + eta) for constant coef = (d + eta) / N
        return (coef * f(p, Xs)).sum()
    ngd_grad = vmap(grad(noisy_loss), in_dims=(0, None, 0))

    def mse(p, Xs, ys, n):  # 0.5 * mean squared error of n stacked networks on Xs: [n]
        rows = max(64, int(memory_budget // (8 * n * max(1, Xs[0].numel()) * item * 8)))
        tot = torch.zeros(n, dtype=dtype, device=device)
        for s in range(0, Xs.shape[0], rows):
            r = out_fn(p, Xs[s:s + rows]) - ys[s:s + rows]  # [n, rows]
            tot += (r * r).sum(1)
        return 0.5 * tot / Xs.shape[0]

    def path_mean(x, g):  # [R g] (path-major) -> mean [g], standard error [g]
        x = x.reshape(R, g)
        mean = x.mean(0)
        return mean, (x.std(0) / math.sqrt(R) if R > 1 else torch.zeros_like(mean))

    # group the configs by batch size (same b: one vmapped group)
    cfgs = [tuple(c) for c in (configs.configs if hasattr(configs, "configs") else configs)]
    if not cfgs:
        raise ValueError("configs must hold at least one (lr, momentum, batch_size) triple")
    groups = {}
    for i, c in enumerate(cfgs):
        try:
            key = int(c[2])
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"config {i} must be a triple (lr, momentum, batch_size), got {c!r}") from None
        groups.setdefault(key, []).append(i)

    results = []
    for b_key, members in groups.items():
        states = []

        def init_state(lr, mom, b):
            g = lr.numel()
            # stacked parameters [R g, ...], path-major: entry r g + j is path r of config j
            p = {k: torch.stack([inits[r][k] for r in range(R) for _ in range(g)]).clone() for k in names}
            st = dict(p=p, v={k: torch.zeros_like(t) for k, t in p.items()}, g=g,
                      live=torch.ones(R * g, dtype=dtype, device=device), val=[], batches=[], cache={})
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
                loss, se = path_mean(mse(p, X, y, R * g), g)
                if Xt is not None:
                    st["val"].append((done, *path_mean(mse(p, Xt, yt, R * g), g)))
                return st, loss, se
            return st, bl.reshape(R, g).mean(0), None

        def batch(h, g, bmax, t_key):
            idx = sample_batches(streams, t_key, N, bmax, replacement, device)  # [R, bmax]
            xb = X[idx]  # [R, bmax, ...]: one draw per path, shared by the configs (common random numbers)
            xb = xb[:, None].expand(R, g, *xb.shape[1:]).reshape(R * g, *xb.shape[1:])
            yb = y[idx][:, None].expand(R, g, bmax).reshape(R * g, bmax)
            return idx, xb, yb

        def paths(x, g):  # [R, ...] -> [R g, ...] (path-major, shared by the configs)
            return x[:, None].expand(R, g, *x.shape[1:]).reshape(R * g, *x.shape[1:])

        def gradients(st, p, h, g, bmax, w):
            """The step's gradient of the rule for the [R g] stacked networks, and a loss estimate [R g]."""
            if isinstance(rule, (NoisyGD, GradientPenalty)):  # full batch
                with torch.no_grad():
                    dd = out_fn(p, X) - y  # [R g, N]
                bl = 0.5 * (dd * dd).mean(1)
                if isinstance(rule, NoisyGD):
                    z = gaussian_keys(streams, h.t, N, device).to(dtype)
                    z = paths(z - z.mean(1, keepdim=True), g)  # [R g, N]
                    eta = torch.sqrt(h.gamma * N).repeat(R)[:, None] * dd * z
                    return ngd_grad(p, X, (dd + eta) / N), bl
                c = rule.chunk_size
                if rule.split == "fixed":
                    parts = torch.arange(N, device=device).reshape(1, N // c, c).expand(R * g, N // c, c)
                else:
                    parts = paths(stream_keys(streams, h.t, N, device).argsort(dim=1).reshape(R, N // c, c), g)
                return pen_grad(p, X, y, parts), bl
            idx, xb, yb = batch(h, g, bmax, 2 * h.t if two else h.t)
            if record_batches:
                st["batches"].append(idx[:1].expand(g, bmax).cpu())
            if isinstance(rule, MicroBatchPenalty):
                if rule.kind == "fisher":  # labels from the model: y~ = f + eps, so f - y~ = -eps (unit variance)
                    with torch.no_grad():
                        ft = vmap(f)(p, xb)
                    ytil = ft + paths(gaussian_keys(streams, h.t, bmax, device).to(dtype), g)
                else:
                    ytil = yb
                return mb_grad(p, xb, yb, w, ytil), grad_fn(p, xb, yb, w)[1]
            grads, bl = grad_fn(p, xb, yb, w)
            if isinstance(rule, Normalized):  # the batch's direction, the step norm of the target
                nrm = torch.sqrt(sum((t.reshape(t.shape[0], -1) ** 2).sum(1) for t in grads.values()))  # [R g]
                if rule.target == "small_batch":  # the same lr on the first small_batch_size points of the batch
                    ws = (torch.arange(bmax, device=device) < rule.small_batch_size).to(dtype) / rule.small_batch_size
                    gs, _ = grad_fn(p, xb, yb, ws.expand(R * g, bmax))
                    want = torch.sqrt(sum((t.reshape(t.shape[0], -1) ** 2).sum(1) for t in gs.values()))
                else:  # |delta w| = target / sqrt(lambda_max(K_emp)) = lr_nn |g'|  (target in normalised units)
                    lr_nn = (h.lr * scale).repeat(R)
                    want = float(rule.target) / (math.sqrt(N / scale) * lr_nn)
                fac = torch.where(nrm > 0, want / nrm, torch.zeros_like(nrm))
                grads = {k: t * fac.view((-1,) + (1,) * (t.ndim - 1)) for k, t in grads.items()}
            if two:  # SVAG: r1 g_B1 + r2 g_B2, the second batch independent of the first
                r1, r2 = rule.coefficients
                _, xb2, yb2 = batch(h, g, bmax, 2 * h.t + 1)
                grads2, _ = grad_fn(p, xb2, yb2, w)
                grads = {k: r1 * grads[k] + r2 * grads2[k] for k in names}
            return grads, bl

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
                    meta=dict(seed=seed, repeats=R), update=update)
        val = val_se = None
        if Xt is not None:
            val = np.full((len(sub), len(steps)), math.nan)
            val_se = np.full((len(sub), len(steps)), math.nan)
            col = {int(s): j for j, s in enumerate(steps)}
            start = 0
            val0 = mse({k: torch.stack([inits[r][k] for r in range(R)]) for k in names}, Xt, yt, R).mean().item()
            for st in states:
                g = st["g"]
                if 0 in col:
                    val[start:start + g, col[0]] = val0
                    val_se[start:start + g, col[0]] = 0.0
                for t, vals, ses in st["val"]:
                    val[start:start + g, col[t]] = vals.cpu().double().numpy()
                    val_se[start:start + g, col[t]] = ses.cpu().double().numpy()
                start += g
            for j, ds in enumerate(cur.diverged_step):
                if ds is not None:
                    val[j, steps >= ds] = math.nan
                    val_se[j, steps >= ds] = math.nan
        batches = [bt for st in states for bt in (torch.stack(st["batches"], 1).unbind(0) if st["batches"] else
                                                   [torch.zeros(0, 0, dtype=torch.long)] * st["g"])]
        results.append((members, cur, (val, val_se), batches))

    G, T = len(cfgs), len(steps)
    loss = np.full((G, T), math.nan)
    loss_se = np.full((G, T), math.nan)
    test_loss = np.full((G, T), math.nan) if Xt is not None else None
    test_se = np.full((G, T), math.nan) if Xt is not None else None
    status, div = [None] * G, [None] * G
    out_cfgs, batches = [None] * G, [None] * G
    for members, cur, val, bts in results:
        for j, i in enumerate(members):
            loss[i], status[i], div[i], out_cfgs[i] = cur.loss[j], cur.status[j], cur.diverged_step[j], cur.configs[j]
            loss_se[i] = cur.loss_se[j]
            if val[0] is not None:
                test_loss[i], test_se[i] = val[0][j], val[1][j]
            batches[i] = bts[j] if record_batches else None
    meta = dict(results[0][1].meta)
    meta.update(seed=seed, repeats=R, init=init, wall_time=time.perf_counter() - t_start,
                lambda_max_raw=net.lambda_max(), lr_scale=scale, n_params=P, batch_groups=len(groups))
    if init == "independent":  # L_0 differs between paths: the mean initial loss over paths
        loss[:, steps == 0] = mse({k: torch.stack([inits[r][k] for r in range(R)]) for k in names},
                                  X, y, R).mean().item()
    if test_loss is not None:
        meta.update(n_test=int(Xt.shape[0]))
    if record_batches:
        meta["batches"] = batches
    return Curves(regime=REGIME, steps=steps, loss=loss, configs=out_cfgs, status=status, diverged_step=div,
                  loss_se=loss_se if R > 1 else None, meta=meta, test_loss=test_loss,
                  test_loss_se=test_se if (R > 1 and test_se is not None) else None)
