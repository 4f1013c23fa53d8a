"""What to run: the learning rate, momentum and batch size for a budget, where they break, and the critical
batch size (docs/theory.md#recommend).

    table = gfsgd.recommend(problem, budget_samples=10**5, batch_sizes=(1, 10, 100, 1000))
    python -m gfsgd.recommend --dataset digits --N 256 --budget_samples 100000 --batch_size 1 10 100

For each batch size b the budget gives a horizon T (budget_steps, or budget_samples // b steps), and the
predicted loss at T (the renewal equation of the SD dynamics; with objective="test" the predicted test loss)
is minimised over (alpha, beta): beta on a grid allowed by `momentum`, alpha = f * ceiling(beta, b) with f in
(0, 1) on a geometric grid, then two rounds of local refinement. The ceiling is the SD critical learning rate
(docs/theory.md#stability). For a dense problem (eigenvectors known, N <= exact_max_n) the exact edge of the
batch-averaged dynamics (section 12) is computed at the optimum's momentum, and a recommendation above
`margin` x that edge is moved below it: the SD edge can lie far above the exact one.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import theory as th
from ..errors import InputError
from .inputs import check_batches, check_budget

__all__ = ["recommend", "predicted_loss", "MOMENTA"]

MOMENTA = {"any": np.round(np.concatenate([np.linspace(-0.8, 0.9, 18), [0.95]]), 12),
           "nonnegative": np.round(np.concatenate([np.linspace(0.0, 0.9, 10), [0.95]]), 12),
           "zero": np.array([0.0])}
FRACTIONS = np.geomspace(0.02, 0.98, 14)


def predicted_loss(problem, horizon, tau, objective):
    """A function (a, beta, b) -> the predicted loss at step `horizon` (train, or test with objective="test"),
    broadcast over its arguments; inf for configs that diverge (docs/theory.md#generating-functions, 5, 11 and 15)."""
    T = int(horizon)

    def predict(a, beta, b):
        a, beta, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(beta, float), np.asarray(b, float))
        shape = a.shape
        a, beta, b = a.reshape(-1), beta.reshape(-1), b.reshape(-1).astype(np.int64)
        with np.errstate(all="ignore"):
            if objective == "test":  # the test loss needs the whole renewal solution (section 11)
                out = th.loss_curve(problem, a, beta, b, T, tau, log_steps=[T], test=True)[1][..., 0]
                out = np.where(th.is_convergent(problem, a, beta, b, tau=tau), out, np.inf)
            else:  # the train loss at one step: the contour integral of section 15 (inf where divergent)
                out = th.loss_at(problem, a, beta, b, T, tau=tau)
        return np.where(np.isfinite(out) & (out >= 0), out, np.inf).reshape(shape)
    return predict


def _search(predict, ceiling, b, momenta, refine=2):
    """min over beta in momenta (then refined locally) and alpha = f * ceiling(beta); returns (a, beta, loss)."""
    beta = np.repeat(momenta, FRACTIONS.size)
    f = np.tile(FRACTIONS, momenta.size)
    a = f * ceiling(beta)
    loss = predict(a, beta, b)
    k = int(np.argmin(loss))
    best = (a[k], beta[k], loss[k], f[k])
    dbeta = 0.1 if momenta.size > 1 else 0.0
    dlogf = math.log(FRACTIONS[1] / FRACTIONS[0])
    off = np.linspace(-1, 1, 5)
    lo_b, hi_b = float(momenta.min()), float(max(momenta.max(), 0.0))
    for _ in range(refine):
        nb = np.clip(best[1] + dbeta * off, lo_b, hi_b) if dbeta else np.array([best[1]])
        nf = np.clip(best[3] * np.exp(dlogf * off), 1e-4, 0.999)
        nb, nf = [x.reshape(-1) for x in np.meshgrid(nb, nf, indexing="ij")]
        na = nf * ceiling(nb)
        nl = predict(na, nb, b)
        j = int(np.argmin(nl))
        if nl[j] < best[2]:
            best = (na[j], nb[j], nl[j], nf[j])
        dbeta, dlogf = dbeta / 2, dlogf / 2
    return best[0], best[1], best[2]


