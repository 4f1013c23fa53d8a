"""gfsgd.regimes.nn: the learning-rate conversion (exact linearised dynamics at small lr, batch by batch),
torch.optim.SGD equivalence, the linearisation of a wide network against the full and linearized regimes,
divergence handling, validation loss and errors."""
import numpy as np
import pytest
import torch
from torch import nn as tnn

from gfsgd import Problem, problem_from_network
from gfsgd.data import load_dataset
from gfsgd.models import MLP
from gfsgd.ntk import NetworkProblem, network_output
from gfsgd.regimes import full, linearized, nn


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small: one intra-op thread is as fast, and immune to a busy machine (OpenMP
    barriers of 2 threads on 2 shared cores stall for whole time slices)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def kernel_path(problem, cfg, batches, n_steps):
    """The kernel regimes' v-form along given batches: g = (N/b) K[:, B] d[B], v' = -a g + beta v, d' = d + v'."""
    a, beta, b = cfg
    K, d = problem.K, problem.d0.clone()
    N = problem.N
    v = torch.zeros_like(d)
    out = [d @ d / (2 * N)]
    for t in range(n_steps):
        idx = batches[t, :b]
        v = -a * (N / b) * (K[:, idx] @ d[idx]) + beta * v
        d = d + v
        out.append(d @ d / (2 * N))
    return torch.stack(out).numpy()


@pytest.fixture(scope="module")
def wide():
    """Width-4096 one-hidden-layer ReLU network on 48 synthetic points in 8 dimensions."""
    X, y = load_dataset("synthetic", 48, seed=0, dim=8)
    return problem_from_network(MLP(8, width=4096, depth=2, seed=0), X, y, device="cpu")


def test_lr_conversion_reproduces_the_kernel_dynamics(wide):
    """lr_nn = alpha N / lambda_max(K_emp): at small alpha the network's loss follows the kernel v-form along
    the same batches. Measured max relative gap over 200 steps: 2e-4 to 7e-4; a wrong conversion
    (e.g. a factor N/b or b/N off) gives O(1) gaps."""
    cfgs = [(0.02, 0.0, 6), (0.02, -0.4, 6), (0.01, 0.6, 16)]
    c = nn.run(wide, cfgs, 200, record_batches=True, progress=False, device="cpu", log_steps=np.arange(201))
    default = nn.run(wide, cfgs, 200, progress=False, device="cpu")  # default logging: log-spaced
    assert default.steps[:101].tolist() == list(range(101)) and 100 < len(default.steps) < 201
    np.testing.assert_allclose(default.loss[0], c.loss[0, default.steps], rtol=1e-12)
    assert c.regime == "nn" and c.loss.shape == (3, 201) and c.status == ["ok"] * 3
    assert abs(c.meta["lr_scale"] - wide.N / wide.lambda_max_raw) < 1e-12
    for g, cfg in enumerate(cfgs):
        ref = kernel_path(wide, cfg, c.meta["batches"][g], 200)
        gap = np.max(np.abs(c.loss[g] - ref) / ref)
        assert gap < 2e-3, (cfg, gap)
        assert ref[-1] < 0.9 * ref[0]  # the loss actually moved


def test_linearisation_of_a_wide_network(wide):
    """Width 4096, alpha = 0.1, 300 steps: the network against the exact `full` regime and the `linearized`
    regime. Full batch (deterministic): max relative gap < 2% (measured 0.77%, the O(alpha / sqrt(width))
    nonlinearity). b = 8: the mean of 24 independent network paths (24 copies of the config, trained
    together) against `full` over steps 10-300: < 10% (measured 1.3%, mostly sampling noise)."""
    n = 300
    log = np.arange(0, n + 1, 5)  # the network's full loss is evaluated at logged steps only
    gd = (0.1, 0.0, wide.N)
    c = nn.run(wide, [gd] + [(0.1, 0.0, 8)] * 24, n, log_steps=log, progress=False, device="cpu")
    f = full.run(wide, [gd, (0.1, 0.0, 8)], n, log_steps=log, progress=False, device="cpu")
    lin = linearized.run(wide, [gd], n, log_steps=log, progress=False, device="cpu")
    steps = slice(1, None)
    gap_full = np.max(np.abs(c.loss[0, steps] - f.loss[0, steps]) / f.loss[0, steps])
    gap_lin = np.max(np.abs(c.loss[0, steps] - lin.loss[0, steps]) / lin.loss[0, steps])
    assert gap_full < 0.02 and gap_lin < 0.02, (gap_full, gap_lin)
    mean = c.loss[1:].mean(0)
    late = log >= 10
    gap_sgd = np.max(np.abs(mean[late] - f.loss[1, late]) / f.loss[1, late])
    assert gap_sgd < 0.10, gap_sgd
    assert f.loss[1, -1] < 0.7 * f.loss[1, 0]


