"""The N-point problem predicted from an n-point subset (issue 26): on data with a known operator spectrum
(Gaussian features of variances k^-nu, a linear kernel, targets with c_k ~ k^-(kappa+1)), the fitted exponents
against the known ones, the extrapolated SD curves against the dense N-point problem built independently, and the
identities (n = N, learning-rate units, loss per example)."""
import numpy as np
import pytest
import torch

from gfsgd import Problem
from gfsgd.errors import InputError
from gfsgd.regimes import spectral_diagonal as sd
from gfsgd.spectrum import extrapolate

NU, KAPPA = 1.4, 0.6


def _data(n, M=2000, seed=0):
    """x [n, M] with independent N(0, k^-nu) coordinates (the operator of the linear kernel has eigenvalues k^-nu),
    y = x . theta with mu_k theta_k^2 = k^-(kappa+1)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(1, M + 1, dtype=torch.float64)
    mu = k ** -NU
    X = torch.randn(n, M, generator=g, dtype=torch.float64) * mu.sqrt()
    sign = torch.sign(torch.randn(M, generator=torch.Generator().manual_seed(99), dtype=torch.float64))
    return X, X @ (torch.sqrt(k ** (-KAPPA - 1) / mu) * sign)


@pytest.fixture(scope="module")
def setting():
    N = 2000
    X, y = _data(N)
    full = Problem.from_kernel(X @ X.T, -y)
    sub = Problem.from_kernel(X[:500] @ X[:500].T, -y[:500])
    return full, sub, extrapolate(sub, N)


def test_the_known_exponents_are_recovered(setting):
    _, _, ex = setting
    assert ex.info["nu_ci"][0] - 0.03 <= NU <= ex.info["nu_ci"][1] + 0.03
    assert abs(ex.info["nu"] - NU) < 0.05
    assert abs(ex.info["kappa"] - KAPPA) < 0.3  # from the cumulative energy of one subset: noisy


def test_the_extrapolated_curves_follow_the_dense_n_point_problem(setting):
    full, _, ex = setting
    cfgs = [(0.5, 0.0, 10), (1.0, 0.0, 100), (0.5, 0.5, 10)]
    steps = [0, 30, 100, 300, 1000, 3000]
    ref = sd.run(full, cfgs, 3000, log_steps=steps, progress=False).loss
    got = sd.run(ex.problem, cfgs, 3000, log_steps=steps, progress=False).loss
    gap = np.abs(got / ref - 1)[:, 1:]
    # measured 0.12 (0.10 and 0.17 from the other two disjoint subsets of 500): the subset's loss per example is a
    # mean over 500 examples with a 6% standard error, which the curves inherit
    assert np.median(gap) < 0.2 and gap.max() < 0.35
    naive = sd.run(setting[1], cfgs, 3000, log_steps=steps, progress=False).loss  # the subset's own curves
    assert np.median(np.abs(naive / ref - 1)[:, 1:]) > 1.5 * np.median(gap)  # extrapolating is what helps (0.30)
    band = [sd.run(q, cfgs, 3000, log_steps=steps, progress=False).loss for q in ex.ensemble] + [got]
    inside = (ref >= np.min(band, 0)) & (ref <= np.max(band, 0))
    assert inside[:, 1:].mean() >= 0.75  # the ensemble's band holds the N-point curve (measured 0.93)


def test_units_and_identities(setting):
    full, sub, ex = setting
    p = ex.problem
    assert p.N == full.N and p.n_modes == full.N
    assert p.lambda_max_raw == pytest.approx(sub.lambda_max_raw * full.N / sub.N, rel=1e-12)
    assert p.lambda_max_raw == pytest.approx(full.lambda_max_raw, rel=0.1)  # the estimate of lambda_1(K_N)
    assert p.loss0 == pytest.approx(sub.loss0, rel=1e-9)  # the loss per example is the subset's
    assert float(p.eigvals.sum()) == pytest.approx(float(sub.eigvals.sum()), rel=1e-9)  # the normalised trace
    assert len(ex.ensemble) >= 4 and all(q.N == full.N for q in ex.ensemble)
    same = extrapolate(sub, sub.N)
    assert same.problem is sub and same.ensemble == []


def test_bad_inputs_are_refused_by_name(setting):
    _, sub, _ = setting
    with pytest.raises(InputError, match="N must be"):
        extrapolate(sub, 100)
    with pytest.raises(InputError, match="k_max must be"):
        extrapolate(sub, 4000, k_max=4)
    two = Problem.from_kernel(torch.eye(6, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64))
    with pytest.raises(InputError, match="one output per example"):
        extrapolate(two, 100)


def test_data_scaling_follows_the_dense_problems_at_each_n(setting):
    """theory.data_scaling from the 500-point subset against loss_at on the dense problems of the first N points,
    built independently, N in {500, 1000, 2000}; at N = n it is the subset's own prediction."""
    from gfsgd import theory
    _, sub, _ = setting
    X, y = _data(2000)
    cfgs = [(0.5, 0.0, 10), (1.0, 0.5, 100)]
    out = theory.data_scaling(sub, [500, 1000, 2000], 1000, cfgs)
    for i, N in enumerate(out["N"]):
        dense = Problem.from_kernel(X[:N] @ X[:N].T, -y[:N])
        ref = theory.loss_at(dense, np.array([0.5, 1.0]), np.array([0.0, 0.5]), np.array([10, 100]), 1000)
        tol = 1e-9 if N == 500 else 0.25
        np.testing.assert_allclose(out["loss"][i], ref, rtol=tol)
        assert (out["low"][i] <= out["loss"][i] + 1e-15).all() and (out["high"][i] >= out["loss"][i] - 1e-15).all()
    assert (np.diff(out["loss"], axis=0) > 0).all()  # more data, same steps: more loss left
    with pytest.raises(InputError, match="Ns must be"):
        theory.data_scaling(sub, [100], 10, cfgs)


