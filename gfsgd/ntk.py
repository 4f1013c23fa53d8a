"""Neural tangent kernels: the empirical NTK of a torch network (torch.func, row-blocked) and the analytic
infinite-width NTK of NTK-parameterised ReLU MLPs; the bridge from a network to a Problem.

Empirical NTK of a network f(x; w) with a scalar output and P trainable parameters w:

    K_emp(x1, x2) = J(x1) J(x2)^T,      J(x) = df(x; w)/dw  [n, P]                        # K_emp: [N1, N2]

Two methods, chosen by `method=`:

- "jacobian" (any network): per-example Jacobians with vmap(jacrev(f)) over row blocks of the inputs,
  contracted block by block (sum over parameter tensors of J1 J2^T). Peak memory ~ 2 blocks x P numbers.
- "structured" (networks whose trainable parameters all sit in Linear layers, torch.nn.Linear or
  gfsgd.models.NTKLinear, each applied once to a [n, fan_in] input): a Linear layer h = s a W^T + b has
  per-example gradients dh/dW = s delta a^T and dh/db = delta, with a [n, fan_in] its input and
  delta = df/dh [n, fan_out] the cotangent of its output. So its NTK contribution is

      K_l = s^2 (a1 a2^T) o (delta1 delta2^T) + delta1 delta2^T         (o: elementwise product)

  and K_emp = sum_l K_l. The a's and delta's of all layers come from one forward pass and one
  reverse pass per row block (torch.func.grad with respect to zero perturbations added to each layer's
  output); the kernel is then assembled in row blocks with matmuls: O(N1 N2 sum_l (fan_in + fan_out))
  work and O((N1 + N2) sum_l (fan_in + fan_out) + N1 N2) memory, never O(N P).
- "auto" (default): "structured" when the network supports it, else "jacobian".

Every method runs on CPU or CUDA (device="auto" picks CUDA when present), in float64 by default (float32
allowed), without changing the model: parameters are cast and passed through torch.func.functional_call.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from .device import resolve_device, resolve_dtype
from .models import NTKLinear
from .problem import Problem

__all__ = ["empirical_ntk", "kernel_operator", "KernelOperator", "relu_ntk", "network_output", "problem_from_network", "NetworkProblem",
           "structured_support", "params_and_buffers", "METHODS"]

METHODS = ("auto", "structured", "jacobian")
DEFAULT_MEMORY_BUDGET = 2 ** 30  # bytes for the blocked temporaries (not counting the output kernel)


# ----------------------------------------------------------------------------------------------- helpers
def _inputs(x, name, device, dtype):
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape [n, ...] with n >= 1 examples (a batch dimension first), "
                         f"got shape {tuple(x.shape)}")
    return x.detach().to(device=device, dtype=dtype)


def params_and_buffers(model, device, dtype, params=None):
    """Trainable parameters (requires_grad) and everything else, cast to dtype, on device."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    cast = (lambda t: t.detach().to(device=device, dtype=dtype if t.is_floating_point() else t.dtype))
    if params is None:
        params = {k: cast(v) for k, v in model.named_parameters() if v.requires_grad}
    else:
        params = {k: cast(v) for k, v in params.items()}
    fixed = {k: cast(v) for k, v in model.named_parameters() if k not in params}
    fixed.update({k: cast(v) for k, v in model.named_buffers()})
    if not params:
        raise ValueError("model has no trainable parameters (none with requires_grad=True): its NTK is zero")
    return params, fixed


def _forward(model, params, fixed, x):
    """f(x) as [n] (a model returning [n] or [n, 1]); anything else is a ValueError."""
    out = functional_call(model, (params, fixed), (x,))
    n = x.shape[0]
    if not isinstance(out, torch.Tensor) or out.shape not in ((n,), (n, 1)):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model's output must be one scalar per example (shape [n] or [n, 1]); for inputs "
                         f"of shape {tuple(x.shape)} it returned {shape}. The NTK, Problem.from_network and the "
                         f"nn regime need a scalar-output network f: R^D -> R")
    return out.reshape(n)


def _blocks(n, size):
    size = max(1, int(size))
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def network_output(model, X, *, dtype=None, device="auto", params=None, block_size=4096) -> torch.Tensor:
    """f(X; w) [N] computed in row blocks, in `dtype` (float64 default) without changing the model."""
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    X = _inputs(X, "X", device, dtype)
    params, fixed = params_and_buffers(model, device, dtype, params)
    with torch.no_grad():
        return torch.cat([_forward(model, params, fixed, X[a:b]) for a, b in _blocks(X.shape[0], block_size)])


