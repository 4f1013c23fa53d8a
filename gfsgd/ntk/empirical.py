"""The empirical NTK of a torch network (torch.func, row-blocked), and the helpers the kernel operator
(gfsgd.ntk.operator) shares with it.

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

The helpers without a leading underscore that are not in `__all__` (checked_inputs, scalar_forward, row_blocks,
check_common_args, use_structured, structured_parts, structured_block, structured_diag) are shared with
gfsgd.ntk.operator; they are not part of the gfsgd.ntk API.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from ..device import resolve_device, resolve_dtype
from ..models import NTKLinear
from ..errors import InputError

__all__ = ["empirical_ntk", "network_output", "structured_support", "params_and_buffers", "METHODS",
           "DEFAULT_MEMORY_BUDGET"]

METHODS = ("auto", "structured", "jacobian")
DEFAULT_MEMORY_BUDGET = 2 ** 30  # bytes for the blocked temporaries (not counting the output kernel)


# ----------------------------------------------------------------------------------------------- helpers
def checked_inputs(x, name, device, dtype):
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim < 2 or x.shape[0] == 0:
        raise InputError(f"{name} must have shape [n, ...] with n >= 1 examples (a batch dimension first), "
                         f"got shape {tuple(x.shape)}")
    return x.detach().to(device=device, dtype=dtype)


def params_and_buffers(model, device, dtype, params=None):
    """Trainable parameters (requires_grad) and everything else, cast to dtype, on device."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for mod in model.modules():  # a batch statistic couples the examples: no per-example kernel
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)) and mod.training:
            raise InputError(f"{type(mod).__name__} in training mode normalises with the batch's own statistics, so "
                             f"the network has no per-example kernel and no linearisation: call model.eval() (it "
                             f"then uses its running statistics) or remove it")
    cast = (lambda t: t.detach().to(device=device, dtype=dtype if t.is_floating_point() else t.dtype))
    if params is None:
        params = {k: cast(v) for k, v in model.named_parameters() if v.requires_grad}
    else:
        params = {k: cast(v) for k, v in params.items()}
    fixed = {k: cast(v) for k, v in model.named_parameters() if k not in params}
    fixed.update({k: cast(v) for k, v in model.named_buffers()})
    if not params:
        raise InputError("model has no trainable parameters (none with requires_grad=True): its NTK is zero")
    return params, fixed


def scalar_forward(model, params, fixed, x):
    """f(x) as [n] (a model returning [n] or [n, 1]); anything else is a ValueError."""
    out = functional_call(model, (params, fixed), (x,))
    n = x.shape[0]
    if not isinstance(out, torch.Tensor) or out.shape not in ((n,), (n, 1)):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"the model's output must be one scalar per example (shape [n] or [n, 1]); for inputs "
                         f"of shape {tuple(x.shape)} it returned {shape}. The NTK, problem_from_network and the "
                         f"nn regime need a scalar-output network f: R^D -> R")
    return out.reshape(n)


def model_forward(model, params, fixed, x):
    """f(x) as [n] (a model returning [n] or [n, 1]) or [n, C] (C > 1 outputs); anything else is an InputError."""
    out = functional_call(model, (params, fixed), (x,))
    n = x.shape[0]
    if not isinstance(out, torch.Tensor) or out.ndim not in (1, 2) or out.shape[0] != n:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(f"the model's output must be [n] or [n, C] (C outputs per example); for inputs of shape "
                         f"{tuple(x.shape)} it returned {shape}")
    return out.reshape(n) if out.ndim == 2 and out.shape[1] == 1 else out


def n_outputs_of(model, params, fixed, x) -> int:
    """C, the outputs per example of the model (1 for [n] or [n, 1])."""
    with torch.no_grad():
        out = model_forward(model, params, fixed, x[:1])
    return 1 if out.ndim == 1 else int(out.shape[1])


def row_blocks(n, size):
    size = max(1, int(size))
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def network_output(model, X, *, dtype=None, device="auto", params=None, block_size=4096) -> torch.Tensor:
    """f(X; w) [N] (or [N, C] for C outputs) computed in row blocks, in `dtype` (float64 default) without changing
    the model."""
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    X = checked_inputs(X, "X", device, dtype)
    params, fixed = params_and_buffers(model, device, dtype, params)
    with torch.no_grad():
        return torch.cat([model_forward(model, params, fixed, X[a:b]) for a, b in row_blocks(X.shape[0], block_size)])


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
            out = scalar_forward(model, params, fixed, x)
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


