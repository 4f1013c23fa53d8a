"""gfsgd.design_schedule (docs/theory.md#design): schedules tuned and designed on the SD recursion, checked against
the regimes run independently, a dense grid, and the stability edge at every step."""
import numpy as np
import pytest
import torch

import gfsgd
from gfsgd import Problem, Schedule, theory as th
from gfsgd import schedules as S
from gfsgd.recommend.design import FAMILIES
from gfsgd.theory import compress_spectrum, free_form, noise_gamma, sd_final_loss, segment_boundaries
from gfsgd.regimes import full, spectral_diagonal as sd


def _tables(sched, T, a, beta, b, N):
    la, lb, lbs = sched.values(T, a, beta, b, N)
    return (torch.tensor(la)[:, None], torch.tensor(lb)[:, None], torch.tensor(noise_gamma(lbs, N))[:, None])


def test_search_recursion_is_the_sd_regime():
    """The design's differentiable recursion against the SD regime (a second implementation) under a schedule
    that moves lr, momentum and batch size."""
    p = Problem.synthetic(300, nu=1.3, kappa=0.7, seed=4)
    sched = Schedule(lr=S.piecewise([0, 10, 200], [0.5, 1.0, 0.2]),
                     momentum=S.piecewise([0, 10, 200], [0.0, 0.8, 0.3], scale="value"),
                     batch_size=S.geometric(250, 8.0))
    T, a, b = 300, 0.6, 4
    ref = sd.run(p, [(a, 0.0, b)], T, schedule=sched, progress=False, log_steps=[0, 7, 150, 300]).loss[0]
    lr, be, ga = _tables(sched, T, a, 0.0, b, p.N)
    final, curve = sd_final_loss(p.eigvals.double(), p.c.double(), p.N, lr, be, ga, log_steps=[0, 7, 150, 300])
    np.testing.assert_allclose(curve[0].numpy(), ref, rtol=1e-10)
    assert float(final[0]) == pytest.approx(ref[-1], rel=1e-10)


def test_compressed_spectrum_tracks_the_full_one():
    """Binning the tail (noise multiplicities kept) against the uncompressed SD regime, at high momentum near the
    edge where the noise feedback dominates; without the multiplicities the error is large (the test can fail)."""
    p = Problem.synthetic(4000, nu=1.4, kappa=0.6, seed=1)
    lam, c = p.eigvals.double().numpy(), p.c.double().numpy()
    lb, cb, mb = compress_spectrum(lam, c, exact_modes=100, bin_ratio=1.05)
    assert lb.size < 600 and cb.sum() == pytest.approx(c.sum(), rel=1e-12)
    T, b, beta = 1500, 8, 0.9
    a = 0.9 * float(th.critical_lr(p, beta, b))
    sched = Schedule(lr=S.cosine(T, 0.0, 50))
    ref = sd.run(p, [(a, beta, b)], T, schedule=sched, progress=False).loss[0, -1]
    lr, be, ga = _tables(sched, T, a, beta, b, p.N)
    got = float(sd_final_loss(torch.tensor(lb), torch.tensor(cb), p.N, lr, be, ga, mult=torch.tensor(mb))[0])
    naive = float(sd_final_loss(torch.tensor(lb), torch.tensor(cb), p.N, lr, be, ga)[0])
    assert abs(got / ref - 1) < 2e-3
    assert abs(naive / ref - 1) > 2e-2


@pytest.fixture(scope="module")
def design():
    p = Problem.synthetic(1500, nu=1.4, kappa=0.8, seed=2)
    return p, gfsgd.design_schedule(p, budget_steps=600, batch_sizes=(8,), progress=False)


