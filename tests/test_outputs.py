"""C outputs per example (docs/theory.md#outputs): batches sample examples, so the noise of the batch gradient is
blockdiag over the examples' C x C blocks. Checked against independent computations: Monte Carlo of the sampled
regime, C independent one-output problems, and C = 1 against the one-output code path."""
import numpy as np
import pytest
import torch

from gfsgd import Problem
from gfsgd.outputs import example_rows, output_profiles
from gfsgd.regimes import full, linearized, spectral_diagonal as sd
from gfsgd.updates import UnsupportedUpdate


def random_problem(N=12, C=3, seed=0):
    """A generic [NC, NC] kernel (not class-diagonal) and a residual [N, C]."""
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(N * C, 2 * N * C, generator=g, dtype=torch.float64)
    K = J @ J.T / J.shape[1] + 0.3 * torch.kron(torch.randn(N, N, generator=g, dtype=torch.float64).pow(2),
                                                  torch.ones(C, C, dtype=torch.float64)) / N
    K = 0.5 * (K + K.T)
    K = K + (1e-9 - min(0.0, float(torch.linalg.eigvalsh(K).min()))) * torch.eye(N * C, dtype=torch.float64)
    d0 = torch.randn(N, C, generator=g, dtype=torch.float64)
    return Problem.from_kernel(K, d0)


def test_problem_counts_examples_and_outputs():
    p = random_problem(N=10, C=3)
    assert p.n_outputs == 3 and p.N == 10 and p.n_modes == 30
    assert p.loss0 == pytest.approx(float((p.d0 ** 2).sum()) / (2 * 10))  # |F - Y|_F^2 / (2N)
    F = p.profiles
    assert F.shape == (30, 9)
    np.testing.assert_allclose(F[:, [0, 4, 8]].sum(1).numpy(), 1.0, rtol=1e-12)  # tr M^k = |u_k|^2 = 1
    q = Problem.synthetic(16, 1.5, 1.0, seed=0)
    assert q.n_outputs == 1 and q.N == 16 and torch.equal(q.profiles, torch.ones(16, 1, dtype=q.dtype))


def test_example_rows_keep_an_examples_outputs_together():
    idx = torch.tensor([[2, 0], [1, 3]])
    assert example_rows(idx, 3).tolist() == [[6, 7, 8, 0, 1, 2], [3, 4, 5, 9, 10, 11]]
    assert example_rows(idx, 1) is idx


def test_full_regime_matches_monte_carlo_of_example_sampling():
    """The exact batch-averaged second moments (blockdiag noise) against the mean of sampled paths, within
    sampling error."""
    p = random_problem(N=12, C=3, seed=1)
    configs = [(0.6, 0.0, 3), (0.4, 0.5, 6)]
    T = 30
    exact = full.run(p, configs, T, progress=False, log_steps=[0, 10, T])
    mc = linearized.run(p, configs, T, repeats=4000, progress=False, log_steps=[0, 10, T])
    z = (mc.loss[:, 1:] - exact.loss[:, 1:]) / mc.loss_se[:, 1:]
    assert np.all(np.abs(z) < 4.5), z


def test_sampling_examples_is_not_sampling_rows():
    """With outputs that move together (a kernel coupling an example's outputs, correlated residuals), treating
    the N C rows as independent examples (diag noise) misses the sampled paths by many standard errors, while the
    example-sampled exact moments match them."""
    g = torch.Generator().manual_seed(5)
    N, C = 10, 3
    A = torch.randn(N, 3 * N, generator=g, dtype=torch.float64)
    K = A @ A.T / A.shape[1]
    Theta = torch.kron(K, torch.ones(C, C, dtype=torch.float64) + 0.2 * torch.eye(C, dtype=torch.float64))
    base = torch.randn(N, 1, generator=g, dtype=torch.float64)
    p = Problem.from_kernel(Theta, base + 0.1 * torch.randn(N, C, generator=g, dtype=torch.float64))
    configs = [(0.9, 0.0, 2)]
    T = 20
    exact = full.run(p, configs, T, progress=False, log_steps=[0, T])
    mc = linearized.run(p, configs, T, repeats=4000, progress=False, log_steps=[0, T])
    rows = Problem(p.eigvals, p.coef, p.eigvecs)  # the N C rows as independent examples (the wrong sampling)
    wrong = full.run(rows, [(a, m, b * C) for a, m, b in configs], T, progress=False, log_steps=[0, T])
    wrong_loss = wrong.loss[:, -1] * rows.N / p.N  # the same |d|^2, per example
    se = mc.loss_se[:, -1]
    assert np.all(np.abs(mc.loss[:, -1] - exact.loss[:, -1]) < 4.5 * se)
    assert np.all(np.abs(mc.loss[:, -1] - wrong_loss) > 8 * se), (mc.loss[:, -1], wrong_loss, se)