def test_the_split_half_checks_and_the_band(setting):
    """Each check is the method run on half of the subset and extrapolated to the subset's n: n modes, the subset's
    own |d0|^2, the truth is the subset itself. band() holds the central value, every member and central x each
    check's ratio to the power log2(N / n), computed here by hand from the members' predictions."""
    full, sub, ex = setting
    assert len(ex.checks) == 2 and ex.info["checks"] == 2
    for chk in ex.checks:
        q = chk["extrapolated"]
        assert chk["truth"] is sub and chk["n_half"] == sub.N // 2
        assert q.N == sub.N and q.n_modes == sub.N
        assert q.loss0 == pytest.approx(sub.loss0, rel=1e-9)  # the n points' |d0|^2, not the half's estimate
    cfgs = [(0.5, 0.0, 10), (1.0, 0.5, 100)]

    def pred(q):
        return sd.run(q, cfgs, 1000, log_steps=[0, 100, 1000], progress=False).loss

    out = ex.band(pred)
    vals = [pred(ex.problem)] + [pred(q) for q in ex.ensemble]
    ratios = [pred(c["truth"]) / pred(c["extrapolated"]) for c in ex.checks]
    vals += [vals[0] * r ** 2 for r in ratios]  # N / n = 4: two doublings
    np.testing.assert_allclose(out["central"], vals[0], rtol=1e-12)
    np.testing.assert_allclose(out["low"], np.min(vals, 0), rtol=1e-12)
    np.testing.assert_allclose(out["high"], np.max(vals, 0), rtol=1e-12)
    for r, got in zip(ratios, out["check_ratio"]):
        np.testing.assert_allclose(got, r, rtol=1e-12)
    assert not np.allclose(ratios[0][:, 1:], 1.0)  # a check that can fail: the half's extrapolation is not exact
    # a batch larger than the subset cannot be checked on it: the band keeps the ensemble alone
    big = ex.band(lambda q: sd.run(q, [(0.5, 0.0, 800)], 100, log_steps=[100], progress=False).loss)
    assert big["check_ratio"] == [] and (big["low"] <= big["central"]).all()


def test_the_band_with_its_checks_holds_the_dense_curve_from_four_disjoint_subsets():
    """On the known-operator data: from each of the four disjoint 500-point subsets of the 2,000, the band
    (ensemble and split-half checks) against the dense 2,000-point SD curves (measured: the band holds 0.93-1.00
    of the points per subset, 0.98 over the four; the ensemble alone 0.80-1.00)."""
    X, y = _data(2000)
    full = Problem.from_kernel(X @ X.T, -y)
    cfgs = [(0.5, 0.0, 10), (1.0, 0.0, 100), (0.5, 0.5, 10)]
    steps = [0, 30, 100, 300, 1000, 3000]

    def pred(q):
        return sd.run(q, cfgs, 3000, log_steps=steps, progress=False).loss
    ref = pred(full)
    inside = []
    for lo in (0, 500, 1000, 1500):
        sub = Problem.from_kernel(X[lo:lo + 500] @ X[lo:lo + 500].T, -y[lo:lo + 500])
        out = extrapolate(sub, 2000).band(pred)
        inside.append(((ref >= out["low"] * (1 - 1e-9)) & (ref <= out["high"] * (1 + 1e-9)))[:, 1:].mean())
    assert min(inside) >= 0.85 and np.mean(inside) >= 0.9


def test_recommend_and_design_schedule_carry_the_band(setting):
    """recommend and design_schedule take the Extrapolation: the same choice as on its central problem, and a
    band around the predicted loss, which is Extrapolation.band of that loss."""
    from gfsgd import design_schedule, recommend
    from gfsgd.recommend import predicted_loss
    _, _, ex = setting
    df = recommend(ex, budget_steps=300, batch_sizes=[10, 100], momentum="nonnegative")
    ref = recommend(ex.problem, budget_steps=300, batch_sizes=[10, 100], momentum="nonnegative")
    np.testing.assert_allclose(df["loss"], ref["loss"], rtol=1e-12)
    assert (df["loss_low"] <= df["loss"] * (1 + 1e-12)).all() and (df["loss_high"] >= df["loss"] * (1 - 1e-12)).all()
    assert (df["loss_high"] > df["loss_low"]).all()
    r = df.iloc[0]
    want = ex.band(lambda q: predicted_loss(q, r.horizon, 1.0, "train")(np.array([r.lr]), r.momentum, r.batch_size))
    assert df["loss_low"].iloc[0] == pytest.approx(float(want["low"][0]), rel=1e-12)
    d = design_schedule(ex, budget_steps=200, batch_sizes=[10], families=["constant", "cosine"], progress=False)
    best = d.table[d.table["best"]].iloc[0]
    assert best["loss_low"] <= best["loss"] * (1 + 1e-6) <= best["loss_high"] * (1 + 1e-6)
    assert d.table["loss_low"].notna().sum() == 1  # the best row per batch size


def test_the_recommend_command_with_subset_prints_the_band(tmp_path, capsys):
    from gfsgd.recommend.__main__ import main
    main(["--dataset", "digits", "--N", "800", "--subset", "200", "--width", "32", "--budget_steps", "200",
          "--batch_size", "10", "--momentum", "zero", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "loss_low" in out and "loss_high" in out
    import pandas as pd
    df = pd.read_csv(tmp_path / "recommendation.csv")
    assert (df["loss_low"] <= df["loss"]).all() and (df["loss"] <= df["loss_high"]).all()
