"""The exact stability edge of the batch-averaged dynamics (theory.critical_lr(exact=True);
docs/theory.md#stability-edge), checked against independent computations:
- for a Hadamard basis (delocalised eigenvectors) the SD recursion with tau = 1 is exact, so the exact edge
  must equal the SD edge of the generating-function theory (a different formula) to round-off;
- for a small random-basis problem (N = 12), the dense linear map of the (C, J, P) recursion of section 2,
  built here in the data basis: the edge is where its spectral radius (numpy eigvals) reaches 1, found by
  bisection on alpha; the SD edge likewise from the dense 3N x 3N map of the SD recursion (section 3);
- for a random basis the `full` regime, run well past the edge's time scale, is stable at 0.95 x and diverges
  at 1.05 x the exact edge, on a grid with beta < 0, beta > 0 and b = 1; and in the case that motivated it
  (N = 200, b = 1, beta = 0: SD says 0.809, the full regime diverges at 0.5) it decays at 0.999 x and grows
  at 1.001 x the exact edge.
"""
import numpy as np
import pytest
from scipy.optimize import brentq

from gfsgd import Problem
from gfsgd import theory as th
from gfsgd.regimes import full


@pytest.mark.parametrize("beta", [-0.4, 0.0, 0.5])
def test_hadamard_basis_exact_edge_equals_sd_edge(beta):
    p = Problem.synthetic(64, 1.5, 1.0, seed=0, basis="hadamard")
    for b in (1, 4, 16):
        exact = float(th.critical_lr(p, beta, b, exact=True, rtol=1e-10))
        sd = float(th.critical_lr(p, beta, b, tau=1.0))
        assert exact == pytest.approx(sd, rel=1e-8)


def test_random_basis_exact_edge_against_the_full_regime():
    p = Problem.synthetic(64, 1.5, 1.0, seed=3)
    cases = [(-0.4, 1), (0.0, 1), (0.5, 1), (-0.3, 4), (0.3, 8)]
    edges = {c: float(th.critical_lr(p, c[0], c[1], exact=True, rtol=1e-6)) for c in cases}
    cfgs = [(f * edges[c], c[0], c[1]) for c in cases for f in (0.95, 1.05)]
    run = full.run(p, cfgs, 8000, log_steps=[0, 8000], progress=False, device="cpu")
    for i, c in enumerate(cases):
        assert run.status[2 * i] == "ok", (c, edges[c])
        assert run.status[2 * i + 1] == "diverged", (c, edges[c])
    sd = th.critical_lr(p, np.array([c[0] for c in cases]), np.array([c[1] for c in cases]))
    assert all(edges[c] < s for c, s in zip(cases, sd))  # localised eigenvectors: less stable than SD says


def _gamma(N, b):
    """The batch noise level without replacement (docs/theory.md section 1), written out here."""
    return (N - b) / ((N - 1) * b)


def _full_second_moment_map(K, a, beta, b):
    """The exact batch-averaged dynamics of docs/theory.md section 2 in the DATA basis, on the state
    (C, J, P) = (E d d^T, E d v^T, E v v^T), written as a dense matrix: column j is the image of the j-th basis
    state. C and P are symmetric (their upper triangles are the coordinates), J is a general N x N matrix,
    so the state has N (N + 1) + N^2 coordinates. Nothing of gfsgd is used: only K, alpha, beta, b.

        Q(C) = gamma N K diag(C) K + (1 - gamma) K C K
        P' = alpha^2 Q(C) - alpha beta (K J + J^T K) + beta^2 P
        J' = beta J - alpha C K + P'
        C' = C - alpha (K C + C K) + beta (J + J^T) + P'
    """
    N = K.shape[0]
    gamma = _gamma(N, b)
    iu = np.triu_indices(N)
    ns = iu[0].size
    dim = 2 * ns + N * N
    X = np.eye(dim)
    off = 1 - np.eye(N)

    def sym(v):
        S = np.zeros((dim, N, N))
        S[:, iu[0], iu[1]] = v
        return S + np.transpose(S, (0, 2, 1)) * off

    C, J, P = sym(X[:, :ns]), X[:, ns:ns + N * N].reshape(dim, N, N), sym(X[:, ns + N * N:])
    tr = lambda A: np.transpose(A, (0, 2, 1))  # noqa: E731
    diagC = np.einsum("gii->gi", C)
    Q = gamma * N * K @ (diagC[:, :, None] * K) + (1 - gamma) * K @ C @ K
    P2 = a * a * Q - a * beta * (K @ J + tr(J) @ K) + beta * beta * P
    J2 = beta * J - a * C @ K + P2
    C2 = C - a * (K @ C + C @ K) + beta * (J + tr(J)) + P2
    return np.concatenate([C2[:, iu[0], iu[1]], J2.reshape(dim, -1), P2[:, iu[0], iu[1]]], 1).T


