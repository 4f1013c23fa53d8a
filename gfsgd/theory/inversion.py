"""The loss at any step without stepping: L_t from the generating function L(z) by a contour integral
(docs/theory.md#loss-at).

With z = e^{-s}, the coefficient extraction L_t = (1 / 2 pi i) oint L(z) z^{-t-1} dz becomes a Bromwich
integral over one period of F(s) = L(e^{-s}):

    L_t = (1 / 2 pi i) int_{sigma - i pi}^{sigma + i pi} F(s) e^{s t} ds,   sigma > 0,

whose integrand is 2 pi i periodic for integer t. The poles of F are s_p = log x_p for the eigenvalues x_p of
the averaged dynamics (|x_p| < 1 for a convergent config, Re s_p < 0). Those that matter at step t (|x_p|^t not
negligible) sit, for the slow modes, on the negative real axis near 0. The segment is deformed onto the
parabola s(u) = s_c + mu (1 + i u)^2 (Weideman and Trefethen 2007), which wraps the negative real axis, and
the trapezoidal rule with step h = 3 / n on u in [-3, 3] and mu = pi n / (12 t) converges like e^{-2 pi n / 3}:
n = 14 gives about 1e-12 relative to the integrand's scale with 15 evaluations of L (u and -u are complex
conjugates). The shift s_c is the slowest pole (the real root of U = 1 next to z = 1), so that an
exponentially decayed loss keeps its relative accuracy.

Error control, per config and step:
- rules of increasing size (RULES: n = 10, 14, 18, 22) are tried in turn, and a value is accepted when two
  successive rules agree to tol relative and the round-off of F, amplified by the cancellation in the rule's
  sum, is bounded within tol too (`_roundoff`); else the renewal solver is used. The
  trapezoidal error is about e^{-2 pi n / 3} relative to the integrand's scale near the contour's right end,
  F(mu) e^{mu t}, which can lie far above L_t: in the noise-dominated phase L_s decays faster than 1 / s, so
  F(mu) ~ L(1) = sum_s L_s is set by the early losses (at t = 1e4 on nu = 1.5, kappa = 3 the 10-node rule is
  off by ~3e-6 while the 14-node rule is within ~1e-9). Climbing stops when the disagreement no longer falls
  (round-off, which grows like e^{pi n / 12}, has taken over);
- poles off the negative real axis (momentum's complex pairs, the negative roots of beta < 0 or of strong noise)
  are not enclosed by the parabola. Each mode's three roots x (of det(x - A_k), the cubic of S_k) are computed;
  where a root lies outside the parabola and ((1 + |x|) / 2)^t is not negligible, the renewal solver is used.
  The halfway margin (1 + |x|) / 2 covers the shift of the dynamics' poles away from the per-mode roots by the
  noise coupling (tests/test_loss_at.py measures that shift on the full 3N x 3N matrix);
- t < 64 and configs with a mode whose own map is unstable (poles cancel in V / (1 - U)) go to renewal too.

Configs that do not converge (theory.is_convergent False) are stepped in the time domain up to DIVERGED_HORIZON
(`stepped.stepped_loss`, exact where the renewal solver's FFT tilt cannot follow the growth): finite values have
status "renewal", inf where the loss overflows ("diverged"), NaN beyond the horizon ("beyond_horizon").
t = 0 is L_0 for every config.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..updates import check_update
from ._inputs import as_spectrum, broadcast_configs
from .generating import loss_curve
from .sde import SOLVERS
from .stability import is_convergent
from .stepped import stepped_loss
from ..errors import InputError

__all__ = ["loss_at"]

RULES = (10, 14, 18, 22)  # node counts tried in turn; two successive ones must agree to tol
NODES, CHECK = RULES[1], RULES[0]  # the first pair (10 checks 14), which decides most configs
T_DIRECT = 64  # steps below this go to the renewal solver (cheap there, and many poles matter)
RISK = 1e-14  # weight below which a pole outside the parabola is negligible (relative to the shift's scale)
ENCLOSED = 0.75  # a pole is well inside the parabola when Re sqrt((s_p - s_c) / mu) < this (1 on the contour)
ROUNDOFF_SAFETY = 4.0  # the contour's round-off bound is this times eps x cond(F) x (sum of |terms| / |value|)
DIVERGED_HORIZON = 100_000  # non-convergent configs are stepped (SD recursion) up to this many steps
_RENEWAL_CELLS = 1 << 23  # configs x steps per renewal solve (each [G, T] array ~64 MB)
_CHUNK = 1 << 19  # configs x modes x nodes per block
_GROUP = 1 << 21  # configs x modes per group (the roots take 72 bytes per config and mode)


def loss_at(problem, lr, momentum, batch_size, t, *, tau=1.0, w=None, c=None, N=None, replacement=False,
            tol: float = 1e-8, return_info: bool = False, update=None):
    """The SD-predicted training loss L_t at the steps t, without stepping through 0..t (docs/theory.md#loss-at):
    a contour integral of L(z) = V(z) / (1 - U(z)) on a parabola chosen for each t, checked
    against a larger rule and against the poles it may miss, with the renewal solver (`loss_curve`) for
    what the checks do not accept. Agrees with `loss_curve` to `tol` relative (tests/test_loss_at.py).

    problem: a Problem or eigenvalues with w= or c= (and N=); lr, momentum, batch_size broadcast to a config
    shape; t: a step or an array of steps (integers >= 0). Returns an array (*config_shape, *t.shape).
    t = 0 gives L_0 for every config. A config that does not converge (`theory.is_convergent` is False) is
    computed in the time domain (the SD recursion stepped, O(modes) a step) for t <= DIVERGED_HORIZON (1e5
    steps): its finite, growing values are returned, inf where the loss overflows float64; beyond that horizon
    NaN (not computed), or inf if the loss had already overflowed. With return_info=True, returns (loss, info):
    info["status"] (same shape) holds "contour", "renewal", "initial" (t = 0), "diverged" (inf: overflowed)
    or "beyond_horizon" (NaN), info["error"] the contour's error estimate (NaN elsewhere) and info["nodes"] the
    node count of the contour rule returned (0 elsewhere).

    update: the training rule (gfsgd.updates; docs/theory.md#updates), t in SGD steps: SVAG(l) is SGD with
    lr / l and noise level l * gamma at step l * t; SDE() is its l -> infinity limit (`sde_loss`, momentum 0;
    its non-convergent configs are inf for t > 0).
    """
    spec = as_spectrum(problem, w=w, c=c, N=N, need_w=True)
    t_in = np.asarray(t)
    if t_in.size == 0 or not np.issubdtype(t_in.dtype, np.number) or not np.all(np.isfinite(t_in)) \
            or np.any(t_in < 0) or np.any(t_in != np.round(t_in)):
        raise InputError(f"t must be a non-empty set of integer steps >= 0, got t={t!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise InputError(f"tol must be in (0, 1), got tol={tol!r}")
    rule = check_update(update, "theory", momenta=np.ravel(momentum).tolist())
    solve = rule.theory_solver(SOLVERS)  # a rule with its own theory (the SDE: Laplace inversion)
    if solve is not None:
        loss = np.array(solve(spec, lr, momentum, batch_size, t_in, tau=tau, replacement=replacement), dtype=float)
        at0 = np.broadcast_to(t_in == 0, loss.shape)
        loss[at0] = float(spec.w.sum())  # L_0 whatever the config
        if not return_info:
            return loss
        status = np.where(at0, "initial", np.where(np.isfinite(loss), rule.name, "diverged"))
        return loss, dict(status=status)
    per, scale = rule.steps_per_sgd_step, rule.noise_scale
    ts = t_in.astype(np.int64).reshape(-1) * per
    shape, (a, beta, b), gamma, tau = broadcast_configs(spec, np.asarray(lr, dtype=float) / rule.lr_divisor,
                                                        momentum, batch_size, tau, replacement, noise_scale=scale)
    G, T = a.size, ts.size
    lam, wk = spec.eigvals, spec.w
    out = np.full((G, T), np.nan)
    err = np.full((G, T), np.nan)
    nodes = np.zeros((G, T), dtype=np.int64)
    status = np.full((G, T), "contour", dtype=object)
    conv = is_convergent(spec, a, beta, b, tau=tau, replacement=replacement, noise_scale=scale).reshape(-1)
    zero = ts == 0
    out[:, zero] = float(wk.sum())
    status[:, zero] = "initial"
    todo = conv[:, None] & ~zero[None, :]
    renew = np.zeros_like(todo)  # (config, t) left to the renewal solver
    if todo.any():
        fallback = np.zeros_like(todo)
        conv_idx = np.flatnonzero(conv)
        step = max(1, _GROUP // max(1, lam.size))  # configs per group: the per-mode roots stay ~100 MB
        for i in range(0, conv_idx.size, step):
            idx = conv_idx[i:i + step]
            fallback |= _contour(lam, wk, a[idx], beta[idx], gamma[idx], tau, ts, out, err, nodes, idx, todo, tol)
        renew |= fallback
    if renew.any():
        groups = {}
        for g in np.flatnonzero(renew.any(1)):  # configs that need the same steps share one renewal solve
            groups.setdefault(renew[g].tobytes(), []).append(g)
        for rows in groups.values():
            rows = np.asarray(rows)
            cols = np.flatnonzero(renew[rows[0]])
            out[np.ix_(rows, cols)] = _renewal(spec, rule, a[rows], beta[rows], b[rows], tau, replacement, ts[cols])
        status[renew] = "renewal"
    div = np.flatnonzero(~conv)
    if div.size and not zero.all():
        # the time domain for configs that do not converge: the SD recursion stepped to the last requested step
        # (the renewal equation's own dynamics; loss_curve's FFT tilt cannot follow a fast growth)
        near = np.flatnonzero(~zero & (ts <= DIVERGED_HORIZON))
        far = np.flatnonzero(ts > DIVERGED_HORIZON)
        want = np.concatenate([ts[near], [DIVERGED_HORIZON] if far.size else []]).astype(np.int64)
        vals = stepped_loss(lam, wk, a[div], beta[div], gamma[div], tau, want)
        fin = np.isfinite(vals)
        vals[~fin] = np.inf  # the loss overflowed float64
        out[np.ix_(div, near)] = vals[:, :near.size]
        status[np.ix_(div, near)] = np.where(fin[:, :near.size], "renewal", "diverged")
        if far.size:  # not stepped: inf if the loss had overflowed by DIVERGED_HORIZON, else NaN (not computed)
            gone = ~fin[:, -1:]
            out[np.ix_(div, far)] = np.where(gone, np.inf, np.nan)
            status[np.ix_(div, far)] = np.where(gone, "diverged", "beyond_horizon")
    loss = out.reshape(tuple(shape) + t_in.shape)
    if return_info:
        full = tuple(shape) + t_in.shape
        return loss, dict(status=status.reshape(full), error=err.reshape(full), nodes=nodes.reshape(full))
    return loss


def _renewal(spec, rule, a, beta, b, tau, replacement, steps):
    """L at `steps` (internal steps > 0) for convergent configs [g] by the renewal solver (`loss_curve`; a is the
    internal lr), in blocks of configs whose [configs, steps] arrays stay near _RENEWAL_CELLS entries."""
    per = rule.steps_per_sgd_step
    need = np.unique(steps)
    res = np.empty((a.size, need.size))
    block = max(1, _RENEWAL_CELLS // (int(need.max()) // per + 1))
    for i in range(0, a.size, block):
        r = slice(i, i + block)
        res[r] = loss_curve(spec, a[r] * rule.lr_divisor, beta[r], b[r], int(need.max()) // per, tau=tau,
                            replacement=replacement, log_steps=need // per, update=rule)
    return res[:, np.searchsorted(need, steps)]


def _contour(lam, wk, a, beta, gamma, tau, ts, out, err, nodes, idx, todo, tol):
    """Fill out[idx] by the contour rules where accepted; returns the [G_all, T] mask of (config, t) left to
    the renewal solver."""
    fallback = np.zeros_like(todo)
    fallback[np.ix_(idx, ts < T_DIRECT)] = True
    # off-axis roots [G, M, 3], the slowest mode [G], log of the margined modulus, modes unstable on their own
    mod, arg, xk, logm, bad = _mode_roots(lam, a, beta, gamma, tau)
    fallback[idx[bad]] = True
    fallback &= todo
    shift = _slowest_pole(lam, wk, a, beta, gamma, tau, xk, ts.max())
    lam_t = torch.as_tensor(lam, dtype=torch.float64)
    W3 = torch.as_tensor(np.stack([lam * lam, wk, wk * lam], 1), dtype=torch.float64)
    for j, t in enumerate(ts):
        rows = np.flatnonzero(todo[idx, j] & ~fallback[idx, j])
        if rows.size == 0:
            continue
        mu_check = math.pi * RULES[0] / (12.0 * t)  # the narrowest parabola of the rules
        risky = _missed_poles(logm, mod, arg, rows, shift, mu_check, t)
        fallback[idx[rows[risky]], j] = True
        rows = rows[~risky]
        prev, prev_amp = _rule(RULES[0], t, shift[rows], lam_t, W3, a[rows], beta[rows], gamma[rows], tau)
        n_prev = RULES[0]
        last = np.full(rows.size, np.inf)  # the previous pair's disagreement (relative)
        for n in RULES[1:]:
            if rows.size == 0:
                break
            cur, amp = _rule(n, t, shift[rows], lam_t, W3, a[rows], beta[rows], gamma[rows], tau)
            with np.errstate(divide="ignore", invalid="ignore"):
                est = np.abs(cur - prev) / np.abs(cur)
            fine = np.isfinite(cur) & (cur > 0) & (prev > 0)
            near = fine & (est <= tol)
            # est is the smaller rule's discretisation error (the larger one's is ~e^{-2 pi (n - n_prev) / 3} of
            # it), blind to the round-off of F that both carry, amplified by the sum's cancellation: that is
            # bounded per rule. The larger rule's error is taken as max(est, its round-off), the smaller's as
            # est + its round-off (which is e^{pi (n - n_prev) / 12} smaller); the better one is returned if
            # within tol.
            err_hi = np.full(rows.size, np.inf)
            err_lo = np.full(rows.size, np.inf)
            if near.any():
                r = rows[near]
                args = (shift[r], lam, wk, a[r], beta[r], gamma[r], tau)
                err_hi[near] = np.maximum(est[near], _roundoff(n, t, *args, amp[near]))
                err_lo[near] = est[near] + _roundoff(n_prev, t, *args, prev_amp[near])
            low = err_lo < err_hi
            e = np.where(low, err_lo, err_hi)
            ok = near & (e <= tol)
            hit = idx[rows[ok]]
            out[hit, j] = np.where(low, prev, cur)[ok] * np.exp(shift[rows[ok]] * t)
            err[hit, j] = e[ok]
            nodes[hit, j] = np.where(low, n_prev, n)[ok]
            # climb only while the disagreement falls (discretisation error); round-off grows with n
            go = fine & ~near & (est < 0.25 * last)
            fallback[idx[rows[~ok & ~go]], j] = True
            rows, prev, prev_amp, last, n_prev = rows[go], cur[go], amp[go], est[go], n
        fallback[idx[rows], j] = True  # still not accepted after the largest rule
    return fallback


def _rule(n, t, shift, lam_t, W3, a, beta, gamma, tau):
    """The n-point parabola rule for e^{-shift t} L_t of configs [g] (contour shifted by `shift` [g]): the values
    [g] and the ratio of the sum of the terms' moduli to the value's [g] (how much round-off in F is amplified)."""
    h = 3.0 / n
    u = h * np.arange(n + 1)
    mu = math.pi * n / (12.0 * t)
    s = shift[:, None] + mu * (1 + 1j * u[None, :]) ** 2  # [g, n+1]
    ds = 2j * mu * (1 + 1j * u[None, :])
    F = _F(s, lam_t, W3, a, beta, gamma, tau)
    g = F * np.exp((s - shift[:, None]) * t) * ds * (h / (2j * math.pi))
    val = g[:, 0].real + 2 * g[:, 1:].sum(1).real  # times e^{shift t}, applied by the caller
    with np.errstate(divide="ignore", invalid="ignore"):
        amp = (np.abs(g[:, 0]) + 2 * np.abs(g[:, 1:]).sum(1)) / np.abs(val)  # the sum's terms against its value
    return val, amp


def _F(s, lam_t, W3, a, beta, gamma, tau):
    """F(s) = L(e^{-s}) = V / (1 - U) at complex s [g, p] for configs [g]. Per mode, S_k(z) is a quadratic in
    lambda_k with coefficients that depend on (config, z) only, so the mode sums are three real matrix products
    of 1 / S_k (real and imaginary parts) with (lambda^2, w, w lambda)."""
    g, p = s.shape
    M = lam_t.numel()
    z = np.exp(-s)
    q = -np.expm1(-s)  # 1 - z, to full relative accuracy near z = 1 (the contour's right end, where |s| ~ 1 / t)
    A, B, gt = a[:, None], beta[:, None], (gamma * tau)[:, None]
    bz = B * z
    P1 = -z * (1 - bz)
    op = 1 + B
    # c0 = (1 - beta z) [(1 + beta z)^2 - z (1 + beta)^2], whose bracket is q (1 - beta^2) + beta^2 q^2: written
    # that way, without the cancellation of two O(1) terms that cost ~eps / |q| relative (1e-11 at t = 1e5)
    c0 = (1 - bz) * (q * (1 - B * B) + B * B * q * q)
    c1 = -2 * op * A * P1
    c2 = A * A * (P1 + gt * z * (1 + bz))
    sums = np.empty((g, p, 3), dtype=np.complex128)
    step = max(1, _CHUNK // max(1, M * p))
    for i in range(0, g, step):
        sl = slice(i, i + step)
        C = torch.from_numpy(np.stack([c0[sl].real, c0[sl].imag, c1[sl].real, c1[sl].imag, c2[sl].real,
                                       c2[sl].imag]))[..., None]  # [6, g', p, 1]
        Sr = C[0] + lam_t * (C[2] + lam_t * C[4])
        Si = C[1] + lam_t * (C[3] + lam_t * C[5])
        d = Sr * Sr
        d.addcmul_(Si, Si)
        Sr.div_(d)
        Si.div_(d)  # 1 / S = (Sr - i Si) / |S|^2
        sums[sl] = (Sr @ W3).numpy() - 1j * (Si @ W3).numpy()
    l2, sw, swl = sums[..., 0], sums[..., 1], sums[..., 2]
    Uz = (gamma[:, None] * A * A) * z * (1 + bz) * l2
    Vz = (1 - bz) * (1 - B * bz) * sw + 2 * A * B * z * swl
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return Vz / (1 - Uz)


def _roundoff(n, t, shift, lam, wk, a, beta, gamma, tau, amp):
    """A bound on the round-off of the n-point rule's value, relative [g]: ROUNDOFF_SAFETY x eps x (the condition
    number of F, `_cond`, at the rule's nodes u = 0 and u = 1/2, which carry the largest terms) x amp (see
    `_rule`). Without the factor 4 the bound fell short of the measured error by up to 1.3x (beta = -0.9,
    nu = 1.5, kappa = 3, t = 1e4: 4.2e-9 against 3.2e-9)."""
    mu = math.pi * n / (12.0 * t)
    s = shift[:, None] + mu * (1 + 1j * np.array([0.0, 0.5])[None, :]) ** 2
    return ROUNDOFF_SAFETY * np.finfo(float).eps * _cond(s, lam, wk, a, beta, gamma, tau).max(1) * amp


def _cond(s, lam, wk, a, beta, gamma, tau):
    """The condition number of F = V / (1 - U) as evaluated by `_F`, at complex s [g, p] (p small): with the mode
    terms N_k = n0 + lam_k n1 (V's numerators) and S_k = c0 + lam_k c1 + lam_k^2 c2, a rounding of each product
    moves them by eps x (|n0| + lam_k |n1|) and eps x Sabs_k = eps x (|c0| + lam_k |c1| + lam_k^2 |c2|), so

        kappa = sum_k w_k [(|n0| + lam_k |n1|) |S_k| + |N_k| Sabs_k] / |S_k|^2 / |V|
                + |gamma alpha^2 z (1 + beta z)| sum_k lam_k^2 Sabs_k / |S_k|^2 / |1 - U|   (+ 1).

    Large where the terms of a sum cancel: near the edge at beta -> -1 V's numerators (1 - beta z)(1 - beta^2 z)
    and 2 alpha beta lam z nearly cancel for the top modes, which carry the loss when kappa >> 1 (kappa ~ 400
    measured at beta = -0.9, 0.995 x the edge, nu = 1.5, kappa = 3)."""
    g, p = s.shape
    out = np.empty((g, p))
    z = np.exp(-s)
    q = -np.expm1(-s)
    A, B, gt = a[:, None], beta[:, None], (gamma * tau)[:, None]
    bz = B * z
    c = np.stack([(1 - bz) * (q * (1 - B * B) + B * B * q * q), 2 * (1 + B) * A * z * (1 - bz),
                  A * A * (-z * (1 - bz) + gt * z * (1 + bz))])  # [3, g, p]
    n0, n1 = (1 - bz) * (1 - B * bz), 2 * A * B * z
    k3 = np.abs((gamma[:, None] * A * A) * z * (1 + bz))
    step = max(1, _CHUNK // max(1, lam.size * p))
    for i in range(0, g, step):
        sl = slice(i, i + step)
        cc = c[:, sl, :, None]
        S = cc[0] + lam * (cc[1] + lam * cc[2])  # [g', p, M]
        S2 = (S * S.conj()).real
        Sabs = np.abs(cc[0]) + lam * (np.abs(cc[1]) + lam * np.abs(cc[2]))
        N = n0[sl, :, None] + lam * n1[sl, :, None]
        V = (N * wk / S).sum(-1)
        U = (lam * lam / S).sum(-1) * ((gamma[sl, None] * A[sl] * A[sl]) * z[sl] * (1 + bz[sl]))
        Nabs = np.abs(n0[sl, :, None]) + lam * np.abs(n1[sl, :, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            out[sl] = (1 + (wk * (Nabs * np.sqrt(S2) + np.abs(N) * Sabs) / S2).sum(-1) / np.abs(V)
                       + k3[sl] * (lam * lam * Sabs / S2).sum(-1) / np.abs(1 - U))
    return np.where(np.isfinite(out), out, np.inf)


def _mode_roots(lam, a, beta, gamma, tau):
    """_mode_roots_block over blocks of configs (small arrays stay in cache: 3x faster than one block).
    Returns (mod, arg, xmax, logm, unstable)."""
    step = max(1, (1 << 16) // max(1, lam.size))
    parts = [_mode_roots_block(lam, a[i:i + step], beta[i:i + step], gamma[i:i + step], tau)
             for i in range(0, a.size, step)]
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(5))


def _mode_roots_block(lam, a, beta, gamma, tau):
    """The roots x of det(x - A_k) = x^3 + c2 x^2 + c1 x + c0 for every config and mode (the per-mode poles are
    z = 1 / x), c2 = beta - m^2 + gamma tau u^2, c1 = beta (m^2 - beta + gamma tau u^2), c0 = -beta^3,
    m = 1 + beta - u, u = alpha lambda (docs/theory.md#stability), by Cardano's formula in real arithmetic.

    Returns (mod, arg, xmax, logm, unstable): mod and arg [G, M, 3] the modulus and |argument| of each root,
    with mod = 0 for the positive real roots (always inside the parabola, so never needed); xmax [G] the
    largest positive real root below 1 (the slowest mode); logm = log((1 + mod) / 2) (-inf where mod = 0);
    unstable [G]: some mode with a root of modulus > 1 + 1e-9 (its own map is unstable)."""
    u = a[:, None] * lam[None, :]
    bt = np.broadcast_to(beta[:, None], u.shape)
    gtu = (gamma * tau)[:, None] * u * u
    m2 = (1 + bt - u) ** 2
    c2 = bt - m2 + gtu
    c1 = bt * (m2 - bt + gtu)
    c0 = -bt * bt * bt
    sh = c2 / 3
    p = c1 - c2 * sh
    q = sh * (2 * sh * sh - c1) + c0
    p3 = p / 3
    D = (q / 2) ** 2 + p3 * p3 * p3
    one = D > 0  # one real root and a complex pair; else three real roots
    rD = np.sqrt(np.maximum(D, 0.0))
    A1 = np.cbrt(-q / 2 + rD)
    A2 = np.cbrt(-q / 2 - rD)
    re = -(A1 + A2) / 2 - sh
    im = (math.sqrt(3) / 2) * np.abs(A1 - A2)
    rp = np.sqrt(np.maximum(-p3, 0.0))
    rs = np.where(rp > 0, rp, 1.0)
    th = np.arccos(np.clip(np.where(rp > 0, -q / (2 * rs * rs * rs), 0.0), -1.0, 1.0)) / 3
    c, sn = rp * np.cos(th), (math.sqrt(3) * rp) * np.sin(th)
    cplx = one & (im > 1e-12 * np.abs(re))
    real = [np.where(one, A1 + A2 - sh, 2 * c - sh),  # the real roots; entries 1, 2 unused where cplx
            np.where(one, re, -c + sn - sh), np.where(one, re, -c - sn - sh)]
    pair = np.hypot(re, im)
    pair_arg = np.abs(np.arctan2(im, re))
    mod = np.empty(u.shape + (3,))
    arg = np.empty(u.shape + (3,))
    xmax = np.zeros(u.shape)
    unstable = np.zeros(u.shape, dtype=bool)
    for k, x in enumerate(real):
        neg = x < 0
        mk = np.where(neg, -x, 0.0)
        ak = np.where(neg, math.pi, 0.0)
        inside = (x > 0) & (x < 1)
        if k:
            mk = np.where(cplx, pair, mk)
            ak = np.where(cplx, pair_arg, ak)
            inside &= ~cplx
        mod[..., k], arg[..., k] = mk, ak
        xmax = np.maximum(xmax, np.where(inside, x, 0.0))
        unstable |= np.abs(x) > 1 + 1e-9
    unstable = (unstable | ((mod > 1 + 1e-9).any(-1))) & (lam[None, :] > 0)
    with np.errstate(divide="ignore"):
        logm = np.where(mod > 0, np.log1p(mod) - math.log(2.0), -np.inf)
    return mod, arg, xmax.max(1), logm, unstable.any(1)


def _slowest_pole(lam, wk, a, beta, gamma, tau, xk, t_max):
    """s_c = log x* for each config: x* in (x_k, 1) the real root of U(1 / x) = 1 above the largest positive
    real mode root x_k (the dynamics' slowest pole), by bisection in s = log x to 1e-3 of the rule's mu at
    t_max; 0 where the decay over t_max is mild (x_k^t_max > e^-2) and the shift does not matter."""
    G = a.size
    if np.any((lam == 0) & (wk > 0)):  # modes that never move: L_t tends to a constant, the pole is s = 0
        return np.zeros(G)
    shift = np.zeros(G)
    with np.errstate(divide="ignore"):
        sk = np.log(xk)
    need = np.flatnonzero(sk * t_max < -2.0)
    if need.size == 0:
        return shift
    lo, hi = sk[need].copy(), np.zeros(need.size)  # 1 - U(e^{-s}) < 0 at lo (next to the pole), > 0 at s = 0
    width = 1e-3 * math.pi * CHECK / (12.0 * t_max)
    for _ in range(200):
        if np.all(hi - lo <= width):
            break
        mid = 0.5 * (lo + hi)
        pos = _u_real(np.exp(-mid), lam, a[need], beta[need], gamma[need], tau) < 1
        hi = np.where(pos, mid, hi)
        lo = np.where(pos, lo, mid)
    shift[need] = hi  # just right of the pole
    return shift


def _u_real(z, lam, a, beta, gamma, tau):
    """U(z) for real z [g] and configs [g] (the sum of generating.U, with gamma given), in blocks of configs."""
    out = np.empty(z.size)
    step = max(1, (1 << 16) // max(1, lam.size))
    l2 = lam * lam
    for i in range(0, z.size, step):
        sl = slice(i, i + step)
        zz, bz = z[sl, None], (beta[sl] * z[sl])[:, None]
        u = a[sl, None] * lam[None, :]
        m = 1 + beta[sl, None] - u
        S = (1 - bz) * ((1 + bz) ** 2 - zz * m * m) + (gamma[sl] * tau)[:, None] * u * u * zz * (1 + bz)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[sl] = gamma[sl] * a[sl] ** 2 * z[sl] * (1 + bz[:, 0]) * ((1 / S) @ l2)
    return out


def _missed_poles(logm, mod, arg, rows, shift, mu, t):
    """[len(rows)] bool: for configs `rows`, an off-axis mode root (modulus `mod`, |argument| `arg` [G, M, 3];
    logm = log((1 + mod) / 2), -inf where there is none) outside the parabola (rule parameter mu, shifted by
    `shift`) whose pole may weigh more than RISK at step t, with the halfway margin (1 + |x|) / 2."""
    whole = rows.size == logm.shape[0]
    sub = logm if whole else logm[rows]
    thr = shift[rows] + math.log(RISK) / t  # weight ((1 + |x|) / 2)^t e^{-shift t} > RISK
    cand = sub > thr[:, None, None]
    if not cand.any():
        return np.zeros(rows.size, dtype=bool)
    gi, ki, ri = np.nonzero(cand)
    g = rows[gi]
    sx = np.log(mod[g, ki, ri]) + 1j * arg[g, ki, ri] - shift[g]
    inside = np.sqrt(sx / mu).real < ENCLOSED
    out = np.zeros(rows.size, dtype=bool)
    np.logical_or.at(out, gi[~inside], True)
    return out
