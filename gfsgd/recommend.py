"""What to run: the learning rate, momentum and batch size for a budget, where they break, and the critical
batch size (docs/theory.md section 13).

    table = gfsgd.recommend(problem, budget_samples=10**5, batch_sizes=(1, 10, 100, 1000))
    python -m gfsgd.recommend --dataset digits --N 256 --budget_samples 100000 --batch_size 1 10 100

For each batch size b the budget gives a horizon T (budget_steps, or budget_samples // b steps), and the
predicted loss at T (the renewal equation of the SD dynamics; with objective="test" the predicted test loss)
is minimised over (alpha, beta): beta on a grid allowed by `momentum`, alpha = f * ceiling(beta, b) with f in
(0, 1) on a geometric grid, then two rounds of local refinement. The ceiling is the SD critical learning rate
(docs/theory.md section 5). For a dense problem (eigenvectors known, N <= exact_max_n) the exact edge of the
batch-averaged dynamics (section 12) is computed at the optimum's momentum, and a recommendation above
`margin` x that edge is moved below it: the SD edge can lie far above the exact one.
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import pandas as pd

from . import theory as th

__all__ = ["recommend", "main"]

MOMENTA = {"any": np.round(np.concatenate([np.linspace(-0.8, 0.9, 18), [0.95]]), 12),
           "nonnegative": np.round(np.concatenate([np.linspace(0.0, 0.9, 10), [0.95]]), 12),
           "zero": np.array([0.0])}
FRACTIONS = np.geomspace(0.02, 0.98, 14)


def _check_budget(budget_steps, budget_samples):
    if (budget_steps is None) == (budget_samples is None):
        raise ValueError("give exactly one of budget_steps (steps of SGD) and budget_samples (steps x batch size); "
                         f"got budget_steps={budget_steps!r}, budget_samples={budget_samples!r}")
    name, value = ("budget_steps", budget_steps) if budget_steps is not None else ("budget_samples", budget_samples)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or float(value) < 1 or not float(value).is_integer():
        raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}")
    return name, int(value)


def _check_batches(batch_sizes, N):
    try:
        bs = [b for b in np.atleast_1d(np.asarray(batch_sizes, dtype=float)).tolist()]
    except (TypeError, ValueError):
        raise ValueError(f"batch_sizes must be a list of integers, got {batch_sizes!r}") from None
    if not bs:
        raise ValueError("batch_sizes must hold at least one batch size, got an empty list")
    bad = [b for b in bs if not (math.isfinite(b) and b.is_integer() and b >= 1)]
    if bad:
        raise ValueError(f"batch_sizes must be integers >= 1, got {bad}")
    keep = sorted({int(b) for b in bs if b <= N})
    skipped = sorted({int(b) for b in bs if b > N})
    if not keep:
        raise ValueError(f"every batch size in {sorted({int(b) for b in bs})} exceeds N={N}")
    return keep, skipped


class _Predictor:
    """Predicted loss (train or test) at the horizon for arrays of configs; inf for divergent configs."""

    def __init__(self, problem, horizon, tau, objective):
        self.problem, self.T, self.tau, self.objective = problem, int(horizon), float(tau), objective

    def __call__(self, a, beta, b):
        a, beta, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(beta, float), np.asarray(b, float))
        shape = a.shape
        a, beta, b = a.reshape(-1), beta.reshape(-1), b.reshape(-1).astype(np.int64)
        with np.errstate(all="ignore"):
            out = th.loss_curve(self.problem, a, beta, b, self.T, self.tau, log_steps=[self.T],
                                test=self.objective == "test")
            out = (out[1] if self.objective == "test" else out)[..., 0]
            conv = th.is_convergent(self.problem, a, beta, b, tau=self.tau)
        return np.where(conv & np.isfinite(out) & (out >= 0), out, np.inf).reshape(shape)


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
    data-basis diagonal, docs/theory.md section 13), and their finite-data batch sizes N B / (N - 1 + B)."""
    lam = problem.eigvals.detach().cpu().double().numpy()
    C = th.mode_second_moments(problem, a, beta, b, t, tau)
    with np.errstate(all="ignore"):
        b_noise = C.sum() * (lam ** 2).sum() / ((lam ** 2) @ C) - 1
        b_simple = C.sum() * lam.sum() / (lam @ C) - 1
    N = problem.N
    return b_noise, b_simple, N * b_noise / (N - 1 + b_noise), N * b_simple / (N - 1 + b_simple)


