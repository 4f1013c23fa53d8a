"""theory.loss_at: L_t from a contour integral of L(z), against the renewal solver (loss_curve) and against an
independent transfer-matrix power (docs/theory.md#loss-at)."""
from __future__ import annotations

import numpy as np
import pytest

from gfsgd import Problem, theory
from gfsgd.theory import inversion
from gfsgd.theory._inputs import noise_gamma


def _grid(p, tau, G, seed):
    """Random configs over the whole stable range: beta in (-0.98, 0.99), b in {1, 2, 10, 100, N}, 30% of them
    within 5% of the SD edge."""
    rng = np.random.default_rng(seed)
    beta = rng.uniform(-0.98, 0.99, G)
    b = rng.choice([1, 2, 10, 100, p.N], G)
    crit = theory.critical_lr(p, beta, b, tau=tau)
    frac = np.where(rng.random(G) < 0.3, rng.uniform(0.95, 0.999, G), rng.uniform(0.01, 0.95, G))
    return crit * frac, beta, b


@pytest.mark.parametrize("tau", [1.0, -1.0])
def test_loss_at_matches_the_renewal_solver(tau):
    p = Problem.synthetic(400, 1.2, 0.2, basis=None)
    a, beta, b = _grid(p, tau, 80, seed=1 if tau > 0 else 2)
    ts = np.array([0, 1, 63, 64, 100, 400, 1500, 4000])
    val, info = theory.loss_at(p, a, beta, b, ts, tau=tau, return_info=True)
    ref = theory.loss_curve(p, a, beta, b, int(ts.max()), tau=tau, log_steps=ts)
    assert val.shape == ref.shape == (a.size, ts.size)
    # the renewal solver is accurate to about 1e-16 L_0 in absolute terms: compare where it can be trusted
    trusted = ref > 1e-9 * p.loss0
    assert trusted.mean() > 0.8
    rel = np.abs(val / ref - 1)[trusted]
    assert rel.max() <= 1e-8, rel.max()
    st = info["status"]
    assert (st[:, 0] == "initial").all() and (st[:, 1:3] == "renewal").all()
    contour = st[:, ts >= 400] == "contour"
    assert contour.mean() > 0.9, "the contour must carry the long horizons"
    assert (info["error"][st == "contour"] <= 1e-8).all()
    for bval in (1,):  # the grid includes the hardest noise
        assert (b == bval).any() and (beta < 0).any()


def _transfer_matrix(lam, w, a, beta, gamma, tau):
    """The SD dynamics on (E d_k^2, E d_k d_k', E d_k'^2) per mode, written out (3N x 3N): the per-mode map of
    docs/theory.md#generating-functions plus the noise injection gamma alpha^2 lam_k^2 L_t into each mode's first entry,
    L_t = sum_k (first entry of mode k)."""
    N = lam.size
    M = np.zeros((3 * N, 3 * N))
    for k, lk in enumerate(lam):
        u = a * lk
        m = 1 + beta - u
        k3 = gamma * a * a * lk * lk
        i = 3 * k
        M[i, i:i + 3] = [m * m - tau * k3, -2 * beta * m, beta * beta]
        M[i + 1, i:i + 3] = [m, -beta, 0.0]
        M[i + 2, i] = 1.0
        M[i, 0::3] += k3
    x0 = np.repeat(w, 3)
    return M, x0


@pytest.mark.parametrize("beta,b,tau,frac", [(0.5, 1, 1.0, 0.6), (-0.6, 1, -1.0, 0.8), (0.9, 5, 1.0, 0.9),
                                             (0.0, 2, -1.0, 0.95)])
def test_loss_at_against_a_transfer_matrix_power_far_into_the_exponential_regime(beta, b, tau, frac):
    """L_t = 1^T P M^t x0 by repeated squaring of the 3N x 3N matrix (relative accuracy kept while the loss
    decays by hundreds of orders of magnitude, where the renewal solver's absolute error dominates)."""
    N = 40
    j = np.arange(1, N + 1.0)
    lam = j ** -1.3
    c = j ** -1.2
    c /= c.sum()
    w = c / (2 * N)
    a = frac * theory.critical_lr(lam, beta, b, N=N, tau=tau)
    gamma = float(noise_gamma(np.array([b]), N)[0])
    M, x0 = _transfer_matrix(lam, w, a, beta, gamma, tau)
    ts = [64, 300, 3000, 30000, 10 ** 5]
    val = theory.loss_at(lam, a, beta, b, ts, w=w, N=N, tau=tau)
    for t, v in zip(ts, val):
        ref = (np.linalg.matrix_power(M, t) @ x0)[0::3].sum()
        if ref < 1e-290:  # beyond float64
            continue
        assert v == pytest.approx(ref, rel=1e-8), (t, v, ref)