def test_equals_torch_sgd_for_constant_lr():
    """v-form with constant lr == torch.optim.SGD(momentum=beta, dampening=0) on 0.5 * batch MSE."""
    X, y = load_dataset("digits", 40, seed=0)
    model = MLP(64, width=32, depth=3, activation="tanh", sigma_b=0.2, seed=1)
    net = NetworkProblem(model, X, y)
    cfg = (0.7, 0.5, 5)
    c = nn.run(net, [cfg], 30, record_batches=True, progress=False, device="cpu")
    ref = MLP(64, width=32, depth=3, activation="tanh", sigma_b=0.2, seed=1).double()
    opt = torch.optim.SGD(ref.parameters(), lr=cfg[0] * c.meta["lr_scale"], momentum=cfg[1])
    losses = [0.5 * ((ref(X) - y) ** 2).mean().item()]
    for t in range(30):
        idx = c.meta["batches"][0][t, :cfg[2]]
        opt.zero_grad()
        (0.5 * ((ref(X[idx]) - y[idx]) ** 2).mean()).backward()
        opt.step()
        losses.append(0.5 * ((ref(X) - y) ** 2).mean().item())
    np.testing.assert_allclose(c.loss[0], losses, rtol=1e-10)


def test_the_loss_probe_logs_the_same_training_on_a_fixed_subset():
    """loss_probe=n: the training is unchanged (torch.optim.SGD along the recorded batches) and each logged loss is
    the mean over the n probe points (meta["loss_probe_index"], distinct), L_0 included."""
    X, y = load_dataset("digits", 40, seed=0)
    model = MLP(64, width=32, depth=3, activation="tanh", sigma_b=0.2, seed=1)
    cfg = (0.7, 0.5, 5)
    c = nn.run(NetworkProblem(model, X, y), [cfg], 20, record_batches=True, progress=False, device="cpu",
               loss_probe=15)
    idx = c.meta["loss_probe_index"]
    assert c.meta["loss_probe"] == 15 and idx.unique().numel() == 15 and int(idx.max()) < 40
    ref = MLP(64, width=32, depth=3, activation="tanh", sigma_b=0.2, seed=1).double()
    opt = torch.optim.SGD(ref.parameters(), lr=cfg[0] * c.meta["lr_scale"], momentum=cfg[1])
    losses = [0.5 * ((ref(X[idx]) - y[idx]) ** 2).mean().item()]
    for t in range(20):
        b = c.meta["batches"][0][t, :cfg[2]]
        opt.zero_grad()
        (0.5 * ((ref(X[b]) - y[b]) ** 2).mean()).backward()
        opt.step()
        losses.append(0.5 * ((ref(X[idx]) - y[idx]) ** 2).mean().item())
    np.testing.assert_allclose(c.loss[0], losses, rtol=1e-10)
    whole = nn.run(NetworkProblem(model, X, y), [cfg], 20, progress=False, device="cpu", loss_probe=40)
    assert "loss_probe_index" not in whole.meta and whole.meta["loss_probe"] == 40  # n >= N: all the points
    with pytest.raises(Exception, match="loss_probe must be"):
        nn.run(NetworkProblem(model, X, y), [cfg], 2, progress=False, device="cpu", loss_probe=-1)


def test_divergence_and_order_and_test_loss():
    ds = load_dataset("digits", 60, seed=0, n_test=20)
    model = MLP(64, width=64, depth=2, seed=0)
    net = NetworkProblem(model, ds.X, ds.y, ds.X_test, ds.y_test)
    cfgs = [(0.5, 0.0, 10), (50.0, 0.0, 4), (0.5, 0.3, 4), (1.0, 0.0, 60)]
    c = nn.run(net, cfgs, 50, progress=False, device="cpu")
    assert c.configs == [(0.5, 0.0, 10), (50.0, 0.0, 4), (0.5, 0.3, 4), (1.0, 0.0, 60)]
    assert c.status == ["ok", "diverged", "ok", "ok"]
    assert c.diverged_step[1] is not None and np.isnan(c.loss[1, -1]) and np.isfinite(c.loss[[0, 2, 3], -1]).all()
    assert c.meta["batch_groups"] == 3
    val = c.test_loss
    assert val.shape == c.loss.shape and np.isnan(val[1, -1]) and np.isfinite(val[0]).all()
    d0 = network_output(model, ds.X_test, device="cpu") - ds.y_test
    assert abs(val[0, 0] - 0.5 * (d0 ** 2).mean().item()) < 1e-12
    df = c.to_frame()
    assert "test_loss" in df and np.allclose(df["test_loss"].to_numpy(), val.reshape(-1), equal_nan=True)
    st = c.status_frame()
    j = np.nanargmin(val[0])
    assert st.loc[0, "best_step"] == c.steps[j] and st.loc[0, "best_test_loss"] == val[0, j]
    # logging only some steps: the loss at the logged steps is unchanged (same seed, same batches)
    c2 = nn.run(net, cfgs[:1], 50, log_steps=[0, 10, 50], progress=False, device="cpu")
    np.testing.assert_allclose(c2.loss[0], c.loss[0, [0, 10, 50]], rtol=1e-12)