# ------------------------------------------------------------------------------------ structured method
_LINEAR_TYPES = (nn.Linear, NTKLinear)


def _linear_layers(model):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _LINEAR_TYPES)]


class _Tap:
    """Forward hooks on the Linear layers: record each layer's input, add a perturbation eps to its output."""

    def __init__(self, layers):
        self.layers = layers
        self.inputs = [None] * len(layers)
        self.calls = [0] * len(layers)
        self.eps = None

    @contextmanager
    def attached(self):
        handles = [m.register_forward_hook(self._hook(k)) for k, (_, m) in enumerate(self.layers)]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def _hook(self, k):
        def hook(module, inp, out):
            self.calls[k] += 1
            self.inputs[k] = inp[0]
            return out if self.eps is None else out + self.eps[k]
        return hook


def structured_support(model) -> tuple[bool, str]:
    """(True, "") if every trainable parameter of `model` is the weight or bias of a Linear layer
    (torch.nn.Linear or NTKLinear) and no batch-coupling layer (BatchNorm in training mode) is present;
    else (False, reason). Whether each layer is applied once to a 2-d input is checked on a trial pass."""
    layers = _linear_layers(model)
    owned = set()
    for name, m in layers:
        owned.add(f"{name}.weight" if name else "weight")
        if m.bias is not None:
            owned.add(f"{name}.bias" if name else "bias")
    other = [k for k, v in model.named_parameters() if v.requires_grad and k not in owned]
    if other:
        return False, f"parameters outside Linear layers: {other[:3]}"
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            return False, f"{name} couples the examples of a batch (BatchNorm in training mode)"
    if not layers:
        return False, "no Linear layers"
    return True, ""


def _layer_scale(m):
    return float(getattr(m, "weight_scale", 1.0))


def _structured_features(model, params, fixed, layers, x):
    """Per-layer (a, delta) for a block x [B, ...]: a [B, fan_in] the layer input, delta = df/dh [B, fan_out]."""
    B = x.shape[0]
    tap = _Tap(layers)
    with tap.attached():
        def f_eps(eps):
            tap.eps = eps
            tap.calls = [0] * len(layers)
            out = _forward(model, params, fixed, x)
            return out.sum(), list(tap.inputs)

        eps0 = [torch.zeros(B, m.out_features, dtype=x.dtype, device=x.device) for _, m in layers]
        deltas, inputs = grad(f_eps, has_aux=True)(eps0)
    bad = [layers[k][0] for k, c in enumerate(tap.calls) if c != 1]
    if bad:
        raise _Unsupported(f"Linear layer(s) {bad[:3]} not applied exactly once per forward pass")
    for k, a in enumerate(inputs):
        if a is None or a.ndim != 2:
            raise _Unsupported(f"Linear layer {layers[k][0]!r} gets a {None if a is None else a.ndim}-d input")
    return [a.detach() for a in inputs], [d.detach() for d in deltas]


class _Unsupported(Exception):
    pass


def _use_structured(model, params, fixed, x, method) -> bool:
    """Whether to take the structured path: method "auto" or "structured" and a model it supports (checked on
    a trial pass over two rows); "structured" on an unsupported model is a ValueError."""
    if method not in ("auto", "structured"):
        return False
    ok, why = structured_support(model)
    if ok:
        try:
            _structured_features(model, params, fixed, _linear_layers(model), x[:2])  # trial pass
        except _Unsupported as exc:
            ok, why = False, str(exc)
    if not ok and method == "structured":
        raise ValueError(f"method='structured' cannot handle this model: {why}; use method='jacobian'")
    return ok