def class_diagonal(N=16, C=3, seed=0):
    """Theta = K (x) I_C with a Hadamard eigenbasis (|u_ik|^2 = 1/N: SD with tau = 1 is exact), and C scalar
    problems with the same K and the columns of the residual."""
    base = Problem.synthetic(N, 1.5, 1.0, seed=seed, basis="hadamard")
    K = base.K
    g = torch.Generator().manual_seed(seed + 7)
    D = torch.randn(N, C, generator=g, dtype=torch.float64)
    Theta = torch.kron(K, torch.eye(C, dtype=torch.float64))
    return Problem.from_kernel(Theta, D), [Problem.from_kernel(K, D[:, a]) for a in range(C)]


def test_class_diagonal_kernel_is_c_independent_scalar_problems():
    p, singles = class_diagonal()
    configs = [(0.8, 0.0, 2), (0.5, 0.6, 4), (1.5, -0.3, 8)]
    T = 60
    ref = sum(full.run(q, configs, T, progress=False).loss for q in singles)  # L = sum over outputs
    np.testing.assert_allclose(full.run(p, configs, T, progress=False).loss, ref, rtol=1e-10)
    # SD with tau = 1 is exact on a Hadamard basis, and with the output profiles it stays exact here (the
    # eigenvectors of each C-fold eigenvalue are any rotation of (u_k e_a), but sum_l <M^k, M^l> A_l is not)
    np.testing.assert_allclose(sd.run(p, configs, T, progress=False).loss, ref, rtol=1e-10)
    # without the profiles (the one-output coupling sum_l A_l over all N C modes) it is not
    flat = Problem(p.eigvals, p.coef, None, n_outputs=3, profiles=torch.ones(p.n_modes, 9) / 3)
    assert not np.allclose(sd.run(flat, configs, T, progress=False).loss[:, -1], ref[:, -1], rtol=0.05)


def test_sd_regime_on_a_generic_kernel_is_near_the_exact_one():
    p = random_problem(N=16, C=2, seed=3)
    configs = [(0.5, 0.0, 4), (0.3, 0.5, 8)]
    ex, ap = full.run(p, configs, 40, progress=False), sd.run(p, configs, 40, progress=False)
    rel = np.abs(ap.loss[:, -1] / ex.loss[:, -1] - 1)
    assert np.all(rel < 0.25), rel  # an approximation (the diagonal closure), not an identity


def test_one_output_is_the_scalar_code_path_bitwise():
    q = Problem.synthetic(24, 1.5, 1.0, seed=2)
    via_matrix = Problem.from_kernel(q.K, q.d0[:, None])  # d0 [N, 1]: C = 1
    assert via_matrix.n_outputs == 1
    plain = Problem.from_kernel(q.K, q.d0)
    cfg = [(0.5, 0.2, 4)]
    for regime in (full, sd):
        assert np.array_equal(regime.run(via_matrix, cfg, 20, progress=False).loss,
                              regime.run(plain, cfg, 20, progress=False).loss)
    assert np.array_equal(linearized.run(via_matrix, cfg, 20, repeats=3, progress=False).loss,
                          linearized.run(plain, cfg, 20, repeats=3, progress=False).loss)


def test_rules_that_assume_one_output_are_refused():
    p = random_problem(N=8, C=2)
    with pytest.raises(UnsupportedUpdate, match="with C = 2 outputs the full regime runs: sgd, svag"):
        full.run(p, [(0.5, 0.0, 2)], 3, update="ngd", progress=False)
    with pytest.raises(ValueError, match="M C rows"):  # a held-out set has whole examples (tests/test_accuracy.py)
        Problem(p.eigvals, p.coef, p.eigvecs, n_outputs=2, K_test=torch.ones(3, 16), r_test=torch.ones(3))


def test_save_and_load_keep_the_outputs(tmp_path):
    p = random_problem(N=6, C=2)
    q = Problem.load(p.save(tmp_path / "p.pt"))
    assert q.n_outputs == 2 and q.N == 6 and torch.equal(q.profiles, output_profiles(p.eigvecs, 2))


