"""Schedules designed by the theory: lr, momentum and batch size over time for a budget (docs/theory.md#design).

    design = gfsgd.design_schedule(problem, budget_steps=10**4, batch_sizes=(10, 100))
    design.table                       # one row per (batch size, family): tuned parameters, predicted losses
    full.run(problem, [design.config], design.n_steps, schedule=design.schedule)   # reproduces design.curve

Every candidate is scored on the expected loss of the SD dynamics (docs/theory.md#sd) with its time-dependent
(alpha_t, beta_t, b_t), stepped for all candidates at once. Spectra with many modes are compressed first: the top
`exact_modes` modes are kept and the rest merged into bins of eigenvalues within a factor `bin_ratio` (a bin's
modes share one recursion when their eigenvalues are equal, so the merge is exact in that limit; tests measure
its error). The families, each tuned over its peak lr (a fraction of the stability edge), momentum and shape:

    constant, step (decay by `factor` every step_size), cosine (linear warm-up + cosine to 0), wsd (warm-up,
    stable, linear decay over the last part), linear (warm-up + linear to 0), free (piecewise-constant lr and
    momentum on segments log-spaced from both ends of the run, optimised by autograd through the recursion),
    ramp (constant lr, a batch that grows geometrically at an equal number of samples: fewer optimizer steps).

Stability along the way: every step's lr stays below `margin` x the edge at that step's momentum and batch size
(the SD edge; for a problem with eigenvectors and N C <= exact_max_n rows, the lower of the SD and the exact
edge); the table's `edge_margin` is min_t edge(beta_t, b_t) / alpha_t. The designed schedule is the best row over all
families, so it is never predicted worse than any family it contains. The winning rows are then re-run in a
regime (SD on the uncompressed problem, or the exact `full` regime when the problem is small enough) and those
curves are what `design.curves` holds.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .. import schedules as S
from .. import theory as th
from ..errors import InputError
from ..progress import progress_bar
from .inputs import check_batches, check_budget
from ..theory.scheduled import compress_spectrum, free_form, sd_final_loss, segment_boundaries

__all__ = ["design_schedule", "ScheduleDesign", "FAMILIES"]

FAMILIES = ("constant", "step", "cosine", "wsd", "linear", "free", "ramp")
MOMENTA = {"any": np.array([-0.5, -0.3, 0.0, 0.3, 0.5, 0.7, 0.8, 0.9]),
           "nonnegative": np.array([0.0, 0.3, 0.5, 0.7, 0.8, 0.9]), "zero": np.array([0.0])}
FRACTIONS = np.geomspace(0.05, 1.0, 10)


# ---------------------------------------------------------------- the result
@dataclass
class ScheduleDesign:
    """design_schedule's answer: the best schedule found and every family's tuned row."""
    schedule: S.Schedule
    config: tuple  # (lr, momentum, batch_size): the base values the schedule scales
    n_steps: int
    table: pd.DataFrame
    curves: dict = field(default_factory=dict)  # (batch_size, family) -> (steps, train loss[, test loss])
    info: dict = field(default_factory=dict)

    @property
    def loss(self) -> float:
        return float(self.info["loss"])

    def schedules(self) -> dict:
        """(batch_size, family) -> (Schedule, config, n_steps) of every tuned row."""
        return {(int(r.batch_size), r.family): (S.schedule_from_dict(r.schedule), (r.lr, r.momentum,
                int(r.batch_size)), int(r.n_steps)) for r in self.table.itertuples()}


def _family_schedule(family, params, T, name=None):
    """The Schedule of a family row (lr shape; momentum / batch size where the family sets them)."""
    name = name or family
    if family == "constant":
        return S.Schedule(name=name)
    if family == "step":
        return S.Schedule(lr=S.step_decay(params["step_size"], params["factor"]), name=name)
    if family == "cosine":
        return S.Schedule(lr=S.cosine(T, 0.0, params["warmup_steps"]), name=name)
    if family == "wsd":
        return S.Schedule(lr=S.wsd(T, params["decay_steps"], params["warmup_steps"], 0.0), name=name)
    if family == "linear":
        return S.Schedule(lr=S.linear_decay(T, params["warmup_steps"], 0.0), name=name)
    if family == "free":
        return S.Schedule(lr=S.piecewise(params["boundaries"], params["lr_factors"]),
                          momentum=S.piecewise(params["boundaries"], params["momenta"], scale="value"), name=name)
    if family == "ramp":
        return S.Schedule(batch_size=S.geometric(params["ramp_steps"], params["batch_factor"]), name=name)
    raise InputError(f"families must be drawn from {', '.join(FAMILIES)}, got {family!r}")


def _family_grid(family, T):
    """The shape parameters tried for a family (peak lr and momentum are searched around them)."""
    w = sorted({0, max(1, T // 50), max(1, T // 10)})
    if family == "constant":
        return [{}]
    if family == "step":
        return [dict(step_size=max(1, T // k), factor=f) for k in (2, 3, 4) for f in (0.1, 0.3)]
    if family == "cosine":
        return [dict(warmup_steps=x) for x in w if x < T]
    if family == "linear":
        return [dict(warmup_steps=x) for x in w if x < T]
    if family == "wsd":
        return [dict(warmup_steps=x, decay_steps=max(1, int(T * f))) for x in w[:2] for f in (0.1, 0.2, 0.4)
                if x + max(1, int(T * f)) <= T]
    return [{}]


def design_schedule(problem, *, budget_steps=None, budget_samples=None, batch_sizes=(10, 100),
                    families=FAMILIES, objective="train", momentum="any", tau=1.0, margin=0.95, exact="auto",
                    exact_max_n=500, pieces=8, iterations=12, method="pattern", ramp_factors=(2, 4, 8, 16),
                    exact_modes=256, bin_ratio=1.05, regime="auto", full_max_cost=2e10, rerun="auto",
                    rerun_max_cost=5e9, progress=True) -> ScheduleDesign:
    """The best schedule for a budget, and each family tuned on the prediction.

    Args:
        problem: a gfsgd.Problem (spectral-only problems too), or the Extrapolation of a subset
            (gfsgd.spectrum.extrapolate): the design is made on its central problem and the best row per batch size
            gets the band of its final training loss (columns loss_low, loss_high; Extrapolation.band).
        budget_steps / budget_samples: exactly one. With budget_samples every batch size gets
            budget_samples // b steps. The batch ramp spends the samples of the constant-batch run (T b) in fewer
            steps.
        batch_sizes: the base batch sizes.
        families: any of FAMILIES (constant, step, cosine, wsd, linear, free, ramp).
        objective: "train" or "test" (the held-out loss of a dense problem, SD's diagonal approximation).
        momentum: "any", "nonnegative" or "zero" (the momenta searched).
        margin: every step's lr stays below margin x the edge at its (momentum, batch size).
        exact: "auto" (the exact edge too for a problem with eigenvectors and N C <= exact_max_n rows, C outputs
            included), True, False.
        pieces, iterations, method: the free-form schedule's segments, rounds and optimiser (free_form).
        ramp_factors: the batch growth factors tried by the ramp family (geometric over the run).
        exact_modes, bin_ratio: the search's spectrum compression (compress_spectrum).
        regime: the regime that re-runs each family's best row for design.curves and the table's loss columns:
            "auto" (full when the problem has eigenvectors and N^3 x steps x rows <= full_max_cost, else sd),
            "sd" or "full".
        rerun: "auto" (every row, unless modes x steps summed over rows exceeds rerun_max_cost: then the search's
            best row per batch size), "all" or "best". The design is the best row by the regime's loss when every
            row was re-run, else by the search's (info["chosen_by"]).

    Returns a ScheduleDesign: .schedule, .config (lr, momentum, batch_size), .n_steps, .table (per batch size and
    family: lr, momentum, the family's shape parameters, n_steps, samples, loss_search (the compressed search's
    prediction), loss (the regime's), test_loss (with a held-out set), edge_margin (with the exact edge: interpolated
    from 7 momenta), edge_margin_exact (the exact edge at every step, for the best row per batch size when the exact
    edge is used), schedule (its JSON form)),
    .curves, .info (the regime, the edges, B_noise along the best constant run, seconds).
    """
    from ..regimes import full, spectral_diagonal as sd
    from ..spectrum.extrapolate import Extrapolation
    t_start = time.perf_counter()
    ex = None
    if isinstance(problem, Extrapolation):  # a subset's extrapolation: design on its central problem, add a band
        ex, problem = problem, problem.problem
    budget_name, budget = check_budget(budget_steps, budget_samples)
    if objective not in ("train", "test"):
        raise InputError(f"objective must be 'train' or 'test', got objective={objective!r}")
    if momentum not in MOMENTA:
        raise InputError(f"momentum must be one of {list(MOMENTA)}, got momentum={momentum!r}")
    fams = [families] if isinstance(families, str) else list(families)
    bad = [f for f in fams if f not in FAMILIES]
    if bad or not fams:
        raise InputError(f"families must be a non-empty list drawn from {list(FAMILIES)}, got {families!r}")
    if not (0 < float(margin) <= 1):
        raise InputError(f"margin must be in (0, 1], got margin={margin}")
    if rerun not in ("auto", "all", "best"):
        raise InputError(f"rerun must be 'auto', 'all' or 'best', got rerun={rerun!r}")
    if regime not in ("auto", "sd", "full"):
        raise InputError(f"regime must be 'auto', 'sd' or 'full', got regime={regime!r}")
    if objective == "test":
        problem.require_test("design_schedule(objective='test')")
    N = problem.N
    bs, skipped = check_batches(batch_sizes, N)
    C = getattr(problem, "n_outputs", 1)
    has_basis = problem.eigvecs is not None
    use_exact = (exact is True) or (exact == "auto" and has_basis and N * C <= exact_max_n)
    if use_exact and not has_basis:
        raise InputError("exact=True needs a problem with its eigenvectors")
    if regime == "full" and not has_basis:
        raise InputError("regime='full' needs a problem with its eigenvectors; this one is spectral only")
    lam_all = problem.eigvals.detach().cpu().double().numpy()
    c_all = problem.c.detach().cpu().double().numpy()
    if C == 1 and objective == "train":
        lam_s, c_s, mult_s = compress_spectrum(lam_all, c_all, exact_modes=exact_modes, bin_ratio=bin_ratio)
        F = None
    else:
        lam_s, c_s, mult_s = lam_all, c_all, np.ones_like(lam_all)
        F = None if C == 1 else problem.profiles.detach().cpu().double()
    lam_t, c_t, mult_t = torch.as_tensor(lam_s), torch.as_tensor(c_s), torch.as_tensor(mult_s)
    bound = 1e6 * problem.loss0
    momenta = MOMENTA[momentum]
    edge_betas = np.linspace(max(-0.9, momenta.min() - 0.1), min(0.99, max(momenta.max(), 0.0) + 0.05), 23)

    ratio_grid = np.linspace(edge_betas[0], edge_betas[-1], 7)
    ratios = {}  # b -> min(1, exact / SD edge) at ratio_grid (the exact edge costs O(N^3) per bisection step)

    def exact_edge(beta, b):
        return np.array([th.exact_critical_lr(problem, float(x), int(b), rtol=1e-3) for x in np.atleast_1d(beta)])

    def edges(beta, b):
        """The SD edge, and with the exact edge: the SD edge times min(1, exact / SD) interpolated from 7 momenta."""
        e = np.asarray(th.critical_lr(problem, beta, b, tau=tau), float)
        if use_exact:  # ratios at the base batch sizes (a ramp's b_t takes the nearest one's)
            bb = min(bs, key=lambda x: abs(math.log(x / b)))
            if bb not in ratios:
                ratios[bb] = np.minimum(1.0, exact_edge(ratio_grid, bb) /
                                        th.critical_lr(problem, ratio_grid, bb, tau=tau))
            e = e * np.interp(beta, ratio_grid, ratios[bb])
        return e

    rows = []
    n_fam = len(fams) * len(bs)
    bar = progress_bar(n_fam, "design_schedule", unit="family", enabled=progress)
    for b in bs:
        T = budget if budget_name == "budget_steps" else max(1, budget // b)
        eg = edges(edge_betas, b)
        edge_at = dict(zip(np.round(edge_betas, 12), eg))
        for beta in momenta:
            edge_at.setdefault(round(float(beta), 12), float(edges(np.array([beta]), b)[0]))

        def E(beta):
            key = round(float(beta), 12)
            if key not in edge_at:
                edge_at[key] = float(edges(np.array([beta]), b)[0])
            return edge_at[key]

        def score(cands):
            """cands: (family, params, lr, beta, steps) -> the search's loss after `steps` steps, all candidates in
            one pass per chunk (a shorter run is padded with lr = beta = gamma = 0, which freezes its moments)."""
            out = np.full(len(cands), math.inf)
            chunk = max(1, int(4e5 // max(lam_t.numel(), 1)))
            for s0 in range(0, len(cands), chunk):
                part = cands[s0:s0 + chunk]
                Tm = max(c_[4] for c_ in part)
                lr_tab, be_tab, ga_tab = (np.zeros((Tm, len(part))) for _ in range(3))
                for g, (fam, prm, a, beta, steps) in enumerate(part):
                    la, lb, lbs = _family_schedule(fam, prm, steps).values(steps, a, beta, b, N)
                    lr_tab[:steps, g], be_tab[:steps, g], ga_tab[:steps, g] = la, lb, th.noise_gamma(lbs, N)
                with torch.no_grad():
                    f = sd_final_loss(lam_t, c_t, N, torch.as_tensor(lr_tab), torch.as_tensor(be_tab),
                                      torch.as_tensor(ga_tab), tau=tau, F=F, mult=mult_t, bound=bound)
                out[s0:s0 + len(part)] = f.numpy()
            return out

        # 1. constant on the (fraction of the edge, momentum) grid
        cands = [("constant", {}, f * margin * E(beta), float(beta), T) for beta in momenta for f in FRACTIONS]
        sc = score(cands)
        k = int(np.argmin(sc))
        b0, a_c = cands[k][3], cands[k][2]
        tuned = {"constant": (cands[k], sc[k])}
        # 2. every family's shapes at the 3 momenta nearest the constant's, peak lr on a grid up to the edge; the
        # batch ramps (b -> r b at the constant run's samples, fewer steps) around the constant's lr
        near = momenta[np.argsort(np.abs(momenta - b0))[:3]]
        cands = []
        for fam in fams:
            if fam in ("free", "ramp", "constant"):
                continue
            cands += [(fam, prm, f * margin * E(beta), float(beta), T) for beta in near
                      for f in np.geomspace(0.1, 1.0, 8) for prm in _family_grid(fam, T)]
        if "ramp" in fams:
            for r in ramp_factors:
                Tr = _ramp_steps(b, r, T * b)
                cands += [("ramp", dict(ramp_steps=Tr, batch_factor=float(r)), min(a_c * fa, margin * E(b0)), b0, Tr)
                          for fa in (0.5, 0.7, 1.0, 1.4, 2.0)]
        sc = score(cands) if cands else np.array([])
        for fam in fams:
            idx = [i for i, c_ in enumerate(cands) if c_[0] == fam]
            if idx:
                k = idx[int(np.argmin(sc[idx]))]
                tuned[fam] = (cands[k], sc[k])
        # 3. local refinement of each: lr x 0.8, 1, 1.25 (capped at margin x the edge), momentum -+ 0.05
        ref = []
        for fam, ((f0, prm0, a0, be0, T0), _) in tuned.items():
            dbs = (0.0,) if momenta.size == 1 or fam == "ramp" else (-0.05, 0.0, 0.05)
            for db in dbs:
                be = float(np.clip(be0 + db, edge_betas[0], edge_betas[-1]))
                ref += [(f0, prm0, min(a0 * fa, margin * E(be)), be, T0) for fa in (0.8, 1.0, 1.25)]
        sr = score(ref)
        for fam in list(tuned):
            idx = [i for i, c_ in enumerate(ref) if c_[0] == fam]
            k = idx[int(np.argmin(sr[idx]))]
            if sr[k] < tuned[fam][1]:
                tuned[fam] = (ref[k], sr[k])
        if "constant" not in fams:
            const = tuned.pop("constant")
        else:
            const = tuned["constant"]
        if bar is not None:
            bar.update(len([f for f in fams if f != "free"]))
        # 4. the free form, started from every tuned family projected on its segments
        if "free" in fams:
            bd = segment_boundaries(T, pieces) + [T]
            inits = []
            for fam, ((_, prm, a, be, T0), _) in list(tuned.items()) + [("constant", const)]:
                if fam == "ramp":
                    continue
                la, lb, _ = _family_schedule(fam, prm, T).values(T, a, be, b, N)
                inits.append(([float(la[s_:e_].mean()) for s_, e_ in zip(bd[:-1], bd[1:])],
                              [float(lb[s_:e_].mean()) for s_, e_ in zip(bd[:-1], bd[1:])]))
            bounds, lrs, bets, lf = free_form(lam_s, c_s, N, b, T, edge_betas=edge_betas, edge_values=eg,
                                              pieces=pieces, tau=tau, F=F, mult=mult_s, margin=margin,
                                              momentum_range=(float(edge_betas[0]), float(edge_betas[-1])),
                                              init=inits, iterations=iterations, method=method, bound=bound)
            if lrs is not None:
                peak = float(lrs.max())
                prm = dict(boundaries=bounds, lr_factors=[float(x / peak) for x in lrs],
                           momenta=[float(x) for x in bets])
                tuned["free"] = (("free", prm, peak, float(bets[0]), T), lf)
            if bar is not None:
                bar.update(1)
        for fam in fams:
            if fam not in tuned:
                continue
            (_, prm, a, be, Tf), loss_s = tuned[fam]
            sch = _family_schedule(fam, prm, Tf, name=f"{fam} (designed)" if fam == "free" else fam)
            la, lb, lbs = sch.values(Tf, a, be, b, N)
            em = float(np.nanmin(_edge_over_steps(lb, lbs, la, E, edges, b)))
            rows.append(dict(batch_size=b, family=fam, lr=float(a), momentum=float(be), n_steps=int(Tf),
                             samples=int(lbs.sum()), loss_search=float(loss_s), edge_margin=em,
                             params={k: v for k, v in prm.items()}, schedule=sch.to_dict()))
    if bar is not None:
        bar.close()
    if not rows or not np.isfinite([r["loss_search"] for r in rows]).any():
        raise InputError(f"no schedule converges within the budget at batch sizes {bs}")
    # re-run the tuned rows in a regime for the curves and the table's losses: every row, or where that costs too
    # much (many modes), the search's best row per batch size
    use_full = regime == "full" or (regime == "auto" and has_basis and
                                    float(N * C) ** 3 * max(r["n_steps"] for r in rows) * len(rows) <= full_max_cost)
    reg = full if use_full else sd
    every = rerun == "all" or (rerun == "auto" and (use_full or lam_all.size * sum(r["n_steps"] for r in rows)
                                                    <= rerun_max_cost))
    top = {}
    for i, r in enumerate(rows):
        if r["batch_size"] not in top or r["loss_search"] < rows[top[r["batch_size"]]]["loss_search"]:
            top[r["batch_size"]] = i
    curves = {}
    for i, r in enumerate(rows):
        r["loss"], r["test_loss"] = math.nan, math.nan
        if not every and i not in top.values():
            continue
        n = r["n_steps"]
        pts = 40 if problem.has_test else 200  # a held-out set costs O(N^2) per logged step
        log = np.unique(np.concatenate([[0], np.round(np.geomspace(1, n, min(n, pts))).astype(int)]))
        kw = dict(progress=False, log_steps=log, schedule=S.schedule_from_dict(r["schedule"]))
        if reg is sd:
            kw["tau"] = tau
        cv = reg.run(problem, [(r["lr"], r["momentum"], r["batch_size"])], n, **kw)
        ok = cv.status[0] == "ok"
        r["loss"] = float(cv.loss[0, -1]) if ok else math.inf
        if cv.test_loss is not None:
            r["test_loss"] = float(cv.test_loss[0, -1]) if ok else math.inf
        curves[(r["batch_size"], r["family"])] = (cv.steps, cv.loss[0]) + \
            ((cv.test_loss[0],) if cv.test_loss is not None else ())
    table = pd.DataFrame(rows)
    key = ("test_loss" if objective == "test" else "loss") if every else "loss_search"
    vals = table[key].to_numpy(float)
    vals = np.where(np.isfinite(vals), vals, np.inf)
    k = int(np.argmin(vals))
    best = table.iloc[k]
    table["best"] = np.arange(len(table)) == k
    table["edge_margin_exact"] = math.nan
    if use_exact:  # the best row per batch size checked against the exact edge itself at every step
        for b in bs:
            j = table.index[table["batch_size"] == b][int(np.argmin(vals[table["batch_size"].to_numpy() == b]))]
            r = table.loc[j]
            la, lb, lbs = S.schedule_from_dict(r["schedule"]).values(int(r["n_steps"]), r["lr"], r["momentum"], b, N)
            cache = {}

            def true_edge(x, y, cache=cache):
                if (x, y) not in cache:
                    cache[(x, y)] = min(float(th.critical_lr(problem, x, y, tau=tau)), float(exact_edge([x], y)[0]))
                return cache[(x, y)]
            # the 20 (beta, b) pairs closest to the interpolated edge (a ramp has one pair per batch size)
            pairs = {}
            for x, y, z in zip(lb.tolist(), lbs.astype(int).tolist(), la.tolist()):
                if z > 0:
                    pairs[(x, y)] = max(pairs.get((x, y), 0.0), z)
            close = sorted(pairs, key=lambda q: float(edges(np.array([q[0]]), q[1])[0]) / pairs[q])[:20]
            table.loc[j, "edge_margin_exact"] = float(min(true_edge(x, y) / pairs[(x, y)] for x, y in close))
    if ex is not None:
        _band_columns(table, ex, bs, vals, tau)
    info = dict(loss=float(best["loss"]), test_loss=float(best.get("test_loss", math.nan)), family=best["family"],
                regime=reg.REGIME, objective=objective, budget={budget_name: budget}, skipped=skipped,
                margin=float(margin), exact_edge=bool(use_exact), modes_searched=int(lam_t.numel()),
                rerun="all" if every else "best per batch size", chosen_by=key,
                modes=int(lam_all.size), seconds=time.perf_counter() - t_start)
    schedule = S.schedule_from_dict(best["schedule"])
    return ScheduleDesign(schedule=schedule, config=(float(best["lr"]), float(best["momentum"]),
                                                     int(best["batch_size"])),
                          n_steps=int(best["n_steps"]), table=table, curves=curves, info=info)


def _band_columns(table, ex, bs, vals, tau):
    """loss_low, loss_high: the band (Extrapolation.band) of the best row per batch size's final training loss,
    each member re-run in SD with the row's schedule; NaN on the other rows."""
    from ..regimes import spectral_diagonal as sd
    table["loss_low"], table["loss_high"] = math.nan, math.nan
    for b in bs:
        j = table.index[table["batch_size"] == b][int(np.argmin(vals[table["batch_size"].to_numpy() == b]))]
        r = table.loc[j]
        sched, n = S.schedule_from_dict(r["schedule"]), int(r["n_steps"])

        def final(q, r=r, sched=sched, n=n):
            cv = sd.run(q, [(r["lr"], r["momentum"], int(r["batch_size"]))], n, schedule=sched, log_steps=[0, n],
                        tau=tau, progress=False)
            return np.array([cv.loss[0, -1] if cv.status[0] == "ok" else math.inf])
        out = ex.band(final)
        table.loc[j, "loss_low"], table.loc[j, "loss_high"] = float(out["low"][0]), float(out["high"][0])


def _ramp_steps(b, r, samples):
    """Steps T of a geometric ramp b -> r b over T steps (S.geometric) whose batch sizes sum to `samples`."""
    lo, hi = 1, max(1, samples // max(b, 1))

    def total(T):
        t = np.arange(T)
        return np.clip(np.round(b * r ** np.minimum(t / T, 1.0)), 1, None).sum()
    while lo < hi:
        mid = (lo + hi) // 2
        if total(mid) >= samples:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _edge_over_steps(lb, lbs, la, E, edges, b):
    """edge(beta_t, b_t) / alpha_t at every step (one edge per distinct (beta, b) pair)."""
    pairs = {}
    out = np.empty(la.size)
    for i, (x, y) in enumerate(zip(lb, lbs)):
        key = (float(x), int(y))
        if key not in pairs:
            pairs[key] = E(x) if int(y) == b else float(edges(np.array([x]), int(y))[0])
        out[i] = pairs[key]
    with np.errstate(divide="ignore"):
        return out / np.where(la > 0, la, np.nan)
