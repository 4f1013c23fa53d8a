"""The empirical NTK as a matrix-free operator: K_emp V without forming K_emp (or J) in full.

    op = kernel_operator(model, X)      # KernelOperator [N, N]: op @ V, op.diag(), op.trace()

Two paths: the structured one (networks of Linear layers: the per-layer features of gfsgd.ntk.empirical, the
kernel formed in row blocks and discarded, or kept when it fits in half the memory budget) and the
Jacobian-vector one (any other scalar-output network: K V = J (J^T V) with torch.func.vjp and jvp).
gfsgd.spectrum.top_eigenpairs takes such an operator (docs/theory.md#full-datasets).
"""
from __future__ import annotations

import time

import torch
from torch.func import grad, vmap

from .empirical import (check_common_args, checked_inputs, params_and_buffers, row_blocks, scalar_forward,
                        structured_block, structured_diag, structured_parts, use_structured)
from ..errors import InputError

__all__ = ["KernelOperator", "kernel_operator"]


class KernelOperator:
    """The empirical NTK K_emp = J J^T of a network at w0 as a matrix-free symmetric PSD operator [N, N].

    `op @ V` (V [N] or [N, m]) returns K_emp V; `op.diag()` the exact K_ii; `op.trace()` their sum; `op.N`,
    `op.dtype`, `op.device`. `op.passes` counts the passes over the kernel (one per `@`), `op.seconds` the
    time spent in them. Build one with `gfsgd.ntk.kernel_operator`.

    Structured path (MLPs of Linear layers): the per-layer features A_l, D_l of all N points are computed
    once (N * sum_l (fan_in + fan_out) numbers); each `@` forms K in row blocks [s:e, s:N] (the upper part,
    used for both halves, so a pass forms N^2/2 entries), multiplies and discards them. When the whole
    kernel fits in half of memory_budget it is formed once and kept (it is then the one block).
    Jacobian-vector path (any other model): K V = J (J^T V) with torch.func.vjp and jvp, over row blocks of
    the inputs and column chunks of V; it never forms J or K.
    """

    def __init__(self, N, matmul, diag, *, dtype, device, method, info=None):
        self.N, self.dtype, self.device, self.method = int(N), dtype, device, method
        self._matmul, self._diag_fn, self._diag = matmul, diag, None
        self.info = dict(info or {})
        self.passes, self.seconds = 0, 0.0

    @property
    def shape(self):
        return (self.N, self.N)

    def __matmul__(self, V):
        V = torch.as_tensor(V)
        vec = V.ndim == 1
        if vec:
            V = V[:, None]
        if V.ndim != 2 or V.shape[0] != self.N:
            raise InputError(f"the kernel operator has N={self.N} rows: V must have shape [{self.N}] or "
                             f"[{self.N}, m], got {tuple(V.shape)}")
        t0 = time.perf_counter()
        out = self._matmul(V.to(self.device, self.dtype))
        self.passes += 1
        self.seconds += time.perf_counter() - t0
        return out[:, 0] if vec else out

    def diag(self) -> torch.Tensor:
        """The exact diagonal K_ii (computed once).   # [N]"""
        if self._diag is None:
            self._diag = self._diag_fn()
        return self._diag

    def trace(self) -> float:
        return float(self.diag().double().sum())

    def __repr__(self):
        return (f"KernelOperator(N={self.N}, method={self.method}, dtype={self.dtype}, device={self.device}, "
                f"passes={self.passes})")


