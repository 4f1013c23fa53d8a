"""The top eigenpairs of a symmetric PSD operator that is never formed: block Krylov (block Lanczos with full
reorthogonalisation) on op @ V (docs/theory.md#full-datasets).

    top_eigenpairs(op, k)        Eigenpairs: the k largest eigenvalues, their eigenvectors, residuals, passes

An operator is anything with `N` and `op @ V` for V [N, m] (gfsgd.ntk.KernelOperator, or `as_operator(K)`
for a dense symmetric matrix); `diag()`/`trace()` give the exact trace the tail (gfsgd.spectrum.tail) needs.

Memory: top_eigenpairs(..., memory_budget=B) holds the whole eigensolve to B bytes: what the operator holds
(`op.held_bytes`, e.g. the per-layer features), the Krylov basis and its working blocks, the projected matrix
and its Ritz step, and the operator's passes (lowered with `op.set_pass_budget` as the basis grows). A basis
that would outgrow B before converging raises ConvergenceError (gfsgd.spectrum.memory has the accounting).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..problem import check_int
from ..errors import InputError
from .memory import MemoryPlan, release_freed_memory

__all__ = ["top_eigenpairs", "Eigenpairs", "ConvergenceError", "ToleranceFloorWarning", "as_operator", "DenseOperator",
           "achieved_accuracy"]


FLOOR = 50  # residual floor, in units of eps(dtype) * lambda_1
GROWTH = 2.0  # a Ritz step at least each time the basis has doubled since the last one


class ToleranceFloorWarning(UserWarning):
    """The eigensolver stopped at its dtype's residual floor, not at the tolerance asked for."""


class ConvergenceError(RuntimeError):
    """top_eigenpairs did not reach its tolerance within its pass budget."""


class DenseOperator:
    """A dense symmetric matrix [N, N] seen as an operator (op @ V, diag(), trace(), N)."""

    def __init__(self, K):
        K = torch.as_tensor(K)
        if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
            raise InputError(f"the operator must be a square N x N matrix, got shape {tuple(K.shape)}")
        if not K.is_floating_point():
            K = K.double()
        self.K, self.N, self.dtype, self.device = K, int(K.shape[0]), K.dtype, K.device
        self.passes = 0

    def __matmul__(self, V):
        self.passes += 1
        return self.K @ torch.as_tensor(V).to(self.device, self.dtype)

    def diag(self):
        return self.K.diagonal().clone()

    def trace(self):
        return float(self.K.diagonal().double().sum())


def as_operator(op):
    """`op` itself when it has N and @; a dense matrix (tensor or array) wrapped as a DenseOperator."""
    if hasattr(op, "N") and hasattr(op, "__matmul__") and not isinstance(op, (torch.Tensor, np.ndarray)):
        return op
    if isinstance(op, (torch.Tensor, np.ndarray)):
        return DenseOperator(torch.as_tensor(op))
    raise TypeError(f"op must be a kernel operator (with N and op @ V, e.g. gfsgd.ntk.kernel_operator) or a "
                    f"dense N x N matrix, got {type(op).__name__}")


@dataclass
class Eigenpairs:
    """The top-k eigenpairs of a symmetric PSD operator.

    eigvals [k] descending; eigvecs [N, k] orthonormal columns; residuals [k] = |K u - lambda u| (computed
    with one more pass over K when verify=True, else the block-Lanczos value, exact up to round-off);
    tol: the relative eigenvalue tolerance asked for; error_bounds [k]: |r|^2 / delta per eigenvalue (absolute);
    passes: applications of K;
    block_size, basis: the Krylov block and the final basis size; seconds: wall time.
    """
    eigvals: torch.Tensor
    eigvecs: torch.Tensor
    residuals: torch.Tensor
    tol: float
    passes: int
    block_size: int
    basis: int
    seconds: float
    verified: bool = False
    applied: torch.Tensor | None = None
    error_bounds: torch.Tensor | None = None
    info: dict = field(default_factory=dict)


