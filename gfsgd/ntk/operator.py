"""The empirical NTK as a matrix-free operator: K_emp V without forming K_emp (or J) in full.

    op = kernel_operator(model, X)      # KernelOperator [N, N]: op @ V, op.diag(), op.trace()

Two paths: the structured one (networks of Linear layers: the per-layer features of gfsgd.ntk.empirical, the
kernel formed in row blocks and discarded, or kept when it fits in half the memory budget) and the
Jacobian-vector one (any other scalar-output network: K V = J (J^T V) with torch.func.vjp and jvp).
gfsgd.spectrum.top_eigenpairs takes such an operator (docs/theory.md#full-datasets).

Memory (benchmarks/README.md#bench_memorypy): `memory_budget` bounds what the operator holds (the per-layer
features, the kept kernel) plus what one pass allocates (three row blocks of at most ROW_CAP rows, and the
[N, m] result). A caller that holds memory of its own (the Krylov basis of top_eigenpairs) lowers the pass
temporaries with `op.set_pass_budget(bytes)`; `op.held_bytes` and `op.pass_bytes(m)` say what the operator
holds and what a pass of m columns allocates.
"""
from __future__ import annotations

import time

import torch
from torch.func import grad, vmap

from .empirical import (check_common_args, checked_inputs, params_and_buffers, row_blocks, scalar_forward,
                        structured_diag, structured_parts, use_structured)
from ..errors import InputError
from ..spectrum.memory import release_freed_memory

__all__ = ["KernelOperator", "kernel_operator", "ROW_CAP"]

# Rows per kernel block. A block row costs N numbers in each of three buffers, and BLAS is no faster with
# thousands of rows than with a few hundred: MLP width 1000, N = 9,000, 310 columns, one pass took 8.4-11.5 s
# with 256 rows, 10.0-12.0 s with 512, 14.6-14.9 s with 1,024, 13.2-13.6 s with 2,048, and 16.6-21.3 s with the
# former ~5,000-row blocks (2-core CPU shared with other jobs). So the blocks stay small and the memory budget
# goes to the caller's Krylov basis.
ROW_CAP = 256


class KernelOperator:
    """The empirical NTK K_emp = J J^T of a network at w0 as a matrix-free symmetric PSD operator [N, N].

    `op @ V` (V [N] or [N, m]) returns K_emp V; `op.diag()` the exact K_ii; `op.trace()` their sum; `op.N`,
    `op.dtype`, `op.device`. `op.passes` counts the passes over the kernel (one per `@`), `op.seconds` the
    time spent in them. Build one with `gfsgd.ntk.kernel_operator`.

    Structured path (MLPs of Linear layers): the per-layer features A_l, D_l of all N points are computed
    once (N * sum_l (fan_in + fan_out) numbers, filled in place chunk by chunk); each `@` forms K in row
    blocks [s:e, s:N] (the upper part, used for both halves, so a pass forms N^2/2 entries) in three reused
    buffers of at most ROW_CAP rows, multiplies and discards them. The kernel is formed once and kept when it
    fits in half of memory_budget and, with the features, in the whole of it.
    Jacobian-vector path (any other model): K V = J (J^T V) with torch.func.vjp and jvp, over row blocks of
    the inputs and column chunks of V; it never forms J or K.

    Memory: `op.held_bytes` (features + kept kernel), `op.pass_bytes(m)` (what one pass of m columns
    allocates: its temporaries and the [N, m] result), `op.set_pass_budget(nbytes)` (lower the temporaries of
    the next passes, e.g. while a caller's Krylov basis grows); `op.info["memory"]` records the plan.
    """

    def __init__(self, N, matmul, diag, *, dtype, device, method, info=None, memory=None):
        self.N, self.dtype, self.device, self.method = int(N), dtype, device, method
        self._matmul, self._diag_fn, self._diag = matmul, diag, None
        self._memory = memory
        self.info = dict(info or {})
        self.passes, self.seconds = 0, 0.0

    @property
    def shape(self):
        return (self.N, self.N)

    @property
    def memory_budget(self) -> int | None:
        return None if self._memory is None else self._memory.budget

    @property
    def held_bytes(self) -> int:
        """Bytes the operator holds between passes: the per-layer features and the kept kernel."""
        return 0 if self._memory is None else self._memory.held

    def pass_bytes(self, m: int = 1) -> int:
        """Bytes one pass with m columns allocates at most: its temporaries and its [N, m] result."""
        item = torch.finfo(self.dtype).bits // 8
        return (0 if self._memory is None else self._memory.temporaries()) + self.N * int(m) * item

    def min_pass_bytes(self, m: int = 1) -> int:
        """The least a pass with m columns can allocate (one row block of one row; the kept kernel: none)."""
        item = torch.finfo(self.dtype).bits // 8
        return (0 if self._memory is None else self._memory.minimum()) + self.N * int(m) * item

    def set_pass_budget(self, nbytes) -> int:
        """Let the next passes allocate at most `nbytes` of temporaries (never more than memory_budget leaves
        beside what the operator holds, never fewer than one row). Returns the temporaries' bytes now."""
        if self._memory is None:
            return 0
        self._memory.set(int(nbytes))
        self.info["memory"] = self._memory.as_dict()
        return self._memory.temporaries()

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