def _structured_operator(parts, N, budget, dtype, device):
    item = torch.finfo(dtype).bits // 8
    cache = {}
    keep = N * N * item <= budget // 2

    def matmul(V):
        if keep:
            if "K" not in cache:
                K = torch.empty(N, N, dtype=dtype, device=device)
                rb = max(1, min(N, max(256, -(-N // 8)), (budget // 2) // (3 * N * item)))
                for s, e in row_blocks(N, rb):
                    structured_block(parts, parts, s, e, s, N, out=K[s:e, s:])
                    K[e:, s:e] = K[s:e, e:].T
                cache["K"] = K
            return cache["K"] @ V
        out = torch.zeros(N, V.shape[1], dtype=dtype, device=device)
        # row block [s:e, s:N]: the block and two Gram temporaries of the same size fit in the budget
        rb = max(1, budget // (3 * N * item))
        for s, e in row_blocks(N, rb):
            blk = structured_block(parts, parts, s, e, s, N)  # [e - s, N - s]
            out[s:e] += blk @ V[s:]
            if e < N:
                out[e:] += blk[:, e - s:].T @ V[s:e]
            del blk
        return out

    return matmul, (lambda: structured_diag(parts)), dict(cached=keep)


def _jvp_operator(model, params, fixed, X, budget, dtype, device):
    from torch.func import jvp, vjp
    N = X.shape[0]
    names = list(params)
    P = sum(p.numel() for p in params.values())
    item = torch.finfo(dtype).bits // 8
    rows = max(1, min(N, budget // (8 * P * item)))  # vjp/jvp temporaries per row block
    cols = max(1, budget // (4 * P * item))  # columns of V at a time: J^T V holds cols x P numbers

    def f_rows(p, s, e):
        return scalar_forward(model, p, fixed, X[s:e])

    def matmul(V):
        out = torch.empty(N, V.shape[1], dtype=dtype, device=device)
        for c0 in range(0, V.shape[1], cols):
            Vc = V[:, c0:c0 + cols]  # [N, mc]
            JtV = {k: torch.zeros((Vc.shape[1],) + params[k].shape, dtype=dtype, device=device) for k in names}
            for s, e in row_blocks(N, rows):
                _, pull = vjp(lambda p: f_rows(p, s, e), params)
                g = vmap(pull)(Vc[s:e].T.contiguous())[0]  # {name: [mc, ...]}
                for k in names:
                    JtV[k] += g[k]
            for s, e in row_blocks(N, rows):
                def push(t):
                    return jvp(lambda p: f_rows(p, s, e), (params,), (t,))[1]
                out[s:e, c0:c0 + cols] = vmap(push)(JtV).T
        return out

    def diag():
        def f_single(p, x):
            return scalar_forward(model, p, fixed, x.unsqueeze(0)).reshape(())
        g = vmap(grad(f_single), in_dims=(None, 0))
        return torch.cat([sum((t.reshape(e - s, -1) ** 2).sum(1) for t in g(params, X[s:e]).values())
                          for s, e in row_blocks(N, rows)])

    return matmul, diag, dict(n_params=P)


def kernel_operator(model, X, *, dtype=None, device="auto", memory_budget: float | None = None,
                    method: str = "auto", params: dict | None = None) -> KernelOperator:
    """The empirical NTK K_emp = J(X) J(X)^T at the model's parameters, matrix-free (see KernelOperator).

    Args:
        model: a scalar-output torch.nn.Module (not modified); X: inputs [N, ...].
        dtype: float64 (default) or float32; device: "auto" (CUDA when available), "cpu", "cuda".
        memory_budget: bytes for the blocked temporaries (default 1 GiB). Peak memory is this plus the
            per-layer features (structured) and the caller's [N, m] blocks; never N x N (unless it fits in
            half the budget, when it is kept) and never the full Jacobian.
        method: "auto" | "structured" | "jacobian" (as in empirical_ntk; "jacobian" here means the
            matrix-free jvp/vjp path).
        params: optional {name: tensor} overriding the model's trainable parameters.
    """
    device, dtype, budget = check_common_args(method, device, dtype, memory_budget)
    X = checked_inputs(X, "X", device, dtype)
    params, fixed = params_and_buffers(model, device, dtype, params)
    with torch.no_grad():
        scalar_forward(model, params, fixed, X[:2])  # scalar-output check with a clear error
    N = X.shape[0]
    if use_structured(model, params, fixed, X, method):
        parts = structured_parts(model, params, fixed, X, budget)
        mm, dg, info = _structured_operator(parts, N, budget, dtype, device)
        return KernelOperator(N, mm, dg, dtype=dtype, device=device, method="structured", info=info)
    mm, dg, info = _jvp_operator(model, params, fixed, X, budget, dtype, device)
    return KernelOperator(N, mm, dg, dtype=dtype, device=device, method="jvp", info=info)