def test_designed_schedule_is_never_predicted_worse_than_a_family(design):
    """Every row re-run independently in the SD regime from its saved JSON; the design is the best of them and
    its schedule + config reproduce its loss."""
    p, d = design
    assert set(d.table["family"]) == set(FAMILIES)
    losses = {}
    for (b, fam), (sched, cfg, n) in d.schedules().items():
        losses[fam] = sd.run(p, [cfg], n, schedule=sched, progress=False).loss[0, -1]
        row = d.table[d.table["family"] == fam].iloc[0]
        assert row["loss"] == pytest.approx(losses[fam], rel=1e-12)
        assert abs(row["loss_search"] / losses[fam] - 1) < 5e-3  # the compressed search's error
    assert d.loss <= min(losses.values()) * (1 + 1e-12)
    mine = sd.run(p, [d.config], d.n_steps, schedule=d.schedule, progress=False).loss[0, -1]
    assert mine == pytest.approx(d.loss, rel=1e-12)
    # a decaying schedule beats the best constant lr on this budget (what the design is for)
    assert d.loss < 0.9 * losses["constant"]


def test_every_step_stays_below_the_edge(design):
    """The table's edge margin against the SD edge computed here at every step's (momentum, batch size)."""
    p, d = design
    for (b, fam), (sched, (a, beta, _), n) in d.schedules().items():
        la, lb, lbs = sched.values(n, a, beta, b, p.N)
        pairs = sorted({(float(x), int(y)) for x, y in zip(lb, lbs)})
        edge = {q: float(th.critical_lr(p, q[0], q[1])) for q in pairs}
        ratio = min(edge[(float(x), int(y))] / z for x, y, z in zip(lb, lbs, la) if z > 0)
        row = d.table[d.table["family"] == fam].iloc[0]
        assert ratio >= 1 / 0.95 * (1 - 1e-9), fam
        assert row["edge_margin"] == pytest.approx(ratio, rel=1e-6), fam


def test_ramp_spends_the_same_samples_in_fewer_steps(design):
    p, d = design
    row = d.table[d.table["family"] == "ramp"].iloc[0]
    const = d.table[d.table["family"] == "constant"].iloc[0]
    assert row["n_steps"] < const["n_steps"]
    assert abs(row["samples"] - const["n_steps"] * 8) <= 8 * row["params"]["batch_factor"]


@pytest.mark.parametrize("method, iterations", [("pattern", 30), ("adam", 100)])
def test_free_form_with_one_piece_recovers_the_optimal_constant(method, iterations):
    """One piece: each optimiser's (alpha, beta) against a dense grid of the SD regime."""
    p = Problem.synthetic(400, nu=1.5, kappa=0.5, seed=3)
    T, b = 200, 4
    betas = np.linspace(-0.5, 0.95, 30)
    edges = th.critical_lr(p, betas, b)
    _, lrs, bets, loss = free_form(p.eigvals.double().numpy(), p.c.double().numpy(), p.N, b, T, edge_betas=betas,
                                   edge_values=edges, pieces=1, margin=0.95, iterations=iterations, method=method,
                                   init=[([0.2], [0.0])])
    gb = np.linspace(-0.5, 0.94, 37)
    ga = np.linspace(0.02, 1.0, 50)
    cfgs = [(f * 0.95 * float(np.interp(x, betas, edges)), x, b) for x in gb for f in ga]
    grid = sd.run(p, cfgs, T, progress=False, log_steps=[T]).loss[:, -1]
    k = int(np.nanargmin(grid))
    assert loss <= grid[k] * 1.01
    assert abs(bets[0] - cfgs[k][1]) < 0.08
    assert abs(lrs[0] / cfgs[k][0] - 1) < 0.15
    # the one-piece loss is the SD regime's at the returned constant (alpha, beta)
    assert sd.run(p, [(lrs[0], bets[0], b)], T, progress=False).loss[0, -1] == pytest.approx(loss, rel=1e-10)