def test_errors():
    X, y = load_dataset("synthetic", 20, seed=0, dim=3)
    plain = Problem.synthetic(20, 1.5, 1.0)
    with pytest.raises(ValueError, match="needs the network"):
        nn.run(plain, [(0.1, 0.0, 2)], 5, progress=False)
    with pytest.raises(ValueError, match="batch_size must be in"):
        nn.run((MLP(3, 8), X, y), [(0.1, 0.0, 50)], 5, progress=False, device="cpu")
    with pytest.raises(ValueError, match="the model returns 2 output.s. per example but y has 1"):
        nn.run((tnn.Linear(3, 2), X, y), [(0.1, 0.0, 2)], 5, progress=False, device="cpu")


def test_train_4_regimes_script(tmp_path):
    """The script's driver writes one run folder with all four regimes and the comparison plot."""
    from gfsgd.network_cli import network_main
    from gfsgd.results import load
    out = network_main(["nn", "linearized", "sd", "full"], script="train_4_regimes", choose_regimes=True,
                       description="test", argv=["--dataset", "digits", "--N", "32", "--width", "16",
                                                 "--n_steps", "20", "--lr", "0.5", "--momentum", "0", "-0.3",
                                                 "--batch_size", "4", "--repeats", "3", "--tau", "1", "-1",
                                                 "--n_test", "8", "--save_dir", str(tmp_path / "run"),
                                                 "--no_progress", "--device", "cpu"])
    res = load(out)
    assert set(res.curves["regime"]) == {"nn", "linearized", "sd", "full"}
    assert res.curves["test_loss"].notna().all()  # every regime reports the test loss (n_test = 8)
    assert (out / "regime_comparison.png").is_file() and res.config["lambda_max_raw"] > 0
    assert len(res.status[res.status["regime"] == "sd"]) == 4  # 2 configs x 2 taus
    with pytest.raises(SystemExit, match="larger than the dataset"):
        network_main(["nn"], script="train_nn", description="test",
                     argv=["--dataset", "digits", "--N", "5000", "--save_dir", str(tmp_path / "x")])


def test_repeats_equal_serial_single_runs():
    """repeats=R trains R paths per config together (one vmap over R x configs); path r draws its batches
    from seed + r, so the R-path mean and standard error equal R serial runs with seeds 0..R-1 (same chunk
    size) to 1e-12 (the batched matmuls may round differently, hence not bitwise). Also shown with
    independent initialisations: then path r starts from model.reinitialized(r)."""
    X, y = load_dataset("digits", 40, seed=0)
    model = MLP(64, width=24, depth=2, seed=3)
    net = NetworkProblem(model, X, y)
    cfgs = [(0.8, 0.0, 4), (0.5, -0.3, 4), (0.6, 0.4, 10)]
    R = 20
    for init in ("shared", "independent"):
        rep = nn.run(net, cfgs, 25, repeats=R, init=init, progress=False, device="cpu", chunk_size=2)
        singles = []
        for r in range(R):
            m = model.reinitialized(r) if init == "independent" else model
            one = nn.run(NetworkProblem(m, X, y, lambda_max_raw=net.lambda_max("cpu")), cfgs, 25, seed=r,
                         progress=False, device="cpu", chunk_size=2)
            singles.append(one.loss)
        singles = np.stack(singles)  # [R, G, T]
        np.testing.assert_allclose(rep.loss[:, 1:], singles.mean(0)[:, 1:], rtol=1e-12, atol=0)
        np.testing.assert_allclose(rep.loss_se[:, 1:], singles.std(0, ddof=1)[:, 1:] / np.sqrt(R), rtol=1e-9)
        assert rep.meta["repeats"] == R and rep.meta["init"] == init
        assert (rep.loss_se[:, -1] > 0).all()  # the paths differ
    with pytest.raises(ValueError, match="init must be"):
        nn.run(net, cfgs, 2, init="fresh", progress=False, device="cpu")
    with pytest.raises(ValueError, match="reinitialized"):
        nn.run((tnn.Linear(64, 1), X, y), cfgs, 2, init="independent", repeats=2, progress=False, device="cpu")
    with pytest.raises(ValueError, match="repeats must be"):
        nn.run(net, cfgs, 2, repeats=0, progress=False, device="cpu")