def use_structured(model, params, fixed, x, method) -> bool:
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
        raise InputError(f"method='structured' cannot handle this model: {why}; use method='jacobian'")
    return ok


def structured_parts(model, params, fixed, x, budget):
    """(A, D, scales, has_bias) of the structured method for all rows of x: per-layer inputs A_l [n, fan_in] and
    output cotangents D_l [n, fan_out], computed in feature row blocks sized from `budget`."""
    layers = _linear_layers(model)
    scales = [_layer_scale(m) for _, m in layers]
    has_bias = [m.bias is not None and (f"{n}.bias" if n else "bias") in params for n, m in layers]
    width = sum(m.in_features + m.out_features for _, m in layers)
    fb = max(1, budget // (6 * width * x.element_size()))  # feature row block
    parts = [_structured_features(model, params, fixed, layers, x[s:e]) for s, e in row_blocks(x.shape[0], fb)]
    A = [torch.cat([p[0][k] for p in parts]) for k in range(len(layers))]
    D = [torch.cat([p[1][k] for p in parts]) for k in range(len(layers))]
    return A, D, scales, has_bias


def structured_block(parts1, parts2, r0, r1, c0, c1, out=None):
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


def structured_diag(parts):
    """The exact diagonal K_ii = sum_l (s_l^2 |a_i|^2 + [bias]) |delta_i|^2 of the structured kernel."""
    A, D, scales, has_bias = parts
    out = torch.zeros(A[0].shape[0], dtype=A[0].dtype, device=A[0].device)
    for a, d, sc, hb in zip(A, D, scales, has_bias):
        out += (sc * sc * (a * a).sum(1) + (1.0 if hb else 0.0)) * (d * d).sum(1)
    return out


def _structured_ntk(model, params, fixed, x1, x2, budget, block_size=None):
    p1 = structured_parts(model, params, fixed, x1, budget)
    sym = x2 is None
    p2 = p1 if sym else structured_parts(model, params, fixed, x2, budget)
    N1, N2 = x1.shape[0], (x1 if sym else x2).shape[0]
    item = x1.element_size()
    K = torch.empty(N1, N2, dtype=x1.dtype, device=x1.device)
    rb = max(1, budget // (3 * N2 * item))  # kernel row block: K block + two Gram temporaries
    if block_size is not None:
        rb = block_size
    elif sym:
        rb = min(rb, max(256, -(-N1 // 8)))  # several blocks, so that the mirrored half is skipped
    for s, e in row_blocks(N1, rb):
        c0 = s if sym else 0  # symmetric: the row block's upper part [s:e, s:N] only
        structured_block(p1, p2, s, e, c0, N2, out=K[s:e, c0:])
        if sym:
            _symmetrise_(K[s:e, s:e])  # the diagonal block, A A^T from BLAS, is not bitwise symmetric
            K[e:, s:e] = K[s:e, e:].T  # the off-diagonal part: mirrored exactly
    return K


def _symmetrise_(B):
    """B <- (B + B^T) / 2 in place, for a square diagonal block of a Gram matrix. A block computed as A A^T by
    BLAS is symmetric only up to rounding (the order of its sums depends on the CPU, the thread count and the
    blocking), while (b_ij + b_ji) / 2 = (b_ji + b_ij) / 2 holds bit for bit."""
    B.copy_(0.5 * (B + B.T))
    return B


# ------------------------------------------------------------------------------------- jacobian method
def _jacobian_ntk(model, params, fixed, x1, x2, budget, block_size=None):
    names = list(params)
    P = sum(p.numel() for p in params.values())
    item = x1.element_size()

    C = n_outputs_of(model, params, fixed, x1)

    def f_single(p, x):  # one example: [] or [C]
        out = model_forward(model, p, fixed, x.unsqueeze(0))
        return out.reshape(()) if C == 1 else out.reshape(C)

    jac = vmap(jacrev(f_single), in_dims=(None, 0))

    def J(x):  # {name: [B C, numel]}: the rows of example i are i C .. i C + C - 1
        out = jac(params, x)
        return {k: out[k].reshape(x.shape[0] * C, -1) for k in names}

    def contract(Ja, Jb):
        return sum(Ja[k] @ Jb[k].T for k in names)

    sym = x2 is None
    N1, N2 = x1.shape[0], (x1 if sym else x2).shape[0]
    K = torch.empty(N1 * C, N2 * C, dtype=x1.dtype, device=x1.device)
    jb = max(1, budget // (4 * P * item * C))  # two Jacobian blocks (C rows per example) and jacrev's temporaries
    if block_size is not None:
        jb = block_size
    elif (N1 + (0 if sym else N2)) * C * P * item * 2 <= budget:
        jb = max(N1, N2)  # everything fits: one block each
    b1 = row_blocks(N1, jb)
    if sym:
        for i, (s, e) in enumerate(b1):
            Ji = J(x1[s:e])
            for s2, e2 in b1[:i + 1]:
                Jj = Ji if s2 == s else J(x1[s2:e2])
                blk = contract(Ji, Jj)
                if s2 == s:  # a diagonal block: symmetrised (J_i J_i^T is symmetric only up to rounding)
                    _symmetrise_(blk)
                K[s * C:e * C, s2 * C:e2 * C] = blk
                K[s2 * C:e2 * C, s * C:e * C] = blk.T
                del Jj
            del Ji
    else:
        b2 = row_blocks(N2, jb)
        for s, e in b1:
            Ji = J(x1[s:e])
            for s2, e2 in b2:
                K[s * C:e * C, s2 * C:e2 * C] = contract(Ji, J(x2[s2:e2]))
    return K


# ------------------------------------------------------------------------------------------- public API
def check_common_args(method, device, dtype, memory_budget):
    """(device, dtype, budget in bytes) checked, for empirical_ntk and kernel_operator."""
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got method={method!r}")
    budget = int(DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget)
    if budget <= 0:
        raise InputError(f"memory_budget must be > 0 bytes, got memory_budget={memory_budget}")
    return resolve_device(device), resolve_dtype(dtype), budget


def empirical_ntk(model, x1, x2=None, *, method: str = "auto", memory_budget: float | None = None,
                  block_size: int | None = None, dtype=None, device="auto",
                  params: dict | None = None) -> torch.Tensor:
    """Empirical NTK K_emp = J(x1) J(x2)^T of a scalar-output network at its current parameters.

    Args:
        model: a torch.nn.Module mapping x [n, ...] to f [n] or [n, 1]; it is not modified.
        x1: inputs [N1, ...]; x2: inputs [N2, ...] (default x1: the symmetric Gram matrix, computed in blocks
            as its upper triangle; each diagonal block is symmetrised, (B + B^T) / 2, and the blocks above it
            are mirrored below, so K is symmetric bit for bit).
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
        K_emp [N1, N2] on `device` in `dtype`, with K_emp[i, j] = sum_p df(x1_i)/dw_p df(x2_j)/dw_p; for a model with
        C outputs, [N1 C, N2 C] with K_emp[i C + a, j C + c] = sum_p df_a(x1_i)/dw_p df_c(x2_j)/dw_p (the Jacobian
        path; docs/theory.md#outputs).
    """
    device, dtype, budget = check_common_args(method, device, dtype, memory_budget)
    if block_size is not None and (isinstance(block_size, bool) or not float(block_size).is_integer()
                                   or int(block_size) < 1):
        raise InputError(f"block_size must be an integer >= 1 (rows per block), got block_size={block_size!r}")
    block_size = None if block_size is None else int(block_size)
    x1 = checked_inputs(x1, "x1", device, dtype)
    x2 = None if x2 is None else checked_inputs(x2, "x2", device, dtype)
    if x2 is not None and x2.shape[1:] != x1.shape[1:]:
        raise InputError(f"x1 and x2 must have the same per-example shape, got {tuple(x1.shape[1:])} and "
                         f"{tuple(x2.shape[1:])}")
    params, fixed = params_and_buffers(model, device, dtype, params)
    C = n_outputs_of(model, params, fixed, x1)  # the output check, with a clear error
    if C > 1:  # C outputs: the Jacobian path (the structured path is for one output)
        if method == "structured":
            raise InputError(f"method='structured' handles one output per example; this model has C = {C}: use "
                             f"method='jacobian' or 'auto'")
        return _jacobian_ntk(model, params, fixed, x1, x2, budget, block_size)
    if use_structured(model, params, fixed, x1, method):
        return _structured_ntk(model, params, fixed, x1, x2, budget, block_size)
    return _jacobian_ntk(model, params, fixed, x1, x2, budget, block_size)