# ----------------------------------------------------------------------------------------- networks
def _net(C=3, D=5, width=16, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(D, width), torch.nn.Tanh(), torch.nn.Linear(width, C)).double()


def test_the_c_output_kernel_is_the_dense_jacobian_gram():
    """Theta[(i, a), (j, c)] = sum_p df_a(x_i)/dw_p df_c(x_j)/dw_p, against one dense torch.func Jacobian."""
    from torch.func import functional_call, jacrev
    from gfsgd.ntk import empirical_ntk
    m, X = _net(), torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    params = {k: v.detach() for k, v in m.named_parameters()}
    J = jacrev(lambda p: functional_call(m, p, (X,)))(params)  # {name: [7, 3, ...]}
    Jf = torch.cat([J[k].reshape(21, -1) for k in params], 1)
    for kw in (dict(), dict(block_size=2)):
        K = empirical_ntk(m, X, device="cpu", **kw)
        assert K.shape == (21, 21) and torch.equal(K, K.T)
        assert float((K - Jf @ Jf.T).abs().max()) < 1e-12
    Kx = empirical_ntk(m, X[:3], X[3:], device="cpu")
    assert float((Kx - (Jf @ Jf.T)[:9, 9:]).abs().max()) < 1e-12
    with pytest.raises(ValueError, match="one output per example"):
        empirical_ntk(m, X, method="structured", device="cpu")


def test_a_network_with_c_outputs_follows_its_linearisation_at_small_lr():
    """problem_from_network with one-hot-like targets Y [N, C]: the real network, trained by the nn regime on the
    summed squared loss with example batches, matches the full regime of its C-output kernel at a small step."""
    from gfsgd import problem_from_network
    from gfsgd.regimes import nn
    g = torch.Generator().manual_seed(2)
    N, C = 16, 3
    X = torch.randn(N, 5, dtype=torch.float64, generator=g)
    Y = torch.nn.functional.one_hot(torch.arange(N) % C, C).double() - 1.0 / C
    m = _net(C=C, width=256, seed=3)
    p = problem_from_network(m, X, Y, device="cpu")
    assert p.n_outputs == C and p.N == N and p.n_modes == N * C
    assert p.network.n_outputs == C
    cfg = [(0.05, 0.0, 4), (0.05, 0.5, 8)]
    T = 40
    real = nn.run(p, cfg, T, repeats=64, progress=False, log_steps=[0, T])
    exact = full.run(p, cfg, T, progress=False, log_steps=[0, T])
    assert real.loss[0, 0] == pytest.approx(p.loss0, rel=1e-10)
    rel = np.abs(real.loss[:, -1] / exact.loss[:, -1] - 1)
    assert np.all(rel < 0.05), (real.loss[:, -1], exact.loss[:, -1], real.loss_se[:, -1])
    with pytest.raises(ValueError, match="give y \\[N, C\\]"):
        problem_from_network(m, X, Y[:, 0], device="cpu")


def test_the_theory_refuses_c_outputs_until_it_has_them():
    import gfsgd.theory as th
    p = random_problem(N=6, C=2)
    with pytest.raises(ValueError, match="one output per example; this problem has C = 2"):
        th.loss_curve(p, 0.5, 0.0, 2, 10)
    with pytest.raises(ValueError, match="C = 2"):
        th.loss_at(p, 0.5, 0.0, 2, 10)


def test_the_c_output_sd_edge_is_where_the_sd_regime_starts_to_diverge():
    """critical_lr on a C-output problem (rho of the C^2 x C^2 matrix U(1) = 1) against the SD regime itself: just
    below the edge the loss decays, just above it grows (a long run, no theory inside the regime)."""
    import gfsgd.theory as th
    p = random_problem(N=16, C=3, seed=4)
    for beta, b in ((0.0, 1), (0.5, 2), (-0.3, 4)):
        edge = float(th.critical_lr(p, beta, b))
        assert edge < 2 * (1 + beta)  # the noise, not a mode, sets it at these batch sizes
        run = sd.run(p, [(0.97 * edge, beta, b), (1.03 * edge, beta, b)], 6000, log_steps=[0, 3000, 6000],
                     progress=False)
        assert run.loss[0, -1] < run.loss[0, 1] and run.status[0] == "ok", (beta, b, run.loss[0])
        assert run.status[1] == "diverged" or run.loss[1, -1] > run.loss[1, 1], (beta, b, run.loss[1])