def _steps_to(problem, a, beta, b, target, horizon, tau, objective):
    """First step t <= horizon with predicted loss <= target (NaN if not reached)."""
    steps = np.unique(np.round(np.geomspace(1, max(horizon, 1), 400)).astype(int))
    with np.errstate(all="ignore"):
        out = th.loss_curve(problem, a, beta, b, int(horizon), tau, log_steps=np.concatenate([[0], steps]),
                            test=objective == "test")
    curve = (out[1] if objective == "test" else out)[1:]
    target = target * (1 + 1e-9)  # the default target is a row's own loss at its horizon: reached there
    hit = np.flatnonzero(curve <= target)
    if hit.size == 0:
        return math.nan
    j = hit[0]
    if j == 0:
        return float(steps[0])
    # the exact first step lies between two logged steps: refine on that interval
    lo, hi = int(steps[j - 1]), int(steps[j])
    with np.errstate(all="ignore"):
        out = th.loss_curve(problem, a, beta, b, hi, tau, log_steps=np.arange(lo, hi + 1), test=objective == "test")
    fine = out[1] if objective == "test" else out
    return float(lo + np.flatnonzero(fine <= target)[0])


def _mccandlish(problem, a, beta, b, t, tau):
    """McCandlish et al.'s B_noise and B_simple on the expected trajectory at step t (SD moments; delocalised
    data-basis diagonal, docs/theory.md#recommend), and their finite-data batch sizes N B / (N - 1 + B)."""
    lam = problem.eigvals.detach().cpu().double().numpy()
    C = th.mode_second_moments(problem, a, beta, b, t, tau)
    with np.errstate(all="ignore"):
        b_noise = C.sum() * (lam ** 2).sum() / ((lam ** 2) @ C) - 1
        b_simple = C.sum() * lam.sum() / (lam @ C) - 1
    N = problem.N
    return b_noise, b_simple, N * b_noise / (N - 1 + b_noise), N * b_simple / (N - 1 + b_simple)


