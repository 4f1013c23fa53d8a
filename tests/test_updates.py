"""Training rules (gfsgd.updates; docs/theory.md#updates): SVAG(l), the SGD SDE and noisy GD in the regimes and
the theory, each against an independent computation:

- SVAG in full and SD against a two-batch Monte-Carlo written here in numpy (its own sampler and update);
- SVAG(1) equals SGD; the gap between SVAG(l) and the SDE at a fixed SGD-step time falls as 1/l (fitted slope);
- the SDE's second moments (ETDRK4 in full and sd) against the dense matrix exponential of the vectorised
  generator, and against the Laplace-transform solution of the theory (theory.sde_loss), two unrelated methods;
- noisy GD: the sampled mean loss equals SGD's exact curve, its path-to-path spread differs;
- bad input gets a clear error.
"""
import math

import numpy as np
import pytest
import scipy.linalg as sla
import torch

import gfsgd.theory as th
from gfsgd import Problem, problem_from_network
from gfsgd.regimes import full, linearized, nn
from gfsgd.regimes import spectral_diagonal as sd
from gfsgd.updates import SDE, SGD, SVAG, NoisyGD, UnsupportedUpdate, as_update


def svag_monte_carlo(problem, lr, momentum, b, l, n_sgd_steps, paths, seed=0):
    """Mean and s.e. of L_t (t = 0..n_sgd_steps SGD steps) of SVAG(l) on the linearized model: numpy, its own
    sampler (two independent b-subsets without replacement a step), l steps of lr / l per SGD step."""
    rng = np.random.default_rng(seed)
    K = problem.K.numpy()
    N = K.shape[0]
    s = math.sqrt(2 * l - 1)
    r1, r2 = (1 + s) / 2, (1 - s) / 2
    d = np.tile(problem.d0.numpy(), (paths, 1))
    v = np.zeros_like(d)
    out = [np.full(paths, float(problem.loss0))]
    rows = np.arange(paths)[:, None]
    for _ in range(n_sgd_steps):
        for _ in range(l):
            g = np.zeros_like(d)
            for r in (r1, r2):
                idx = np.argsort(rng.random((paths, N)), axis=1)[:, :b]  # a uniform b-subset per path
                mask = np.zeros_like(d)
                mask[rows, idx] = N / b
                g += r * (mask * d) @ K
            v = momentum * v - (lr / l) * g
            d = d + v
        out.append((d * d).sum(1) / (2 * N))
    L = np.array(out)  # [T + 1, paths]
    return L.mean(1), L.std(1) / math.sqrt(paths)


@pytest.mark.parametrize("regime, basis", [("full", "random"), ("sd", "hadamard")])
def test_svag_matches_a_two_batch_monte_carlo(regime, basis):
    # SD with tau = 1 is exact for a Hadamard basis (delocalised eigenvectors), so both compare to the same MC
    p = Problem.synthetic(16, 1.5, 1.0, basis=basis, seed=1)
    lr, mom, b, l, T = 0.9, 0.3, 2, 3, 6
    mean, se = svag_monte_carlo(p, lr, mom, b, l, T, paths=20000)
    run = (full.run if regime == "full" else sd.run)(p, [(lr, mom, b)], T, update=SVAG(l), progress=False)
    z = (mean[1:] - run.loss[0, 1:]) / se[1:]
    assert np.all(np.abs(z) < 4.5), z
    sgd = (full.run if regime == "full" else sd.run)(p, [(lr, mom, b)], T, progress=False)
    assert np.max(np.abs(sgd.loss[0, 1:] - mean[1:]) / se[1:]) > 10, "the MC must tell SVAG(3) from SGD"


@pytest.mark.parametrize("run", [full.run, sd.run])
def test_svag_1_is_sgd(run):
    p = Problem.synthetic(32, 1.5, 1.0, basis="random", seed=0)
    cfg = [(0.7, 0.2, 3), (1.2, -0.3, 8)]
    a = run(p, cfg, 40, update=SVAG(1), progress=False)
    b = run(p, cfg, 40, progress=False)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12, atol=0)