def test_with_one_output_the_matrix_edge_is_the_scalar_edge():
    import gfsgd.theory as th
    q = Problem.synthetic(64, 1.5, 1.0, seed=0)
    beta, b = np.array([-0.4, 0.0, 0.6]), np.array([1, 4, 16])
    np.testing.assert_allclose(th.critical_lr_outputs(q, beta, b), th.critical_lr(q, beta, b), rtol=1e-9)


def test_class_diagonal_is_exact_on_a_class_diagonal_kernel_and_reports_the_rest():
    from gfsgd.classdiag import class_diagonal as approximate
    p, singles = class_diagonal()
    a, rep = approximate(p)
    assert rep["offdiag_rel"] < 1e-12 and rep["diag_spread_rel"] < 1e-12 and rep["lr_factor"] == pytest.approx(1)
    assert not a.has_basis and a.n_outputs == 3 and a.N == p.N
    cfg = [(0.8, 0.0, 2), (0.5, 0.6, 4)]
    ref = sum(full.run(q, cfg, 60, progress=False).loss for q in singles)
    np.testing.assert_allclose(sd.run(a, cfg, 60, progress=False).loss, ref, rtol=1e-9)
    # a generic kernel: the report is the off-diagonal blocks' share of |Theta|_F, computed here directly
    q = random_problem(N=10, C=2, seed=6)
    _, rep = approximate(q)
    T = q.K.reshape(10, 2, 10, 2)
    off = torch.cat([T[:, 0, :, 1].reshape(-1), T[:, 1, :, 0].reshape(-1)])
    assert rep["offdiag_rel"] == pytest.approx(float(off.norm() / q.K.norm()), rel=1e-10)


# ------------------------------------------------------------------------------------ cross-entropy
def test_cross_entropy_value_and_gradient_are_torchs():
    from gfsgd.losses import cross_entropy
    g = torch.Generator().manual_seed(0)
    out = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    lab = torch.tensor([0, 3, 1, 2, 3, 1])
    ref = torch.nn.functional.cross_entropy(out, lab, reduction="sum")
    (gref,) = torch.autograd.grad(ref, out)
    for Y in (torch.nn.functional.one_hot(lab, 4).double(), torch.nn.functional.one_hot(lab, 4).double() - 0.25):
        assert float(cross_entropy.value(out, Y).sum().detach()) == pytest.approx(float(ref.detach()), rel=1e-14)
        assert float((cross_entropy.gradient(out.detach(), Y) - gref).abs().max()) < 1e-15
    H = cross_entropy.curvature(out.detach())  # the softmax Hessian, against autograd's
    Href = torch.autograd.functional.hessian(lambda z: torch.nn.functional.cross_entropy(z[None], lab[:1]),
                                             out.detach()[0])
    assert float((H[0] - Href).abs().max()) < 1e-14


def _ce_problem(width=256, seed=0):
    from gfsgd import problem_from_network
    g = torch.Generator().manual_seed(seed)
    N, C = 24, 3
    X = torch.randn(N, 5, dtype=torch.float64, generator=g)
    Y = torch.nn.functional.one_hot(torch.arange(N) % C, C).double()
    return problem_from_network(_net(C=C, width=width, seed=seed + 1), X, Y, device="cpu"), Y


def test_linearized_cross_entropy_is_the_function_space_iteration():
    """Full batch: the linearized regime on cross-entropy equals f' = f + v', v' = beta v - alpha K (softmax(f) - y),
    written out here with numpy."""
    p, Y = _ce_problem(width=32)
    alpha, beta, T = 2.0, 0.5, 50
    run = linearized.run(p, [(alpha, beta, p.N)], T, loss="cross_entropy", progress=False, log_steps=[0, T])
    K = p.K.numpy()
    f = (p.d0 + Y.reshape(-1)).numpy()
    v = np.zeros_like(f)
    y = Y.numpy()

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def ce(f):
        z = f.reshape(-1, 3)
        return float(-(y * (z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1,
                     keepdims=True)))).sum() / len(z))
    l0 = ce(f)
    for _ in range(T):
        v = beta * v - alpha * K @ (softmax(f.reshape(-1, 3)) - y).reshape(-1)
        f = f + v
    assert run.loss[0, 0] == pytest.approx(l0, rel=1e-12)
    assert run.loss[0, -1] == pytest.approx(ce(f), rel=1e-10)