class _Basis:
    """The Krylov basis Q = [V_1 .. V_j] kept as a list of blocks (no concatenated copy: at N = 60,000 the basis
    is several GB)."""

    def __init__(self, blocks=None):
        self.blocks = list(blocks or [])

    @property
    def size(self):
        return sum(b.shape[1] for b in self.blocks)

    def tmul(self, W):  # Q^T W
        return torch.cat([b.T @ W for b in self.blocks])

    def mul(self, C):  # Q C
        out, r = None, 0
        for b in self.blocks:
            part = C[r:r + b.shape[1]].to(b.dtype)
            out = b @ part if out is None else out.addmm_(b, part)  # in place: no temporary per block
            r += b.shape[1]
        return out


def _orth(W, Q, gen):
    """W orthonormalised against the basis Q and then within itself. Returns (V, C, R) with W = Q C + V R.

    The first pass is the Lanczos recurrence itself: in exact arithmetic W = K V_j lies in the span of the
    last two blocks and the new one, so it is projected on those only. The second pass is one classical
    Gram-Schmidt pass against the whole basis, which removes the components that rounding left on the older
    blocks (full reorthogonalisation; "twice is enough": the local pass plays the first of the two). The new
    block then comes from a Householder QR.

    Breakdown: when the projected block is (nearly) rank deficient, the Krylov space has (nearly) closed on an
    invariant subspace, as happens when an eigenvalue's multiplicity exceeds the block width. The QR's
    columns for the missing directions are then rounding noise, not orthogonal to Q. Such a block is taken
    apart by SVD instead, W_perp = U S Y^T (V = U, R = S Y^T, exact), and each direction whose singular value is
    below sqrt(eps) of the block's scale is replaced by a fresh random vector orthogonal to the basis and to
    the other directions; the relation K Q = Q T + V R E^T then changes by at most 2 S_i for that direction
    (below sqrt(eps) of the scale), and the Krylov space goes on growing into the rest of the spectrum."""
    scale = float(W.norm(dim=0).max())
    r0 = sum(b.shape[1] for b in Q.blocks[:-2])
    local = _Basis(Q.blocks[-2:])
    C1 = local.tmul(W)
    W = W - local.mul(C1)
    C = Q.tmul(W)
    W -= Q.mul(C)
    C[r0:] += C1
    V, R = torch.linalg.qr(W)
    small = math.sqrt(torch.finfo(W.dtype).eps) * max(scale, 1e-300)
    if bool((R.diagonal().abs() > small).all()):
        return V, C, R
    U, S, Yt = torch.linalg.svd(W, full_matrices=False)
    bad = S <= small
    V, R = U, S[:, None] * Yt
    fresh = torch.randn(W.shape[0], int(bad.sum()), generator=gen, dtype=torch.float64).to(W.device, W.dtype)
    keep = _Basis(Q.blocks + [V[:, ~bad]])
    for _ in range(2):
        fresh -= keep.mul(keep.tmul(fresh))
    V[:, bad] = torch.linalg.qr(fresh)[0]
    return V, C, R


