"""The modes beyond the top k and the spectral-only Problem built from both (docs/theory.md#full-datasets,
"Full datasets: rank k plus a tail").

    spectral_tail(...)           the modes k+1..N: lambda_j = a j^-nu, c_j = e j^-(kappa+1), with nu and
                                 kappa fitted by fit_power_law (gfsgd.spectrum.powerlaw) on the top k, and
                                 a, e set by the two exact constraints sum_j lambda_j = trace(K), sum_j c_j = |d0|^2
    problem_from_operator(op, d0, rank=k)   N modes, the top k exact (top_eigenpairs), the rest the tail
    band_problems(problem)       the two problems at the ends of the tail exponents' confidence band
    spectrum_summary(problem)    a few lines on a rank-k problem's spectrum
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..problem import Problem, check_int
from .krylov import as_operator, top_eigenpairs
from .powerlaw import fit_power_law
from ..errors import InputError

__all__ = ["spectral_tail", "SpectralTail", "problem_from_operator", "band_problems", "spectrum_summary", "tail_law"]


@dataclass
class SpectralTail:
    """The modeled modes k+1..N (docs/theory.md#full-datasets).

    eigvals [N - k], c [N - k]: the tail of the normalised spectrum and of c_j = (u_j^T d0)^2;
    fit: the fit_power_law result (a PowerLawFit) on the top k; amp_lambda, amp_c: the amplitudes a, e set by the
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


def tail_law(k, N, exponent, total):
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
        raise InputError(f"c must have the length of eigvals ({k}), got {c.size}")
    if k < 8:
        raise InputError(f"the tail model fits a power law on the top k modes and needs k >= 8, got k={k}")
    for name, v in (("trace", trace), ("energy", energy)):
        if not (math.isfinite(v) and v >= 0):
            raise InputError(f"{name} must be a finite number >= 0, got {name}={v}")
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
    lam_tail, a = tail_law(k, N, nu, t_tail)
    c_exp, m_tail = fit.kappa + 1.0, None
    if moment is not None:
        if not math.isfinite(moment):
            raise InputError(f"moment must be finite (d0^T K d0), got moment={moment}")
        m_tail = float(moment) - float((lam * c).sum())
        sol = _solve_exponent(lambda ex: float((lam_tail * tail_law(k, N, ex, e_tail)[0]).sum()), m_tail)
        if sol is None:
            warn.append(f"no power law c_j ~ j^-s (s in [-20, 20]) carries the tail's exact moment "
                        f"sum lambda_j c_j = {m_tail:.4g}: the fitted exponent kappa + 1 = {c_exp:.3g} is used")
        else:
            c_exp = sol
    c_tail, e = tail_law(k, N, c_exp, e_tail)
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
                          meta: dict | None = None, progress: bool = False,
                          memory_budget: float | None = None) -> Problem:
    """A spectral-only Problem of N modes from a kernel operator: the top `rank` eigenpairs exact, the rest the
    power-law tail (docs/theory.md#full-datasets). The SD regime and the theory run on it unchanged.

    op: the raw kernel operator (N, op @ V, trace(); e.g. gfsgd.ntk.kernel_operator) or a dense matrix;
    d0: the initial residual [N]. The spectrum is normalised by the top eigenvalue (lambda_max_raw).
    problem.meta["spectrum"] records the rank, the tail fit and its warnings, the constraints, the residual
    norms and the band of tail exponents (band_problems(problem) builds the two band problems).

    memory_budget: bytes for the whole computation (default None: no bound), passed to top_eigenpairs: what
    the operator holds (op.held_bytes: a network operator's per-layer features, or its kept kernel), the
    Krylov basis with its working blocks and Ritz step, and the operator's passes, whose row blocks shrink as
    the basis grows. The peak resident memory is then the caller's (process, model, data, the dense matrix
    if op is one) plus at most about memory_budget; `meta["spectrum"]["memory"]` records the accounting.
    Measured (problem_from_network(rank=200) at its default 1 GiB, MNIST, MLP width 1000, float64,
    benchmarks/results/memory.json): peak 896 MB above the process at N = 15,000 (the dense float64 kernel:
    1.8 GB), 684 MB at N = 10,000.
    """
    op = as_operator(op)
    N = int(op.N)
    d0 = torch.as_tensor(d0, dtype=torch.float64).detach().cpu()
    if d0.ndim != 1 or d0.numel() != N:
        raise InputError(f"d0 must have length N={N} (the operator's size), got shape {tuple(d0.shape)}")
    if not torch.isfinite(d0).all():
        raise InputError("d0 has non-finite entries")
    rank = check_int(rank, "rank", 1, N - 1)
    if not hasattr(op, "trace"):
        raise InputError("the operator must provide trace() (the exact sum of its diagonal): the tail's trace "
                         "constraint needs it")
    t0 = time.perf_counter()
    ep = top_eigenpairs(op, rank, tol=tol, seed=seed, block_size=block_size, max_passes=max_passes,
                        verify=verify, apply_to=d0, progress=progress, memory_budget=memory_budget)
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
                               relative_max=float(ep.residuals.max()) / lmax, verified=ep.verified, tol=ep.tol,
                               achieved=ep.info.get("accuracy")),  # what was reached, not only what was asked
                passes=ep.passes, block_size=ep.block_size, eigen_seconds=ep.seconds, memory=ep.info.get("memory"),
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
             *_accuracy_line(spec["residuals"].get("achieved")),
             f"  tail: lambda_j ~ j^-nu, nu = {t['nu']:.3f} [{t['nu_ci'][0]:.3f}, {t['nu_ci'][1]:.3f}] (fitted on k in "
             f"{t['k_range']}, R^2 {t['r2_lambda']:.3f}); c_j ~ j^-{c['c_exponent']:.3f} (exact moment d0^T K d0; "
             f"fitted kappa = {t['kappa']:.3f})",
             f"  exact constraints: tail trace {c['trace_tail']:.4g} of {c['trace']:.4g}; tail residual energy "
             f"{c['energy_tail']:.4g} of |d0|^2 = {c['energy']:.4g} ({100 * c['energy_tail'] / max(c['energy'], 1e-300):.1f}%)"]
    lines += [f"  WARNING: {w}" for w in spec.get("warnings", [])]
    return "\n".join(lines)


