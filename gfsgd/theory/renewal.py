"""The loss in time: the propagators and the renewal equation (docs/theory.md#generating-functions).

The coefficients of the generating functions of gfsgd.theory.generating, with A_k the per-mode second-moment
map there: V_t = sum_k w_k [A_k^t(e11)]_11 (the signal propagator), U_m = gamma alpha^2 sum_k lam_k^2
[A_k^{m-1}(E)]_11 (m >= 1, the noise propagator) and the renewal equation

    L_t = V_t + sum_{s=0}^{t-1} U_{t-s} L_s,

which reproduces the spectral-diagonal (SD) recursion with the same tau to round-off. solve_renewal solves it
by divide and conquer over time; loss_curve builds and solves it for a problem (modes whose propagators grow
are separated), with the SD test loss; mode_second_moments gives the per-mode second moments at one step.

Everything is vectorised: lr, momentum, batch_size broadcast together to a config shape; the spectrum adds a
mode axis that is summed over. float64 throughout.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from ._inputs import as_spectrum, broadcast_configs, check_positive_int, noise_gamma
from .sde import SOLVERS
from ..errors import InputError
from ..updates import check_update

__all__ = ["propagators", "solve_renewal", "loss_curve", "mode_second_moments"]


@contextlib.contextmanager
def _single_thread():
    """Run torch ops on one thread: the time loops here issue many small ops (<= 32k elements) that threading
    cannot speed up, and on a busy machine two-thread ops were measured 10-40x slower than one-thread ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------------- propagators
