"""recommend(probe_steps=...) (issue 24, item 4): the candidates trained on the real network, re-linearised at the
probe's end, and the best of their predictions chosen; checked against the same steps composed by hand."""

import numpy as np
import pytest
import torch

from gfsgd import Problem, problem_from_network, recommend, theory
from gfsgd.errors import InputError
from gfsgd.regimes import nn
from gfsgd.relinearize import problem_at


def _network_problem(seed=0, N=40):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, 4, dtype=torch.float64, generator=g)
    y = torch.tanh(X[:, 0] - X[:, 1] * X[:, 2])
    torch.manual_seed(seed + 1)
    m = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).double()
    return problem_from_network(m, X, y, device="cpu")


def test_the_probed_choice_is_the_best_relinearised_prediction_by_hand():
    p = _network_problem()
    T, S, top = 300, 30, 3
    df = recommend(p, budget_steps=T, batch_sizes=[8], momentum="nonnegative", probe_steps=S, probe_top=top)
    r = df.iloc[0]
    assert r["probed"] == top and not r["probe_failed"]
    # the candidates, as recommend takes them: its unprobed choice and the best grid cell of the next momenta
    from gfsgd.recommend import FRACTIONS, MOMENTA, predicted_loss
    predict = predicted_loss(p, T, 1.0, "train")
    cands = [(r["lr_unprobed"], r["momentum_unprobed"])]
    per_beta = []
    for beta in MOMENTA["nonnegative"]:
        if abs(beta - r["momentum_unprobed"]) < 1e-9:
            continue
        a = FRACTIONS * theory.critical_lr(p, np.full(FRACTIONS.size, beta), 8)
        loss = predict(a, beta, 8)
        j = int(np.argmin(loss))
        per_beta.append((loss[j], a[j], beta))
    cands += [(a, beta) for _, a, beta in sorted(per_beta)[:top - 1]]
    c = nn.run(p, [(a, beta, 8) for a, beta in cands], S, log_steps=[0, S], keep_state=True, progress=False)
    by_hand = []
    for j, (a, beta) in enumerate(cands):
        q = problem_at(p, c.meta["final_state"][j]["params"])
        by_hand.append(float(theory.loss_at(q, a * q.lambda_max_raw / p.lambda_max_raw, beta, 8, T - S)))
    k = int(np.argmin(by_hand))
    assert (r["lr"], r["momentum"]) == pytest.approx(cands[k], rel=1e-12)
    assert r["loss"] == pytest.approx(by_hand[k], rel=1e-9)
    assert 0 <= r["kernel_change"] < 1 and r["extrapolating"] == (r["kernel_change"] > 0.1)


def test_without_probes_a_network_recommendation_says_it_extrapolates():
    p = _network_problem(seed=2)
    df = recommend(p, budget_steps=200, batch_sizes=[8], momentum="zero")
    assert bool(df["extrapolating"].iloc[0])
    assert any("extrapolating at b = [8]" in w for w in df.attrs["warnings"])
    q = Problem.synthetic(64, 1.5, 0.5, seed=0)
    assert not recommend(q, budget_steps=200, batch_sizes=[8], momentum="zero")["extrapolating"].any()


def test_probe_arguments_are_refused_by_name():
    p = _network_problem()
    q = Problem.synthetic(64, 1.5, 0.5, seed=0)
    with pytest.raises(InputError, match="problem_from_network"):
        recommend(q, budget_steps=100, batch_sizes=[8], probe_steps=10)
    with pytest.raises(InputError, match="probe_steps must be below the budget"):
        recommend(p, budget_steps=100, batch_sizes=[8], probe_steps=100)
    with pytest.raises(InputError, match="probe_top must be"):
        recommend(p, budget_steps=100, batch_sizes=[8], probe_steps=10, probe_top=0)