def _accuracy_line(acc) -> list:
    if not acc:
        return []
    return [f"  eigenvalue accuracy reached ({acc['dtype']}): relative bound {acc['max_relative_bound']:.2g} overall, "
            + ", ".join(f"{d}: {v:.2g}" for d, v in acc["by_decade"].items())
            + f" by decade of lambda / lambda_1 (asked tol {acc['tol']:.2g}"
            + (f"; {acc['floor_bound']} pairs at the residual floor)" if acc["floor_bound"] else ")")]


def band_problems(problem) -> tuple:
    """The two problems at the ends of the tail's band: the top k unchanged, the tail re-drawn with (nu, kappa)
    at the low and at the high ends of their confidence intervals (amplitudes again from the two exact
    constraints). Running a regime on both brackets the prediction's sensitivity to the tail model."""
    spec = problem.meta.get("spectrum")
    if not spec:
        raise InputError(f"band_problems needs a rank-k problem (problem_from_operator / "
                         f"problem_from_network(rank=k)); {problem.name} has no meta['spectrum']")
    k, N = int(spec["rank"]), problem.N
    cons = spec["tail"]["constraints"]
    # the top k modes: the rank-k problem's k largest are not necessarily its first k after sorting when the
    # tail starts above lambda_k, so take them back from the recorded lambda_k
    top = torch.tensor(spec["top"]["eigvals"], dtype=torch.float64), torch.tensor(spec["top"]["coef"],
                                                                                 dtype=torch.float64)
    out = []
    for nu, kappa in zip(spec["tail"]["band"]["nu"], spec["tail"]["band"]["kappa"]):
        lt, _ = tail_law(k, N, nu, cons["trace_tail"])
        ct, _ = tail_law(k, N, kappa + 1.0, cons["energy_tail"])
        p = Problem(torch.cat([top[0], torch.as_tensor(lt)]), torch.cat([top[1], torch.as_tensor(np.sqrt(ct))]),
                    None, lambda_max_raw=problem.lambda_max_raw, name=f"{problem.name} [tail nu={nu:.3g}, "
                    f"kappa={kappa:.3g}]", meta=dict(problem.meta, band=dict(nu=nu, kappa=kappa)))
        out.append(p)
    return tuple(out)