def _unstable_modes(lam, a, beta, gamma, tau, slack=1e-9):
    """[G, M] bool: modes whose reduced map A_k (with the -gamma tau alpha^2 lam^2 m11 E term) has spectral radius
    > 1 + slack, by the Jury test on its characteristic polynomial
        det(x - A_k) = x^3 S_k(1/x) = x^3 + c2 x^2 + c1 x + c0,
        c2 = beta - m^2 + gamma tau u^2,  c1 = beta m^2 - beta^2 + beta gamma tau u^2,  c0 = -beta^3,
    (m = 1 + beta - u, u = alpha lam), rescaled by s = 1 + slack so that the test reads rho(A_k) < s.
    Such modes make V_t and U_m grow like rho^t although the full dynamics converges (the poles of V(z), U(z)
    inside the unit disk cancel in V / (1 - U)); see `loss_curve`."""
    u = a[:, None] * lam[None, :]
    bt = beta[:, None]
    m = 1 + bt - u
    gtu = (gamma * tau)[:, None] * u * u
    sc = 1.0 + slack
    c2 = (bt - m * m + gtu) / sc
    c1 = (bt * m * m - bt * bt + bt * gtu) / sc ** 2
    c0 = np.broadcast_to(-bt ** 3 / sc ** 3, u.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = ((1 + c2 + c1 + c0 > 0) & (-1 + c2 - c1 + c0 < 0) & (np.abs(c0) < 1)
              & (np.abs(c0 * c0 - 1) > np.abs(c0 * c2 - c1)))
    return ~ok & (lam[None, :] > 0)


def _propagators_flat(lam, w, a, beta, gamma, tau, n_steps, device="cpu", bad=None):
    """Per-mode linear recursion for U_m (m = 1..T, U_0 = 0) and V_t (t = 0..T) of flat configs: torch [G, T+1] x 2.

    Each mode is iterated in the two-time variables A = E[d_t^2], B = E[d_t d_{t-1}], D = E[d_{t-1}^2]
    (m11 = A, m12 = A - B, m22 = A - 2B + D), in which A_k reads
        A' = (m^2 - tau k3) A - 2 beta m B + beta^2 D,  B' = m A - beta B,  D' = A,
    with m = 1 + beta - alpha lam, k3 = gamma alpha^2 lam^2; e11 is (A, B, D) = (1, 1, 1), E is (1, 0, 0).

    bad: optional [G, M] bool (numpy). Those modes are iterated with tau = 0 (the plain map M -> R M R^T) and,
    in addition to the sums, their own propagators are returned: (Ut, Vt, Hb, Vb) with Hb, Vb [G, T+1, nb]
    (nb = max bad modes per config, zero padded): Hb[:, m, j] = k3 [A0^{m-1} E]_11 (Hb[:, 0] = 0) and
    Vb[:, t, j] = w [A0^t e11]_11 for the j-th bad mode of each config.
    """
    dt = torch.float64
    lam_t = torch.as_tensor(lam, dtype=dt, device=device)
    w_t = torch.as_tensor(w, dtype=dt, device=device)
    G, M, T = a.size, lam.size, n_steps
    Vt = torch.empty(G, T + 1, dtype=dt)
    Ut = torch.zeros(G, T + 1, dtype=dt)
    nb = 0 if bad is None else int(bad.sum(1).max(initial=0))
    if nb:
        # indices of the bad modes of each config, padded with mode 0 (masked out below)
        order = np.argsort(~bad, axis=1, kind="stable")[:, :nb]
        valid = np.take_along_axis(bad, order, 1)
        Hb = torch.zeros(G, T + 1, nb, dtype=dt)
        Vb = torch.zeros(G, T + 1, nb, dtype=dt)
    step = max(1, (1 << 14) // M)  # configs per block: [2, g, M] <= 32k elements, cache-resident and below
    # torch's parallel grain size (threading such small ops only costs, and collapses on a busy machine)
    for i in range(0, G, step):
        sl = slice(i, min(i + step, G))
        g = sl.stop - sl.start
        at = torch.as_tensor(a[sl], dtype=dt, device=device)[:, None]
        bt = torch.as_tensor(beta[sl], dtype=dt, device=device)[:, None]
        gm = torch.as_tensor(gamma[sl], dtype=dt, device=device)[:, None]
        u = at * lam_t  # [g, M]
        m = 1 + bt - u
        k3 = gm * u * u
        if nb:
            tau_k = torch.as_tensor(np.where(bad[sl], 0.0, tau), dtype=dt, device=device)
            k1 = m * m - tau_k * k3
        else:
            k1 = m * m - tau * k3
        k2 = -2 * bt * m
        b2 = (bt * bt).expand(g, M)
        mb = (-bt).expand(g, M)
        W = torch.stack([w_t.expand(g, M), k3])  # [2, g, M]
        A = torch.ones(2, g, M, dtype=dt, device=device)  # [2, g, M]: 0 = from e11, 1 = from E
        B = torch.ones(2, g, M, dtype=dt, device=device)
        B[1] = 0.0
        D = B.clone()
        An = torch.empty_like(A)
        prod = torch.empty_like(A)
        out = torch.empty(T + 1, 2, g, dtype=dt, device=device)
        if nb:
            idx = torch.as_tensor(order[sl], device=device).expand(2, g, nb)
            outb = torch.empty(T + 1, 2, g, nb, dtype=dt, device=device)
            torch.gather(A, 2, idx, out=outb[0])
        # sum(A * W, -1): torch.linalg.vecdot was measured ~30x slower at these shapes
        torch.sum(torch.mul(A, W, out=prod), -1, out=out[0])
        for t in range(1, T + 1):
            torch.mul(A, k1, out=An)
            An.addcmul_(k2, B)
            An.addcmul_(D, b2)
            B.mul_(mb).addcmul_(m, A)
            A, D, An = An, A, D
            torch.sum(torch.mul(A, W, out=prod), -1, out=out[t])
            if nb:
                torch.gather(A, 2, idx, out=outb[t])
        out = out.cpu()
        Vt[sl] = out[:, 0].T
        Ut[sl, 1:] = out[:-1, 1].T  # U_m = sum_k k3_k [A_k^{m-1} E]_11
        if nb:
            outb = outb.cpu()
            vmask = torch.as_tensor(valid[sl], dtype=dt)  # [g, nb]
            wb = w_t.cpu()[order[sl]] * vmask
            k3b = torch.gather(k3.cpu(), 1, torch.as_tensor(order[sl])) * vmask
            Vb[sl] = outb[:, 0].permute(1, 0, 2) * wb[:, None, :]
            Hb[sl, 1:] = outb[:-1, 1].permute(1, 0, 2) * k3b[:, None, :]
    if bad is None:
        return Ut, Vt
    if not nb:
        Hb = Vb = torch.zeros(G, T + 1, 0, dtype=dt)
    return Ut, Vt, Hb, Vb


def propagators(spectrum, lr, momentum, batch_size, n_steps, *, w=None, c=None, N=None, tau=1.0,
                replacement=False, device="cpu"):
    """Noise and signal propagators in time (docs/theory.md#generating-functions):

    U_m = gamma alpha^2 sum_k lambda_k^2 [A_k^{m-1}(E)]_11  (m = 1..n_steps; U_0 = 0 by convention),
    V_t = sum_k w_k [A_k^t(e11)]_11                          (t = 0..n_steps; V_0 = L_0).

    Returns (U, V) as numpy arrays of shape (*config_shape, n_steps + 1). Cost O(configs x modes x n_steps).
    """
    spec = as_spectrum(spectrum, w=w, c=c, N=N, need_w=True)
    n_steps = check_positive_int(n_steps, "n_steps")
    shape, (a, beta, b), gamma, tau = broadcast_configs(spec, lr, momentum, batch_size, tau, replacement)
    with _single_thread():
        Ut, Vt = _propagators_flat(spec.eigvals, spec.w, a, beta, gamma, tau, n_steps, device)
    return Ut.numpy().reshape(*shape, n_steps + 1), Vt.numpy().reshape(*shape, n_steps + 1)


# ------------------------------------------------------------------------------------------ renewal solver
def _log_decay(first, last, steps):
    """Mean log decay per step between two samples [G] (0 where undefined)."""
    first, last = first.abs(), last.abs()
    ok = (first > 0) & (last > 0) & torch.isfinite(first) & torch.isfinite(last)
    if steps < 1:
        return torch.zeros_like(first)
    return torch.where(ok, (torch.log(torch.where(ok, last, 1.0)) - torch.log(torch.where(ok, first, 1.0))) / steps,
                       0.0)


def _conv_tail_fft(x, h, n):
    """y_j = sum_i h_{j-i} x_i for j in [len(x), n) (x: [G, n1, p], h: [G, n, p, p] matrices acting on the
    component axis; h_0 is never used there). Returns [G, n - n1, p].

    Exponential tilting keeps the FFT's absolute round-off (~eps x the largest term) small relative to each
    output: with rho the milder of the mean geometric decays of x and h,
    y_j = rho^j sum_i (h_{j-i} rho^-(j-i)) (x_i rho^-i).
    """
    n1 = x.shape[1]
    xa = x.abs().amax(-1)
    ha = h.abs().amax((-2, -1))
    log_rho = torch.maximum(_log_decay(xa[:, 0], xa[:, -1], n1 - 1), _log_decay(ha[:, 1], ha[:, n - 1], n - 2))
    log_rho = log_rho.clamp(-300.0 / n, 300.0 / n)[:, None]  # rho^(+-n) stays far from overflow
    tilt = torch.exp(-log_rho * torch.arange(n, dtype=x.dtype))  # [G, n]
    nfft = 1 << (n - 1).bit_length()  # any length >= n works: the circular wrap only lands on indices < n1
    X = torch.fft.rfft(x * tilt[:, :n1, None], n=nfft, dim=1)  # [G, F, p]
    H = torch.fft.rfft(h * tilt[:, :, None, None], n=nfft, dim=1)  # [G, F, p, p]
    Y = (H @ X[..., None])[..., 0] if x.shape[2] > 1 else H[..., 0] * X
    y = torch.fft.irfft(Y, n=nfft, dim=1)[:, n1:n]
    return y / tilt[:, n1:n, None]


def _conv_tail_direct(x, h, n):
    """Same as _conv_tail_fft by direct summation (grouped conv1d): exact to round-off, O(n1 (n - n1) p^2)."""
    G, n1, p = x.shape
    inp = h[:, 1:n].permute(0, 2, 3, 1).reshape(1, G * p * p, n - 1)  # channel (g, r, q): h[g, 1:n, r, q]
    wgt = torch.flip(x, dims=[1]).permute(0, 2, 1)  # [G, p(q), n1]
    wgt = wgt[:, None, :, :].expand(G, p, p, n1).reshape(G * p * p, 1, n1)
    y = torch.nn.functional.conv1d(inp, wgt, groups=G * p * p)[0]  # [G p p, n - n1]
    return y.reshape(G, p, p, n - n1).sum(2).permute(0, 2, 1)


def _base_solve(K, X, l, r):
    """Forward substitution of X_t = rhs_t + sum_{s in [l, t)} K_{t-s} X_s on the block [l, r)
    (K: [G, T1, p, p], X: [G, T1, p]), as one unit lower triangular solve of size (r - l) p."""
    B = r - l
    G, _, p, _ = K.shape
    i = torch.arange(B)
    idx = (i[:, None] - i[None, :]).clamp(min=0)  # [B, B]
    Tm = K[:, idx] * (i[:, None] > i[None, :])[None, :, :, None, None]  # [G, B, B, p, p]
    Mat = -Tm.permute(0, 1, 3, 2, 4).reshape(G, B * p, B * p)
    sol = torch.linalg.solve_triangular(Mat, X[:, l:r].reshape(G, B * p, 1), upper=False, unitriangular=True)
    X[:, l:r] = sol.reshape(G, B, p)


def _solve_volterra(K, F, method):
    """X_t = F_t + sum_{s<t} K_{t-s} X_s for K [G, T1, p, p] (K[:, 0] ignored), F [G, T1, p] (torch float64).
    Divide and conquer over time (online convolution); returns X [G, T1, p]."""
    G, T1, p = F.shape
    K = K.clone()
    K[:, 0] = 0.0
    X = F.clone()
    if method == "auto":
        method = "direct" if G * p * p * float(T1) ** 2 <= 1e7 else "fft"
    if method not in ("fft", "direct"):
        raise InputError(f"method must be 'auto', 'fft' or 'direct', got method={method!r}")
    conv = _conv_tail_fft if method == "fft" else _conv_tail_direct
    base = 32

    def rec(l, r):
        if r - l <= base:
            _base_solve(K, X, l, r)
            return
        m = (l + r) // 2
        rec(l, m)
        X[:, m:r] += conv(X[:, l:m], K[:, :r - l], r - l)
        rec(m, r)

    with _single_thread():
        rec(0, T1)
    return X


def solve_renewal(U_m, V_t, method="auto"):
    """Solve the renewal (discrete Volterra) equation L_t = V_t + sum_{s=0}^{t-1} U_{t-s} L_s.

    U_m, V_t: arrays [..., T+1] (U_m[..., 0] is ignored). Divide and conquer over time (online convolution):
    the influence of a solved half on the next is one convolution, by FFT (method="fft", O(T log^2 T), absolute
    error ~1e-16 x the largest tilted term) or by direct summation (method="direct", O(T^2), relative error at
    round-off level). "auto" uses direct summation while configs x T^2 <= 1e7, FFT beyond.
    Returns L [..., T+1] (numpy, float64).

    Note: the solution is only as accurate as the cancellations in the sum allow: with propagators that grow
    (|U_m| >> 1) the relative error is ~1e-16 x max |U_m L_s| / |L_t|. `loss_curve` avoids such propagators.
    """
    U_m = torch.as_tensor(np.asarray(U_m, dtype=np.float64))
    V_t = torch.as_tensor(np.asarray(V_t, dtype=np.float64))
    if U_m.shape != V_t.shape:
        raise InputError(f"U_m and V_t must have the same shape, got {tuple(U_m.shape)} and {tuple(V_t.shape)}")
    shape = V_t.shape
    T1 = shape[-1]
    X = _solve_volterra(U_m.reshape(-1, T1, 1, 1), V_t.reshape(-1, T1, 1), method)
    return X[..., 0].reshape(shape).numpy()


def _renewal_system(Ut, Vt, Hb, Vb, tau):
    """Kernel and forcing of the renewal equation with separated modes (see `loss_curve`): unknowns
    X = (L, l_1, ..., l_nb); K [G, T1, p, p], F [G, T1, p] with p = 1 + nb."""
    G, T1 = Vt.shape
    nb = Hb.shape[2]
    p = 1 + nb
    K = torch.zeros(G, T1, p, p, dtype=Vt.dtype)
    K[:, :, 0, 0] = Ut
    K[:, :, 0, 1:] = -tau * Hb
    K[:, :, 1:, 0] = Hb
    jj = torch.arange(1, p)
    K[:, :, jj, jj] = -tau * Hb
    F = torch.cat([Vt[:, :, None], Vb], dim=2)
    return K, F


def loss_curve(problem, lr, momentum, batch_size, n_steps, tau=1.0, *, w=None, c=None, N=None,
               log_steps=None, replacement=False, method="auto", device="cpu", test=False, test_cutoff=1e-10,
               update=None):
    """Predicted loss curve L_t, t = 0..n_steps, from the renewal equation (docs/theory.md#generating-functions):

        L_t = V_t + sum_{s=0}^{t-1} U_{t-s} L_s,   L_0 = V_0 = sum_k w_k = problem.loss0,

    with V_t, U_m from `propagators`. This is the spectral-diagonal (SD) recursion with the same tau (1: mean
    field, -1: Gaussian features), computed through the generating-function decomposition; it equals the SD
    regime's curve to round-off.

    problem: a Problem, or eigenvalues with w= or c= (and N=). lr, momentum, batch_size: scalars or arrays
    broadcast to a config shape (a grid of configs at once; `split_configs` turns a list of triples into three
    arrays). Returns an array (*config_shape, len(steps)) with steps = 0..n_steps or `log_steps`. A divergent
    config gives a growing (eventually inf / nan) curve.

    update: the training rule (gfsgd.updates; docs/theory.md#updates), steps in SGD-step units: SVAG(l) is SGD
    with lr / l, noise level l * gamma and l steps per SGD step; SDE() is its l -> infinity limit (momentum 0;
    `sde_loss`, no test loss); NoisyGD has SGD's second moments.
    """
    spec = as_spectrum(problem, w=w, c=c, N=N, need_w=True)
    n_steps = check_positive_int(n_steps, "n_steps")
    if log_steps is not None:
        steps = np.unique(np.asarray(log_steps, dtype=np.int64).reshape(-1))
        if steps.size == 0 or steps[0] < 0 or steps[-1] > n_steps:
            raise InputError(f"log_steps must be integers in [0, n_steps={n_steps}], got "
                             f"{np.asarray(log_steps).reshape(-1)[:5]}")
    rule = check_update(update, "theory", momenta=np.ravel(momentum).tolist())
    solve = rule.theory_solver(SOLVERS)  # a rule with its own theory (the SDE: Laplace inversion)
    if solve is not None:
        if test:
            raise InputError(f"loss_curve(update={rule.name}): the test loss of this rule is not implemented in the "
                             f"theory; use the full regime (gfsgd.regimes.full.run(..., update=...))")
        return solve(spec, lr, momentum, batch_size, np.arange(n_steps + 1) if log_steps is None else steps, tau=tau,
                     replacement=replacement)
    per = rule.steps_per_sgd_step
    if per > 1:  # SVAG(l): l steps of SGD(lr / l, l * gamma) per SGD step
        want = np.arange(n_steps + 1) if log_steps is None else steps
        return _loss_curve(spec, problem, np.asarray(lr, dtype=float) / rule.lr_divisor, momentum, batch_size,
                           n_steps * per, tau, want * per, replacement, method, device, test, test_cutoff,
                           rule.noise_scale)
    return _loss_curve(spec, problem, lr, momentum, batch_size, n_steps, tau, log_steps, replacement, method,
                       device, test, test_cutoff, 1.0)


def _loss_curve(spec, problem, lr, momentum, batch_size, n_steps, tau, log_steps, replacement, method, device,
                test, test_cutoff, noise_scale):
    if log_steps is not None:
        steps = np.unique(np.asarray(log_steps, dtype=np.int64).reshape(-1))
    shape, (a, beta, b), gamma, tau = broadcast_configs(spec, lr, momentum, batch_size, tau, replacement,
                                                        noise_scale=noise_scale)
    if method not in ("auto", "fft", "direct"):
        raise InputError(f"method must be 'auto', 'fft' or 'direct', got method={method!r}")
    bad = _unstable_modes(spec.eigvals, a, beta, gamma, tau)
    with _single_thread():
        Ut, Vt, Hb, Vb = _propagators_flat(spec.eigvals, spec.w, a, beta, gamma, tau, n_steps, device, bad=bad)
    if Hb.shape[2] == 0:
        Lt = _solve_volterra(Ut[:, :, None, None], Vt[:, :, None], method)[..., 0]
    else:
        Lt = torch.empty_like(Vt)
        nbad = bad.sum(1)
        plain = nbad == 0
        if plain.any():
            ip = torch.as_tensor(np.flatnonzero(plain))
            Lt[ip] = _solve_volterra(Ut[ip][:, :, None, None], Vt[ip][:, :, None], method)[..., 0]
        for k in np.unique(nbad[~plain]):  # group configs by their number of separated modes
            ik = torch.as_tensor(np.flatnonzero(nbad == k))
            K, F = _renewal_system(Ut[ik], Vt[ik], Hb[ik][:, :, :k], Vb[ik][:, :, :k], tau)
            Lt[ik] = _solve_volterra(K, F, method)[..., 0]
    Lt = Lt.numpy()
    Tt = None
    if test:
        if not hasattr(problem, "test_terms"):
            raise InputError(f"test=True needs a Problem with a held-out set, got {type(problem).__name__}")
        terms = problem.test_terms(test_cutoff)  # clear error without a held-out set or a basis
        with _single_thread():
            want = np.zeros(n_steps + 1, dtype=bool)
            want[steps if log_steps is not None else slice(None)] = True
            Tt = _test_curve(spec.eigvals, problem.coef.cpu().double().numpy(), terms, spec.N, a, beta, gamma,
                             tau, Lt, want)
    if log_steps is not None:
        Lt = Lt[:, steps]
        Tt = None if Tt is None else Tt[:, steps]
    Lt = Lt.reshape(*shape, Lt.shape[-1])
    if test:
        return Lt, Tt.reshape(*shape, Tt.shape[-1])
    return Lt


def _test_curve(lam, coef, terms, N, a, beta, gamma, tau, Lt, want):
    """SD test loss [G, T+1] from the renewal solution Lt [G, T+1] (see loss_curve): per mode, the two-time
    second moments (A, B, D) driven by the known total 2N L_t, and the heavy-ball mean. Evaluated at the steps
    where want [T+1] is True (NaN elsewhere): the m^T W m term costs O(N^2) per config and step."""
    dt = torch.float64
    lam_t = torch.as_tensor(lam, dtype=dt)
    h = terms["h"].cpu().to(dt)
    W = terms["W"].cpu().to(dt)
    Wd = torch.diagonal(W).contiguous()
    e2, M = terms["e2"], terms["M"]
    coef_t = torch.as_tensor(coef, dtype=dt)
    G, T1 = Lt.shape
    out = np.empty((G, T1))
    L = torch.as_tensor(Lt, dtype=dt)
    step = max(1, (1 << 15) // lam.size)
    for i in range(0, G, step):
        sl = slice(i, min(i + step, G))
        g = sl.stop - sl.start
        at = torch.as_tensor(a[sl], dtype=dt)[:, None]
        bt = torch.as_tensor(beta[sl], dtype=dt)[:, None]
        gm = torch.as_tensor(gamma[sl], dtype=dt)[:, None]
        u = at * lam_t
        m = 1 + bt - u
        k3 = gm * u * u
        k1 = m * m - tau * k3
        k2 = -2 * bt * m
        b2 = bt * bt
        A = (coef_t ** 2).expand(g, -1).clone()
        B, D = A.clone(), A.clone()
        mean, prev = coef_t.expand(g, -1).clone(), coef_t.expand(g, -1).clone()
        res = torch.full((g, T1), float("nan"), dtype=dt)

        def value(A, mean):
            return (A - mean * mean) @ Wd + 2 * (mean @ h) + torch.linalg.vecdot(mean @ W, mean)
        if want[0]:
            res[:, 0] = value(A, mean)
        Ls = L[sl] * (2 * N)
        for t in range(T1 - 1):
            An = k1 * A + k2 * B + b2 * D + k3 * Ls[:, t:t + 1]
            B = m * A - bt * B
            D, A = A, An
            mean, prev = m * mean - bt * prev, mean
            if want[t + 1]:
                res[:, t + 1] = value(A, mean)
        out[sl] = ((res + e2) / (2 * M)).numpy()
    return out


def mode_second_moments(problem, lr, momentum, batch_size, t, tau=1.0, *, replacement=False):
    """Per-mode second moments C_k(t) = E[d~_k(t)^2] (shape [N]) of the SD dynamics of one config at step t (numpy).

    From the renewal solution L_s (s < t) the modes decouple: each follows its own two-time recursion driven
    by the known total 2N L_s (docs/theory.md#generating-functions), C_k' = (m^2 - tau k3) C_k - 2 beta m B_k +
    beta^2 D_k
    + k3 (2N L_s), with m = 1 + beta - alpha lam_k and k3 = gamma alpha^2 lam_k^2. Cost O(N t)."""
    spec = as_spectrum(problem, need_w=True)
    t = int(t)
    if t < 0:
        raise InputError(f"t must be >= 0, got t={t}")
    c = 2 * spec.N * spec.w
    if t == 0:
        return c.copy()
    Lt = np.asarray(loss_curve(spec, float(lr), float(momentum), int(batch_size), t, tau,
                               replacement=replacement)).reshape(-1)
    gamma = float(noise_gamma(np.asarray(float(batch_size)), spec.N, replacement))
    a, beta, lam = float(lr), float(momentum), spec.eigvals
    m = 1 + beta - a * lam
    k3 = gamma * a * a * lam * lam
    A, B, D = c.copy(), c.copy(), c.copy()
    with np.errstate(all="ignore"):
        for s in range(t):
            A, B, D = (m * m - tau * k3) * A - 2 * beta * m * B + beta * beta * D + k3 * (2 * spec.N * Lt[s]), \
                m * A - beta * B, A
    return A