def recommend(problem, *, budget_steps=None, budget_samples=None, batch_sizes=(1, 10, 100, 1000),
              objective="train", momentum="any", tau=1.0, target=None, exact="auto", exact_max_n=1000,
              margin=0.9, lsr_factors=(2, 4, 8, 16, 32, 64, 128), probe_steps=0, probe_top=4,
              probe_seed=0, schedules=False) -> pd.DataFrame:
    """The (alpha, beta) to run at each batch size for a budget, and the margins around it.

    Args:
        problem: a gfsgd.Problem (spectral-only problems work, without the exact edge and the test objective), or
            the Extrapolation of a subset (gfsgd.spectrum.extrapolate): the recommendation is made on its central
            problem and each row's predicted loss gets a band (columns loss_low, loss_high; Extrapolation.band).
        budget_steps / budget_samples: exactly one: SGD steps, or samples processed (steps x b).
        batch_sizes: candidate batch sizes (those above N are skipped and listed in attrs["skipped"]).
        objective: "train" (predicted training loss at the budget) or "test" (predicted test loss; needs a
            held-out set in the eigenbasis).
        momentum: "any" (negative momenta included), "nonnegative" or "zero".
        tau: the SD parameter of the predictions (1: mean field, -1: Gaussian features).
        target: the loss for the steps/samples-to-target columns and the critical batch size (default: the
            largest predicted loss at the budget over the batch sizes, so that every row reaches it).
        exact: "auto" (the exact edge when the problem has its eigenvectors and N <= exact_max_n), True, False.
        margin: a recommended alpha stays below margin x the exact edge.
        lsr_factors: the factors kappa tried by the linear-scaling check.
        probe_steps: 0 (default: the prediction alone), or a number of steps to train the real network on the best
            candidates before choosing (network problems from gfsgd.problem_from_network). Per batch size, the
            prediction's choice and the best cell of each of its probe_top - 1 best other momenta on the search grid
            are trained for probe_steps steps (one path of probe_seed); a candidate that diverges or ends above L_0
            is dropped; each other one is re-linearised at its probe's end (gfsgd.relinearize, docs/theory.md#relinearise)
            and its loss at the budget predicted from there. The best of these is recommended (steps_to_target,
            b_noise, the critical batch size and the linear-scaling check stay those of the prediction from the
            kernel at initialisation).
        schedules: also design a schedule per batch size for the same budget (gfsgd.design_schedule, every family;
            docs/theory.md#design): columns schedule (a gfsgd.Schedule, the best found), schedule_family,
            schedule_lr, schedule_momentum (its base values), schedule_steps and loss_schedule (its predicted loss).

    Returns a DataFrame, one row per batch size: batch_size, lr (alpha*), momentum (beta*), loss (predicted at
    the budget), horizon (steps), lr_crit_sd (SD edge at beta*), lr_crit_exact (exact edge at beta*, NaN when not
    computed), lr_margin (alpha* / the binding edge), steps_to_target, samples_to_target, lr_nn (alpha* in the
    network's own units, N alpha* / lambda_max_raw, for network problems), b_noise, b_simple (McCandlish at the
    budget), extrapolating (True where the prediction rests on the kernel at initialisation of a network that was
    not probed, or whose probe moved its kernel by more than 10%: the loss column then assumes a kernel that the
    network may leave), and with probes: probed (candidates trained), kernel_change (|K_t - K_0|_F / |K_0|_F at
    the chosen candidate's probe end), lr_unprobed, momentum_unprobed, loss_unprobed (the prediction's own choice). df.attrs holds: target, critical_batch_size (the 20%-over-linear-scaling definition),
    mccandlish (B_noise, B_simple and their finite-data batch sizes at the start and at the smallest batch's
    budget), lsr (the linear-scaling check), skipped, objective, budget.
    """
    from ..spectrum.extrapolate import Extrapolation
    ex = None
    if isinstance(problem, Extrapolation):  # a subset's extrapolation: recommend on its central problem, add a band
        ex, problem = problem, problem.problem
    if objective not in ("train", "test"):
        raise InputError(f"objective must be 'train' or 'test', got objective={objective!r}")
    if momentum not in MOMENTA:
        raise InputError(f"momentum must be one of {list(MOMENTA)}, got momentum={momentum!r}")
    if exact not in ("auto", True, False):
        raise InputError(f"exact must be 'auto', True or False, got exact={exact!r}")
    if not (0 < float(margin) < 1):
        raise InputError(f"margin must be in (0, 1), got margin={margin}")
    budget_name, budget = check_budget(budget_steps, budget_samples)
    N = problem.N
    bs, skipped = check_batches(batch_sizes, N)
    if objective == "test":
        problem.require_test("recommend(objective='test')")
    has_basis = getattr(problem, "eigvecs", None) is not None
    use_exact = (exact is True) or (exact == "auto" and has_basis and N <= exact_max_n)
    if use_exact and not has_basis:
        raise InputError("exact=True needs a problem with its eigenvectors (a dense problem); this one is spectral "
                         "only: use exact='auto' or False")
    network = (problem.meta or {}).get("kind") == "network"
    if isinstance(probe_steps, bool) or not float(probe_steps).is_integer() or probe_steps < 0:
        raise InputError(f"probe_steps must be an integer >= 0, got probe_steps={probe_steps!r}")
    if isinstance(probe_top, bool) or not float(probe_top).is_integer() or probe_top < 1:
        raise InputError(f"probe_top must be an integer >= 1, got probe_top={probe_top!r}")
    probes = int(probe_steps) > 0
    if probes and getattr(problem, "network", None) is None:
        raise InputError("probe_steps > 0 trains the real network: give a Problem from gfsgd.problem_from_network "
                         "(it carries .network)")
    if probes and budget_name == "budget_steps" and int(probe_steps) >= budget:
        raise InputError(f"probe_steps must be below the budget of {budget} steps, got probe_steps={probe_steps}")
    momenta = MOMENTA[momentum]
    rows = []
    for b in bs:
        T = budget if budget_name == "budget_steps" else max(1, budget // b)
        predict = predicted_loss(problem, T, tau, objective)

        def ceiling(beta, b=b):
            return th.critical_lr(problem, beta, b, tau=tau)

        a, beta, loss = _search(predict, ceiling, b, momenta)
        sd_edge = float(ceiling(beta)) if np.isfinite(loss) else math.nan
        ex_edge = math.nan
        if use_exact and np.isfinite(loss):
            ex_edge = th.exact_critical_lr(problem, beta, b, rtol=1e-3)
            if a > margin * ex_edge:  # the SD optimum lies past the exact edge: search again below it
                cands = sorted({float(np.clip(beta + d, momenta.min(), max(momenta.max(), 0.0)))
                                for d in ((-0.1, 0.0, 0.1) if momenta.size > 1 else (0.0,))})
                best = (math.nan, beta, math.inf, ex_edge)
                for bc in cands:
                    edge = ex_edge if bc == beta else th.exact_critical_lr(problem, bc, b, rtol=1e-3)
                    fr = np.geomspace(0.05, 1.0, 24) * margin * min(edge, float(ceiling(bc)))
                    ls = predict(fr, bc, b)
                    j = int(np.argmin(ls))
                    if ls[j] < best[2]:
                        best = (fr[j], bc, ls[j], edge)
                a, beta, loss, ex_edge = best
                sd_edge = float(ceiling(beta))
        binding = min(sd_edge, ex_edge) if np.isfinite(ex_edge) else sd_edge
        row = dict(batch_size=b, lr=float(a), momentum=float(beta), loss=float(loss), horizon=T,
                   lr_crit_sd=sd_edge, lr_crit_exact=float(ex_edge), lr_margin=float(a / binding),
                   lr_nn=float(a * N / problem.lambda_max_raw) if network else math.nan, extrapolating=network)
        if probes:
            cands = [(float(a), float(beta))] + _candidates(predict, ceiling, b, momenta, int(probe_top) - 1, beta)
            pa, pb, pl, change, n = _probe(problem, cands, b, T, int(probe_steps), tau, objective, probe_seed)
            row.update(lr_unprobed=row["lr"], momentum_unprobed=row["momentum"], loss_unprobed=row["loss"],
                       probed=n, kernel_change=change, probe_failed=not np.isfinite(pl))
            if np.isfinite(pl):
                row.update(lr=pa, momentum=pb, loss=pl, lr_crit_sd=float(ceiling(pb)), lr_crit_exact=math.nan,
                           lr_nn=float(pa * N / problem.lambda_max_raw), extrapolating=bool(change > 0.1))
                row["lr_margin"] = pa / row["lr_crit_sd"]
        rows.append(row)
    df = pd.DataFrame(rows)
    if schedules:
        from .design import design_schedule
        des = [design_schedule(problem, **{budget_name: budget}, batch_sizes=[b], objective=objective,
                               momentum=momentum, tau=tau, progress=False) for b in bs]
        df["schedule"] = [d.schedule for d in des]
        df["schedule_family"] = [d.info["family"] for d in des]
        df["schedule_lr"] = [d.config[0] for d in des]
        df["schedule_momentum"] = [d.config[1] for d in des]
        df["schedule_steps"] = [d.n_steps for d in des]
        df["loss_schedule"] = [d.info["test_loss" if objective == "test" else "loss"] if d.info["chosen_by"] !=
                               "loss_search" else float(d.table.loc[d.table["best"], "loss_search"].iloc[0])
                               for d in des]
    if ex is not None:  # the band of each row's predicted loss (Extrapolation.band)
        bands = [ex.band(lambda q, r=r: predicted_loss(q, r.horizon, tau, objective)(np.array([r.lr]), r.momentum,
                                                                                     r.batch_size))
                 if np.isfinite(r.loss) else dict(low=[math.nan], high=[math.nan]) for r in df.itertuples()]
        df["loss_low"] = [float(np.asarray(bd["low"]).reshape(-1)[0]) for bd in bands]
        df["loss_high"] = [float(np.asarray(bd["high"]).reshape(-1)[0]) for bd in bands]
    ok = np.isfinite(df["loss"].to_numpy())
    if not ok.any():
        largest = {int(b): float(th.critical_lr(problem, 0.0, b, tau=tau)) for b in bs}
        raise InputError("no config converges within the budget at any batch size in "
                         f"{bs}; the largest stable learning rates at beta = 0 are {largest}")
    if target is None:
        target = float(df.loc[ok, "loss"].max())
    steps = [(_steps_to(problem, r.lr, r.momentum, r.batch_size, target, r.horizon, tau, objective)
              if np.isfinite(r.loss) else math.nan) for r in df.itertuples()]
    df["steps_to_target"] = steps
    df["samples_to_target"] = df["steps_to_target"] * df["batch_size"]
    mc = [(_mccandlish(problem, r.lr, r.momentum, r.batch_size, r.horizon, tau) if np.isfinite(r.loss)
           else (math.nan,) * 4) for r in df.itertuples()]
    df["b_noise"] = [m[0] for m in mc]
    df["b_simple"] = [m[1] for m in mc]
    top = float(momenta.max())
    edge = [int(r.batch_size) for r in df.itertuples() if momenta.size > 1 and np.isfinite(r.loss)
            and r.momentum >= top - 1e-12 and top > 0]
    warnings = ([f"beta* = {top:g}, the largest momentum searched, at b = {edge}: the optimum may lie beyond "
                 f"the search grid (a larger beta needs a smaller alpha and more steps to pass its transient)"]
                if edge else [])
    if "extrapolating" in df and df["extrapolating"].any():
        ex = [int(r.batch_size) for r in df.itertuples() if r.extrapolating]
        warnings.append(f"extrapolating at b = {ex}: " + (
            "the probes moved the kernel by more than 10% (kernel_change), so the loss column assumes a kernel the "
            "network is leaving" if probes else "the loss column is the network linearised at initialisation; a "
            "network that learns features leaves it (pass probe_steps= to check the candidates on the network)"))
    if probes and "probed" in df:
        failed = [int(r.batch_size) for r in df.itertuples() if r.probe_failed]
        if failed:
            warnings.append(f"at b = {failed} every probed candidate diverged or stalled on the network: the row keeps "
                            "the unprobed prediction")
    df.attrs.update(objective=objective, budget={budget_name: budget}, target=target, skipped=skipped,
                    tau=float(tau), exact=bool(use_exact), warnings=warnings,
                    critical_batch_size=_critical_batch(df),
                    mccandlish=_mccandlish_summary(problem, df, tau),
                    lsr=_lsr_check(problem, df, tau, budget_name, budget, lsr_factors))
    return df


def _critical_batch(df):
    """(a): the smallest batch size whose steps to the target exceed ideal linear scaling from the smallest
    batch, S(b_min) b_min / b, by more than 20% (NaN when none does)."""
    d = df[np.isfinite(df["steps_to_target"])]
    if len(d) < 2:
        return dict(definition="steps to target > 1.2 x ideal linear scaling", batch_size=math.nan)
    b0, s0 = float(d["batch_size"].iloc[0]), float(d["steps_to_target"].iloc[0])
    ratio = d["steps_to_target"].to_numpy() / (s0 * b0 / d["batch_size"].to_numpy())
    over = np.flatnonzero(ratio > 1.2)
    return dict(definition="steps to target > 1.2 x ideal linear scaling from the smallest batch",
                batch_size=float(d["batch_size"].iloc[over[0]]) if over.size else math.nan,
                ratio_to_ideal=dict(zip(d["batch_size"].astype(int).tolist(), np.round(ratio, 4).tolist())))


def _mccandlish_summary(problem, df, tau):
    r = df[np.isfinite(df["loss"])].iloc[0]
    start = _mccandlish(problem, r.lr, r.momentum, int(r.batch_size), 0, tau)
    end = _mccandlish(problem, r.lr, r.momentum, int(r.batch_size), int(r.horizon), tau)
    keys = ("B_noise", "B_simple", "b_noise_finite", "b_simple_finite")
    return dict(at_start=dict(zip(keys, map(float, start))), at_budget=dict(zip(keys, map(float, end))),
                along=f"the recommended config at b = {int(r.batch_size)}")


def _lsr_check(problem, df, tau, budget_name, budget, factors):
    """From the smallest batch's recommended (b0, alpha0) at beta = 0, the first kappa for which (kappa b0,
    kappa alpha0) stops tracking the baseline's loss against samples within 5% (compared at ~60 log-spaced
    sample counts up to the budget)."""
    r = df[np.isfinite(df["loss"])].iloc[0]
    b0, a0 = int(r.batch_size), float(r.lr)
    samples = budget if budget_name == "budget_samples" else budget * b0
    out = dict(baseline=dict(batch_size=b0, lr=a0), tolerance=0.05, breaks_at=math.nan, deviation={})
    for k in factors:
        b, a = b0 * k, a0 * k
        if b > problem.N or samples // b < 3:
            break
        st = np.unique(np.round(np.geomspace(1, samples // b, 60)).astype(int))  # steps of the scaled run
        with np.errstate(all="ignore"):
            cur = th.loss_curve(problem, a, 0.0, b, int(st[-1]), tau, log_steps=st)
            base = th.loss_curve(problem, a0, 0.0, b0, int(st[-1] * k), tau, log_steps=st * k)  # same samples
            dev = float(np.max(np.abs(cur / base - 1))) if np.all(np.isfinite(cur)) else math.inf
        out["deviation"][int(k)] = dev
        if not dev <= 0.05:
            out["breaks_at"] = float(k)
            break
    return out


def _candidates(predict, ceiling, b, momenta, k, beta_star):
    """The best (alpha, beta) on the search grid for each of the k best momenta other than beta_star."""
    if k <= 0:
        return []
    out = []
    for beta in momenta:
        if abs(beta - beta_star) < 1e-9:
            continue
        a = FRACTIONS * ceiling(np.full(FRACTIONS.size, beta))
        loss = predict(a, beta, b)
        j = int(np.argmin(loss))
        if np.isfinite(loss[j]):
            out.append((float(loss[j]), float(a[j]), float(beta)))
    return [(a, beta) for _, a, beta in sorted(out)[:k]]


def _probe(problem, cands, b, T, S, tau, objective, seed):
    """Train the network on the candidates for S steps, re-linearise each survivor there and predict its loss at
    the budget T (S steps spent): (alpha, beta, loss, kernel change, candidates probed) of the best."""
    from ..regimes import nn
    from ..relinearize import problem_at
    S = min(S, T - 1)
    c = nn.run(problem, [(a, beta, b) for a, beta in cands], S, log_steps=[0, S], seed=seed, keep_state=True,
               progress=False)
    L0, lam0 = float(c.loss[0, 0]), float(problem.lambda_max_raw)
    K0 = problem.K * lam0 if problem.has_basis else None
    best = (math.nan, math.nan, math.inf, math.nan)
    for j, (a, beta) in enumerate(cands):
        st = c.meta["final_state"][j]
        if st is None or not float(c.loss[j, -1]) < L0:
            continue
        p = problem_at(problem, st["params"])
        a_t = a * p.lambda_max_raw / lam0
        loss = float(predicted_loss(p, T - S, tau, objective)(a_t, beta, b))
        if loss < best[2]:
            change = float((p.K * p.lambda_max_raw - K0).norm() / K0.norm()) if K0 is not None else math.nan
            best = (a, beta, loss, change)
    return (*best, len(cands))