def top_eigenpairs(op, k: int, *, tol: float = 1e-8, seed: int = 0, block_size: int | None = None,
                   max_passes: int = 40, verify: bool = True, apply_to=None, progress: bool = False,
                   strict: bool = False, memory_budget: float | None = None) -> Eigenpairs:
    """The k largest eigenpairs of a symmetric PSD operator, by block Krylov (block Lanczos with full
    reorthogonalisation; docs/theory.md#full-datasets).

    From a random orthonormal block V_1 [N, m] (m = block_size; default 1.5 k + 10, or k + max(8, k // 50)
    when the kernel is held in memory: there a pass costs in proportion to m, and at N = 8,000, k = 300 the
    narrow block was fastest, benchmarks/README.md), each pass applies K once,
    W = K V_j, orthogonalises W against the basis Q = [V_1 .. V_j] (twice) and appends the new block, so that
    K Q_j = Q_j T_j + V_{j+1} R_{j+1} E_j^T exactly. The Ritz pairs of T_j give the eigenpairs, and the
    residual of Ritz vector u = Q s is |K u - theta u| = |R_{j+1} s_last| with no further pass. It stops when
    every one of the top k has |K u - theta u|^2 / delta <= tol * theta, delta = theta - theta_{m+1} (the first
    Ritz value beyond the block): a bound on the Ritz value's error, relative to the eigenvalue itself; the
    residual never needs to go below 50 eps * theta_1 (the operator's own rounding). When the next block would make the basis
    exceed N (k a large fraction of N), it finishes by the exact route instead: K = op @ I and eigh.

    Args:
        op: the operator (N and op @ V), or a dense symmetric matrix.
        k: number of eigenpairs, 1 <= k < N.
        tol: relative accuracy of each eigenvalue (through the bound |r|^2 / delta above); the residual floor
            50 * eps(op.dtype) * lambda_1 (float32: 6e-6 lambda_1) lets a float32 operator converge to what
            float32 allows, which limits the relative accuracy of eigenvalues far below lambda_1.
        seed: the random start block. block_size: m (>= k). max_passes: budget of applications of K.
        verify: recompute the residuals |K u - lambda u| with one more pass (default True).
        apply_to: optional vectors [N] or [N, r]; K @ apply_to is returned in Eigenpairs.applied, computed in
            the verification pass (no extra pass when verify=True).
        strict: raise ConvergenceError (instead of a ToleranceFloorWarning) when the dtype's residual floor, not
            tol, decided the accuracy of some pair.
        memory_budget: bytes for the whole eigensolve (default None: no bound): what the operator holds
            (op.held_bytes), the Krylov basis, its working blocks and the Ritz step (memory.eigensolver_bytes),
            and the operator's passes, whose temporaries get what the rest leaves (op.set_pass_budget, for an
            operator that has it), all planned within memory.PLANNED = 90% of it (the rest: the C allocator's,
            BLAS's and Python's own memory). A basis that would outgrow it before converging raises
            ConvergenceError; a budget too small for the first block raises InputError. Info["memory"] records
            the accounting.

    What was reached (not only what was asked) is in Eigenpairs.info["accuracy"] (`achieved_accuracy`): the
    largest relative error bound error_bounds / eigvals over all pairs and per decade of the spectrum, and how
    many pairs the floor bound. When the floor binds (a relative bound above tol) a ToleranceFloorWarning says so
    and which dtype would reach tol.
    Raises:
        ValueError on bad arguments or an operator that is not symmetric PSD; ConvergenceError when the
        tolerance is not met within max_passes (or within memory_budget).
    """
    op = as_operator(op)
    N = int(op.N)
    if N < 2:
        raise InputError(f"the operator must have N >= 2 rows, got N={N}")
    k = check_int(k, "k", 1, N - 1)
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and 0 < tol < 1):
        raise InputError(f"tol must be in (0, 1), got tol={tol!r}")
    max_passes = check_int(max_passes, "max_passes", 1)
    if block_size is None:  # wider blocks need fewer passes; a pass is cheap when K is held in memory
        cheap = isinstance(op, DenseOperator) or getattr(op, "info", {}).get("cached", False)
        block_size = k + max(8, k // 50) if cheap else int(math.ceil(1.5 * k)) + 10
    m = min(N, check_int(block_size, "block_size", k))
    dtype = getattr(op, "dtype", torch.float64)
    device = getattr(op, "device", torch.device("cpu"))
    tol_eff = float(tol)
    floor = FLOOR * torch.finfo(dtype).eps  # the operator's own rounding, relative to lambda_1
    mem = MemoryPlan(op, N, m, torch.finfo(dtype).bits // 8, memory_budget, apply_to, k)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(int(seed))
    V = torch.linalg.qr(torch.randn(N, m, generator=gen, dtype=torch.float64))[0].to(device, dtype)
    Q = _Basis()
    T = torch.zeros(0, 0, dtype=torch.float64)
    passes = 0
    bar = _progress(progress, max_passes)
    sym_checked = False
    history, next_check = [], 2
    ritz_size = 0
    while True:
        mem.before_pass(Q.size)
        W = op @ V
        passes += 1
        if bar is not None:
            bar.update(1)
        if not torch.isfinite(W).all():
            raise InputError("the operator returned non-finite values (NaN or inf)")
        if not sym_checked:  # V^T K V must be symmetric for a symmetric K
            B = (V.T @ W).double()
            asym = float((B - B.T).abs().max()) / max(float(B.abs().max()), 1e-300)
            if asym > max(1e-6, 1e3 * torch.finfo(dtype).eps):
                raise InputError(f"the operator is not symmetric: V^T K V differs from its transpose by "
                                 f"{asym:.3g} (relative); top_eigenpairs needs a symmetric PSD kernel")
            sym_checked = True
        j0 = Q.size
        Q.blocks.append(V)
        size = Q.size
        full = size + m > N  # the next block would not fit: finish on the whole space
        out_of_memory = not full and not mem.fits(size + m)  # the next pass would exceed memory_budget
        Vn, C, R = _orth(W, Q, gen)
        del W
        # T gains the column block C (= Q^T K V_j) and the subdiagonal block R. T is kept exactly symmetric
        # (its new diagonal block is (B + B^T) / 2, the blocks off it are mirrored), so it is its own
        # symmetric part and the Ritz step needs no symmetrised copy
        Tn = torch.zeros(size, size, dtype=torch.float64)
        Tn[:j0, :j0] = T
        del T
        Tn[:, j0:] = C.double()
        Tn[j0:, :j0] = C[:j0].double().T
        Tn[j0:, j0:] = 0.5 * (Tn[j0:, j0:] + Tn[j0:, j0:].T)
        T = Tn
        del Tn
        if mem.large:
            release_freed_memory()
        grown = size >= GROWTH * ritz_size  # deterministic: the schedule depends on passes only, never on timing
        if (not full and not out_of_memory and passes < max_passes and passes < next_check and not grown):
            V = Vn  # not yet: the residuals are not predicted to have converged, and passes are cheap
            continue
        theta, S = torch.linalg.eigh(T)
        ritz_size = size
        theta, S = theta.flip(0), S.flip(1)
        scale = float(theta.abs().max())
        # Ritz values lie in [lambda_min, lambda_max]: a clearly negative one proves a negative eigenvalue
        if float(theta[-1]) < -max(1e-6, 1e3 * torch.finfo(dtype).eps) * scale:
            raise InputError(f"the operator is not positive semi-definite: it has an eigenvalue <= "
                             f"{float(theta[-1]):.3g} (relative {float(theta[-1]) / scale:.3g} to the largest in "
                             f"magnitude); top_eigenpairs needs a symmetric PSD kernel")
        if scale == 0:
            raise InputError("the operator is zero on the start block: it must be a nonzero symmetric PSD kernel")
        lam1 = max(float(theta[0]), 1e-300)
        res = (R.double() @ S[j0:, :k]).norm(dim=0)  # |K u - theta u| of the top k Ritz pairs
        delta = theta[:k] - theta[min(m, size - 1)]  # distance to the Ritz values beyond the block
        worst = float((res / _allowed(theta[:k], delta, lam1, tol_eff, floor)).max())  # converged when <= 1
        if bar is not None:
            bar.set_postfix(basis=size, worst=f"{worst * tol_eff:.1e}")
        converged = worst <= 1.0
        # the worst residual decays about geometrically per pass (faster later: Krylov convergence is
        # superlinear): skip the O(basis^3) Ritz step until the extrapolated convergence or until the basis has
        # grown by half since the last check (a check costs more than a pass when K is held in memory)
        history.append((passes, worst))
        if len(history) >= 2 and not converged:
            (p1, r1), (p2, r2) = history[-2:]
            rate = (r2 / r1) ** (1.0 / (p2 - p1)) if r1 > 0 and r2 > 0 else 1.0
            if rate < 0.9:
                next_check = passes + max(1, int(math.log(1.0 / r2) / math.log(rate)))
            else:
                next_check = passes + 1
        else:
            next_check = passes + 1
        if converged:
            break
        if full:  # the Krylov space is about to fill the whole space: the exact dense route is cheaper
            if bar is not None:
                bar.close()
            del Q, Vn, T, S
            if mem.dense_too_big(k):
                raise ConvergenceError(mem.dense_too_big(k))
            return _dense_route(op, k, apply_to, tol_eff, passes, m, t0)
        if out_of_memory:
            if bar is not None:
                bar.close()
            raise ConvergenceError(mem.exhausted(k, passes, size, worst, tol_eff, floor))
        if passes >= max_passes:
            if bar is not None:
                bar.close()
            raise ConvergenceError(
                f"top_eigenpairs(k={k}) did not converge: after {passes} passes (basis {size} of N={N}, block "
                f"{m}) the worst residual |Ku - lambda u| is {worst:.3g} times its allowance max(tol * lambda, "
                f"{floor:.2g} * lambda_1) with tol={tol_eff:.3g}; "
                f"raise max_passes (now {max_passes}) or block_size, or loosen tol")
        V = Vn
        S = None  # not converged: the next Ritz step computes its own
    if bar is not None:
        bar.close()
    lam = theta[:k]
    U = Q.mul(S[:, :k].to(device))
    del Q, Vn, V, T, S  # the basis is no longer needed: the verification pass has its memory
    if mem.large:
        release_freed_memory()
    mem.before_final()
    verified = False
    extra = None
    if apply_to is not None:
        extra = torch.as_tensor(apply_to).to(device, dtype)
        extra = extra[:, None] if extra.ndim == 1 else extra
        if extra.ndim != 2 or extra.shape[0] != N:
            raise InputError(f"apply_to must have shape [{N}] or [{N}, r], got {tuple(torch.as_tensor(apply_to).shape)}")
    applied = None
    if verify and size < N:
        KU = op @ (U if extra is None else torch.cat([U, extra], 1))
        passes += 1
        if extra is not None:
            KU, applied = KU[:, :k], KU[:, k:]
        res = (KU.double() - U.double() * lam.to(U.device)).norm(dim=0).cpu()
        verified = True
        allowed = _allowed(lam.cpu(), delta.cpu(), lam1, tol_eff, floor)
        bad = res > 10 * allowed
        if bad.any():
            i = int(torch.nonzero(bad)[0])
            raise ConvergenceError(f"top_eigenpairs(k={k}): the verified residual of pair {i + 1}, "
                                   f"{float(res[i]):.3g}, exceeds 10 x its allowance {float(allowed[i]):.3g} "
                                   f"(round-off in the operator?)")
    if extra is not None and applied is None:
        applied = op @ extra
        passes += 1
    bounds = res.double() ** 2 / torch.clamp(delta.double().cpu(), min=1e-300)
    accuracy = achieved_accuracy(lam, bounds, tol_eff, dtype, delta.double().cpu())
    _report_floor(accuracy, k, strict)
    return Eigenpairs(eigvals=lam.to(dtype), eigvecs=U, residuals=res.to(torch.float64), tol=tol_eff,
                      passes=passes, block_size=m, basis=size, seconds=time.perf_counter() - t0, verified=verified,
                      applied=applied, error_bounds=bounds,
                      info=dict(worst=float(res.max()) / lam1, route="krylov",
                                worst_pair=float((res / lam.double().cpu().abs()).max()), accuracy=accuracy,
                                memory=mem.as_dict(size)))


def achieved_accuracy(eigvals, error_bounds, tol: float, dtype, delta=None) -> dict:
    """What an eigensolve reached: the relative error bound of each pair, error_bounds / eigvals, as its maximum
    overall ("max_relative_bound") and per decade of eigvals / lambda_1 ("by_decade": {"1e0-1e-1": ..., ...}),
    the number of pairs whose bound exceeds the asked tol ("floor_bound": the dtype's residual floor decided
    them), and the dtype ("dtype"). With delta (each pair's gap to the rest of the spectrum), "float64_reaches_tol"
    says whether the float64 floor would meet tol for every pair."""
    lam = eigvals.double().cpu().abs()
    rel = error_bounds.double().cpu() / torch.clamp(lam, min=1e-300)
    lam1 = float(lam.max()) if lam.numel() else 1.0
    decades = {}
    with torch.no_grad():
        dec = torch.floor(torch.log10(torch.clamp(lam / lam1, min=1e-300))).to(torch.int64)
        for d in sorted(set(dec.tolist()), reverse=True):
            key = f"1e{d + 1}-1e{d}" if d < -1 else ("1e0-1e-1" if d == -1 else "1e0")
            decades[key] = float(rel[dec == d].max())
    out = dict(tol=float(tol), dtype=str(dtype).replace("torch.", ""), max_relative_bound=float(rel.max()),
               by_decade=decades, floor_bound=int((rel > tol * (1 + 1e-9)).sum()), pairs=int(rel.numel()))
    if delta is not None:
        floor64 = FLOOR * torch.finfo(torch.float64).eps * lam1
        best64 = torch.minimum(rel, floor64 ** 2 / torch.clamp(delta.double() * lam, min=1e-300))
        out["float64_reaches_tol"] = bool((best64 <= tol * (1 + 1e-9)).all())
    return out


def _report_floor(accuracy: dict, k: int, strict: bool) -> None:
    """A ToleranceFloorWarning (ConvergenceError with strict=True) when the dtype's floor, not tol, decided."""
    n = accuracy["floor_bound"]
    if not n:
        return
    fix = ("a float64 operator (e.g. --ntk_dtype float64) would reach it" if accuracy.get("float64_reaches_tol")
           else "no dtype reaches it for the pairs this far below lambda_1: loosen tol")
    msg = (f"top_eigenpairs(k={k}): {n} of {accuracy['pairs']} eigenpairs stopped at the {accuracy['dtype']} "
           f"residual floor ({FLOOR} eps lambda_1), not at tol={accuracy['tol']:.3g}: their relative error bound "
           f"reaches {accuracy['max_relative_bound']:.3g} (by decade of lambda / lambda_1: "
           + ", ".join(f"{d}: {v:.2g}" for d, v in accuracy["by_decade"].items()) + f"); {fix}")
    if strict:
        raise ConvergenceError(msg)
    warnings.warn(msg, ToleranceFloorWarning, stacklevel=3)


def _allowed(theta, delta, lam1, tol, floor):
    """The residual each Ritz pair may keep. A Ritz value's error is at most |r|^2 / delta (delta: its distance
    to the spectrum outside the block), so |r| <= sqrt(tol * theta * delta) makes it at most tol * theta; but
    never below floor * lambda_1 (the rounding of the operator is about eps * lambda_1 in absolute terms)."""
    theta = theta.double().abs()
    delta = torch.clamp(delta.double(), min=1e-3 * float(theta.min()))
    return torch.clamp(torch.sqrt(tol * theta * delta), min=floor * lam1)


def _dense_route(op, k, apply_to, tol_eff, passes, m, t0):
    """K = op @ I (one pass of N columns) and its exact eigendecomposition: used when the Krylov basis would
    fill the whole space (k a large fraction of N)."""
    N = int(op.N)
    dtype = getattr(op, "dtype", torch.float64)
    device = getattr(op, "device", torch.device("cpu"))
    K = (op @ torch.eye(N, dtype=dtype, device=device)).double()
    passes += 1
    asym = float((K - K.T).abs().max()) / max(float(K.abs().max()), 1e-300)
    if asym > max(1e-6, 1e3 * torch.finfo(dtype).eps):
        raise InputError(f"the operator is not symmetric: |K - K^T| is {asym:.3g} relative to |K|; "
                         f"top_eigenpairs needs a symmetric PSD kernel")
    K = 0.5 * (K + K.T)
    lam, U = torch.linalg.eigh(K)
    lam, U = lam.flip(0), U.flip(1)
    if float(lam[-1]) < -max(1e-6, 1e3 * torch.finfo(dtype).eps) * float(lam[0]):
        raise InputError(f"the operator is not positive semi-definite: smallest eigenvalue {float(lam[-1]):.3g} "
                         f"(relative {float(lam[-1]) / float(lam[0]):.3g} to the largest)")
    lam, U = lam[:k], U[:, :k]
    res = (K @ U - U * lam).norm(dim=0).cpu()
    applied = None
    if apply_to is not None:
        extra = torch.as_tensor(apply_to).to(K.device, torch.float64)
        applied = (K @ (extra[:, None] if extra.ndim == 1 else extra)).to(dtype)
    bounds = res.double().clone()  # |theta - lambda| <= |r| for the exact route
    return Eigenpairs(eigvals=lam.to(dtype), eigvecs=U.to(dtype), residuals=res, tol=tol_eff, passes=passes,
                      block_size=m, basis=N, seconds=time.perf_counter() - t0, verified=True, applied=applied,
                      error_bounds=bounds,
                      info=dict(worst=float(res.max()) / float(lam[0]), route="dense",
                                accuracy=achieved_accuracy(lam, bounds, tol_eff, torch.float64)))


def _progress(progress, total):
    from ..progress import progress_bar
    return progress_bar(total, "top eigenpairs (passes)", unit="pass", enabled=bool(progress))
