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

from types import SimpleNamespace

import torch

from ..losses import check_loss
from ._engine import drive, kill_state, resolve_device, resolve_dtype, test_terms

REGIME = "full"
__all__ = ["run", "REGIME"]


def run(problem, configs, n_steps, *, schedule=None, log_steps=None, seed: int = 0, device="auto",
        dtype="float64", replacement: bool = False, chunk_size: int | None = None,
        memory_budget: float = 2e9, progress: bool = True, test: bool | None = None, test_cutoff: float = 1e-10,
        update=None, loss="mse"):
    """Exact second-moment dynamics for G configs (lr, momentum, batch_size) at once; returns Curves.

    test: the exact test loss on the problem's held-out set (None: when it has one; True: required; False:
    off). test_cutoff: eigenvalues below it (relative to lambda_max) count as zero in K^+.

    chunk_size: configs stepped together (default: as many as fit in `memory_budget` bytes, 8 N x N
    matrices per config). seed is recorded only (the regime is deterministic).

    update: the training rule (gfsgd.updates): SGD (default), SVAG(l), SDE() (the SGD SDE's second moments,
        stepped by ETDRK4 with SDE.substeps steps per SGD step: 8 N x N matmuls a substep), NoisyGD (the same
        second moments as SGD) or GradientPenalty(split="fixed") (full-batch GD with the penalty: deterministic, so
        the residual itself is stepped, d' = d + v', v' = beta v - alpha K (I + strength / (2c) M) d; batch_size N).
        A rule's own piece (rule.full_pieces) gets the context: problem, N, device, dtype, U, Ut (the eigenbasis),
        lam, ell = lam lam^T, coef (d0 in the eigenbasis), tt (the held-out terms or None), cache, constant.
    loss: the loss (gfsgd.losses): "mse", the squared loss 0.5 (f - y)^2 (the residual form of this regime).
    """
    problem.require_basis("the full regime")
    check_loss(loss, REGIME)  # squared loss: the residual's second moments close (gfsgd.losses)
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    N, Co, M = problem.N, problem.n_outputs, problem.n_modes  # examples, outputs per example, modes (N Co)
    U = problem.eigvecs.to(device, dtype).contiguous()  # [M, M]
    Ut = U.T.contiguous()
    lam = problem.eigvals.to(device, dtype)  # [N]
    ell = lam[:, None] * lam[None, :]  # lambda lambda^T  [N, N]
    coef = problem.coef.to(device, dtype)
    C0 = coef[:, None] * coef[None, :]  # [N, N]
    if chunk_size is None:
        chunk_size = max(1, int(memory_budget // (8 * M * M * torch.finfo(dtype).bits / 8)))
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
        C = C0.expand(g, M, M).clone()
        st = dict(C=C, B=C.clone(), D=C.clone(), S=torch.empty_like(C), T=torch.empty_like(C),
                  W=torch.empty_like(C))
        if tt is not None:  # the mean E[d~] and its previous value (v_0 = 0)
            st.update(mean=coef_g.expand(g, M).clone(), mean_prev=coef_g.expand(g, M).clone())
        return st

    def step(st, h):
        if h.t == 0 or not constant:
            cache["coef"] = coefficients(h)
        m, Kc, Ln, b2, mb = cache["coef"]
        C, B, D, S, T, W = (st[k] for k in ("C", "B", "D", "S", "T", "W"))
        # noise: c_i = sum_kl U_ik C_kl U_il; since C is symmetric, (U C)^T = C U^T
        torch.matmul(C, Ut, out=T)  # T[k, i] = (U C)_ik
        if Co == 1:
            T.mul_(Ut)
            cdiag = T.sum(-2, keepdim=True)  # [g, 1, N]
            torch.mul(Ut, cdiag, out=S)  # U^T diag(c)
            torch.matmul(S, U, out=T)  # Nmat = U^T diag(c) U
        else:  # C outputs: the examples' C x C blocks, Nmat = U^T blockdiag(U C U^T) U (docs/theory.md#outputs)
            T.copy_(block_noise(T, Ub, Ut))
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

    Ub = U.reshape(N, Co, M) if Co > 1 else None  # [N, Co, M]: the rows of each example

    def test_loss(st):
        C = st["C"]
        g = C.shape[0]
        val = tt["e2"] + 2.0 * (st["mean"] @ h) + C.reshape(g, -1) @ W_flat
        return val / (2 * tt["M"]), None

    # what a rule's piece may use (gfsgd.updates.base): the problem and the eigenbasis on the device
    ctx = SimpleNamespace(problem=problem, N=N, device=device, dtype=dtype, U=U, Ut=Ut, lam=lam, ell=ell, coef=coef,
                          tt=tt, cache=cache, constant=constant)
    return drive(regime=REGIME, problem=problem, configs=configs, n_steps=n_steps, schedule=schedule,
                 log_steps=log_steps, device=device, dtype=dtype, chunk_size=chunk_size, init=init, step=step,
                 kill=kill_state, replacement=replacement, progress=progress, test=None if tt is None else test_loss,
                 update=update, ctx=ctx,
                 meta=dict(seed=seed, repeats=1, **({} if tt is None else dict(test_cutoff=test_cutoff,
                                                                              test_modes_cut=tt["n_cut"]))))


def block_noise(T: torch.Tensor, Ub: torch.Tensor, Ut: torch.Tensor) -> torch.Tensor:
    """U^T blockdiag(U C~ U^T) U for C outputs per example, from T = C~ U^T [g, M, N Co]: the examples' Co x Co blocks
    of U C~ U^T are X_i = U_i (C~ U_i^T) (U_i = Ub[i], [Co, M]), and the result is sum_i U_i^T X_i U_i [g, M, M]."""
    g, M, _ = T.shape
    N, Co, _ = Ub.shape
    Tb = T.reshape(g, M, N, Co)  # [g, k, i, c] = (C~ U^T)[k, (i, c)]
    X = torch.einsum("iak,gkic->giac", Ub, Tb)  # [g, N, Co, Co]
    Z = torch.einsum("giac,icl->gial", X, Ub).reshape(g, N * Co, M)  # X_i U_i, rows (i, a)
    return torch.matmul(Ut, Z)  # sum_{i, a} U[(i, a), k] Z[(i, a), l]