def test_full_regime_reproduces_the_designed_curve():
    """A small dense problem: the design re-runs in the exact full regime, and full.run with the returned
    schedule and config gives its curve."""
    p = Problem.synthetic(40, nu=1.2, kappa=0.6, seed=5, basis="random")
    d = gfsgd.design_schedule(p, budget_steps=150, batch_sizes=(4,), families=("constant", "cosine", "free"),
                              iterations=4, progress=False)
    assert d.info["regime"] == "full"
    steps, loss = d.curves[(4, d.info["family"])][:2]
    got = full.run(p, [d.config], d.n_steps, schedule=d.schedule, log_steps=steps, progress=False).loss[0]
    np.testing.assert_allclose(got, loss, rtol=1e-12)
    # and the exact edge bounded it (N <= exact_max_n): the best row checked against it at every step
    assert d.info["exact_edge"]
    best = d.table[d.table["best"]].iloc[0]
    assert best["edge_margin_exact"] >= 1.0
    a, beta, b = d.config
    la, lb, lbs = d.schedule.values(d.n_steps, a, beta, b, p.N)
    k = int(np.argmax(la))
    edge = th.exact_critical_lr(p, float(lb[k]), int(lbs[k]), rtol=1e-6)
    assert la[k] < edge * 1.001


def test_segments_are_log_spaced_from_both_ends():
    assert segment_boundaries(10000, 8) == [0, 10, 100, 1000, 5000, 9500, 9950, 9995]
    assert segment_boundaries(100, 1) == [0]


@pytest.mark.parametrize("kw, msg", [
    (dict(families=("constant", "exponential")), "families must be a non-empty list drawn from"),
    (dict(objective="val"), "objective must be 'train' or 'test'"),
    (dict(margin=1.5), "margin must be in"),
    (dict(regime="full"), "regime='full' needs a problem with its eigenvectors"),
    (dict(objective="test"), "held-out"),
])
def test_design_refusals(kw, msg):
    p = Problem.synthetic(64, nu=1.2, kappa=0.6, seed=0, basis="none")
    with pytest.raises(ValueError, match=msg):
        gfsgd.design_schedule(p, budget_steps=50, batch_sizes=(4,), progress=False, **kw)


def test_recommend_returns_designed_schedules():
    """recommend(schedules=True): per batch size a schedule no worse than the constant (alpha, beta) recommended
    beside it, both checked in the SD regime."""
    p = Problem.synthetic(800, nu=1.4, kappa=0.8, seed=6, basis="none")
    df = gfsgd.recommend(p, budget_steps=400, batch_sizes=(4, 32), schedules=True)
    for r in df.itertuples():
        const = sd.run(p, [(r.lr, r.momentum, r.batch_size)], 400, progress=False).loss[0, -1]
        sched = sd.run(p, [(r.schedule_lr, r.schedule_momentum, r.batch_size)], r.schedule_steps,
                       schedule=r.schedule, progress=False).loss[0, -1]
        assert sched == pytest.approx(r.loss_schedule, rel=1e-9)
        assert sched <= const * 1.001


def test_design_with_c_outputs():
    """A problem with C = 3 outputs per example (batches sample examples, docs/theory.md#outputs): the search steps
    the C-output SD recursion (no compression, checked against the SD regime), the rows are re-run in the exact full
    regime and the design is the best of them there: full.run with its schedule reproduces it."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30 * 3, 60, generator=g, dtype=torch.float64) * (torch.arange(1, 61) ** -0.7)
    d0 = torch.randn(30, 3, generator=g, dtype=torch.float64)  # [N, C]: the problem has C = 3 outputs
    p = Problem.from_kernel(X @ X.T, d0)
    d = gfsgd.design_schedule(p, budget_steps=120, batch_sizes=(4,), families=("constant", "cosine", "wsd"),
                              regime="full", progress=False)
    assert p.n_outputs == 3 and d.info["modes_searched"] == 90 and d.info["regime"] == "full"
    for (b, fam), (sched, cfg, n) in d.schedules().items():
        row = d.table[d.table.family == fam].iloc[0]
        ref = sd.run(p, [cfg], n, schedule=sched, progress=False).loss[0, -1]
        assert row.loss_search == pytest.approx(ref, rel=1e-9) or (np.isinf(row.loss_search) and np.isnan(ref))
    finite = d.table.loss[np.isfinite(d.table.loss)]
    assert np.isfinite(d.loss) and d.loss <= finite.min()
    again = full.run(p, [d.config], d.n_steps, schedule=d.schedule, progress=False).loss[0, -1]
    assert again == pytest.approx(d.loss, rel=1e-12)