def _slope(ls, gaps):
    return np.polyfit(np.log(ls), np.log(gaps), 1)[0]


def test_svag_gap_to_the_sde_falls_as_one_over_l_full():
    p = Problem.synthetic(16, 1.5, 1.0, basis="random", seed=0)
    cfg, T = [(0.8, 0.0, 2)], 8
    ref = full.run(p, cfg, T, update=SDE(substeps=64), progress=False).loss[0, -1]
    ls = [2, 4, 8, 16, 32, 64, 128, 256]
    gaps = [abs(full.run(p, cfg, T, update=SVAG(l), progress=False).loss[0, -1] - ref) for l in ls]
    assert -1.1 < _slope(ls, gaps) < -0.9, gaps
    assert gaps[-1] / ref < 2e-3


def test_svag_gap_to_the_sde_falls_as_one_over_l_sd_and_theory():
    p = Problem.synthetic(300, 1.5, 1.0, basis=None)
    lr, b, T = 0.6, 1, 50
    ref = th.sde_loss(p, lr, b, T)  # Laplace inversion (no stepping)
    ls = [2, 4, 8, 16, 32, 64, 128, 256]
    gaps = [abs(sd.run(p, [(lr, 0.0, b)], T, update=SVAG(l), progress=False).loss[0, -1] - ref) for l in ls]
    assert -1.1 < _slope(ls, gaps) < -0.9, gaps
    # the theory's SVAG (renewal equation and contour integral) is the SD regime's
    for l in (2, 16):
        stepped = sd.run(p, [(lr, 0.3, 4)], T, update=SVAG(l), progress=False, log_steps=[0, 7, T]).loss[0]
        np.testing.assert_allclose(th.loss_curve(p, lr, 0.3, 4, T, update=SVAG(l), log_steps=[0, 7, T]), stepped,
                                   rtol=1e-10)
        np.testing.assert_allclose(th.loss_at(p, lr, 0.3, 4, [0, 7, T], update=SVAG(l)), stepped, rtol=1e-8)


def test_full_sde_matches_the_dense_matrix_exponential():
    N, lr, b, T = 8, 0.8, 2, 5
    p = Problem.synthetic(N, 1.5, 1.0, basis="random", seed=0)
    K, d0 = p.K.numpy(), p.d0.numpy()
    gamma = (N - b) / ((N - 1) * b)

    def generator(Cv):  # dC/dt = -alpha (K C + C K) + alpha^2 gamma K (N diag(C) - C) K, on vec(C)
        C = Cv.reshape(N, N)
        return (-lr * (K @ C + C @ K) + lr * lr * gamma * K @ (N * np.diag(np.diag(C)) - C) @ K).reshape(-1)

    G = np.stack([generator(e) for e in np.eye(N * N)], 1)
    exact = [np.trace((sla.expm(G * t) @ np.outer(d0, d0).reshape(-1)).reshape(N, N)) / (2 * N) for t in range(T + 1)]
    errs = [np.max(np.abs(full.run(p, [(lr, 0.0, b)], T, update=SDE(substeps=s), progress=False).loss[0] / exact - 1))
            for s in (4, 8, 16)]
    assert errs[-1] < 1e-7, errs
    assert errs[0] / errs[1] > 10 and errs[1] / errs[2] > 10, f"ETDRK4 is fourth order: {errs}"


@pytest.mark.parametrize("tau", [1.0, -1.0])
def test_sd_sde_matches_the_laplace_inversion(tau):
    p = Problem.synthetic(200, 1.5, 1.0, basis=None)
    steps = [0, 1, 5, 20, 100, 300]
    for lr, b in [(0.5, 1), (1.5, 10)]:
        stepped = sd.run(p, [(lr, 0.0, b)], 300, tau=tau, update=SDE(substeps=16), log_steps=steps,
                         progress=False).loss[0]
        np.testing.assert_allclose(stepped, th.sde_loss(p, lr, b, steps, tau=tau), rtol=1e-7)
        np.testing.assert_allclose(th.loss_at(p, lr, 0.0, b, steps, tau=tau, update="sde"),
                                   th.loss_curve(p, lr, 0.0, b, 300, tau, update=SDE(), log_steps=steps), rtol=1e-12)