def test_a_wide_network_on_cross_entropy_follows_its_linearisation_at_small_lr():
    from gfsgd.regimes import nn
    p, _ = _ce_problem(width=512)
    cfg = [(0.2, 0.0, 4), (0.2, 0.5, 8)]
    real = nn.run(p, cfg, 60, loss="cross_entropy", repeats=32, progress=False, log_steps=[0, 60])
    lin = linearized.run(p, cfg, 60, loss="cross_entropy", repeats=32, progress=False, log_steps=[0, 60])
    assert real.loss[0, 0] == pytest.approx(lin.loss[0, 0], rel=1e-10)  # the same L_0
    assert np.all(real.loss[:, -1] < 0.9 * real.loss[:, 0])  # it trains
    rel = np.abs(real.loss[:, -1] / lin.loss[:, -1] - 1)
    assert np.all(rel < 0.03), (real.loss[:, -1], lin.loss[:, -1])
    with pytest.raises(ValueError, match="cannot run loss=cross_entropy"):
        full.run(p, cfg, 5, loss="cross_entropy", progress=False)


def test_the_gauss_newton_edge_of_cross_entropy():
    """Theta_GN = H^(1/2) Theta H^(1/2) (H: each example's softmax Hessian at the initial logits) against a dense
    block-diagonal construction; the squared loss's curvature 1 gives back the plain edge."""
    import gfsgd.theory as th
    p, Y = _ce_problem(width=32, seed=2)
    np.testing.assert_allclose(th.critical_lr_loss(p, [0.0, 0.5], [1, 4], loss="mse"),
                               th.critical_lr(p, [0.0, 0.5], [1, 4]), rtol=1e-9)
    gn, factor = th.gauss_newton_problem(p, "cross_entropy")
    f0 = (p.d0.reshape(p.N, 3) + Y).numpy()
    blocks = []
    for z in f0:
        s = np.exp(z - z.max())
        s /= s.sum()
        w, V = np.linalg.eigh(np.diag(s) - np.outer(s, s))
        blocks.append(V @ np.diag(np.sqrt(np.clip(w, 0, None))) @ V.T)
    Hs = np.zeros((3 * p.N, 3 * p.N))
    for i, b in enumerate(blocks):
        Hs[3 * i:3 * i + 3, 3 * i:3 * i + 3] = b
    G = Hs @ (p.K.numpy() * p.lambda_max_raw) @ Hs
    ref = np.sort(np.linalg.eigvalsh(G))[::-1]
    assert factor == pytest.approx(ref[0] / p.lambda_max_raw, rel=1e-10)
    np.testing.assert_allclose(gn.eigvals.numpy()[:10], ref[:10] / ref[0], rtol=1e-9)
    edge_ce, edge_mse = th.critical_lr_loss(p, 0.0, 2), th.critical_lr(p, 0.0, 2)
    assert edge_ce > 1.5 * edge_mse  # the softmax curvature is at most 1/2: cross-entropy tolerates larger steps


# ----------------------------------------------------------------------------------------- convolutions
def test_a_conv_models_kernel_is_the_dense_jacobian_gram_in_float64():
    """gfsgd.models.CNN with C = 4 outputs: the blocked kernel against one dense torch.func Jacobian, to 1e-10."""
    from torch.func import functional_call, jacrev
    from gfsgd.models import CNN
    from gfsgd.ntk import empirical_ntk
    m = CNN((1, 8, 8), channels=(3, 4), hidden=10, outputs=4, seed=0, dtype=torch.float64)
    X = torch.randn(6, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    params = {k: v.detach() for k, v in m.named_parameters()}
    J = jacrev(lambda p: functional_call(m, p, (X,)))(params)
    Jf = torch.cat([J[k].reshape(24, -1) for k in params], 1)
    ref = Jf @ Jf.T
    for kw in (dict(), dict(block_size=1), dict(memory_budget=2e5)):
        K = empirical_ntk(m, X, device="cpu", **kw)
        assert float((K - ref).abs().max()) <= 1e-10 * float(ref.abs().max())
    assert m(X).shape == (6, 4) and m(X.reshape(6, 1, 8, 8)).shape == (6, 4)


def test_batchnorm_in_training_mode_is_refused_by_name_and_eval_mode_works():
    from gfsgd.ntk import empirical_ntk
    m = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                            torch.nn.Linear(8, 2)).double()
    X = torch.randn(6, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="BatchNorm1d in training mode .* call model.eval"):
        empirical_ntk(m, X, device="cpu")
    m.eval()
    K = empirical_ntk(m, X, device="cpu")
    assert K.shape == (12, 12) and torch.equal(K, K.T)


