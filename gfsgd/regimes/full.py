"""Exact batch-averaged regime: the second moments of the residual under random batches (docs/theory.md#full).

With C = E[d d^T], J = E[d v^T], P = E[v v^T] the dynamics is closed:

    Q(C) = gamma N K diag(C) K + (1 - gamma) K C K
    P' = alpha^2 Q(C) - alpha beta (K J + J^T K) + beta^2 P
    C' = C - alpha (K C + C K) + beta (J + J^T) + P'
    J' = beta J - alpha C K + P',       L = Tr C / (2N).

Implementation. Everything is done in the eigenbasis of K (X~ = U^T X U), where K is diagonal and every term
is elementwise except the noise term, whose (k, l) entry is gamma lambda_k lambda_l [N (U^T diag(c) U)_kl - C~_kl]
with c_i = C_ii = rowsum((U C~) * U): two N x N matmuls a step. We use the two-time form of the same
dynamics (B = E[d(t) d(t-1)^T], D = C(t-1); J = C - B, P = C - B - B^T + D), from
d(t+1) = M d(t) - beta d(t-1) - alpha eps(t), M = (1 + beta) I - alpha K, which needs fewer passes:

    C' = (m m^T - alpha^2 gamma lambda lambda^T) * C + beta^2 D - beta (F + F^T)
         + alpha^2 gamma N (lambda lambda^T) * (U^T diag(c) U),        F = m * B (row scaling), m = 1 + beta - alpha lambda
    B' = m * C - beta B^T,     D' = C.

C and D stay exactly symmetric (every update is a symmetric expression, e.g. F + F^T is formed before it is
added; see docs/theory.md#pitfalls, for what goes wrong otherwise). Configs are batched: the state
is [g, N, N].

Test loss (exact; docs/theory.md#test-loss): with a held-out set the mean m = E[d~] is tracked too; it
follows noiseless heavy ball per mode, m' = (1 + beta - alpha lambda) m - beta m_prev, and at the logged steps
    E|r_t|^2 = |e|^2 + 2 h^T m + Tr(W C~),   L_test = E|r_t|^2 / (2M),
Tr(W C~) being one pass over the [g, N, N] state (a matrix-vector product).
"""
from __future__ import annotations

import torch

from ..updates import SDE, GradientPenalty, as_update
from ._engine import drive, resolve_device, resolve_dtype, test_terms
from ._sde import etd_coefficients, etdrk4_step

REGIME = "full"
__all__ = ["run", "REGIME"]