def _structured_parts(model, params, fixed, x, budget):
    """(A, D, scales, has_bias) of the structured method for all rows of x: per-layer inputs A_l [n, fan_in] and
    output cotangents D_l [n, fan_out], computed in feature row blocks sized from `budget`."""
    layers = _linear_layers(model)
    scales = [_layer_scale(m) for _, m in layers]
    has_bias = [m.bias is not None and (f"{n}.bias" if n else "bias") in params for n, m in layers]
    width = sum(m.in_features + m.out_features for _, m in layers)
    fb = max(1, budget // (6 * width * x.element_size()))  # feature row block
    parts = [_structured_features(model, params, fixed, layers, x[s:e]) for s, e in _blocks(x.shape[0], fb)]
    A = [torch.cat([p[0][k] for p in parts]) for k in range(len(layers))]
    D = [torch.cat([p[1][k] for p in parts]) for k in range(len(layers))]
    return A, D, scales, has_bias


def _structured_block(parts1, parts2, r0, r1, c0, c1, out=None):
    """K[r0:r1, c0:c1] = sum_l (s_l^2 a1 a2^T + [bias]) o (delta1 delta2^T) from the per-layer features."""
    A1, D1, scales, has_bias = parts1
    A2, D2 = parts2[0], parts2[1]
    blk = out if out is not None else torch.empty(r1 - r0, c1 - c0, dtype=A1[0].dtype, device=A1[0].device)
    blk.zero_()
    for a1, d1, a2, d2, sc, hb in zip(A1, D1, A2, D2, scales, has_bias):
        G = d1[r0:r1] @ d2[c0:c1].T  # delta delta^T
        Aa = a1[r0:r1] @ a2[c0:c1].T  # a a^T
        if sc != 1.0:
            Aa.mul_(sc * sc)
        if hb:
            Aa.add_(1.0)  # (s^2 a a^T + 1) o delta delta^T  = weight + bias contributions
        blk.addcmul_(Aa, G)
    return blk


def _structured_diag(parts):
    """The exact diagonal K_ii = sum_l (s_l^2 |a_i|^2 + [bias]) |delta_i|^2 of the structured kernel."""
    A, D, scales, has_bias = parts
    out = torch.zeros(A[0].shape[0], dtype=A[0].dtype, device=A[0].device)
    for a, d, sc, hb in zip(A, D, scales, has_bias):
        out += (sc * sc * (a * a).sum(1) + (1.0 if hb else 0.0)) * (d * d).sum(1)
    return out


def _structured_ntk(model, params, fixed, x1, x2, budget, block_size=None):
    p1 = _structured_parts(model, params, fixed, x1, budget)
    sym = x2 is None
    p2 = p1 if sym else _structured_parts(model, params, fixed, x2, budget)
    N1, N2 = x1.shape[0], (x1 if sym else x2).shape[0]
    item = x1.element_size()
    K = torch.empty(N1, N2, dtype=x1.dtype, device=x1.device)
    rb = max(1, budget // (3 * N2 * item))  # kernel row block: K block + two Gram temporaries
    if block_size is not None:
        rb = block_size
    elif sym:
        rb = min(rb, max(256, -(-N1 // 8)))  # several blocks, so that the mirrored half is skipped
    for s, e in _blocks(N1, rb):
        c0 = s if sym else 0  # symmetric: upper part only, mirrored below
        _structured_block(p1, p2, s, e, c0, N2, out=K[s:e, c0:])
        if sym:
            K[e:, s:e] = K[s:e, e:].T
    return K


# ------------------------------------------------------------------------------------- jacobian method
def _jacobian_ntk(model, params, fixed, x1, x2, budget, block_size=None):
    names = list(params)
    P = sum(p.numel() for p in params.values())
    item = x1.element_size()

    def f_single(p, x):
        return _forward(model, p, fixed, x.unsqueeze(0)).reshape(())

    jac = vmap(jacrev(f_single), in_dims=(None, 0))

    def J(x):  # {name: [B, numel]}
        out = jac(params, x)
        return {k: out[k].reshape(x.shape[0], -1) for k in names}

    def contract(Ja, Jb):
        return sum(Ja[k] @ Jb[k].T for k in names)

    sym = x2 is None
    N1, N2 = x1.shape[0], (x1 if sym else x2).shape[0]
    K = torch.empty(N1, N2, dtype=x1.dtype, device=x1.device)
    jb = max(1, budget // (4 * P * item))  # two Jacobian blocks and jacrev's temporaries
    if block_size is not None:
        jb = block_size
    elif (N1 + (0 if sym else N2)) * P * item * 2 <= budget:
        jb = max(N1, N2)  # everything fits: one block each
    b1 = _blocks(N1, jb)
    if sym:
        for i, (s, e) in enumerate(b1):
            Ji = J(x1[s:e])
            for s2, e2 in b1[:i + 1]:
                Jj = Ji if s2 == s else J(x1[s2:e2])
                blk = contract(Ji, Jj)
                K[s:e, s2:e2] = blk
                K[s2:e2, s:e] = blk.T
                del Jj
            del Ji
    else:
        b2 = _blocks(N2, jb)
        for s, e in b1:
            Ji = J(x1[s:e])
            for s2, e2 in b2:
                K[s:e, s2:e2] = contract(Ji, J(x2[s2:e2]))
    return K


# ------------------------------------------------------------------------------------------- public API
def _common_args(method, device, dtype, memory_budget):
    """(device, dtype, budget in bytes) checked, for empirical_ntk and kernel_operator."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got method={method!r}")
    budget = int(DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget)
    if budget <= 0:
        raise ValueError(f"memory_budget must be > 0 bytes, got memory_budget={memory_budget}")
    return resolve_device(device), resolve_dtype(dtype), budget


def empirical_ntk(model, x1, x2=None, *, method: str = "auto", memory_budget: float | None = None,
                  block_size: int | None = None, dtype=None, device="auto",
                  params: dict | None = None) -> torch.Tensor:
    """Empirical NTK K_emp = J(x1) J(x2)^T of a scalar-output network at its current parameters.

    Args:
        model: a torch.nn.Module mapping x [n, ...] to f [n] or [n, 1]; it is not modified.
        x1: inputs [N1, ...]; x2: inputs [N2, ...] (default x1: the symmetric Gram matrix, computed as its
            upper triangle and mirrored, so it is exactly symmetric).
        method: "auto" | "structured" | "jacobian" (module docstring). "structured" raises a ValueError
            for a network it cannot handle; "auto" then falls back to "jacobian".
        memory_budget: bytes for blocked temporaries (default 1 GiB); the row blocks are sized from it, so
            peak memory is this plus the [N1, N2] output (plus, for "structured", the per-layer activations
            and cotangents, (N1 + N2) * sum_l (fan_in + fan_out) numbers).
        block_size: rows per block, overriding the size derived from memory_budget ("jacobian": peak
            ~ 2 * block_size * P numbers; "structured": block_size * N2 per Gram temporary).
        dtype: float64 (default) or float32; device: "auto" (CUDA when available), "cpu", "cuda".
        params: optional {name: tensor} overriding the model's trainable parameters (e.g. trained ones).

    Returns:
        K_emp [N1, N2] on `device` in `dtype`, with K_emp[i, j] = sum_p df(x1_i)/dw_p df(x2_j)/dw_p.
    """
    device, dtype, budget = _common_args(method, device, dtype, memory_budget)
    if block_size is not None and (isinstance(block_size, bool) or not float(block_size).is_integer()
                                   or int(block_size) < 1):
        raise ValueError(f"block_size must be an integer >= 1 (rows per block), got block_size={block_size!r}")
    block_size = None if block_size is None else int(block_size)
    x1 = _inputs(x1, "x1", device, dtype)
    x2 = None if x2 is None else _inputs(x2, "x2", device, dtype)
    if x2 is not None and x2.shape[1:] != x1.shape[1:]:
        raise ValueError(f"x1 and x2 must have the same per-example shape, got {tuple(x1.shape[1:])} and "
                         f"{tuple(x2.shape[1:])}")
    params, fixed = params_and_buffers(model, device, dtype, params)
    with torch.no_grad():
        _forward(model, params, fixed, x1[:2])  # scalar-output check with a clear error
    if _use_structured(model, params, fixed, x1, method):
        return _structured_ntk(model, params, fixed, x1, x2, budget, block_size)
    return _jacobian_ntk(model, params, fixed, x1, x2, budget, block_size)


# --------------------------------------------------------------------------------- matrix-free operator
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
            raise ValueError(f"the kernel operator has N={self.N} rows: V must have shape [{self.N}] or "
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
                for s, e in _blocks(N, rb):
                    _structured_block(parts, parts, s, e, s, N, out=K[s:e, s:])
                    K[e:, s:e] = K[s:e, e:].T
                cache["K"] = K
            return cache["K"] @ V
        out = torch.zeros(N, V.shape[1], dtype=dtype, device=device)
        # row block [s:e, s:N]: the block and two Gram temporaries of the same size fit in the budget
        rb = max(1, budget // (3 * N * item))
        for s, e in _blocks(N, rb):
            blk = _structured_block(parts, parts, s, e, s, N)  # [e - s, N - s]
            out[s:e] += blk @ V[s:]
            if e < N:
                out[e:] += blk[:, e - s:].T @ V[s:e]
            del blk
        return out

    return matmul, (lambda: _structured_diag(parts)), dict(cached=keep)


def _jvp_operator(model, params, fixed, X, budget, dtype, device):
    from torch.func import jvp, vjp
    N = X.shape[0]
    names = list(params)
    P = sum(p.numel() for p in params.values())
    item = torch.finfo(dtype).bits // 8
    rows = max(1, min(N, budget // (8 * P * item)))  # vjp/jvp temporaries per row block
    cols = max(1, budget // (4 * P * item))  # columns of V at a time: J^T V holds cols x P numbers

    def f_rows(p, s, e):
        return _forward(model, p, fixed, X[s:e])

    def matmul(V):
        out = torch.empty(N, V.shape[1], dtype=dtype, device=device)
        for c0 in range(0, V.shape[1], cols):
            Vc = V[:, c0:c0 + cols]  # [N, mc]
            JtV = {k: torch.zeros((Vc.shape[1],) + params[k].shape, dtype=dtype, device=device) for k in names}
            for s, e in _blocks(N, rows):
                _, pull = vjp(lambda p: f_rows(p, s, e), params)
                g = vmap(pull)(Vc[s:e].T.contiguous())[0]  # {name: [mc, ...]}
                for k in names:
                    JtV[k] += g[k]
            for s, e in _blocks(N, rows):
                def push(t):
                    return jvp(lambda p: f_rows(p, s, e), (params,), (t,))[1]
                out[s:e, c0:c0 + cols] = vmap(push)(JtV).T
        return out

    def diag():
        def f_single(p, x):
            return _forward(model, p, fixed, x.unsqueeze(0)).reshape(())
        g = vmap(grad(f_single), in_dims=(None, 0))
        return torch.cat([sum((t.reshape(e - s, -1) ** 2).sum(1) for t in g(params, X[s:e]).values())
                          for s, e in _blocks(N, rows)])

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
    device, dtype, budget = _common_args(method, device, dtype, memory_budget)
    X = _inputs(X, "X", device, dtype)
    params, fixed = params_and_buffers(model, device, dtype, params)
    with torch.no_grad():
        _forward(model, params, fixed, X[:2])  # scalar-output check with a clear error
    N = X.shape[0]
    if _use_structured(model, params, fixed, X, method):
        parts = _structured_parts(model, params, fixed, X, budget)
        mm, dg, info = _structured_operator(parts, N, budget, dtype, device)
        return KernelOperator(N, mm, dg, dtype=dtype, device=device, method="structured", info=info)
    mm, dg, info = _jvp_operator(model, params, fixed, X, budget, dtype, device)
    return KernelOperator(N, mm, dg, dtype=dtype, device=device, method="jvp", info=info)


def _relu_moments(s11, s22, s12, same=False):
    """E[relu(u) relu(v)] and E[1(u>0) 1(v>0)] for (u, v) ~ N(0, [[s11, s12], [s12, s22]]) (arc-cosine).
    same: the two point sets coincide, so the correlation is exactly 1 on the diagonal (arccos is not
    accurate near 1: a rounding error eps in rho becomes sqrt(2 eps) in theta)."""
    norm = torch.sqrt(s11 * s22)
    rho = torch.clamp(s12 / torch.clamp(norm, min=1e-300), -1.0, 1.0)
    if same:
        rho.diagonal().fill_(1.0)
    theta = torch.arccos(rho)
    e_phi = norm / (2 * math.pi) * (torch.sin(theta) + (math.pi - theta) * rho)
    e_dphi = (math.pi - theta) / (2 * math.pi)
    return e_phi, e_dphi


def relu_ntk(X, X2=None, depth: int = 2, *, sigma_w: float = 1.0, sigma_b: float = 0.0, bias: bool = True,
             dtype=torch.float64) -> torch.Tensor:
    """Infinite-width NTK of gfsgd.models.MLP(activation="relu", depth, sigma_w, sigma_b, bias).

    Layers l = 1..L (L = depth) compute h_l = W_l a_{l-1} / sqrt(n_{l-1}) + b_l, a_0 = x, a_l = relu(h_l).
    With A_0 = x.x' / D and, for l >= 1, (u, v) ~ N(0, Sigma_l) and theta_l = arccos(Sigma_l(x,x') /
    sqrt(Sigma_l(x,x) Sigma_l(x',x'))):

        Sigma_1   = sigma_w^2 A_0 + sigma_b^2
        A_l       = E[relu(u) relu(v)] = sqrt(Sigma_l(x,x) Sigma_l(x',x')) (sin theta_l + (pi - theta_l) cos theta_l) / (2 pi)
        Sigma_{l+1} = sigma_w^2 A_l + sigma_b^2,     Sdot_{l+1} = sigma_w^2 (pi - theta_l) / (2 pi)
        D_L = 1,  D_l = Sdot_{l+1} D_{l+1}      (the limit of delta_l . delta_l')
        Theta(x, x') = sum_{l=1}^{L} (A_{l-1} + [bias]) D_l

    (the gradient is taken with respect to W and b themselves, so sigma_w, sigma_b enter only through
    the forward statistics). The empirical NTK of a width-n network deviates from Theta by O(1/sqrt(n)).

    Args: X [N1, D], X2 [N2, D] (default X); depth >= 1 linear layers. Returns Theta [N1, N2].
    """
    if isinstance(depth, bool) or not float(depth).is_integer() or int(depth) < 1:
        raise ValueError(f"depth must be an integer >= 1 (number of linear layers), got depth={depth!r}")
    L = int(depth)
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(dtype)
    same = X2 is None
    X2 = X if X2 is None else torch.as_tensor(np.asarray(X2) if not isinstance(X2, torch.Tensor) else X2).to(dtype)
    if X.ndim != 2 or X2.ndim != 2 or X.shape[1] != X2.shape[1]:
        raise ValueError(f"X and X2 must be [N, D] with the same D, got {tuple(X.shape)} and {tuple(X2.shape)}")
    D = X.shape[1]
    sb2 = sigma_b ** 2 if bias else 0.0
    sw2 = sigma_w ** 2
    A = [X @ X2.T / D]  # A_0 [N1, N2]
    a11, a22 = (X * X).sum(1) / D, (X2 * X2).sum(1) / D  # diagonals [N1], [N2]
    dots = []  # Sdot_{l+1}, l = 1..L-1
    for _ in range(1, L):
        s12, s11, s22 = sw2 * A[-1] + sb2, sw2 * a11 + sb2, sw2 * a22 + sb2
        e_phi, e_dphi = _relu_moments(s11[:, None], s22[None, :], s12, same)
        A.append(e_phi)
        dots.append(sw2 * e_dphi)
        a11, a22 = s11 / 2, s22 / 2  # E[relu(u)^2] = Sigma / 2
    bias_term = 1.0 if bias else 0.0
    theta = torch.zeros_like(A[0])
    Dl = torch.ones_like(A[0])  # D_L
    for l in range(L, 0, -1):  # l = L .. 1
        theta += (A[l - 1] + bias_term) * Dl
        if l >= 2:
            Dl = dots[l - 2] * Dl
    return theta


# ---------------------------------------------------------------------------------- network problems
@dataclass
class NetworkProblem:
    """What the nn regime needs to train the real network: the model at init and its data.

    model: the network (scalar output), at its initialisation w0 (never modified by gfsgd);
    X [N, ...], y [N]: training points; X_test, y_test: optional held-out points (validation loss);
    lambda_max_raw: top eigenvalue of the empirical NTK K_emp at w0 (converts the learning rate:
        lr_nn = alpha * N / lambda_max_raw); computed on first use when None.
    """
    model: nn.Module
    X: torch.Tensor
    y: torch.Tensor
    X_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    lambda_max_raw: float | None = None
    name: str = "network"
    ntk_method: str = "auto"
    _loss0: float | None = field(default=None, repr=False)

    def __post_init__(self):
        self.X = torch.as_tensor(self.X)
        self.y = torch.as_tensor(self.y)
        if self.y.ndim != 1 or self.X.shape[0] != self.y.shape[0]:
            raise ValueError(f"X [N, ...] and y [N] must have the same N, got X {tuple(self.X.shape)} and "
                             f"y {tuple(self.y.shape)}")
        if (self.X_test is None) != (self.y_test is None):
            raise ValueError("give both X_test and y_test, or neither")
        if self.X_test is not None:
            self.X_test, self.y_test = torch.as_tensor(self.X_test), torch.as_tensor(self.y_test)
            if self.y_test.ndim != 1 or self.X_test.shape[0] != self.y_test.shape[0]:
                raise ValueError(f"X_test and y_test must have the same length, got {tuple(self.X_test.shape)} "
                                 f"and {tuple(self.y_test.shape)}")

    @property
    def N(self) -> int:
        return int(self.X.shape[0])

    @property
    def loss0(self) -> float:
        """L_0 = |f(X; w0) - y|^2 / (2N) (float64)."""
        if self._loss0 is None:
            d0 = network_output(self.model, self.X, dtype=torch.float64, device="cpu") - self.y.double()
            self._loss0 = float((d0 ** 2).sum() / (2 * self.N))
        return self._loss0

    def lambda_max(self, device="auto") -> float:
        """lambda_max(K_emp) at w0 (computed once, float64)."""
        if self.lambda_max_raw is None:
            if self.N <= 4096:
                K = empirical_ntk(self.model, self.X, method=self.ntk_method, device=device)
                self.lambda_max_raw = float(torch.linalg.eigvalsh(K)[-1])
            else:  # no N x N matrix: the top eigenpair of the matrix-free operator
                from .spectrum import top_eigenpairs
                op = kernel_operator(self.model, self.X, method=self.ntk_method, device=device)
                self.lambda_max_raw = float(top_eigenpairs(op, 1, tol=1e-10, verify=False).eigvals[0])
        return self.lambda_max_raw

    def lr_scale(self, device="auto") -> float:
        """lr_nn / alpha = N / lambda_max(K_emp)."""
        return self.N / self.lambda_max(device)


def _network_data(X, y, X_test, y_test):
    """(X [N, ...], y [N], X_test [M, ...] or None, y_test [M] or None) as tensors, checked (y may be [N, 1])."""
    def tensor(a):
        return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)

    X_t, y_t = tensor(X), tensor(y)
    if y_t.ndim == 2 and y_t.shape[1] == 1:
        y_t = y_t[:, 0]
    if y_t.ndim != 1 or X_t.ndim < 2 or y_t.shape[0] != X_t.shape[0]:
        raise ValueError(f"X must be [N, ...] and y [N] with the same N, got X {tuple(X_t.shape)}, "
                         f"y {tuple(y_t.shape)}")
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    if X_test is not None:
        X_test, y_test = tensor(X_test), tensor(y_test)
        if y_test.ndim == 2 and y_test.shape[1] == 1:
            y_test = y_test[:, 0]
        if y_test.ndim != 1 or X_test.shape[0] != y_test.shape[0] or X_test.shape[1:] != X_t.shape[1:]:
            raise ValueError(f"X_test must be [M, {', '.join(map(str, X_t.shape[1:]))}] and y_test [M], got "
                             f"X_test {tuple(X_test.shape)}, y_test {tuple(y_test.shape)}")
    return X_t, y_t, X_test, y_test


def problem_from_network(model, X, y, *, X_test=None, y_test=None, method: str = "auto", dtype=None,
                         device="auto", memory_budget: float | None = None, name: str | None = None,
                         meta: dict | None = None, rank: int | None = None, tol: float = 1e-8,
                         progress: bool = False):
    """Problem of the network linearised at its initialisation w0.

        K = K_emp / lambda_max(K_emp),   K_emp = J(X) J(X)^T at w0      [N, N]
        d0 = f(X; w0) - y                                              [N]
        problem.lambda_max_raw = lambda_max(K_emp)   (lr_nn = alpha * N / lambda_max_raw)

    With held-out points (X_test [M, ...], y_test [M]) the problem also carries the test set of the
    linearised model: K_test = K_emp(X_test, X) / lambda_max(K_emp) and r_test = f(X_test; w0) - y_test.

    The returned gfsgd.Problem carries `problem.network`, a NetworkProblem (model, X, y, X_test, y_test,
    lambda_max_raw) that gfsgd.regimes.nn trains; `problem.meta` holds only light, JSON-able facts (model
    description, N, lambda_max_raw, the lr conversion factor N / lambda_max_raw, the NTK method).
    Problem.to() and Problem.save() drop `network`; pass it to the nn regime explicitly then (network=...).

    rank=k (full datasets, docs/theory.md#full-datasets): no N x N matrix is formed. The kernel is a matrix-free
    operator (kernel_operator), its top k eigenpairs come from gfsgd.spectrum.top_eigenpairs (relative
    residual tol) and the modes beyond k from the power-law tail (gfsgd.spectrum.spectral_tail). The result is
    a spectral-only Problem of N modes (no eigenvectors: the SD regime and the theory run on it; full and
    linearized need the basis and refuse it); meta["spectrum"] records the fit. With held-out points the
    network keeps them (the nn regime measures the test loss) but the problem has no test set (the test
    loss of the kernel regimes needs the basis).
    """
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    if rank is not None:
        return _rank_problem(model, X, y, X_test=X_test, y_test=y_test, method=method, dtype=dt, device=dev,
                             memory_budget=memory_budget, name=name, meta=meta, rank=rank, tol=tol,
                             progress=progress)
    X_t, y_t, X_test, y_test = _network_data(X, y, X_test, y_test)
    K = empirical_ntk(model, X_t, method=method, dtype=dt, device=dev, memory_budget=memory_budget)
    f0 = network_output(model, X_t, dtype=dt, device=dev)
    d0 = (f0 - y_t.to(dev, dt)).cpu().double()
    K_test = r_test = None
    if X_test is not None:
        K_test = empirical_ntk(model, X_test, X_t, method=method, dtype=dt, device=dev,
                               memory_budget=memory_budget).cpu().double()
        r_test = (network_output(model, X_test, dtype=dt, device=dev) - y_test.to(dev, dt)).cpu().double()
    used = "structured" if method != "jacobian" and structured_support(model)[0] else "jacobian"
    info = dict(kind="network", N=int(X_t.shape[0]), ntk_method=used, ntk_dtype=str(dt).replace("torch.", ""))
    if hasattr(model, "describe"):
        info["model"] = model.describe()
    info.update(meta or {})
    psd_tol = 1e-8 if dt == torch.float64 else 1e-4
    problem = Problem.from_kernel(K.cpu().double(), d0, name=name or f"network(N={X_t.shape[0]})", meta=info,
                                  psd_tol=psd_tol, sym_tol=1e-8 if dt == torch.float64 else 1e-5,
                                  K_test=K_test, r_test=r_test)
    problem.meta.update(lambda_max_raw=problem.lambda_max_raw, lr_nn_per_alpha=problem.N / problem.lambda_max_raw)
    problem.network = NetworkProblem(model=model, X=X_t, y=y_t, X_test=X_test, y_test=y_test,
                                     lambda_max_raw=problem.lambda_max_raw, name=problem.name,
                                     ntk_method=method, _loss0=problem.loss0)
    return problem


def _rank_problem(model, X, y, *, X_test, y_test, method, dtype, device, memory_budget, name, meta, rank, tol,
                  progress):
    from .spectrum import problem_from_operator
    X_t, y_t, X_test, y_test = _network_data(X, y, X_test, y_test)
    op = kernel_operator(model, X_t, dtype=dtype, device=device, memory_budget=memory_budget, method=method)
    d0 = (network_output(model, X_t, dtype=dtype, device=device) - y_t.to(device, dtype)).cpu().double()
    info = dict(kind="network", N=int(X_t.shape[0]), ntk_method=op.method, ntk_dtype=str(dtype).replace("torch.", ""),
                operator=dict(op.info))
    if hasattr(model, "describe"):
        info["model"] = model.describe()
    info.update(meta or {})
    problem = problem_from_operator(op, d0, rank=rank, tol=tol, name=name or f"network(N={X_t.shape[0]}, rank={rank})",
                                    meta=info, progress=progress)
    problem.meta.update(lambda_max_raw=problem.lambda_max_raw, lr_nn_per_alpha=problem.N / problem.lambda_max_raw,
                        operator_passes=op.passes, operator_seconds=op.seconds)
    problem.network = NetworkProblem(model=model, X=X_t, y=y_t, X_test=X_test, y_test=y_test,
                                     lambda_max_raw=problem.lambda_max_raw, name=problem.name,
                                     ntk_method=method, _loss0=problem.loss0)
    return problem


# Problem.from_network is defined here, on the ntk side, so that gfsgd.problem never imports gfsgd.ntk
# (gfsgd/__init__.py imports this module, so the method is always present).
Problem.from_network = staticmethod(problem_from_network)