def test_full_sde_equals_sd_sde_for_a_hadamard_basis():
    p = Problem.synthetic(32, 1.5, 1.0, basis="hadamard", seed=0)
    cfg = [(0.7, 0.0, 1), (1.4, 0.0, 8)]
    a = full.run(p, cfg, 40, update=SDE(substeps=16), progress=False)
    b = sd.run(p, cfg, 40, update=SDE(substeps=16), progress=False)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-9)


def test_sde_divergence_matches_the_theory():
    p = Problem.synthetic(64, 1.5, 1.0, basis=None)
    lrs = np.linspace(0.2, 6.0, 12)
    pred = np.isfinite(th.sde_loss(p, lrs, 1, 1.0))
    run = sd.run(p, [(a, 0.0, 1) for a in lrs], 3000, update=SDE(), progress=False)
    assert pred.any() and not pred.all()
    assert [s == "ok" for s in run.status] == pred.tolist()


def test_noisy_gd_has_sgd_expected_loss_and_a_different_spread():
    p = Problem.synthetic(32, 1.5, 1.0, basis="random", seed=0)
    cfg, T = [(0.3, 0.0, 2), (0.6, 0.4, 4)], 30
    exact = full.run(p, cfg, T, progress=False)
    assert np.allclose(full.run(p, cfg, T, update=NoisyGD(), progress=False).loss, exact.loss, rtol=1e-14)
    ngd = linearized.run(p, cfg, T, repeats=8000, update=NoisyGD(), seed=3, progress=False)
    sgd = linearized.run(p, cfg, T, repeats=8000, seed=3, progress=False)
    for run in (ngd, sgd):
        z = (run.loss - exact.loss)[:, 1:] / run.loss_se[:, 1:]
        assert np.all(np.abs(z) < 4.5), np.abs(z).max()
    ratio = ngd.loss_se[:, -1] / sgd.loss_se[:, -1]  # path-to-path standard deviation, noisy GD / SGD
    assert np.all(ratio > 1.3), ratio


def test_noisy_gd_with_replacement_uses_one_over_b():
    p = Problem.synthetic(32, 1.5, 1.0, basis="random", seed=0)
    exact = full.run(p, [(0.3, 0.0, 4)], 20, replacement=True, progress=False)
    run = linearized.run(p, [(0.3, 0.0, 4)], 20, repeats=8000, update=NoisyGD(replacement=True), progress=False)
    assert np.all(np.abs((run.loss - exact.loss)[:, 1:] / run.loss_se[:, 1:]) < 4.5)
    assert run.meta["ngd_replacement"] is True