class _StructuredMemory:
    """The structured path's memory plan: features + (kept kernel | three row blocks of `rows` x N numbers)."""

    def __init__(self, N, item, budget, features, kept):
        self.N, self.item, self.budget, self.features, self.kept = N, item, int(budget), int(features), kept
        self.held = self.features + (N * N * item if kept else 0)
        self.rows = self._rows(self.budget - self.held)

    def _rows(self, nbytes):
        return max(1, min(self.N, ROW_CAP, int(nbytes) // (3 * self.N * self.item)))

    def set(self, nbytes):
        self.rows = self._rows(min(nbytes, self.budget - self.held))

    def temporaries(self):
        return 0 if self.kept else 3 * self.rows * self.N * self.item

    def minimum(self):
        return 0 if self.kept else 3 * self.N * self.item

    def as_dict(self):
        return dict(budget=self.budget, feature_bytes=self.features, kernel_bytes=self.N * self.N * self.item
                    if self.kept else 0, held_bytes=self.held, block_rows=None if self.kept else self.rows,
                    pass_temporaries=self.temporaries())


def _flat(buf, r, c):
    """A contiguous [r, c] view of the front of a flat buffer."""
    return buf[:r * c].view(r, c)


def _block_into(parts, s, e, c0, blk, gbuf, abuf):
    """blk [e - s, N - c0] <- K[s:e, c0:N] = sum_l (s_l^2 a a^T + [bias]) o (delta delta^T), the matmuls done in
    the flat buffers gbuf, abuf (the same operations as gfsgd.ntk.empirical.structured_block, without
    allocating a block per layer)."""
    A, D, scales, has_bias = parts
    r, c = e - s, A[0].shape[0] - c0
    blk.zero_()
    G, Aa = _flat(gbuf, r, c), _flat(abuf, r, c)
    for a, d, sc, hb in zip(A, D, scales, has_bias):
        torch.mm(d[s:e], d[c0:].T, out=G)  # delta delta^T
        torch.mm(a[s:e], a[c0:].T, out=Aa)  # a a^T
        if sc != 1.0:
            Aa.mul_(sc * sc)
        if hb:
            Aa.add_(1.0)  # (s^2 a a^T + 1) o delta delta^T = weight + bias contributions
        blk.addcmul_(Aa, G)
    return blk


def _features(model, params, fixed, X, budget):
    """The structured path's per-layer features of all N rows, (A, D, scales, has_bias), written chunk by chunk
    into tensors allocated once (no concatenated copy), and their bytes."""
    N, item = X.shape[0], X.element_size()
    first = structured_parts(model, params, fixed, X[:1], budget)
    width = sum(a.shape[1] for a in first[0]) + sum(d.shape[1] for d in first[1])
    total = N * width * item
    A = [torch.empty(N, a.shape[1], dtype=X.dtype, device=X.device) for a in first[0]]
    D = [torch.empty(N, d.shape[1], dtype=X.dtype, device=X.device) for d in first[1]]
    rows = max(64, (budget - total) // (6 * width * item))  # a chunk's temporaries: about 6 x its features
    for s, e in row_blocks(N, rows):
        a_c, d_c, _, _ = structured_parts(model, params, fixed, X[s:e], budget)
        for dst, src in zip(A + D, a_c + d_c):
            dst[s:e] = src
        del a_c, d_c
    release_freed_memory()  # the chunks' temporaries, kept by the C heap otherwise
    return (A, D, first[2], first[3]), total


def _structured_operator(parts, features, N, budget, dtype, device):
    item = torch.finfo(dtype).bits // 8
    kernel = N * N * item
    build = 2 * min(N, ROW_CAP) * N * item  # the two Gram buffers that form the kept kernel
    keep = kernel <= budget // 2 and features + kernel + build <= budget
    mem = _StructuredMemory(N, item, budget, features, keep)
    cache = {}

    def buffers(rows, n_blocks):
        return [torch.empty(rows * N, dtype=dtype, device=device) for _ in range(n_blocks)]

    def matmul(V):
        if keep:
            if "K" not in cache:
                K = torch.empty(N, N, dtype=dtype, device=device)
                rb = min(N, ROW_CAP)
                gbuf, abuf = buffers(rb, 2)
                for s, e in row_blocks(N, rb):
                    _block_into(parts, s, e, s, K[s:e, s:], gbuf, abuf)
                    K[e:, s:e] = K[s:e, e:].T
                del gbuf, abuf
                cache["K"] = K
            return cache["K"] @ V
        out = torch.zeros(N, V.shape[1], dtype=dtype, device=device)
        rb = mem.rows  # row block [s:e, s:N] and its two Gram buffers: 3 x rb x N numbers
        bbuf, gbuf, abuf = buffers(min(rb, N), 3)
        for s, e in row_blocks(N, rb):
            blk = _block_into(parts, s, e, s, _flat(bbuf, e - s, N - s), gbuf, abuf)  # [e - s, N - s]
            out[s:e].addmm_(blk, V[s:])
            if e < N:
                out[e:].addmm_(blk[:, e - s:].T, V[s:e])
        return out

    def diag():  # in row chunks: the squared features of a chunk at a time
        A, D, scales, has_bias = parts
        rows = max(1, min(N, ROW_CAP))
        return torch.cat([structured_diag(([a[s:e] for a in A], [d[s:e] for d in D], scales, has_bias))
                          for s, e in row_blocks(N, rows)])

    return matmul, diag, dict(cached=keep, memory=mem.as_dict()), mem


class _JvpMemory:
    """The jvp path's plan: its temporaries are sized from the budget (rows of vjp/jvp, columns of V)."""

    def __init__(self, budget, P, item, N):
        self.budget, self.P, self.item, self.N, self.held = int(budget), P, item, N, 0
        self.set(self.budget)

    def set(self, nbytes):
        b = max(1, min(int(nbytes), self.budget))
        self.bytes = b
        self.rows = max(1, min(self.N, b // (8 * self.P * self.item)))  # vjp/jvp temporaries per row block
        self.cols = max(1, b // (4 * self.P * self.item))  # columns of V at a time: J^T V holds cols x P numbers

    def temporaries(self):
        return self.bytes

    def minimum(self):
        return 12 * self.P * self.item

    def as_dict(self):
        return dict(budget=self.budget, held_bytes=0, row_block=self.rows, column_chunk=self.cols,
                    pass_temporaries=self.bytes)


def _jvp_operator(model, params, fixed, X, budget, dtype, device):
    from torch.func import jvp, vjp
    N = X.shape[0]
    names = list(params)
    P = sum(p.numel() for p in params.values())
    item = torch.finfo(dtype).bits // 8
    mem = _JvpMemory(budget, P, item, N)

    def f_rows(p, s, e):
        return scalar_forward(model, p, fixed, X[s:e])

    def matmul(V):
        rows, cols = mem.rows, mem.cols
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
                          for s, e in row_blocks(N, mem.rows)])

    return matmul, diag, dict(n_params=P, memory=mem.as_dict()), mem


def kernel_operator(model, X, *, dtype=None, device="auto", memory_budget: float | None = None,
                    method: str = "auto", params: dict | None = None) -> KernelOperator:
    """The empirical NTK K_emp = J(X) J(X)^T at the model's parameters, matrix-free (see KernelOperator).

    Args:
        model: a scalar-output torch.nn.Module (not modified); X: inputs [N, ...].
        dtype: float64 (default) or float32; device: "auto" (CUDA when available), "cpu", "cuda".
        memory_budget: bytes (default 1 GiB) for what the operator holds and what one pass allocates beside V
            and its [N, m] result: structured path, the per-layer features (N * sum_l (fan_in + fan_out)
            numbers) plus either the kept kernel (when it fits in half the budget and, with the features, in
            all of it) or three row blocks of at most ROW_CAP rows; never the full Jacobian. When the features
            alone exceed the budget the blocks shrink to one row (op.held_bytes then exceeds the budget, which
            top_eigenpairs(memory_budget=...) refuses). op.info["memory"] records the plan.
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
        parts, features = _features(model, params, fixed, X, budget)
        mm, dg, info, mem = _structured_operator(parts, features, N, budget, dtype, device)
        return KernelOperator(N, mm, dg, dtype=dtype, device=device, method="structured", info=info, memory=mem)
    mm, dg, info, mem = _jvp_operator(model, params, fixed, X, budget, dtype, device)
    return KernelOperator(N, mm, dg, dtype=dtype, device=device, method="jvp", info=info, memory=mem)