def _brute_force_rho(p, a, beta, b):
    """Spectral radius of E_B[A_B (x) A_B] over every batch B of b examples (drawn without replacement): the exact
    second-moment map of the linearised heavy ball d' = (1 + beta) d - a K S_B d - beta d_prev, S_B = (N / b)
    diag(1_B) (x) I_C, written out by enumeration (no eigenbasis, no renewal theory)."""
    import itertools
    N, C = p.N, p.n_outputs
    M = N * C
    K = p.K.double().numpy()
    I, Z = np.eye(M), np.zeros((M, M))
    subsets = list(itertools.combinations(range(N), b))
    E = 0.0
    for B in subsets:
        s = np.zeros(N)
        s[list(B)] = N / b
        A = np.block([[(1 + beta) * I - a * K @ np.kron(np.diag(s), np.eye(C)), -beta * I], [I, Z]])
        E = E + np.kron(A, A)
    return float(np.max(np.abs(np.linalg.eigvals(E / len(subsets)))))


@pytest.mark.parametrize("beta, b", [(0.6, 2), (-0.3, 1)])
def test_the_exact_edge_with_c_outputs_is_the_brute_force_second_moment_edge(beta, b):
    """exact_critical_lr on a C-output problem (Newton on the blockdiag noise operator) and its bisection route,
    against bisection on the enumerated second-moment map (to 1e-7)."""
    import gfsgd.theory as th
    p = random_problem(N=4, C=2, seed=3)
    newton = th.exact_critical_lr(p, beta, b)
    assert newton == pytest.approx(th.exact_critical_lr(p, beta, b, method="bisection", rtol=1e-9), rel=1e-7)
    lo, hi = 0.0, 2 * (1 + beta) * 1.01
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _brute_force_rho(p, mid, beta, b) < 1 else (lo, mid)
    assert newton == pytest.approx(lo, rel=1e-7)
    assert newton < 0.999 * float(th.critical_lr(p, beta, b))  # a generic kernel: below the SD edge


def test_the_full_regime_with_c_outputs_diverges_just_past_the_exact_edge():
    import gfsgd.theory as th
    p = random_problem(N=16, C=3, seed=4)
    for beta, b in ((0.8, 2), (0.0, 4)):
        edge = th.exact_critical_lr(p, beta, b)
        run = full.run(p, [(0.97 * edge, beta, b), (1.03 * edge, beta, b)], 6000, log_steps=[0, 3000, 6000],
                       progress=False)
        assert run.status[0] == "ok" and run.loss[0, -1] <= run.loss[0, 1], (beta, b, run.loss[0])
        assert run.status[1] == "diverged" or run.loss[1, -1] > run.loss[1, 1], (beta, b, run.loss[1])


def test_the_c_output_sd_edge_catches_an_oscillating_mode():
    """A low-rank kernel with decaying directions (profiles far from delocalised): at b = 1 the per-mode coefficient
    m^2 - tau gamma (alpha lambda)^2 turns negative below the rho(U(1)) = 1 edge and the SD recursion oscillates
    off; the edge (checked by the recursion's own spectral radius) is where the SD regime starts to diverge."""
    import gfsgd.theory as th
    from gfsgd.theory.outputs import noise_radius
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30 * 3, 60, generator=g, dtype=torch.float64) * (torch.arange(1, 61) ** -0.7)
    p = Problem.from_kernel(X @ X.T, torch.randn(30, 3, generator=g, dtype=torch.float64))
    for beta, b in ((0.0, 1), (0.8, 4)):
        edge = float(th.critical_lr(p, beta, b))
        assert noise_radius(p, 1.1 * edge, beta, b) < 1  # rho(U(1)) alone would allow more
        run = sd.run(p, [(0.97 * edge, beta, b), (1.03 * edge, beta, b)], 8000, log_steps=[0, 4000, 8000],
                     progress=False)
        assert run.status[0] == "ok" and run.loss[0, -1] <= run.loss[0, 1] * (1 + 1e-6), (beta, b, run.loss[0])
        assert run.status[1] == "diverged" or run.loss[1, -1] > run.loss[1, 1], (beta, b, run.loss[1])