def test_times_stay_in_sgd_steps_and_divergence_is_reported():
    p = Problem.synthetic(64, 1.5, 1.0, basis=None)
    run = sd.run(p, [(0.5, 0.0, 4), (40.0, 0.0, 4)], 30, update=SVAG(4), log_steps=[0, 10, 30], progress=False)
    assert list(run.steps) == [0, 10, 30] and run.meta["svag_l"] == 4
    assert run.status == ["ok", "diverged"] and 1 <= run.diverged_step[1] <= 30
    # past the edge loss_at steps the loss in time (docs/theory.md#loss-at): the growing value of loss_curve at
    # t = 30, and inf once it overflows float64
    grown = th.loss_at(p, 40.0, 0.0, 4, 30, update=SVAG(4))
    assert grown > 1e100 and grown == pytest.approx(th.loss_curve(p, 40.0, 0.0, 4, 30, update=SVAG(4))[..., -1],
                                                    rel=1e-9)
    assert np.isinf(th.loss_at(p, 40.0, 0.0, 4, 10 ** 4, update=SVAG(4)))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="l must be a finite number >= 1, got l=0.5"):
        SVAG(0.5)
    with pytest.raises(ValueError, match="whole number"):
        SVAG(2.5)
    with pytest.raises(ValueError, match="update must be one of sgd, svag, sde, ngd"):
        as_update("adam")
    p = Problem.synthetic(16, 1.5, 1.0, basis="random", seed=0)
    with pytest.raises(ValueError, match="momentum-free.*momentum=0.5"):
        full.run(p, [(0.5, 0.5, 2)], 5, update=SDE(), progress=False)
    with pytest.raises(UnsupportedUpdate, match="linearized regime cannot run update=sde; it runs: SGD"):
        linearized.run(p, [(0.5, 0.0, 2)], 5, update=SDE(), progress=False)
    with pytest.raises(UnsupportedUpdate, match="nn regime cannot run update=sde"):
        nn.run((torch.nn.Linear(3, 1).double(), torch.randn(8, 3, dtype=torch.float64),
                torch.randn(8, dtype=torch.float64)), [(0.5, 0.0, 2)], 5, update=SDE(), progress=False)
    with pytest.raises(ValueError, match="momentum-free"):
        th.loss_at(p, 0.5, 0.2, 2, 10, update=SDE())
    assert isinstance(as_update(None), SGD)


# ------------------------------------------------------------------------------------------------ penalties
from gfsgd.updates import GradientPenalty, MicroBatchPenalty  # noqa: E402