def _sd_map(lam, a, beta, b, tau=1.0):
    """The SD recursion of docs/theory.md section 3 on (C_k, J_k, P_k), as a dense 3N x 3N matrix:
    P_k' = (a lam_k)^2 [(1 - gamma tau) C_k + gamma sum_l C_l] - 2 a beta lam_k J_k + beta^2 P_k,
    C_k' = C_k - 2 a lam_k C_k + 2 beta J_k + P_k',   J_k' = beta J_k - a lam_k C_k + P_k'."""
    N = lam.size
    gamma = _gamma(N, b)
    u = a * lam
    I = np.eye(N)
    Z = np.zeros((N, N))
    Pc = (u * u)[:, None] * ((1 - gamma * tau) * I + gamma * np.ones((N, N)))  # P' as a map of C
    Pj = np.diag(-2 * beta * u)
    Pp = beta * beta * I
    rowP = np.hstack([Pc, Pj, Pp])
    rowC = np.hstack([np.diag(1 - 2 * u), 2 * beta * I, Z]) + rowP
    rowJ = np.hstack([np.diag(-u), beta * I, Z]) + rowP
    return np.vstack([rowC, rowJ, rowP])


def _spectral_radius(M):
    return float(np.abs(np.linalg.eigvals(M)).max())


def _bisect_edge(radius, hi, rtol=1e-9):
    """The largest alpha with radius(alpha) < 1, by bisection on [0, hi] (the noise-free per-mode limit) down to
    a 1% bracket, then Brent's method on radius - 1 inside it (the bracket holds a sign change)."""
    lo = 0.0
    while hi - lo > 1e-2 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if radius(mid) < 1 else (lo, mid)
    return brentq(lambda a: radius(a) - 1, lo, hi, xtol=1e-15, rtol=rtol)


@pytest.mark.parametrize("beta,b", [(0.0, 1), (-0.5, 1), (0.5, 2), (0.3, 4)])
def test_exact_edge_equals_the_dense_second_moment_map(beta, b):
    """N = 12, random basis: the exact edge is where the spectral radius of the dense (C, J, P) map of
    section 2, built in the data basis (300 states), reaches 1 (numpy eigvals, bisection on alpha). The code's
    edge (eigenbasis, two-time state, the z = 1 noise operator) must agree to 1e-6, and lie well below SD's
    (measured: SD's is 2.0 to 2.6 times higher): the test is not the Hadamard case where the two coincide."""
    p = Problem.synthetic(12, 1.5, 1.0, seed=3)
    U, lam = p.eigvecs.double().numpy(), p.eigvals.double().numpy()
    K = (U * lam) @ U.T
    radius = lambda a: _spectral_radius(_full_second_moment_map(K, a, beta, b))  # noqa: E731
    dense = _bisect_edge(radius, 2 * (1 + beta) / np.linalg.eigvalsh(K).max())
    for f in (0.25, 0.5, 0.9, 0.99):  # nothing fails earlier: it is the smallest unstable alpha
        assert radius(f * dense) < 1
    code = float(th.critical_lr(p, beta, b, exact=True, rtol=1e-10))
    assert code == pytest.approx(dense, rel=1e-6)
    assert float(th.critical_lr(p, beta, b)) > 1.5 * dense


def test_sd_edge_equals_the_dense_sd_map():
    """The SD edge: U(1) = 1 in the code, the spectral radius of the 3N x 3N SD recursion reaching 1 here. On
    the motivating problem (N = 200, b = 1, beta = 0: about 0.809) and, at N = 64, with beta < 0 and beta > 0."""
    for N, beta, b in ((200, 0.0, 1), (64, -0.4, 1), (64, 0.6, 8)):
        p = Problem.synthetic(N, 1.5, 1.0, seed=0)
        lam = p.eigvals.double().numpy()
        dense = _bisect_edge(lambda a: _spectral_radius(_sd_map(lam, a, beta, b)), 2 * (1 + beta) / lam.max())
        assert float(th.critical_lr(p, beta, b, tau=1.0)) == pytest.approx(dense, rel=1e-6), (N, beta, b)


def test_the_motivating_case():
    """N = 200, random basis, b = 1, beta = 0 (train_full.py's default problem): a dense map of 80,200 states is
    too big, so the code's exact edge is checked on the full regime itself: 4,000 steps at 0.999 x the edge
    still decay at the end, at 1.001 x they grow (measured growth rates about -3e-5 and +2e-5 per step), and
    alpha = 0.5, inside SD's stable range (SD's edge, checked above on the dense SD map, is about 0.81),
    diverges."""
    p = Problem.synthetic(200, 1.5, 1.0, seed=0)
    exact = float(th.critical_lr(p, 0.0, 1, exact=True, rtol=1e-8))
    assert exact < 0.5 < float(th.critical_lr(p, 0.0, 1))
    T = 4000
    run = full.run(p, [(0.5, 0.0, 1), (0.999 * exact, 0.0, 1), (1.001 * exact, 0.0, 1)], T,
                   log_steps=[0, T // 2, 3 * T // 4, T], progress=False, device="cpu")
    assert run.status == ["diverged", "ok", "ok"]
    below, above = np.asarray(run.loss[1]), np.asarray(run.loss[2])
    assert below[3] < below[2] < below[1]  # still decaying
    assert above[3] > above[2] > above[1]  # growing


def test_exact_edge_errors():
    spectral = Problem.synthetic(32, 1.5, 1.0, basis=None)
    with pytest.raises(ValueError, match="needs the kernel's eigenvectors"):
        th.critical_lr(spectral, 0.0, 1, exact=True)
    with pytest.raises(ValueError, match="needs a Problem"):
        th.critical_lr(np.linspace(1, 0.1, 10), 0.0, 1, exact=True)
