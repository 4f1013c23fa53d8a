#!/usr/bin/env python
"""Schedules designed by the theory, run on the real network (issue 25; docs/theory.md#design).

    python benchmarks/validate_schedules_mnist.py --data_root ../shared/data --N 10000 [--seeds 3]
    python benchmarks/validate_schedules_mnist.py --data_root ../shared/data --N 60000 --problem FILE \
        --loss_probe 10000 --log_points 20

MNIST, the paper's one-hidden-layer MLP (width 1000, seed 0), budget --steps SGD steps (10^4), b in {10, 100}.
N = 10,000: the dense problem (NTK + eigh) with --n_test held-out images (the test loss); N = 60,000: the rank-1000
problem saved by benchmarks/bench_spectrum.py mnist60k --save FILE (spectral only, no test set). For each batch
size, gfsgd.design_schedule tunes every family (constant, step, cosine, wsd, linear, free, ramp) on the
prediction and designs the best schedule; every row's schedule is then trained on the real network with --seeds
batch-sampler seeds (mean +- s.e.):
  (i)   predicted (SD, the regime re-run of each row) vs real final train loss per schedule, median gap; the test
        loss where there is a held-out set;
  (ii)  the designed schedule (the best predicted row over the families) against the best tuned family on the real
        network (its real loss), the gain with its seed spread;
  (iii) the batch ramp at the constant-batch run's samples: steps to reach the constant-batch final loss,
        predicted (SD curves) and real.
At N = 60,000 a pass over all points at every logged step costs more than the training: --loss_probe 10000 logs
the real loss on a fixed random 10,000 of them (nn.run(loss_probe=)), and each row checks path 0's final network on
all 60,000 against its probe (path0_full, path0_probe, probe_se).
Writes benchmarks/results/schedules_mnist_N{N}.json and results/schedules_mnist_N{N}.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gfsgd import Problem, design_schedule, problem_from_network  # noqa: E402
from gfsgd.data import load_dataset  # noqa: E402
from gfsgd.models import MLP  # noqa: E402
from gfsgd.regimes.nn import as_network  # noqa: E402
from gfsgd.regimes import nn  # noqa: E402
from _json_out import write_json  # noqa: E402

OUT = Path(__file__).parent / "results"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def first_below(steps, curve, target):
    """The first logged step whose loss is <= target (linear in log-loss between logged steps); NaN if none."""
    steps, curve = np.asarray(steps, float), np.asarray(curve, float)
    ok = np.flatnonzero(np.isfinite(curve) & (curve <= target * (1 + 1e-9)))
    if ok.size == 0:
        return float("nan")
    j = ok[0]
    if j == 0:
        return float(steps[0])
    l0, l1 = np.log(curve[j - 1]), np.log(curve[j])
    w = (l0 - np.log(target)) / (l0 - l1) if l0 != l1 else 1.0
    return float(steps[j - 1] + w * (steps[j] - steps[j - 1]))


def probe_check(net, cv, args):
    """With --loss_probe: path 0's final network on all N points (one pass), against its loss on the probe: the
    probe's error and its standard error (a mean over the probe's examples)."""
    import torch
    st = cv.meta["final_state"][0]
    if st is None:
        return dict(path0_full=float("nan"), path0_probe=float("nan"), probe_se=float("nan"))
    p = {k: v for k, v in st["params"].items()}
    per = []
    with torch.no_grad():
        for s in range(0, net.N, 8192):
            xb = net.X[s:s + 8192].to(next(iter(p.values())).dtype)
            out = torch.func.functional_call(net.model, p, (xb,)).reshape(-1).double()
            per.append(0.5 * (out - net.y[s:s + 8192].double().reshape(-1)) ** 2)
    per = torch.cat(per)
    idx = cv.meta["loss_probe_index"]
    return dict(path0_full=float(per.mean()), path0_probe=float(per[idx].mean()),
                probe_se=float(per[idx].std() / len(idx) ** 0.5))


def _se(se):
    """The final standard error over the seeds; NaN with one seed (the nn regime gives none for one path)."""
    return float(se[0, -1]) if se is not None else float("nan")


def build(args):
    ds = load_dataset("mnist", min(args.N, 60000 - args.n_test) if args.N < 60000 else args.N, seed=0,
                      root=args.data_root, n_test=args.n_test if args.N < 60000 else 0)
    model = MLP(ds.X.shape[1], width=args.width, seed=0)
    t = time.perf_counter()
    if args.problem:
        problem = Problem.load(args.problem)
        net = as_network((model, ds.X, ds.y))
        log(f"loaded {problem}")
    else:
        problem = problem_from_network(model, ds.X, ds.y, X_test=ds.X_test if args.n_test else None,
                                       y_test=ds.y_test if args.n_test else None, device="cpu")
        net = problem.network
        log(f"built {problem} in {time.perf_counter() - t:.0f} s")
    return problem, net, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data_root", default=None)
    ap.add_argument("--N", type=int, default=10000)
    ap.add_argument("--n_test", type=int, default=2000)
    ap.add_argument("--problem", default=None, help="a saved Problem of these N points (the rank path at 60,000)")
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--batch_sizes", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--nn_dtype", default="float32", help="the real network's dtype")
    ap.add_argument("--json", default=None)
    ap.add_argument("--loss_probe", type=int, default=0,
                    help="log the real network's training loss on this many fixed training points (0: all N); each "
                         "row then also checks path 0's final loss on all N points against its probe")
    ap.add_argument("--log_points", type=int, default=40, help="logged steps per real run (log-spaced)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    problem, net, t_problem = build(args)
    t = time.perf_counter()
    d = design_schedule(problem, budget_steps=args.steps, batch_sizes=args.batch_sizes, rerun="all")
    t_design = time.perf_counter() - t
    log(f"design in {t_design:.0f} s: best {d.info['family']} at b = {d.config[2]}, loss {d.loss:.4g}")
    cols = ["batch_size", "family", "lr", "momentum", "n_steps", "loss_search", "loss", "test_loss", "edge_margin"]
    print(d.table[cols].to_string())
    rows = []
    path = args.json or OUT / f"schedules_mnist_N{problem.N}.json"
    partial = Path(str(path) + ".partial")  # the finished rows, rewritten after each one: a cut run keeps them
    for r in d.table.itertuples():
        sched, cfg, n = d.schedules()[(int(r.batch_size), r.family)]
        steps = np.unique(np.concatenate([[0], np.round(np.geomspace(1, n, args.log_points)).astype(int)]))
        t = time.perf_counter()
        cv = nn.run(problem, [cfg], n, network=net, schedule=sched, repeats=args.seeds, log_steps=steps,
                    progress=False, dtype=args.nn_dtype, loss_probe=args.loss_probe,
                    keep_state=bool(args.loss_probe))
        secs = time.perf_counter() - t
        probe = probe_check(net, cv, args) if args.loss_probe else {}
        ps, pl = d.curves[(int(r.batch_size), r.family)][:2]
        row = dict(batch_size=int(r.batch_size), family=r.family, lr=float(r.lr), momentum=float(r.momentum),
                   lr_nn=float(r.lr * problem.N / problem.lambda_max_raw), n_steps=int(n), samples=int(r.samples),
                   params=r.params, edge_margin=float(r.edge_margin), pred=float(r.loss),
                   pred_search=float(r.loss_search), pred_test=float(r.test_loss),
                   real=float(cv.loss[0, -1]), real_se=_se(cv.loss_se), status=cv.status[0],
                   real_test=float(cv.test_loss[0, -1]) if cv.test_loss is not None else float("nan"),
                   real_test_se=_se(cv.test_loss_se),
                   steps=[int(s) for s in cv.steps], real_curve=[float(x) for x in cv.loss[0]],
                   pred_steps=[int(s) for s in ps], pred_curve=[float(x) for x in pl], seconds=secs,
                   designed=bool(r.best), **probe)
        row["gap"] = abs(row["pred"] / row["real"] - 1)
        if np.isfinite(row["pred_test"]) and np.isfinite(row["real_test"]):
            row["gap_test"] = abs(row["pred_test"] / row["real_test"] - 1)
        rows.append(row)
        partial.write_text(json.dumps(dict(N=problem.N, steps=args.steps, seeds=args.seeds, rows=rows), default=float))
        log(f"b={row['batch_size']:>4} {row['family']:>8}: pred {row['pred']:.4g} real {row['real']:.4g} "
            f"+- {row['real_se']:.2g} (gap {row['gap']:.3f}) test pred {row['pred_test']:.4g} real "
            f"{row['real_test']:.4g} [{secs:.0f} s]")
    res = dict(N=problem.N, width=args.width, steps=args.steps, seeds=args.seeds, n_test=args.n_test,
               loss_probe=args.loss_probe,
               problem_seconds=t_problem, design_seconds=t_design, design_info=d.info, rows=rows)
    gaps = [r["gap"] for r in rows if np.isfinite(r["gap"])]
    res["median_gap"] = float(np.median(gaps))
    tg = [r["gap_test"] for r in rows if "gap_test" in r]
    res["median_gap_test"] = float(np.median(tg)) if tg else float("nan")
    per_b = {}
    for b in args.batch_sizes:
        rb = [r for r in rows if r["batch_size"] == b]
        fam = [r for r in rb if r["family"] not in ("free", "ramp")]  # the hand-tuned families
        best_fam = min(fam, key=lambda r: r["real"])
        free = next((r for r in rb if r["family"] == "free"), None)
        designed = min(rb, key=lambda r: r["pred"])
        const = next(r for r in rb if r["family"] == "constant")
        ramp = next((r for r in rb if r["family"] == "ramp"), None)
        out = dict(best_family=best_fam["family"], best_family_real=best_fam["real"],
                   best_family_real_se=best_fam["real_se"], designed=designed["family"],
                   designed_real=designed["real"], designed_real_se=designed["real_se"],
                   gain=1 - designed["real"] / best_fam["real"],
                   gain_se=float(np.hypot(designed["real_se"], best_fam["real_se"]) / best_fam["real"]),
                   predicted_gain=1 - designed["pred"] / min(r["pred"] for r in fam))
        if free is not None:
            out.update(free_real=free["real"], free_real_se=free["real_se"],
                       free_gain=1 - free["real"] / best_fam["real"])
        if np.isfinite(best_fam["real_test"]):
            out.update(best_family_real_test=best_fam["real_test"], designed_real_test=designed["real_test"],
                       gain_test=1 - designed["real_test"] / best_fam["real_test"])
        if ramp is not None:
            target_pred, target_real = const["pred"], const["real"]
            sp = first_below(ramp["pred_steps"], ramp["pred_curve"], target_pred)
            sr = first_below(ramp["steps"], ramp["real_curve"], target_real)
            out.update(ramp_factor=ramp["params"]["batch_factor"], ramp_steps=ramp["n_steps"],
                       const_steps=const["n_steps"], ramp_steps_to_const_pred=sp, ramp_steps_to_const_real=sr,
                       ramp_step_saving_pred=1 - sp / const["n_steps"], ramp_step_saving_real=1 - sr / const["n_steps"])
        per_b[str(b)] = out
        log(f"b={b}: {out}")
    res["per_batch"] = per_b
    write_json(path, "validate_schedules_mnist", res, started=t0)
    partial.unlink(missing_ok=True)
    figure(res, Path(path).with_suffix(".png"))


def figure(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    bs = sorted({r["batch_size"] for r in res["rows"]})
    fig, axes = plt.subplots(len(bs), 2, figsize=(11, 3.8 * len(bs)), squeeze=False)
    for i, b in enumerate(bs):
        ax, bx = axes[i]
        rb = [r for r in res["rows"] if r["batch_size"] == b]
        for k, r in enumerate(rb):
            col = f"C{k}"
            ax.plot(np.maximum(r["pred_steps"], 1), r["pred_curve"], "--", color=col, lw=1.2)
            ax.plot(np.maximum(r["steps"], 1), r["real_curve"], "o", color=col, ms=3,
                    label=f"{r['family']}{' (designed)' if r['designed'] else ''}")
        ax.set(xscale="log", yscale="log", xlabel="step", ylabel="train loss",
               title=f"N = {res['N']}, b = {b}: real (dots, {res['seeds']} seeds) vs predicted (dashed)")
        ax.legend(fontsize=7, ncol=2)
        x = np.arange(len(rb))
        bx.bar(x - 0.2, [r["pred"] for r in rb], 0.4, label="predicted", color="C7")
        bx.bar(x + 0.2, [r["real"] for r in rb], 0.4, yerr=[r["real_se"] for r in rb], label="real", color="C0")
        bx.set_xticks(x, [r["family"] for r in rb], rotation=30)
        lo = min(min(r["pred"], r["real"]) for r in rb)
        hi = max(max(r["pred"], r["real"]) for r in rb)
        bx.set(yscale="log", ylim=(lo / 1.3, hi * 1.3), ylabel="train loss at the end",
               title=f"b = {b}: final train loss per schedule")
        bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