@pytest.mark.parametrize("sched", ["cosine", "jacobi"])
def test_schedules_against_a_hand_written_loop(sched):
    """Under a cosine lr schedule (with warm-up) and the Jacobi (lr, momentum) pair, the nn regime equals a
    plain loop written here: v <- -lr_t g + beta_t v, w <- w + v on 0.5 * batch MSE, lr_t = alpha_t N /
    lambda_max, along the recorded batches, with the schedule's formula written out independently."""
    import math

    from gfsgd import schedules
    X, y = load_dataset("digits", 30, seed=1)
    model = MLP(64, width=16, depth=2, activation="tanh", seed=2)
    net = NetworkProblem(model, X, y)
    n, alpha, beta0, b = 24, 0.6, 0.2, 5
    if sched == "cosine":
        schedule = schedules.from_name("cosine", n, warmup_steps=4, final_factor=0.1)

        def lr_at(t):
            if t < 4:
                return alpha * (t + 1) / 4
            prog = (t - 4) / (n - 4)
            return alpha * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog)))

        def mom_at(t):
            return beta0
    else:
        schedule = schedules.jacobi(0.5, 1.0)
        a_, b_ = 0.5, 1.0

        def lr_at(t):
            return alpha * (2 * t + a_ + b_ + 1) * (2 * t + a_ + b_ + 2) / (2 * (t + a_ + 1) * (t + a_ + b_ + 1))

        def mom_at(t):
            return t * (t + b_) * (2 * t + a_ + b_ + 2) / ((t + a_ + 1) * (t + a_ + b_ + 1) * (2 * t + a_ + b_)) \
                if t > 0 else 0.0
    c = nn.run(net, [(alpha, beta0, b)], n, schedule=schedule, record_batches=True, progress=False, device="cpu")
    scale = c.meta["lr_scale"]
    ref = MLP(64, width=16, depth=2, activation="tanh", seed=2).double()
    params = list(ref.parameters())
    vel = [torch.zeros_like(p) for p in params]
    losses = [0.5 * ((ref(X) - y) ** 2).mean().item()]
    for t in range(n):
        idx = c.meta["batches"][0][t, :b]
        ref.zero_grad()
        (0.5 * ((ref(X[idx]) - y[idx]) ** 2).mean()).backward()
        with torch.no_grad():
            for p, v in zip(params, vel):
                v.mul_(mom_at(t)).sub_(lr_at(t) * scale * p.grad)
                p.add_(v)
        losses.append(0.5 * ((ref(X) - y) ** 2).mean().item())
    np.testing.assert_allclose(c.loss[0], losses, rtol=1e-10)
    assert losses[-1] < 0.9 * losses[0]  # it trains (the exact comparison is the check above)


def test_held_out_set_of_a_network_problem():
    """problem_from_network(..., X_test, y_test): K_test is the cross block of the NTK of the joint inputs
    (computed here in one piece) over the same lambda_max, r_test the network's initial test residual; and at
    small alpha the network's measured test loss follows the kernel v-form of the test residual along the
    recorded batches, r' = r + v_te, v_te' = -alpha (N/b) K_test[:, B] d[B] + beta v_te (gap < 2e-3)."""
    from gfsgd.ntk import empirical_ntk
    X, y = load_dataset("synthetic", 48, seed=0, dim=8)
    Xt, yt = load_dataset("synthetic", 20, seed=1, dim=8)
    model = MLP(8, width=4096, depth=2, seed=0)
    p = problem_from_network(model, X, y, X_test=Xt, y_test=yt, device="cpu")
    joint = empirical_ntk(model, torch.cat([X, Xt]), device="cpu", method="jacobian")
    np.testing.assert_allclose(p.K_test.numpy(), (joint[48:, :48] / p.lambda_max_raw).numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(p.r_test.numpy(), (network_output(model, Xt, device="cpu") - yt).numpy(), rtol=1e-12)
    cfg = (0.02, -0.3, 6)
    c = nn.run(p, [cfg], 150, record_batches=True, progress=False, device="cpu", log_steps=np.arange(151))
    a, beta, b = cfg
    K, Kt, d, r = p.K, p.K_test, p.d0.clone(), p.r_test.clone()
    v, vt = torch.zeros_like(d), torch.zeros_like(r)
    ref = [r @ r / (2 * 20)]
    for t in range(150):
        idx = c.meta["batches"][0][t, :b]
        v, vt = -a * (48 / b) * (K[:, idx] @ d[idx]) + beta * v, -a * (48 / b) * (Kt[:, idx] @ d[idx]) + beta * vt
        d, r = d + v, r + vt
        ref.append(r @ r / (2 * 20))
    ref = torch.stack(ref).numpy()
    gap = np.max(np.abs(c.test_loss[0] - ref) / ref)
    assert gap < 2e-3, gap
    assert abs(ref[-1] - ref[0]) > 0.05 * ref[0]  # the test loss moved