def penalty_monte_carlo(problem, lr, momentum, b, rule, n_steps, paths, seed=0):
    """Mean and s.e. of L_t for a penalty rule on the linearized model: numpy, its own sampler and partitions."""
    rng = np.random.default_rng(seed)
    K = problem.K.numpy()
    N = K.shape[0]
    d = np.tile(problem.d0.numpy(), (paths, 1))
    v = np.zeros_like(d)
    rows = np.arange(paths)[:, None]
    out = [np.full(paths, float(problem.loss0))]
    for _ in range(n_steps):
        order = np.argsort(rng.random((paths, N)), axis=1)  # a uniform permutation per path
        idx = order[:, :b]
        mask = np.zeros_like(d)
        mask[rows, idx] = N / b
        g = (mask * d) @ K
        if isinstance(rule, GradientPenalty):
            c = rule.chunk_size
            parts = np.tile(np.arange(N), (paths, 1)) if rule.split == "fixed" else order
            Md = np.zeros_like(d)
            for j in range(N // c):
                P = parts[:, j * c:(j + 1) * c]  # [paths, c]
                Kjj = K[P[:, :, None], P[:, None, :]]  # [paths, c, c]
                Md[rows, P] = np.einsum("pmn,pn->pm", Kjj, d[rows, P])
            g = g + rule.strength / (2 * c) * Md @ K
        elif isinstance(rule, MicroBatchPenalty):
            mu = rule.micro_batch_size
            eps = rng.standard_normal((paths, b))
            for j in range(b // mu):
                P = idx[:, j * mu:(j + 1) * mu]
                dj = -eps[:, j * mu:(j + 1) * mu] if rule.kind == "fisher" else d[rows, P]
                Kjj = K[P[:, :, None], P[:, None, :]]
                inner = np.einsum("pmn,pn->pm", Kjj, dj)  # K_jj d_j
                z = np.zeros_like(d)
                z[rows, P] = inner
                g = g + 2 * rule.strength * N / (b * mu) * z @ K
        v = momentum * v - lr * g
        d = d + v
        out.append((d * d).sum(1) / (2 * N))
    L = np.array(out)
    return L.mean(1), L.std(1) / math.sqrt(paths)


def test_gradient_penalty_full_matches_the_modified_operators_eigendecomposition():
    N, c, lam, lr, mom, T = 24, 6, 3.0, 0.3, 0.4, 60
    p = Problem.synthetic(N, 1.5, 1.0, basis="random", seed=2)
    K, d0 = p.K.numpy(), p.d0.numpy()
    M = sla.block_diag(*[K[i:i + c, i:i + c] for i in range(0, N, c)])
    A = K @ (np.eye(N) + lam / (2 * c) * M)
    mu, V = np.linalg.eig(A)  # d_t = V x_t, each x_t a scalar heavy-ball recursion in closed form
    coef = np.linalg.solve(V, d0)
    m = 1 + mom - lr * mu
    disc = np.sqrt(m * m - 4 * mom + 0j)
    z1, z2 = (m + disc) / 2, (m - disc) / 2  # x_t = a z1^t + b z2^t, x_0 = 1, x_1 = 1 - lr mu (v_0 = 0)
    a = (1 - lr * mu - z2) / (z1 - z2)
    loss = [np.linalg.norm((V * (a * z1 ** t + (1 - a) * z2 ** t)) @ coef) ** 2 / (2 * N) for t in range(T + 1)]
    run = full.run(p, [(lr, mom, N)], T, update=GradientPenalty(lam, c), progress=False)
    np.testing.assert_allclose(run.loss[0], np.real(loss), rtol=1e-10)
    lin = linearized.run(p, [(lr, mom, N)], T, update=GradientPenalty(lam, c), progress=False)  # a second code
    np.testing.assert_allclose(lin.loss[0], run.loss[0], rtol=1e-12)
    plain = full.run(p, [(lr, mom, N)], T, progress=False)
    assert abs(run.loss[0, -1] / plain.loss[0, -1] - 1) > 0.02, "the penalty must change the curve"


@pytest.mark.parametrize("rule", [GradientPenalty(2.0, 4, "reshuffle"), MicroBatchPenalty(1.0, 2),
                                  MicroBatchPenalty(1.0, 2, kind="fisher")], ids=lambda r: r.describe()["update"]
                         + "-" + str(getattr(r, "split", getattr(r, "kind", ""))))
def test_penalties_match_a_numpy_monte_carlo(rule):
    p = Problem.synthetic(16, 1.5, 1.0, basis="random", seed=1)
    b = 16 if isinstance(rule, GradientPenalty) else 8
    lr, mom, T = 0.4, 0.2, 8
    mean, se = penalty_monte_carlo(p, lr, mom, b, rule, T, paths=12000, seed=5)
    run = linearized.run(p, [(lr, mom, b)], T, repeats=12000, update=rule, seed=11, progress=False)
    z = (run.loss[0, 1:] - mean[1:]) / np.hypot(run.loss_se[0, 1:], se[1:])
    assert np.all(np.abs(z) < 4.5), z
    plain = linearized.run(p, [(lr, mom, b)], T, repeats=12000, seed=11, progress=False)
    assert np.max(np.abs(plain.loss[0, 1:] - mean[1:]) / se[1:]) > 6, "the MC must tell the penalty from plain SGD"


def test_zero_strength_penalty_is_sgd():
    p = Problem.synthetic(16, 1.5, 1.0, basis="random", seed=1, n_test=8)
    a = linearized.run(p, [(0.4, 0.2, 8)], 10, repeats=20, update=MicroBatchPenalty(0.0, 4), progress=False)
    b = linearized.run(p, [(0.4, 0.2, 8)], 10, repeats=20, progress=False)
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.test_loss, b.test_loss)


def test_penalty_bad_input():
    p = Problem.synthetic(16, 1.5, 1.0, basis="random", seed=1)
    with pytest.raises(ValueError, match="strength must be a finite number >= 0, got strength=-1"):
        GradientPenalty(-1, 4)
    with pytest.raises(ValueError, match="micro_batch_size=3 must divide every batch size, got batch_size=8"):
        linearized.run(p, [(0.4, 0.0, 8)], 5, update=MicroBatchPenalty(1.0, 3), progress=False)
    with pytest.raises(ValueError, match="chunk_size=5 must divide the number of training points N=16"):
        full.run(p, [(0.4, 0.0, 16)], 5, update=GradientPenalty(1.0, 5), progress=False)
    with pytest.raises(ValueError, match="every batch_size must be N=16"):
        full.run(p, [(0.4, 0.0, 4)], 5, update=GradientPenalty(1.0, 4), progress=False)
    with pytest.raises(UnsupportedUpdate, match=r"GradientPenalty\(split='fixed'\) only"):
        full.run(p, [(0.4, 0.0, 16)], 5, update=GradientPenalty(1.0, 4, "reshuffle"), progress=False)
    with pytest.raises(UnsupportedUpdate, match="sd regime cannot run update=mb_penalty"):
        sd.run(p, [(0.4, 0.0, 8)], 5, update=MicroBatchPenalty(1.0, 4), progress=False)


# ------------------------------------------------------------------------------------------------ the network
def _linear_net_problem(N=16, D=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.randn(N, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    model = torch.nn.Linear(D, 1).double()
    return problem_from_network(model, X, y)


@pytest.mark.parametrize("rule", [SVAG(3), NoisyGD(), GradientPenalty(2.0, 4), GradientPenalty(2.0, 4, "reshuffle"),
                                  MicroBatchPenalty(1.5, 2), MicroBatchPenalty(1.5, 2, kind="fisher")],
                         ids=lambda r: str(r.describe()))
def test_nn_rules_on_a_linear_model_equal_the_linearized_formulas(rule):
    """A linear model is its own linearization, so the network trained by double backprop (penalties), two
    batches (SVAG) or the noisy full gradient must follow the linearized regime's explicit formulas path by path
    (both draw the same batches, partitions and Gaussians from the same streams)."""
    p = _linear_net_problem()
    b = 16 if isinstance(rule, (NoisyGD, GradientPenalty)) else 8
    if isinstance(rule, NoisyGD):
        b = 4  # the noise level of batch size 4 on the full-batch gradient
    cfg = [(0.5, 0.3, b)]
    a = nn.run(p, cfg, 12, log_steps=list(range(13)), repeats=3, seed=4, update=rule, progress=False)
    lin = linearized.run(p, cfg, 12, log_steps=list(range(13)), repeats=3, seed=4, update=rule, progress=False)
    np.testing.assert_allclose(a.loss, lin.loss, rtol=1e-10)
    np.testing.assert_allclose(a.loss_se, lin.loss_se, rtol=1e-8, atol=1e-14)


def test_nn_penalty_gradient_matches_classic_autograd_double_backprop():
    """A small MLP trained 3 steps with GradientPenalty: the regime (torch.func, nested grad, vmapped) against a
    plain loop with torch.autograd.grad(create_graph=True), to 1e-10."""
    from gfsgd.models import MLP
    N, c, lam, lr = 12, 4, 0.7, 0.4
    g = torch.Generator().manual_seed(1)
    X = torch.randn(N, 3, generator=g, dtype=torch.float64)
    y = torch.randn(N, generator=g, dtype=torch.float64)
    model = MLP(3, width=7, seed=2, dtype=torch.float64)
    p = problem_from_network(model, X, y)
    run = nn.run(p, [(lr, 0.0, N)], 3, log_steps=[0, 1, 2, 3], update=GradientPenalty(lam, c), progress=False)
    scale = p.network.lr_scale("cpu")  # lr_nn = alpha * N / lambda_max(K_emp); penalty lam / lambda_max
    lam_raw = lam * scale / N
    net = MLP(3, width=7, seed=2, dtype=torch.float64)
    params = list(net.parameters())
    losses = []
    for _ in range(3):
        r = net(X).reshape(-1) - y
        total = 0.5 * (r * r).mean()
        pen = 0
        for k in range(N // c):
            rk = net(X[k * c:(k + 1) * c]).reshape(-1) - y[k * c:(k + 1) * c]
            gk = torch.autograd.grad(0.5 * (rk * rk).mean(), params, create_graph=True)
            pen = pen + sum((t * t).sum() for t in gk)
        grads = torch.autograd.grad(total + lam_raw / (4 * (N // c)) * pen, params)
        with torch.no_grad():
            for prm, gr in zip(params, grads):
                prm -= lr * scale * gr
            r = net(X).reshape(-1) - y
            losses.append(float(0.5 * (r * r).mean()))
    np.testing.assert_allclose(run.loss[0, 1:], losses, rtol=1e-10)


# ------------------------------------------------------------------------------------------------ normalized GD
from gfsgd.updates import Normalized  # noqa: E402


@pytest.mark.parametrize("rule", [Normalized("small_batch", small_batch_size=2), Normalized(0.05)],
                         ids=["small_batch", "fixed"])
def test_normalized_gd_network_equals_linearized_on_a_linear_model(rule):
    """Norms in parameter space by autograd (nn) against the kernel quadratic form u^T K_BB u (linearized)."""
    p = _linear_net_problem()
    cfg = [(0.5, 0.3, 8), (0.3, 0.0, 16)]
    a = nn.run(p, cfg, 10, log_steps=list(range(11)), repeats=3, seed=2, update=rule, progress=False)
    lin = linearized.run(p, cfg, 10, log_steps=list(range(11)), repeats=3, seed=2, update=rule, progress=False)
    np.testing.assert_allclose(a.loss, lin.loss, rtol=1e-10)


def test_normalized_gd_step_has_the_target_norm():
    """One step by hand from the recorded batch: the residual moves by -s alpha (N/b) K[:, B] d_B with
    s = target / sqrt(u^T K_BB u), u = alpha (N/b) d_B."""
    from gfsgd.regimes._engine import sample_batches, streams_for
    p = Problem.synthetic(16, 1.5, 1.0, basis="random", seed=3)
    K, d0, N, b, lr, target = p.K.numpy(), p.d0.numpy(), 16, 4, 0.5, 0.02
    run = linearized.run(p, [(lr, 0.0, b)], 1, log_steps=[0, 1], update=Normalized(target), seed=7, progress=False)
    B = sample_batches(streams_for(7, 1), 0, N, b, False, "cpu")[0].numpy()
    u = lr * N / b * d0[B]
    s = target / np.sqrt(u @ K[np.ix_(B, B)] @ u)
    d1 = d0 - s * K[:, B] @ u
    np.testing.assert_allclose(run.loss[0, 1], d1 @ d1 / (2 * N), rtol=1e-12)


def test_normalized_bad_input():
    with pytest.raises(ValueError, match="small_batch_size must be an integer >= 1, got small_batch_size=None"):
        Normalized("small_batch")
    with pytest.raises(ValueError, match="target must be 'small_batch' or a finite number > 0, got target=0"):
        Normalized(0)
    p = Problem.synthetic(16, 1.5, 1.0, basis="random", seed=1)
    with pytest.raises(ValueError, match="small_batch_size=8 must be <= every batch size, got batch_size=4"):
        linearized.run(p, [(0.4, 0.0, 4)], 5, update=Normalized("small_batch", 8), progress=False)
    with pytest.raises(UnsupportedUpdate, match="full regime cannot run update=normalized"):
        full.run(p, [(0.4, 0.0, 4)], 5, update=Normalized(1.0), progress=False)


def test_nn_noisy_gd_mean_matches_sgds_exact_curve():
    """The network (a linear model: its own linearization) trained by noisy GD: its mean loss over paths is SGD's
    exact second-moment curve of the same batch size, within Monte-Carlo error."""
    p = _linear_net_problem(N=16, D=5, seed=3)
    cfg = [(0.4, 0.0, 4)]
    exact = full.run(p, cfg, 15, progress=False)
    run = nn.run(p, cfg, 15, log_steps=list(range(16)), repeats=3000, update=NoisyGD(), seed=1, progress=False)
    z = (run.loss - exact.loss)[:, 1:] / run.loss_se[:, 1:]
    assert np.all(np.abs(z) < 4.5), z