def recommend(problem, *, budget_steps=None, budget_samples=None, batch_sizes=(1, 10, 100, 1000),
              objective="train", momentum="any", tau=1.0, target=None, exact="auto", exact_max_n=1000,
              margin=0.9, lsr_factors=(2, 4, 8, 16, 32, 64, 128)) -> pd.DataFrame:
    """The (alpha, beta) to run at each batch size for a budget, and the margins around it.

    Args:
        problem: a gfsgd.Problem (spectral-only problems work, without the exact edge and the test objective).
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

    Returns a DataFrame, one row per batch size: batch_size, lr (alpha*), momentum (beta*), loss (predicted at
    the budget), horizon (steps), lr_crit_sd (SD edge at beta*), lr_crit_exact (exact edge at beta*, NaN when not
    computed), lr_margin (alpha* / the binding edge), steps_to_target, samples_to_target, lr_nn (alpha* in the
    network's own units, N alpha* / lambda_max_raw, for network problems), b_noise, b_simple (McCandlish at the
    budget). df.attrs holds: target, critical_batch_size (the 20%-over-linear-scaling definition),
    mccandlish (B_noise, B_simple and their finite-data batch sizes at the start and at the smallest batch's
    budget), lsr (the linear-scaling check), skipped, objective, budget.
    """
    if objective not in ("train", "test"):
        raise ValueError(f"objective must be 'train' or 'test', got objective={objective!r}")
    if momentum not in MOMENTA:
        raise ValueError(f"momentum must be one of {list(MOMENTA)}, got momentum={momentum!r}")
    if exact not in ("auto", True, False):
        raise ValueError(f"exact must be 'auto', True or False, got exact={exact!r}")
    if not (0 < float(margin) < 1):
        raise ValueError(f"margin must be in (0, 1), got margin={margin}")
    budget_name, budget = _check_budget(budget_steps, budget_samples)
    N = problem.N
    bs, skipped = _check_batches(batch_sizes, N)
    if objective == "test":
        problem.require_test("recommend(objective='test')")
    has_basis = getattr(problem, "eigvecs", None) is not None
    use_exact = (exact is True) or (exact == "auto" and has_basis and N <= exact_max_n)
    if use_exact and not has_basis:
        raise ValueError("exact=True needs a problem with its eigenvectors (a dense problem); this one is spectral "
                         "only: use exact='auto' or False")
    network = (problem.meta or {}).get("kind") == "network"
    momenta = MOMENTA[momentum]
    rows = []
    for b in bs:
        T = budget if budget_name == "budget_steps" else max(1, budget // b)
        predict = _Predictor(problem, T, tau, objective)

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
        rows.append(dict(batch_size=b, lr=float(a), momentum=float(beta), loss=float(loss), horizon=T,
                         lr_crit_sd=sd_edge, lr_crit_exact=float(ex_edge), lr_margin=float(a / binding),
                         lr_nn=float(a * N / problem.lambda_max_raw) if network else math.nan))
    df = pd.DataFrame(rows)
    ok = np.isfinite(df["loss"].to_numpy())
    if not ok.any():
        largest = {int(b): float(th.critical_lr(problem, 0.0, b, tau=tau)) for b in bs}
        raise ValueError("no config converges within the budget at any batch size in "
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
    df.attrs.update(objective=objective, budget={budget_name: budget}, target=target, skipped=skipped,
                    tau=float(tau), exact=bool(use_exact),
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


# ------------------------------------------------------------------------------------------ command line
def _parser():
    p = argparse.ArgumentParser(prog="python -m gfsgd.recommend", description=(
        "What to run: the (alpha, beta) that minimise the predicted loss at a budget for each batch size, the "
        "stability edges around them and the critical batch size. Learning rates are in normalised-kernel units "
        "(lambda_max = 1); lr_nn is the network's own."), formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("problem (a dataset through a network, a saved kernel, or a synthetic power law)")
    g.add_argument("--dataset", default=None, help="digits, mnist, ... (see data/README.md); None: synthetic")
    g.add_argument("--data_root", default=None, help="dataset folder; None: $GFSGD_DATA_ROOT, else ./data")
    g.add_argument("--N", type=int, default=256, help="training points")
    g.add_argument("--n_test", type=int, default=0, help="held-out points (for --objective test)")
    g.add_argument("--width", type=int, default=1000, help="network width (datasets)")
    g.add_argument("--kernel", default=None, help="a saved Problem (Problem.save); overrides --dataset")
    g.add_argument("--nu", type=float, default=1.5, help="synthetic: lambda_k = k^-nu")
    g.add_argument("--kappa", type=float, default=1.0, help="synthetic: c_k ~ k^-(kappa+1)")
    g.add_argument("--rank", type=int, default=None, help="top-k spectrum plus a modelled tail (not available yet)")
    g.add_argument("--seed", type=int, default=0, help="data, network and synthetic seed")
    r = p.add_argument_group("budget and search")
    r.add_argument("--budget_steps", type=int, default=None, help="SGD steps")
    r.add_argument("--budget_samples", type=int, default=None, help="samples processed (steps x batch size)")
    r.add_argument("--batch_size", type=int, nargs="+", default=[1, 10, 100, 1000], help="candidate batch sizes")
    r.add_argument("--objective", choices=["train", "test"], default="train")
    r.add_argument("--momentum", choices=list(MOMENTA), default="any")
    r.add_argument("--tau", type=float, default=1.0, help="SD parameter of the predictions")
    r.add_argument("--out", default=None, help="folder for the PNGs; None: runs/recommend-<time>")
    return p


def _problem_from_args(args):
    from .problem import Problem
    if args.rank is not None:
        raise ValueError("--rank (a top-k spectrum with a modelled tail) is not available yet; use --kernel, "
                         "--dataset with a moderate --N, or a synthetic problem")
    if args.kernel:
        return Problem.load(args.kernel)
    if args.dataset:
        from .data import load_dataset
        from .models import MLP
        ds = load_dataset(args.dataset, args.N, seed=args.seed, root=args.data_root, n_test=args.n_test)
        model = MLP(ds.X.shape[1], width=args.width, seed=args.seed)
        return Problem.from_network(model, ds.X, ds.y, X_test=ds.X_test, y_test=ds.y_test, device="cpu",
                                    name=f"{ds.name}, MLP(width={args.width})")
    return Problem.synthetic(args.N, args.nu, args.kappa, seed=args.seed, n_test=args.n_test,
                             basis="random" if args.N <= 2000 else None)


def main(argv=None):
    import datetime
    from pathlib import Path

    args = _parser().parse_args(argv)
    try:
        problem = _problem_from_args(args)
        df = recommend(problem, budget_steps=args.budget_steps, budget_samples=args.budget_samples,
                       batch_sizes=args.batch_size, objective=args.objective, momentum=args.momentum, tau=args.tau)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    cols = ["batch_size", "lr", "momentum", "loss", "horizon", "lr_crit_sd", "lr_crit_exact", "lr_margin",
            "steps_to_target", "samples_to_target", "lr_nn", "b_noise"]
    print(f"{problem.name}: N = {problem.N}, L0 = {problem.loss0:.4g}, objective {args.objective}, "
          f"budget {df.attrs['budget']}, target loss {df.attrs['target']:.4g}")
    print(df[[c for c in cols if df[c].notna().any()]].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    cb = df.attrs["critical_batch_size"]
    print(f"\ncritical batch size ({cb['definition']}): {cb['batch_size']}")
    mc = df.attrs["mccandlish"]
    print(f"McCandlish B_noise / B_simple at the start: {mc['at_start']['B_noise']:.4g} / "
          f"{mc['at_start']['B_simple']:.4g}; at the budget ({mc['along']}): {mc['at_budget']['B_noise']:.4g} / "
          f"{mc['at_budget']['B_simple']:.4g}")
    lsr = df.attrs["lsr"]
    print(f"linear scaling from b = {lsr['baseline']['batch_size']}: tracks within 5% up to factor "
          f"{max(lsr['deviation'], default=1) if not np.isfinite(lsr['breaks_at']) else lsr['breaks_at'] / 2:g}"
          f"; breaks at {lsr['breaks_at']} (deviations {lsr['deviation']})")
    if df.attrs["skipped"]:
        print(f"skipped (larger than N): {df.attrs['skipped']}")
    out = Path(args.out or Path("runs") / f"recommend-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "recommendation.csv", index=False)
    _plots(problem, df, out, args.tau)
    print(f"\nwritten: {out}/recommendation.csv, loss_vs_batch.png, stability_map.png")
    return df


def _plots(problem, df, out, tau):
    import matplotlib.pyplot as plt

    from . import plots
    plots.style()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    d = df[np.isfinite(df["loss"])]
    ax.plot(d["batch_size"], d["loss"], "o-", color="C0", label=f"predicted {df.attrs['objective']} loss at the budget")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size b")
    ax.set_ylabel("loss at the budget (at each b's optimum)")
    for r in d.itertuples():
        ax.annotate(f"α={r.lr:.3g}, β={r.momentum:+.2f}", (r.batch_size, r.loss), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    ax.set_title(f"{problem.name}: budget {df.attrs['budget']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plots.save(fig, out / "loss_vs_batch", formats=("png",))
    plt.close(fig)
    r = d.iloc[int(np.argmin(d["loss"].to_numpy()))]
    b, T = int(r.batch_size), int(r.horizon)
    betas = np.linspace(-0.8, 0.9, 18)
    a_max = 1.3 * float(max(th.critical_lr(problem, betas, b, tau=tau).max(), r.lr))
    lrs = np.geomspace(a_max / 200, a_max, 24)
    predict = _Predictor(problem, T, tau, df.attrs["objective"])
    vals = predict(lrs[:, None], betas[None, :], b)
    fig = plots.alpha_beta_map(np.where(np.isfinite(vals), vals / problem.loss0, np.nan), lr=lrs, momentum=betas,
                               problem=problem, batch_size=b, tau=tau,
                               title=f"b = {b}, T = {T}: predicted loss / L0, recommended point")
    ax = fig.axes[0]
    ax.plot([r.lr], [r.momentum], marker="*", ms=14, color="red", mec="white", ls="none", label="recommended",
            zorder=5)
    if np.isfinite(r.lr_crit_exact):
        ax.plot([r.lr_crit_exact], [r.momentum], marker="|", ms=16, mew=2.5, color="red", ls="none",
                label="exact edge at β*", zorder=5)
    ax.legend(fontsize=7, loc="lower right")
    plots.save(fig, out / "stability_map", formats=("png",))
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
