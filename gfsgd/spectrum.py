"""Kernel spectra without an N x N matrix: the top eigenpairs of a matrix-free symmetric PSD operator, a
power-law model of the modes beyond them, and the spectral-only Problem built from both
(docs/theory.md#full-datasets, "Full datasets: rank k plus a tail").

    top_eigenpairs(op, k)        block Krylov (block Lanczos with full reorthogonalisation) on op @ V
    spectral_tail(...)           the modes k+1..N: lambda_j = a j^-nu, c_j = e j^-(kappa+1), with nu and
                                 kappa fitted by theory.fit_power_law on the top k, and a, e set by the two
                                 exact constraints sum_j lambda_j = trace(K), sum_j c_j = |d0|^2
    problem_from_operator(op, d0, rank=k)   = Problem.from_operator: N modes, the top k exact, the rest the tail

An operator is anything with `N` and `op @ V` for V [N, m] (gfsgd.ntk.KernelOperator, or `as_operator(K)`
for a dense symmetric matrix); `diag()`/`trace()` give the exact trace the tail needs.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .problem import Problem, check_int
from .theory.asymptotics import fit_power_law

__all__ = ["top_eigenpairs", "Eigenpairs", "ConvergenceError", "spectral_tail", "SpectralTail",
           "problem_from_operator", "as_operator", "DenseOperator", "band_problems", "spectrum_summary"]


FLOOR = 50  # residual floor, in units of eps(dtype) * lambda_1
GROWTH = 2.0  # a Ritz step at least each time the basis has doubled since the last one


class ConvergenceError(RuntimeError):
    """top_eigenpairs did not reach its tolerance within its pass budget."""


class DenseOperator:
    """A dense symmetric matrix [N, N] seen as an operator (op @ V, diag(), trace(), N)."""

    def __init__(self, K):
        K = torch.as_tensor(K)
        if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
            raise ValueError(f"the operator must be a square N x N matrix, got shape {tuple(K.shape)}")
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
                   max_passes: int = 40, verify: bool = True, apply_to=None, progress: bool = False) -> Eigenpairs:
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
    Raises:
        ValueError on bad arguments or an operator that is not symmetric PSD; ConvergenceError when the
        tolerance is not met within max_passes.
    """
    op = as_operator(op)
    N = int(op.N)
    if N < 2:
        raise ValueError(f"the operator must have N >= 2 rows, got N={N}")
    k = check_int(k, "k", 1, N - 1)
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and 0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got tol={tol!r}")
    max_passes = check_int(max_passes, "max_passes", 1)
    if block_size is None:  # wider blocks need fewer passes; a pass is cheap when K is held in memory
        cheap = isinstance(op, DenseOperator) or getattr(op, "info", {}).get("cached", False)
        block_size = k + max(8, k // 50) if cheap else int(math.ceil(1.5 * k)) + 10
    m = min(N, check_int(block_size, "block_size", k))
    dtype = getattr(op, "dtype", torch.float64)
    device = getattr(op, "device", torch.device("cpu"))
    tol_eff = float(tol)
    floor = FLOOR * torch.finfo(dtype).eps  # the operator's own rounding, relative to lambda_1
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
        W = op @ V
        passes += 1
        if bar is not None:
            bar.update(1)
        if not torch.isfinite(W).all():
            raise ValueError("the operator returned non-finite values (NaN or inf)")
        if not sym_checked:  # V^T K V must be symmetric for a symmetric K
            B = (V.T @ W).double()
            asym = float((B - B.T).abs().max()) / max(float(B.abs().max()), 1e-300)
            if asym > max(1e-6, 1e3 * torch.finfo(dtype).eps):
                raise ValueError(f"the operator is not symmetric: V^T K V differs from its transpose by "
                                 f"{asym:.3g} (relative); top_eigenpairs needs a symmetric PSD kernel")
            sym_checked = True
        j0 = Q.size
        Q.blocks.append(V)
        size = Q.size
        full = size + m > N  # the next block would not fit: finish on the whole space
        Vn, C, R = _orth(W, Q, gen)
        del W
        # T gains the column block C (= Q^T K V_j) and the subdiagonal block R
        Tn = torch.zeros(size, size, dtype=torch.float64)
        Tn[:j0, :j0] = T
        Tn[:, j0:] = C.double()
        Tn[j0:, :j0] = C[:j0].double().T
        T = Tn
        grown = size >= GROWTH * ritz_size  # deterministic: the schedule depends on passes only, never on timing
        if not full and passes < max_passes and passes < next_check and not grown:
            V = Vn  # not yet: the residuals are not predicted to have converged, and passes are cheap
            continue
        Ts = 0.5 * (T + T.T)
        theta, S = torch.linalg.eigh(Ts)
        ritz_size = size
        theta, S = theta.flip(0), S.flip(1)
        scale = float(theta.abs().max())
        # Ritz values lie in [lambda_min, lambda_max]: a clearly negative one proves a negative eigenvalue
        if float(theta[-1]) < -max(1e-6, 1e3 * torch.finfo(dtype).eps) * scale:
            raise ValueError(f"the operator is not positive semi-definite: it has an eigenvalue <= "
                             f"{float(theta[-1]):.3g} (relative {float(theta[-1]) / scale:.3g} to the largest in "
                             f"magnitude); top_eigenpairs needs a symmetric PSD kernel")
        if scale == 0:
            raise ValueError("the operator is zero on the start block: it must be a nonzero symmetric PSD kernel")
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
            del Q, Vn
            return _dense_route(op, k, apply_to, tol_eff, passes, m, t0)
        if passes >= max_passes:
            if bar is not None:
                bar.close()
            raise ConvergenceError(
                f"top_eigenpairs(k={k}) did not converge: after {passes} passes (basis {size} of N={N}, block "
                f"{m}) the worst residual |Ku - lambda u| is {worst:.3g} times its allowance max(tol * lambda, "
                f"{floor:.2g} * lambda_1) with tol={tol_eff:.3g}; "
                f"raise max_passes (now {max_passes}) or block_size, or loosen tol")
        V = Vn
    if bar is not None:
        bar.close()
    lam = theta[:k]
    U = Q.mul(S[:, :k].to(device))
    verified = False
    extra = None
    if apply_to is not None:
        extra = torch.as_tensor(apply_to).to(device, dtype)
        extra = extra[:, None] if extra.ndim == 1 else extra
        if extra.ndim != 2 or extra.shape[0] != N:
            raise ValueError(f"apply_to must have shape [{N}] or [{N}, r], got {tuple(torch.as_tensor(apply_to).shape)}")
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
    return Eigenpairs(eigvals=lam.to(dtype), eigvecs=U, residuals=res.to(torch.float64), tol=tol_eff,
                      passes=passes, block_size=m, basis=size, seconds=time.perf_counter() - t0, verified=verified,
                      applied=applied, error_bounds=res ** 2 / torch.clamp(delta.double().cpu(), min=1e-300),
                      info=dict(worst=float(res.max()) / lam1, route="krylov",
                                worst_pair=float((res / lam.double().cpu().abs()).max())))


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
        raise ValueError(f"the operator is not symmetric: |K - K^T| is {asym:.3g} relative to |K|; "
                         f"top_eigenpairs needs a symmetric PSD kernel")
    K = 0.5 * (K + K.T)
    lam, U = torch.linalg.eigh(K)
    lam, U = lam.flip(0), U.flip(1)
    if float(lam[-1]) < -max(1e-6, 1e3 * torch.finfo(dtype).eps) * float(lam[0]):
        raise ValueError(f"the operator is not positive semi-definite: smallest eigenvalue {float(lam[-1]):.3g} "
                         f"(relative {float(lam[-1]) / float(lam[0]):.3g} to the largest)")
    lam, U = lam[:k], U[:, :k]
    res = (K @ U - U * lam).norm(dim=0).cpu()
    applied = None
    if apply_to is not None:
        extra = torch.as_tensor(apply_to).to(K.device, torch.float64)
        applied = (K @ (extra[:, None] if extra.ndim == 1 else extra)).to(dtype)
    return Eigenpairs(eigvals=lam.to(dtype), eigvecs=U.to(dtype), residuals=res, tol=tol_eff, passes=passes,
                      block_size=m, basis=N, seconds=time.perf_counter() - t0, verified=True, applied=applied,
                      error_bounds=res.clone(),  # |theta - lambda| <= |r| for the exact route
                      info=dict(worst=float(res.max()) / float(lam[0]), route="dense"))


def _progress(progress, total):
    from .progress import progress_bar
    return progress_bar(total, "top eigenpairs (passes)", unit="pass", enabled=bool(progress))


# ---------------------------------------------------------------------------------------------- the tail
@dataclass
class SpectralTail:
    """The modeled modes k+1..N (docs/theory.md#full-datasets).

    eigvals [N - k], c [N - k]: the tail of the normalised spectrum and of c_j = (u_j^T d0)^2;
    fit: the theory.fit_power_law result on the top k; amp_lambda, amp_c: the amplitudes a, e set by the
    constraints; constraints: the exact sums used; warnings: why the tail may not be a power law (empty when
    none); band: the tail exponents at the ends of the confidence intervals (see band_problems).
    """
    eigvals: np.ndarray
    c: np.ndarray
    nu: float
    kappa: float
    fit: object
    amp_lambda: float
    amp_c: float
    constraints: dict
    warnings: list
    band: dict

    def as_dict(self) -> dict:
        f = self.fit
        return dict(nu=self.nu, nu_ci=list(f.nu_ci), kappa=self.kappa, kappa_ci=list(f.kappa_ci),
                    k_range=list(f.k_range), r2_lambda=self.constraints.get("r2_lambda"),
                    amp_lambda=self.amp_lambda, amp_c=self.amp_c, jump=self.constraints.get("jump"),
                    constraints=self.constraints, warnings=list(self.warnings), band=self.band)


def _tail_law(k, N, exponent, total):
    """x_j = a j^-exponent for j = k+1..N with sum x_j = total: (x, a)."""
    j = np.arange(k + 1, N + 1, dtype=float)
    shape = j ** (-float(exponent))
    s = shape.sum()
    a = total / s if s > 0 else 0.0
    return a * shape, a


def spectral_tail(eigvals, c, *, N: int, trace: float, energy: float, moment: float | None = None,
                  k_range=None, confidence: float = 0.95) -> SpectralTail:
    """Model the modes k+1..N of a normalised spectrum from its top k (docs/theory.md#full-datasets).

    Args:
        eigvals: the top k eigenvalues, descending, normalised (top 1).     # [k]
        c: their c_j = (u_j^T d0)^2.                                       # [k]
        N: total number of modes; trace: trace(K) in the same units (sum of all N eigenvalues, exact from
            the diagonal); energy: |d0|^2 (= sum of all N c_j).
        moment: d0^T K d0 = sum_j lambda_j c_j in the same units (exact, one application of K). When given,
            the tail's c exponent is the one that meets it (with the modeled tail eigenvalues) instead of the
            fitted kappa + 1, which the noisy c_j of a real problem make unreliable; when no exponent in
            [-20, 20] meets it, the fitted one is used and a warning says so.
        k_range: the modes on which nu and kappa are fitted (default: (max(2, k // 10), k)).
    """
    lam = np.asarray(torch.as_tensor(eigvals, dtype=torch.float64).cpu(), dtype=float)
    c = np.asarray(torch.as_tensor(c, dtype=torch.float64).cpu(), dtype=float)
    k = lam.size
    N = check_int(N, "N", k + 1)
    if c.shape != lam.shape:
        raise ValueError(f"c must have the length of eigvals ({k}), got {c.size}")
    if k < 8:
        raise ValueError(f"the tail model fits a power law on the top k modes and needs k >= 8, got k={k}")
    for name, v in (("trace", trace), ("energy", energy)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {name}={v}")
    if k_range is None:
        k_range = (max(2, k // 10), k)
    fit = fit_power_law(lam, c=c, N=N, k_range=k_range, confidence=confidence)
    warn = []
    # goodness of the eigenvalue law on the fitted range (R^2 of log lambda on log k)
    ks = np.unique(np.round(np.geomspace(fit.k_range[0], fit.k_range[1], 60)).astype(int))
    ks = ks[lam[ks - 1] > 0]
    yl = np.log(lam[ks - 1])
    pred = math.log(fit.lambda_scale) - fit.nu * np.log(ks)
    r2 = 1 - float(((yl - pred) ** 2).sum()) / max(float(((yl - yl.mean()) ** 2).sum()), 1e-300)
    if fit.nu_ci[0] <= 0:
        warn.append(f"the eigenvalue exponent's interval reaches 0 (nu = {fit.nu:.3g}, {fit.nu_ci}): the top-k "
                    f"spectrum does not decay as a power law")
    if r2 < 0.95:
        warn.append(f"poor power-law fit of the top-k eigenvalues (R^2 = {r2:.3f} on log-log, k in {fit.k_range})")
    trace_top, energy_top = float(lam.sum()), float(c.sum())
    t_tail, e_tail = trace - trace_top, energy - energy_top
    if t_tail < -1e-8 * max(trace, 1e-300):
        warn.append(f"trace(K) = {trace:.6g} is below the sum of the top k eigenvalues ({trace_top:.6g}): the tail "
                    f"is set to 0")
    if e_tail < -1e-8 * max(energy, 1e-300):
        warn.append(f"|d0|^2 = {energy:.6g} is below the sum of the top k c_j ({energy_top:.6g}): the tail is set "
                    f"to 0")
    t_tail, e_tail = max(t_tail, 0.0), max(e_tail, 0.0)
    nu = max(fit.nu, 1e-3)
    lam_tail, a = _tail_law(k, N, nu, t_tail)
    c_exp, m_tail = fit.kappa + 1.0, None
    if moment is not None:
        if not math.isfinite(moment):
            raise ValueError(f"moment must be finite (d0^T K d0), got moment={moment}")
        m_tail = float(moment) - float((lam * c).sum())
        sol = _solve_exponent(lambda ex: float((lam_tail * _tail_law(k, N, ex, e_tail)[0]).sum()), m_tail)
        if sol is None:
            warn.append(f"no power law c_j ~ j^-s (s in [-20, 20]) carries the tail's exact moment "
                        f"sum lambda_j c_j = {m_tail:.4g}: the fitted exponent kappa + 1 = {c_exp:.3g} is used")
        else:
            c_exp = sol
    c_tail, e = _tail_law(k, N, c_exp, e_tail)
    jump = float(lam_tail[0] / lam[-1]) if lam[-1] > 0 and lam_tail.size else math.nan
    if math.isfinite(jump) and not (0.5 <= jump <= 2.0):
        warn.append(f"the trace-matched tail starts at {jump:.3g} x lambda_k: the power law fitted on the top k "
                    f"does not carry the remaining trace smoothly (the tail is flatter or steeper than the fit)")
    band = dict(nu=[float(max(fit.nu_ci[0], 1e-3)), float(fit.nu_ci[1])],
                kappa=[float(fit.kappa_ci[0]), float(fit.kappa_ci[1])])
    constraints = dict(trace=float(trace), trace_top=trace_top, trace_tail=t_tail, energy=float(energy),
                       energy_top=energy_top, energy_tail=e_tail, moment=None if moment is None else float(moment),
                       moment_tail=m_tail, c_exponent=float(c_exp), r2_lambda=r2, jump=jump)
    return SpectralTail(eigvals=lam_tail, c=c_tail, nu=float(fit.nu), kappa=float(fit.kappa), fit=fit,
                        amp_lambda=float(a), amp_c=float(e), constraints=constraints, warnings=warn, band=band)


def _solve_exponent(moment_of, target, lo=-20.0, hi=20.0):
    """The exponent s in [lo, hi] with moment_of(s) = target (Brent's method on a sign change), or None.
    With a decreasing tail spectrum, moment_of increases with s (a steeper c puts the energy on the larger
    eigenvalues), so the root is unique."""
    from scipy.optimize import brentq
    f = (lambda s: moment_of(s) - target)
    a, b = f(lo), f(hi)
    if not (math.isfinite(a) and math.isfinite(b)) or a * b > 0:
        return None
    return float(brentq(f, lo, hi, xtol=1e-12))


# ------------------------------------------------------------------------------------ spectral problems
def problem_from_operator(op, d0, *, rank: int, tol: float = 1e-8, seed: int = 0, block_size: int | None = None,
                          max_passes: int = 40, verify: bool = True, k_range=None, name: str | None = None,
                          meta: dict | None = None, progress: bool = False) -> Problem:
    """A spectral-only Problem of N modes from a kernel operator: the top `rank` eigenpairs exact, the rest the
    power-law tail (docs/theory.md#full-datasets). The SD regime and the theory run on it unchanged.

    op: the raw kernel operator (N, op @ V, trace(); e.g. gfsgd.ntk.kernel_operator) or a dense matrix;
    d0: the initial residual [N]. The spectrum is normalised by the top eigenvalue (lambda_max_raw).
    problem.meta["spectrum"] records the rank, the tail fit and its warnings, the constraints, the residual
    norms and the band of tail exponents (band_problems(problem) builds the two band problems).
    """
    op = as_operator(op)
    N = int(op.N)
    d0 = torch.as_tensor(d0, dtype=torch.float64).detach().cpu()
    if d0.ndim != 1 or d0.numel() != N:
        raise ValueError(f"d0 must have length N={N} (the operator's size), got shape {tuple(d0.shape)}")
    if not torch.isfinite(d0).all():
        raise ValueError("d0 has non-finite entries")
    rank = check_int(rank, "rank", 1, N - 1)
    if not hasattr(op, "trace"):
        raise ValueError("the operator must provide trace() (the exact sum of its diagonal): the tail's trace "
                         "constraint needs it")
    t0 = time.perf_counter()
    ep = top_eigenpairs(op, rank, tol=tol, seed=seed, block_size=block_size, max_passes=max_passes,
                        verify=verify, apply_to=d0, progress=progress)
    lmax = float(ep.eigvals[0])
    lam_top = ep.eigvals.double().cpu() / lmax
    coef_top = ep.eigvecs.double().cpu().T @ d0
    moment = float(d0 @ ep.applied[:, 0].double().cpu()) / lmax  # d0^T K d0 (normalised units)
    tail = spectral_tail(lam_top, coef_top ** 2, N=N, trace=op.trace() / lmax, energy=float(d0 @ d0),
                         moment=moment, k_range=k_range)
    for w in tail.warnings:
        warnings.warn(f"spectral tail: {w}", stacklevel=2)
    eigvals = torch.cat([lam_top, torch.as_tensor(tail.eigvals)])
    coef = torch.cat([coef_top, torch.as_tensor(np.sqrt(tail.c))])
    spec = dict(rank=rank, N=N, tail=tail.as_dict(), warnings=list(tail.warnings),
                residuals=dict(max=float(ep.residuals.max()), median=float(ep.residuals.median()),
                               relative_max=float(ep.residuals.max()) / lmax, verified=ep.verified, tol=ep.tol),
                passes=ep.passes, block_size=ep.block_size, eigen_seconds=ep.seconds,
                seconds=time.perf_counter() - t0, lambda_k=float(lam_top[-1]),
                top=dict(eigvals=lam_top.tolist(), coef=coef_top.tolist()))
    info = dict(meta or {})
    info["spectrum"] = spec
    info.setdefault("kind", "operator")
    p = Problem(eigvals, coef, None, lambda_max_raw=lmax, name=name or f"operator(N={N}, rank={rank})",
                meta=info)
    return p


def spectrum_summary(problem) -> str:
    """A few lines on a rank-k problem's spectrum: rank, residuals, tail fit, constraints and warnings."""
    spec = problem.meta.get("spectrum")
    if not spec:
        return f"{problem.name}: dense spectrum ({problem.N} modes)"
    t, c = spec["tail"], spec["tail"]["constraints"]
    lines = [f"spectrum: top {spec['rank']} of N={spec['N']} eigenpairs in {spec['eigen_seconds']:.1f} s "
             f"({spec['passes']} passes, block {spec['block_size']}; worst |Ku - lambda u| / lambda_1 = "
             f"{spec['residuals']['relative_max']:.2g}), lambda_k = {spec['lambda_k']:.4g}",
             f"  tail: lambda_j ~ j^-nu, nu = {t['nu']:.3f} [{t['nu_ci'][0]:.3f}, {t['nu_ci'][1]:.3f}] (fitted on k in "
             f"{t['k_range']}, R^2 {t['r2_lambda']:.3f}); c_j ~ j^-{c['c_exponent']:.3f} (exact moment d0^T K d0; "
             f"fitted kappa = {t['kappa']:.3f})",
             f"  exact constraints: tail trace {c['trace_tail']:.4g} of {c['trace']:.4g}; tail residual energy "
             f"{c['energy_tail']:.4g} of |d0|^2 = {c['energy']:.4g} ({100 * c['energy_tail'] / max(c['energy'], 1e-300):.1f}%)"]
    lines += [f"  WARNING: {w}" for w in spec.get("warnings", [])]
    return "\n".join(lines)


def band_problems(problem) -> tuple:
    """The two problems at the ends of the tail's band: the top k unchanged, the tail re-drawn with (nu, kappa)
    at the low and at the high ends of their confidence intervals (amplitudes again from the two exact
    constraints). Running a regime on both brackets the prediction's sensitivity to the tail model."""
    spec = problem.meta.get("spectrum")
    if not spec:
        raise ValueError(f"band_problems needs a rank-k problem (Problem.from_operator / from_network(rank=k)); "
                         f"{problem.name} has no meta['spectrum']")
    k, N = int(spec["rank"]), problem.N
    cons = spec["tail"]["constraints"]
    # the top k modes: the rank-k problem's k largest are not necessarily its first k after sorting when the
    # tail starts above lambda_k, so take them back from the recorded lambda_k
    top = torch.tensor(spec["top"]["eigvals"], dtype=torch.float64), torch.tensor(spec["top"]["coef"],
                                                                                 dtype=torch.float64)
    out = []
    for nu, kappa in zip(spec["tail"]["band"]["nu"], spec["tail"]["band"]["kappa"]):
        lt, _ = _tail_law(k, N, nu, cons["trace_tail"])
        ct, _ = _tail_law(k, N, kappa + 1.0, cons["energy_tail"])
        p = Problem(torch.cat([top[0], torch.as_tensor(lt)]), torch.cat([top[1], torch.as_tensor(np.sqrt(ct))]),
                    None, lambda_max_raw=problem.lambda_max_raw, name=f"{problem.name} [tail nu={nu:.3g}, "
                    f"kappa={kappa:.3g}]", meta=dict(problem.meta, band=dict(nu=nu, kappa=kappa)))
        out.append(p)
    return tuple(out)


# Problem.from_operator is defined here (the spectral side), so that gfsgd.problem imports nothing of the
# project; gfsgd/__init__.py imports this module, so the method is always present.
Problem.from_operator = staticmethod(problem_from_operator)