def test_the_dynamics_poles_stay_within_the_margin_of_the_mode_roots():
    """The off-axis poles of L (eigenvalues of the full transfer matrix off the positive real axis) are the
    per-mode roots moved by the noise coupling; loss_at treats a mode root of modulus r as if it had modulus
    (1 + r) / 2. On random configs, no off-axis eigenvalue of the full matrix exceeds that margin."""
    rng = np.random.default_rng(0)
    N = 40
    lam = np.arange(1, N + 1.0) ** -1.2
    w = np.full(N, 1.0 / N)
    worst = 0.0
    for _ in range(150):
        beta = rng.uniform(-0.95, 0.97)
        b = int(rng.choice([1, 2, 5, 20]))
        tau = float(rng.choice([1.0, -1.0]))
        a = rng.uniform(0.05, 0.99) * theory.critical_lr(lam, beta, b, N=N, tau=tau)
        gamma = noise_gamma(np.array([b]), N)
        M, _ = _transfer_matrix(lam, w, a, beta, float(gamma[0]), tau)
        ev = np.linalg.eigvals(M)
        off = ~((np.abs(ev.imag) <= 1e-9) & (ev.real > 0))
        if not off.any():
            continue
        mod = inversion._mode_roots(lam, np.array([a]), np.array([beta]), gamma, tau)[0]
        margin = (1 + mod.max()) / 2
        worst = max(worst, np.abs(ev[off]).max() - mod.max())
        assert np.abs(ev[off]).max() <= margin + 1e-12
    assert worst > 0, "the noise does move the poles: the check must be able to see it"


def test_diverging_configs_are_inf_and_bad_input_is_refused():
    p = Problem.synthetic(200, 1.2, 0.3, basis=None)
    crit = theory.critical_lr(p, 0.3, 4)
    val, info = theory.loss_at(p, [0.5 * crit, 1.2 * crit], 0.3, 4, [0, 500], return_info=True)
    assert np.isfinite(val[0]).all() and np.isinf(val[1]).all()
    assert (info["status"][1] == "diverged").all()
    assert np.isscalar(theory.loss_at(p, 0.5 * crit, 0.3, 4, 1000)) or theory.loss_at(p, 0.5 * crit, 0.3, 4,
                                                                                         1000).shape == ()
    for bad in (-1, 2.5, [], np.nan):
        with pytest.raises(ValueError, match="t must be"):
            theory.loss_at(p, 0.5 * crit, 0.3, 4, bad)
    with pytest.raises(ValueError, match="tol"):
        theory.loss_at(p, 0.5 * crit, 0.3, 4, 100, tol=0)


def test_vectorised_critical_lr_equals_the_edge_of_convergence():
    """Regression: near the per-mode limit with tau < 0, rounding made U(1) negative at the limit and
    critical_lr returned the per-mode limit (0.041 instead of 0.0106 for beta = 0.9792, b = 1) although the
    configs below it did not converge. Every config below the returned edge must converge."""
    p = Problem.synthetic(1000, 1.3, 0.3, basis=None)
    rng = np.random.default_rng(7)
    beta = np.r_[0.9791964212628754, rng.uniform(-0.98, 0.995, 200)]
    b = np.r_[1, rng.choice([1, 2, 10, 100, 1000], 200)]
    for tau in (1.0, -1.0):
        crit = theory.critical_lr(p, beta, b, tau=tau)
        for f in (0.3, 0.6, 0.9, 0.999):
            assert theory.is_convergent(p, f * crit, beta, b, tau=tau).all()
        assert not theory.is_convergent(p, 1.001 * crit, beta, b, tau=tau).any()
