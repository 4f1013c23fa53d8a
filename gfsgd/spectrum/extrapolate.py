"""The problem of N training points predicted from a problem on n << N of them (docs/theory.md#subset).

    ex = gfsgd.spectrum.extrapolate(problem_n, 60_000)
    ex.problem       # a spectral-only Problem of N modes: the central estimate (SD and the theory run on it)
    ex.ensemble      # Problems spanning the estimate's uncertainty: a band for every prediction
    ex.info          # n, N, k_max, the tail's nu and kappa with their intervals, the constraints used

For n random points of a data distribution, the kernel matrix K_n estimates the kernel's integral operator:
lambda_k(K_n) / n -> mu_k, and the coefficients of the residual on its eigenvectors, (u_k^T d0)^2 / n -> the
operator's. On N points, lambda_k(K_N) ~ N mu_k and (u_k^T d0)^2 ~ N times the same limit, so in the problem's
normalised units (top eigenvalue 1) the top eigenvalues are unchanged and every c_k = (u_k^T d0)^2 scales by
N / n. Only the top k_max modes of K_n estimate the operator's (its small eigenvalues fold in the part of the
spectrum that n points cannot resolve); the modes k_max + 1..N are the power-law tail of
gfsgd.spectrum.spectral_tail, fitted on the top k_max and held to three sums estimated from K_n:

    trace(K_N) / lambda_1(K_N)  = trace(K_n) / lambda_1(K_n)      (both are N x the mean diagonal / (N mu_1))
    |d0|^2 (N)                  = (N / n) |d0|^2 (n)
    d0^T K_N d0 / lambda_1(K_N) = (N / n) d0^T K_n d0 / lambda_1(K_n)   (the double sum, to leading order in N)

and lambda_max_raw(N) = (N / n) lambda_max_raw(n), so a learning rate alpha of the extrapolated problem is the
network's same step, lr_nn = alpha N / lambda_max_raw(N) = alpha n / lambda_max_raw(n).

The tail's c exponent kappa + 1 comes from the subset's residual energy R(j) = sum_{i > j} c_i ~ j^-kappa, fitted
on j in [k_max / 4, k_max]: each c_j is one noisy sample (fitting them one by one, as the rank path does, or
matching the moment d0^T K d0, a small difference of large sums at n << N, gave tails far off on synthetic
problems with known exponents; tests/test_extrapolate.py).

Assumed: the n points are a uniform random subset of the N (the same distribution); the top k_max eigenvalues of
K_n are the operator's; the tail beyond is a power law. The ensemble: the tail at the ends of the intervals of
nu and kappa (band_problems; kappa's from the fits on [k_max/4, k_max/2] and [k_max/2, k_max]), the extrapolation
with k_max halved and doubled, and the whole energy at +- 2 standard errors of the subset's mean loss per example.
The split-half checks (ex.checks): the method run on each half of the subset and extrapolated to n, beside the
n-point problem itself; ex.band(predict) widens any prediction by the error they show, compounded over the
log2(N / n) doublings from n to N (docs/theory.md#subset).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import InputError
from ..problem import Problem, check_int
from .tail import tail_law, band_problems, spectral_tail

__all__ = ["extrapolate", "Extrapolation"]


@dataclass
class Extrapolation:
    """What extrapolate returns: the central problem, the ensemble spanning its uncertainty, the split-half checks
    and the facts. `band(predict)` puts a band on any prediction."""
    problem: Problem
    ensemble: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)

    def band(self, predict) -> dict:
        """A prediction with its band: `predict` maps a Problem to an array (a loss curve, losses per config...).

        Returns dict(central, low, high, check_ratio, halvings): central = predict(self.problem); low and high the
        elementwise min and max over the central value, every ensemble member's, and central x r^h for each
        split-half check, r = predict(truth) / predict(extrapolated) (the method's own error where the answer is
        known: n/2 -> n, one doubling of the data) and h = log2(N / n) (the doublings from n to N: a bias of the
        same sign compounds; docs/theory.md#subset). A member whose prediction is NaN is skipped; a prediction the
        subset cannot make (a batch larger than its n) skips the checks (check_ratio is then []).
        """
        central = np.asarray(predict(self.problem), dtype=float)
        vals = [central] + [np.asarray(predict(q), dtype=float) for q in self.ensemble]
        ratios = []
        try:
            for chk in self.checks:
                ratios.append(np.asarray(predict(chk["truth"]), dtype=float)
                              / np.asarray(predict(chk["extrapolated"]), dtype=float))
        except InputError:
            ratios = []
        h = math.log2(self.problem.N / self.info["n"]) if self.checks else 0.0
        with np.errstate(invalid="ignore", over="ignore"):
            vals += [central * r ** h for r in ratios]
            low, high = np.fmin.reduce(vals), np.fmax.reduce(vals)
        return dict(central=central, low=low, high=high, check_ratio=ratios, halvings=h)


def _kappa_cumulative(c, k):
    """kappa from the residual energy R(j) = sum_{i > j} c_i ~ j^-kappa of the subset, fitted (least squares in
    log-log) on j in [k/4, k], and its spread: the fits on [k/4, k/2] and [k/2, k]. The single c_j are too noisy
    to fit (one sample each); R is their cumulative sum, smooth."""
    R = np.cumsum(c[::-1])[::-1]  # R[j] = sum_{i >= j} c_i (0-based): the energy beyond mode j
    fits = []
    for lo, hi in ((k // 4, k), (k // 4, k // 2), (k // 2, k)):
        j = np.arange(max(lo, 2), max(hi, 4) + 1)
        j = j[(j < c.size) & (R[np.minimum(j, c.size - 1)] > 0)]
        if j.size < 3:
            fits.append(np.nan)
            continue
        slope = np.polyfit(np.log(j), np.log(R[j]), 1)[0]
        fits.append(-slope)
    return fits[0], (np.nanmin(fits), np.nanmax(fits))


def _one(lam, c, n, N, k, lmax_raw, name, k_range, confidence, source_meta=None, energy=None):
    s = N / n
    trace = float(lam.sum())  # normalised trace: invariant in N (module docstring)
    sc = s if energy is None else float(energy) / float(c.sum())  # the c scale: N / n, or the known |d0|^2
    energy = sc * float(c.sum())
    top_l, top_c = lam[:k], sc * c[:k]
    if k >= N:
        raise InputError(f"k_max must be below N={N}, got k_max={k}")
    tail = spectral_tail(top_l, top_c, N=N, trace=trace, energy=energy, moment=None, k_range=k_range,
                         confidence=confidence)
    kappa, (k_lo, k_hi) = _kappa_cumulative(c, k)
    c_tail = tail.c
    if np.isfinite(kappa) and kappa > 0:  # the tail's c from the cumulative fit (the single c_j are too noisy)
        c_tail, _ = tail_law(k, N, kappa + 1.0, tail.constraints["energy_tail"])
        tail.kappa = float(kappa)
        tail.band["kappa"] = [float(max(k_lo, 1e-3)), float(k_hi)]
        tail.constraints["c_exponent"] = float(kappa + 1.0)
    eig = torch.cat([torch.as_tensor(top_l), torch.as_tensor(tail.eigvals)])
    coef = torch.cat([torch.as_tensor(np.sqrt(top_c)), torch.as_tensor(np.sqrt(c_tail))])
    spec = dict(rank=k, N=N, tail=tail.as_dict(), warnings=list(tail.warnings),
                top=dict(eigvals=top_l.tolist(), coef=np.sqrt(top_c).tolist()))
    meta = dict(source_meta or {}, spectrum=spec, N=N)  # a network's problem stays one (its lr units hold)
    meta.setdefault("kind", "extrapolated")
    meta["extrapolated"] = dict(n=n, N=N, k_max=k)
    p = Problem(eig, coef, None, lambda_max_raw=lmax_raw * s, name=name, meta=meta)
    return p, tail


def _split_checks(problem, k, k_max, seed):
    """The method checked where the answer is known: the n points split at random into two halves, each half's
    problem (its block of the kernel, raw units) extrapolated to n with the same rules, against the n-point problem
    itself. Each check: dict(extrapolated=Problem of n modes, truth=problem, n_half)."""
    n = problem.N
    h = n // 2
    kh = max(8, h // 10) if k_max is None else max(8, k // 2)
    if h < 16 or kh >= h:
        return []
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    K = problem.K.detach().cpu().double() * float(problem.lambda_max_raw)
    d0 = problem.d0.detach().cpu().double().reshape(-1)
    # each half gets the n points' own |d0|^2: the check measures the spectrum's extrapolation, not the half's
    # sampling error of the loss per example (the ensemble's energy members hold that one)
    e_n = float((d0 ** 2).sum())
    out = []
    for idx in (perm[:h], perm[h:2 * h]):
        half = Problem.from_kernel(K[idx][:, idx], d0[idx], name=f"{problem.name} [half]", sym_tol=1e-6)
        ex = extrapolate(half, n, k_max=kh, ensemble=False, energy=e_n)
        out.append(dict(extrapolated=ex.problem, truth=problem, n_half=h))
    return out


def extrapolate(problem, N: int, *, k_max: int | None = None, k_range=None, confidence: float = 0.95,
                ensemble: bool = True, energy: float | None = None, check: bool = True,
                seed: int = 0) -> Extrapolation:
    """The problem of N points from `problem`, a dense one on n < N points (module docstring).

    Args:
        problem: a Problem with one output per example and all n of its modes (gfsgd.problem_from_network on
            the subset, or Problem.from_kernel); its lambda_max_raw carries the network's learning-rate units.
        N: the number of points to predict for, N > n (N = n returns `problem` itself).
        k_max: the top modes of the subset taken as the operator's (default n // 10, at least 8); the tail's power
            law is fitted on k in k_range (default (k_max // 10, k_max)).
        ensemble: also build the ensemble (the tail band and k_max halved and doubled).
        check: with the ensemble, also the split-half checks (needs the subset's eigenvectors): the n points split
            at random (seed) into two halves, each extrapolated to n and kept beside the n-point problem, so that
            Extrapolation.band scales the central prediction by the method's own error one halving below
            (docs/theory.md#subset). Two eigendecompositions of n/2 points.
        energy: |d0|^2 over all N points, when known (one forward pass of the network over the N points, no
            kernel: gfsgd.ntk.network_output); it replaces the subset's estimate (N / n) |d0,n|^2, removing the
            sampling error of the loss per example, and every c_k is scaled by energy / |d0,n|^2.
    Returns Extrapolation(problem, ensemble, info); info holds n, N, k_max, nu, nu_ci, kappa, kappa_ci, the
    tail's constraints and warnings.
    """
    if getattr(problem, "n_outputs", 1) != 1:
        raise InputError("extrapolate takes a problem with one output per example; with C outputs, extrapolate "
                         "the class-diagonal kernel (gfsgd.classdiag) instead")
    n = problem.N
    if problem.n_modes != n:
        raise InputError(f"extrapolate needs all n modes of the subset's kernel (a dense problem); "
                         f"{problem.name} has {problem.n_modes} modes for n={n}")
    N = check_int(N, "N", n)
    if N == n:
        return Extrapolation(problem, [], dict(n=n, N=N, k_max=n, identity=True))
    k = max(8, n // 10) if k_max is None else check_int(k_max, "k_max", 8, n - 1)
    order = torch.argsort(problem.eigvals.detach().cpu().double(), descending=True)
    lam = problem.eigvals.detach().cpu().double()[order].numpy()
    lam = lam / lam[0]
    c = (problem.coef.detach().cpu().double()[order] ** 2).numpy()
    name = f"{problem.name} -> N={N}"
    src = {key: v for key, v in (problem.meta or {}).items() if key not in ("spectrum", "lambda_max_raw",
                                                                             "lr_nn_per_alpha")}
    if energy is not None and not (np.isfinite(energy) and energy > 0):
        raise InputError(f"energy must be a finite number > 0 (|d0|^2 over the N points), got energy={energy!r}")
    p, tail = _one(lam, c, n, N, k, float(problem.lambda_max_raw), name, k_range, confidence, src, energy)
    info = dict(n=n, N=N, k_max=k, nu=tail.nu, nu_ci=list(tail.fit.nu_ci), kappa=tail.kappa,
                kappa_ci=list(tail.band["kappa"]), kappa_single_fit=float(tail.fit.kappa), constraints=tail.constraints, warnings=list(tail.warnings))
    # the sampling error of the subset's loss per example, |d0|^2 / n: a mean over n examples
    d2 = (problem.d0.detach().cpu().double().reshape(-1) ** 2) if problem.has_basis else None
    rel_se = float(d2.std() / d2.mean() / n ** 0.5) if d2 is not None and float(d2.mean()) > 0 else 0.0
    if energy is not None:
        rel_se = 0.0  # the energy is the N points' own
    info["loss0_relative_se"] = rel_se
    members = []
    if ensemble:
        members = list(band_problems(p))
        for sign in ((-1.0, 1.0) if rel_se > 0 else ()):  # the energy at +- 2 standard errors
            f = max(1.0 + sign * 2.0 * rel_se, 1e-3)
            members.append(Problem(p.eigvals, p.coef * f ** 0.5, None, lambda_max_raw=p.lambda_max_raw,
                                   name=f"{name} [L0 x {f:.3f}]", meta=dict(p.meta, energy_factor=f)))
        for kk in sorted({max(8, k // 2), min(n - 1, 2 * k)} - {k}):
            q, _ = _one(lam, c, n, N, kk, float(problem.lambda_max_raw), f"{name} [k_max={kk}]", None, confidence,
                        src, energy)
            members.append(q)
    checks = _split_checks(problem, k, k_max, seed) if (ensemble and check and problem.has_basis) else []
    info["checks"] = len(checks)
    return Extrapolation(p, members, info, checks)