def run(problem, configs, n_steps, *, schedule=None, log_steps=None, seed: int = 0, device="auto",
        dtype="float64", replacement: bool = False, chunk_size: int | None = None,
        memory_budget: float = 2e9, progress: bool = True, test: bool | None = None, test_cutoff: float = 1e-10,
        update=None):
    """Exact second-moment dynamics for G configs (lr, momentum, batch_size) at once; returns Curves.

    test: the exact test loss on the problem's held-out set (None: when it has one; True: required; False:
    off). test_cutoff: eigenvalues below it (relative to lambda_max) count as zero in K^+.

    chunk_size: configs stepped together (default: as many as fit in `memory_budget` bytes, 8 N x N
    matrices per config). seed is recorded only (the regime is deterministic).

    update: the training rule (gfsgd.updates): SGD (default), SVAG(l), SDE() (the SGD SDE's second moments,
        stepped by ETDRK4 with SDE.substeps steps per SGD step: 8 N x N matmuls a substep), NoisyGD (the same
        second moments as SGD) or GradientPenalty(split="fixed") (full-batch GD with the penalty: deterministic, so
        the residual itself is stepped, d' = d + v', v' = beta v - alpha K (I + strength / (2c) M) d; batch_size N).
    """
    problem.require_basis("the full regime")
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    N = problem.N
    U = problem.eigvecs.to(device, dtype).contiguous()  # [N, N]
    Ut = U.T.contiguous()
    lam = problem.eigvals.to(device, dtype)  # [N]
    ell = lam[:, None] * lam[None, :]  # lambda lambda^T  [N, N]
    coef = problem.coef.to(device, dtype)
    C0 = coef[:, None] * coef[None, :]  # [N, N]
    if chunk_size is None:
        chunk_size = max(1, int(memory_budget // (8 * N * N * torch.finfo(dtype).bits / 8)))
    constant = schedule is None or schedule.is_constant
    cache = {}
    tt = test_terms(problem, test, test_cutoff, device, dtype)
    if tt is not None:
        W_flat, h = tt["W"].reshape(-1), tt["h"]
        coef_g = coef[None, :]

    def coefficients(h):
        a = h.lr[:, None, None]  # [g, 1, 1]
        beta = h.momentum[:, None, None]
        a2g = a * a * h.gamma[:, None, None]
        m = 1.0 + beta - a * lam[None, :, None]  # [g, N, 1]
        Kc = m * m.transpose(1, 2) - a2g * ell  # [g, N, N]
        Ln = (0.5 * N) * a2g * ell  # [g, N, N]  (the 1/2 undoes X = Nmat + Nmat^T)
        return m, Kc, Ln, beta * beta, -beta

    def init(lr, mom, b):
        g = lr.numel()
        C = C0.expand(g, N, N).clone()
        st = dict(C=C, B=C.clone(), D=C.clone(), S=torch.empty_like(C), T=torch.empty_like(C),
                  W=torch.empty_like(C))
        if tt is not None:  # the mean E[d~] and its previous value (v_0 = 0)
            st.update(mean=coef_g.expand(g, N).clone(), mean_prev=coef_g.expand(g, N).clone())
        return st

    def step(st, h):
        if h.t == 0 or not constant:
            cache["coef"] = coefficients(h)
        m, Kc, Ln, b2, mb = cache["coef"]
        C, B, D, S, T, W = (st[k] for k in ("C", "B", "D", "S", "T", "W"))
        # noise: c_i = sum_kl U_ik C_kl U_il; since C is symmetric, (U C)^T = C U^T
        torch.matmul(C, Ut, out=T)  # T[k, i] = (U C)_ik
        T.mul_(Ut)
        cdiag = T.sum(-2, keepdim=True)  # [g, 1, N]
        torch.mul(Ut, cdiag, out=S)  # U^T diag(c)
        torch.matmul(S, U, out=T)  # Nmat = U^T diag(c) U
        torch.add(T, T.mT, out=S)  # exactly symmetric 2 Nmat
        torch.mul(B, m, out=T)  # F = m * B
        torch.add(T, T.mT, out=W)  # F + F^T
        # C' assembled in D's buffer (D is read once, first)
        D.mul_(b2).addcmul_(W, mb).addcmul_(S, Ln).addcmul_(C, Kc)
        torch.mul(C, m, out=T)  # B' = m * C - beta B^T
        T.addcmul_(B.mT, mb)
        st["C"], st["D"], st["B"], st["T"] = D, C, T, B
        if tt is not None:  # noiseless heavy ball per mode: m' = (1 + beta - alpha lambda) m - beta m_prev
            new = st["mean_prev"].mul_(mb[..., 0]).addcmul_(m[..., 0], st["mean"])
            st["mean_prev"], st["mean"] = st["mean"], new
        loss = torch.diagonal(D, dim1=-2, dim2=-1).sum(-1) / (2 * N)
        return st, loss, None

    def test_loss(st):
        C = st["C"]
        g = C.shape[0]
        val = tt["e2"] + 2.0 * (st["mean"] @ h) + C.reshape(g, -1) @ W_flat
        return val / (2 * tt["M"]), None

    rule = as_update(update)
    if isinstance(rule, GradientPenalty):  # the residual's operator A = K (I + strength / (2c) M), M = blockdiag(K)
        K_ = problem.K.to(device, dtype)
        Mop = torch.block_diag(*[K_[i:i + rule.chunk_size, i:i + rule.chunk_size]
                                 for i in range(0, N, rule.chunk_size)]) if N % rule.chunk_size == 0 else None
        At = None if Mop is None else (K_ + (rule.strength / (2 * rule.chunk_size)) * (K_ @ Mop)).T.contiguous()
        if tt is not None and Mop is not None:
            Ktest = problem.K_test.to(device, dtype)
            Bt = (Ktest + (rule.strength / (2 * rule.chunk_size)) * (Ktest @ Mop)).T.contiguous()  # [N, M]
            r0 = problem.r_test.to(device, dtype)

    def pen_init(lr, mom, b):
        g = lr.numel()
        d = problem.d0.to(device, dtype).expand(g, N).clone()
        st = dict(d=d, v=torch.zeros_like(d))
        if tt is not None:
            st.update(r=r0.expand(g, r0.numel()).clone(), vt=torch.zeros(g, r0.numel(), dtype=dtype, device=device))
        return st

    def pen_step(st, h):  # deterministic: v' = beta v - alpha A d, d' = d + v' (and the same at the test points)
        beta, neg = h.momentum[:, None], -h.lr[:, None]
        dn = st["d"] * neg
        st["v"].mul_(beta).add_(dn @ At)
        if tt is not None:
            st["vt"].mul_(beta).add_(dn @ Bt)
            st["r"].add_(st["vt"])
        st["d"].add_(st["v"])
        return st, torch.linalg.vecdot(st["d"], st["d"]) / (2 * N), None

    def pen_test(st):
        return torch.linalg.vecdot(st["r"], st["r"]) / (2 * tt["M"]), None

    def noise_coupling(X, k3N):  # alpha^2 gamma N (lambda lambda^T) * (U^T diag(c) U),  c = diag(U X U^T)
        c = (torch.matmul(U, X) * U).sum(-1)  # [g, N]
        return k3N * torch.matmul(Ut, c[:, :, None] * U)

    def sde_step(st, h):  # the SGD SDE's second moments over one SGD step (docs/theory.md#updates)
        if h.t == 0 or not constant:
            a = h.lr[:, None, None]
            a2g = a * a * h.gamma[:, None, None]
            rates = -a * (lam[None, :, None] + lam[None, None, :]) - a2g * ell  # [g, N, N]
            cache["sde"] = etd_coefficients(rates, 1.0 / rule.substeps), N * a2g * ell, torch.exp(-h.lr[:, None] * lam)
        coef, k3N, decay = cache["sde"]
        C = st["C"]
        for _ in range(rule.substeps):
            C = etdrk4_step(C, coef, lambda x: noise_coupling(x, k3N))
        st["C"] = 0.5 * (C + C.mT)  # exactly symmetric
        if tt is not None:  # the mean follows dm/dt = -alpha lambda m
            st["mean"] = st["mean"] * decay
        return st, torch.diagonal(st["C"], dim1=-2, dim2=-1).sum(-1) / (2 * N), None

    def kill(st, mask):
        for key in ("C", "B", "D", "mean", "mean_prev", "d", "v", "r", "vt"):
            if key in st:
                st[key][mask] = 0.0

    return drive(regime=REGIME, problem=problem, configs=configs, n_steps=n_steps, schedule=schedule,
                 log_steps=log_steps, device=device, dtype=dtype, chunk_size=chunk_size,
                 init=pen_init if isinstance(rule, GradientPenalty) else init,
                 step=pen_step if isinstance(rule, GradientPenalty) else sde_step if isinstance(rule, SDE) else step,
                 kill=kill, replacement=replacement, progress=progress,
                 test=None if tt is None else pen_test if isinstance(rule, GradientPenalty) else test_loss, update=rule,
                 meta=dict(seed=seed, repeats=1, **({} if tt is None else dict(test_cutoff=test_cutoff,
                                                                              test_modes_cut=tt["n_cut"]))))
