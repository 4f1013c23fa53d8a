"""Problem: the shared input of every regime and of the theory module.

A problem is a quadratic (linearized) training problem on N points, described in residual form:

    K        normalised kernel, K = K_raw / lambda_max(K_raw), so its top eigenvalue is 1   # [N, N]
    eigvals  lambda_k of K in descending order                                                # [N]
    eigvecs  U with K = U diag(lambda) U^T (columns are eigenvectors)                        # [N, N]
    d0       initial residual f(X; w0) - y                                                    # [N]
    coef     eigen-coefficients of d0, coef = U^T d0                                          # [N]
    c        their squares c_k = coef_k^2 (initial loss per mode is c_k / (2N))              # [N]

The initial loss is L_0 = |d0|^2 / (2N) = sum_k c_k / (2N).

A problem may carry a held-out (test) set of M points:

    K_test   cross-kernel K_raw(test, train) / lambda_max(K_raw), normalised like K           # [M, N]
    r_test   initial test residual f(X_test; w0) - y_test                                      # [M]

Weights move in the row space of the training Jacobian, so the test residual is an exact linear function
of the training residual: r_t = r_0 + Gamma (d_t - d_0), Gamma = K_test K^+ (docs/theory.md#test-loss).
`test_terms()` gives the pieces the regimes need in the eigenbasis.

A problem may be *spectral only* (eigvecs is None): it then carries eigvals and coef, which is all the
spectral-diagonal regime and the theory module need, and lets synthetic problems with N = 10^5 modes be
built instantly. K, eigvecs and d0 of such a problem raise a clear error.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from .errors import InputError
from .outputs import check_n_outputs, output_profiles

__all__ = ["Problem", "check_int"]

_DEFAULT_DTYPE = torch.float64


def _as_tensor(x, name, dtype=_DEFAULT_DTYPE):
    try:
        t = torch.as_tensor(x, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}: {exc}") from None
    return t.detach().clone()


def hadamard(n: int, dtype=_DEFAULT_DTYPE) -> torch.Tensor:
    """Orthonormal Sylvester-Hadamard matrix of size n (a power of 2): every |U_ik|^2 = 1/n."""
    if n < 1 or n & (n - 1):
        raise InputError(f"basis='hadamard' needs N a power of 2, got N={n}")
    H = torch.ones(1, 1, dtype=dtype)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H / math.sqrt(n)


class Problem:
    """A normalised-kernel quadratic problem in residual form (see the module docstring).

    Build one with `Problem.synthetic`, `Problem.from_kernel`, `gfsgd.problem_from_network` (a network linearised
    at its initialisation), `gfsgd.problem_from_operator` (rank k of a matrix-free kernel) or `Problem.load`.
    The constructor itself takes an already normalised spectrum:

    Args:
        eigvals: lambda_k, any order (sorted to descending here), top value 1 (else a ValueError).   # [N]
        coef: eigen-coefficients of d0 in the same order as eigvals.               # [N]
        eigvecs: U (columns are eigenvectors, in the order of eigvals), or None.   # [N, N]
        lambda_max_raw: top eigenvalue of the kernel before normalisation (used to convert learning rates
            for the real network: lr_nn = alpha * N / lambda_max_raw).
        name: a short description kept in saved results.
        meta: free-form dict saved with the problem (dataset, model, ...).
        n_outputs: C, the outputs per example (docs/theory.md#outputs): the spectrum then has N C modes, the
            eigenvectors' rows are example-major (i C + a), batches sample examples, and N counts examples.
        profiles: for a spectral-only problem with C > 1, the modes' output profiles [N C, C^2]
            (gfsgd.outputs.output_profiles); computed from the eigenvectors when they are given.
    """

    def __init__(self, eigvals, coef, eigvecs=None, *, lambda_max_raw=1.0, name="problem", meta=None,
                 K_test=None, r_test=None, n_outputs: int = 1, profiles=None):
        eigvals = _as_tensor(eigvals, "eigvals")
        coef = _as_tensor(coef, "coef")
        if eigvals.ndim != 1 or eigvals.numel() == 0:
            raise InputError(f"eigvals must be a non-empty 1-d array, got shape {tuple(eigvals.shape)}")
        if coef.shape != eigvals.shape:
            raise InputError(f"coef (eigen-coefficients of d0) has length {coef.numel()}, "
                             f"but the spectrum has N={eigvals.numel()} modes")
        if not torch.isfinite(eigvals).all() or not torch.isfinite(coef).all():
            raise InputError("eigvals and coef must be finite")
        if (eigvals < 0).any():
            raise InputError(f"eigvals must be >= 0 (a PSD kernel), min is {eigvals.min().item():.3g}")
        top = float(eigvals.max())
        if abs(top - 1.0) > 1e-9:
            raise InputError(f"eigvals must be normalised so that the top eigenvalue is 1 (learning rates are in "
                             f"these units), got max eigvals = {top:.6g}; pass eigvals / {top:.6g} with "
                             f"lambda_max_raw={top:.6g} (Problem.from_kernel normalises a raw kernel)")
        order = torch.argsort(eigvals, descending=True)
        self.eigvals = eigvals[order]
        self.coef = coef[order]
        if eigvecs is not None:
            eigvecs = _as_tensor(eigvecs, "eigvecs")
            n = eigvals.numel()
            if eigvecs.shape != (n, n):
                raise InputError(f"eigvecs must have shape ({n}, {n}), got {tuple(eigvecs.shape)}")
            if not torch.isfinite(eigvecs).all():
                raise InputError(f"eigvecs must be finite, got {int((~torch.isfinite(eigvecs)).sum())} NaN or "
                                 f"inf entries")
            eigvecs = eigvecs[:, order]
        self.eigvecs = eigvecs
        self.n_outputs = check_n_outputs(n_outputs, eigvals.numel())
        if profiles is not None:
            profiles = _as_tensor(profiles, "profiles")
            if profiles.shape != (eigvals.numel(), self.n_outputs ** 2):
                raise InputError(f"profiles must have shape [{eigvals.numel()}, {self.n_outputs ** 2}] (N C modes, "
                                 f"C^2), got {tuple(profiles.shape)}")
            profiles = profiles[order]
        self._profiles = profiles
        self.lambda_max_raw = float(lambda_max_raw)
        self.name = str(name)
        self.meta = dict(meta or {})
        self._K = None
        self.K_test, self.r_test = _check_test_set(K_test, r_test, self.n_modes, self.n_outputs)
        self._test_terms = {}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def synthetic(cls, N: int, nu: float, kappa: float, lambda_min: float = 0.0, seed: int = 0,
                  *, basis: str | None = "random", norm: float = 1.0, n_test: int = 0) -> "Problem":
        """Power-law problem: lambda_k = max(k^-nu, lambda_min), c_k proportional to k^-(kappa+1).

        The residual's eigen-coefficients are coef_k = s_k sqrt(c_k) with random signs s_k, scaled so that
        |d0| = norm (so L_0 = norm^2 / (2N)). basis: "random" (a Haar-random orthogonal U, O(N^3) to build),
        "hadamard" (Sylvester-Hadamard U, |U_ik|^2 = 1/N exactly: the spectral-diagonal regime with tau = 1
        is then exact; N must be a power of 2) or None (spectral only: no K, any N).
        """
        N = check_int(N, "N", 1)
        for name, val in (("nu", nu), ("kappa", kappa)):
            if not math.isfinite(val):
                raise InputError(f"{name} must be finite, got {val}")
        if nu <= 0:
            raise InputError(f"nu must be > 0 (eigenvalues k^-nu decrease), got nu={nu}")
        if not (0.0 <= lambda_min <= 1.0):
            raise InputError(f"lambda_min must be in [0, 1], got lambda_min={lambda_min}")
        if not norm > 0:
            raise InputError(f"norm must be > 0, got norm={norm}")
        gen = torch.Generator().manual_seed(int(seed))
        k = torch.arange(1, N + 1, dtype=_DEFAULT_DTYPE)
        eigvals = torch.clamp(k ** (-float(nu)), min=float(lambda_min))
        c = k ** (-(float(kappa) + 1.0))
        c = c / c.sum() * norm ** 2
        signs = torch.randint(0, 2, (N,), generator=gen).to(_DEFAULT_DTYPE) * 2 - 1
        coef = signs * c.sqrt()
        if basis is None or basis == "none":
            U = None
        elif basis == "random":
            Z = torch.randn(N, N, generator=gen, dtype=_DEFAULT_DTYPE)
            Q, R = torch.linalg.qr(Z)
            U = Q * torch.sign(torch.diagonal(R))  # Haar measure
        elif basis == "hadamard":
            U = hadamard(N)
        else:
            raise InputError(f"basis must be 'random', 'hadamard' or None, got {basis!r}")
        n_test = check_int(n_test, "n_test", 0)
        K_test = r_test = None
        if n_test:
            if U is None:
                raise InputError(f"n_test={n_test} needs a basis (the held-out set lives in the eigenbasis); "
                                 f"got basis={basis!r}")
            Z = torch.randn(n_test, N, generator=gen, dtype=_DEFAULT_DTYPE)
            K_test = (Z * eigvals) @ U.T / math.sqrt(N)
            r_test = Z @ coef / math.sqrt(N)
        name = f"synthetic(N={N}, nu={nu}, kappa={kappa}, lambda_min={lambda_min}, basis={basis})"
        meta = dict(kind="synthetic", N=N, nu=nu, kappa=kappa, lambda_min=lambda_min, seed=seed,
                    basis=basis, norm=norm, n_test=n_test)
        return cls(eigvals, coef, U, lambda_max_raw=1.0, name=name, meta=meta, K_test=K_test, r_test=r_test)

    @classmethod
    def from_kernel(cls, K, d0, *, K_test=None, r_test=None, name="kernel", meta=None, sym_tol=1e-8,
                    psd_tol=1e-8) -> "Problem":
        """Any symmetric PSD kernel K [N, N] and initial residual d0 [N]; K is normalised to top eigenvalue 1.

        C outputs per example (docs/theory.md#outputs): d0 [N, C] and K [N C, N C], rows example-major (i C + a).

        K_test [M, N]: the raw cross-kernel K(test, train), normalised here by the same lambda_max as K;
        r_test [M]: the initial test residual. Give both or neither. With C outputs, K_test [M C, N C] and
        r_test [M C], rows example-major like K's.
        """
        K = _as_tensor(K, "K")
        d0 = _as_tensor(d0, "d0")
        n_outputs = 1
        if d0.ndim == 2:  # [N, C]: C outputs per example, flattened example-major
            n_outputs = int(d0.shape[1])
            d0 = d0.reshape(-1)
        if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
            raise InputError(f"K must be a square N x N matrix, got shape {tuple(K.shape)}")
        N = K.shape[0]
        if d0.ndim != 1 or d0.numel() != N:
            raise InputError(f"d0 must have length N={N} (the kernel's size), got shape {tuple(d0.shape)}")
        if not torch.isfinite(K).all():
            raise InputError(f"K has {int((~torch.isfinite(K)).sum())} non-finite entries")
        if not torch.isfinite(d0).all():
            raise InputError("d0 has non-finite entries")
        scale = K.abs().max().item()
        asym = (K - K.T).abs().max().item()
        if asym > sym_tol * max(scale, 1e-300):
            raise InputError(f"K must be symmetric: max |K - K^T| = {asym:.3g} "
                             f"(relative {asym / max(scale, 1e-300):.3g} > {sym_tol})")
        K = 0.5 * (K + K.T)
        lam, U = torch.linalg.eigh(K)
        lmax = lam.max().item()
        if lmax <= 0:
            raise InputError(f"K must have a positive eigenvalue, largest is {lmax:.3g}")
        if lam.min().item() < -psd_tol * lmax:
            raise InputError(f"K must be positive semi-definite: smallest eigenvalue {lam.min().item():.3g} "
                             f"< -{psd_tol} * lambda_max ({lmax:.3g})")
        lam = torch.clamp(lam, min=0.0) / lmax
        coef = U.T @ d0
        if K_test is not None:
            K_test = _as_tensor(K_test, "K_test")
            if K_test.ndim != 2 or K_test.shape[1] != N:
                raise InputError(f"K_test must be the [M, N={N}] cross-kernel (test rows, training columns), "
                                 f"got shape {tuple(K_test.shape)}")
            K_test = K_test / lmax
        return cls(lam, coef, U, lambda_max_raw=lmax, name=name, meta=meta, K_test=K_test, r_test=r_test,
                   n_outputs=n_outputs)

    # ------------------------------------------------------------------ derived quantities
    @property
    def N(self) -> int:
        """Training examples (with C outputs each, the spectrum has N C modes)."""
        return int(self.eigvals.numel()) // self.n_outputs

    @property
    def n_modes(self) -> int:
        """Modes of the spectrum: N C."""
        return int(self.eigvals.numel())

    @property
    def profiles(self) -> torch.Tensor:
        """Output profiles F [N C, C^2] of the modes (gfsgd.outputs.output_profiles); C = 1: ones [N, 1]."""
        if self._profiles is None:
            if self.n_outputs == 1:
                self._profiles = torch.ones(self.n_modes, 1, dtype=self.dtype, device=self.device)
            else:
                self.require_basis("the output profiles of a C-output problem")
                self._profiles = output_profiles(self.eigvecs, self.n_outputs)
        return self._profiles

    @property
    def dtype(self):
        return self.eigvals.dtype

    @property
    def device(self):
        return self.eigvals.device

    @property
    def has_basis(self) -> bool:
        return self.eigvecs is not None

    def require_basis(self, what: str) -> None:
        """Raise a clear error if this problem is spectral only (no eigenvectors)."""
        if self.eigvecs is None:
            raise InputError(f"{what} needs the kernel's eigenvectors, but this problem is spectral only "
                             f"({self.name}); build it with a basis (e.g. basis='random')")

    @property
    def c(self) -> torch.Tensor:
        """Squared eigen-coefficients of d0, c_k = (u_k^T d0)^2.   # [N]"""
        return self.coef ** 2

    @property
    def w(self) -> torch.Tensor:
        """Initial loss per mode, w_k = c_k / (2N).   # [N]"""
        return self.c / (2 * self.N)

    @property
    def loss0(self) -> float:
        """L_0 = |d0|^2 / (2N)."""
        return float(self.c.sum() / (2 * self.N))

    @property
    def d0(self) -> torch.Tensor:
        self.require_basis("d0")
        return self.eigvecs @ self.coef

    # ------------------------------------------------------------------ held-out set
    @property
    def has_test(self) -> bool:
        return self.K_test is not None

    @property
    def M(self) -> int:
        """Number of held-out examples (0 without a held-out set; K_test has M C rows with C outputs)."""
        return 0 if self.K_test is None else int(self.K_test.shape[0]) // self.n_outputs

    @property
    def test_loss0(self) -> float:
        """Initial test loss |r_test|^2 / (2M)."""
        self.require_test("test_loss0")
        return float(self.r_test @ self.r_test / (2 * self.M))

    def require_test(self, what: str) -> None:
        """Raise a clear error if this problem has no held-out set (or it cannot be used)."""
        if self.K_test is None:
            raise InputError(f"{what} needs a held-out set, but this problem has none ({self.name}); build it "
                             f"with one: Problem.from_kernel(K, d0, K_test=..., r_test=...), "
                             f"gfsgd.problem_from_network(..., X_test=..., y_test=...) or "
                             f"Problem.synthetic(..., n_test=M)")
        if self.eigvecs is None:
            raise InputError(f"{what} needs the held-out set in the kernel's eigenbasis, but this problem is "
                             f"spectral only ({self.name}): the test loss works on dense-basis problems only")

    def test_terms(self, cutoff: float = 1e-10):
        """The held-out set in the eigenbasis (docs/theory.md#test-loss):

            G = K_test U Lambda^+ = Gamma U                   [M, N]   (Gamma = K_test K^+)
            e = r_test - G coef  (= r_0 - Gamma d_0)          [M]
            h = G^T e            (= U^T Gamma^T e)            [N]
            W = G^T G            (= Lambda^+ U^T K_te,tr K_tr,te U Lambda^+)   [N, N]

        so that E|r_t|^2 = |e|^2 + 2 h^T E[d~_t] + Tr(W C~_t) with d~ = U^T d, C~ = U^T C U. Lambda^+ inverts
        the eigenvalues above cutoff * lambda_max (= cutoff, K being normalised) and zeroes the rest (round-off
        of a zero eigenvalue). Returns dict(e2=|e|^2, h, W, M, n_cut). Cached per cutoff.
        """
        self.require_test("test_terms")
        cutoff = float(cutoff)
        if not (math.isfinite(cutoff) and 0 < cutoff < 1):
            raise InputError(f"cutoff must be in (0, 1), got cutoff={cutoff}")
        if cutoff not in self._test_terms:
            lam = self.eigvals
            keep = lam > cutoff
            inv = torch.where(keep, 1.0 / torch.where(keep, lam, torch.ones_like(lam)), torch.zeros_like(lam))
            G = (self.K_test @ self.eigvecs) * inv  # [M, N]
            e = self.r_test - G @ self.coef
            self._test_terms[cutoff] = dict(e2=float(e @ e), h=G.T @ e, W=G.T @ G, M=self.M,
                                            n_cut=int((~keep).sum()))
        return self._test_terms[cutoff]

    @property
    def K(self) -> torch.Tensor:
        """Normalised kernel U diag(lambda) U^T (exactly symmetric).   # [N, N]"""
        self.require_basis("K")
        if self._K is None:
            K = (self.eigvecs * self.eigvals) @ self.eigvecs.T
            self._K = 0.5 * (K + K.T)
        return self._K

    def to(self, device=None, dtype=None) -> "Problem":
        """A copy on another device / dtype."""
        dtype = dtype or self.dtype
        conv = (lambda t: None if t is None else t.to(device=device, dtype=dtype))
        p = Problem.__new__(Problem)
        p.eigvals, p.coef, p.eigvecs = conv(self.eigvals), conv(self.coef), conv(self.eigvecs)
        p.lambda_max_raw, p.name, p.meta = self.lambda_max_raw, self.name, dict(self.meta)
        p._K = conv(self._K)
        p.K_test, p.r_test = conv(self.K_test), conv(self.r_test)
        p._test_terms = {}
        p.n_outputs, p._profiles = self.n_outputs, conv(self._profiles)
        return p

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> Path:
        """Save to a file (torch format), atomically. Reload with Problem.load(path)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(dict(format="gfsgd.Problem/1", eigvals=self.eigvals.cpu(), coef=self.coef.cpu(),
                        eigvecs=None if self.eigvecs is None else self.eigvecs.cpu(),
                        lambda_max_raw=self.lambda_max_raw, name=self.name, meta=self.meta,
                        K_test=None if self.K_test is None else self.K_test.cpu(),
                        r_test=None if self.r_test is None else self.r_test.cpu(), n_outputs=self.n_outputs,
                        profiles=None if self._profiles is None or self.eigvecs is not None else
                        self._profiles.cpu()), tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "Problem":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no problem file at {path} (make one with Problem.save)")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - torch raises many kinds on a bad file
            # torch's own text suggests weights_only=False, i.e. executing the file: never pass it on
            raise InputError(f"{path} is not a saved gfsgd Problem (it could not be read as one); make one with "
                             f"Problem.save") from None
        if not isinstance(obj, dict) or obj.get("format") != "gfsgd.Problem/1":
            raise InputError(f"{path} is not a saved gfsgd Problem (format tag missing)")
        return cls(obj["eigvals"], obj["coef"], obj["eigvecs"], lambda_max_raw=obj["lambda_max_raw"],
                   name=obj["name"], meta=obj["meta"], K_test=obj.get("K_test"), r_test=obj.get("r_test"),
                   n_outputs=int(obj.get("n_outputs", 1)), profiles=obj.get("profiles"))

    def __repr__(self):
        test = f", M={self.M} held out" if self.has_test else ""
        return (f"Problem({self.name}, N={self.N}{'' if self.n_outputs == 1 else f' x C={self.n_outputs}'}, "
                f"L0={self.loss0:.4g}, "
                f"basis={'yes' if self.has_basis else 'spectral only'}{test}, dtype={self.dtype})")


def check_int(value, name, low, high=None):
    """value as an int in [low, high] (high None: no upper bound), else a ValueError naming the argument."""
    if isinstance(value, bool) or not float(value).is_integer():
        raise InputError(f"{name} must be an integer, got {name}={value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InputError(f"{name} must be {rng}, got {name}={value}")
    return value


def _check_test_set(K_test, r_test, N, C=1):
    """(K_test [M C, N], r_test [M C]) validated (N counts the training rows, C the outputs per example), or
    (None, None)."""
    if K_test is None and r_test is None:
        return None, None
    if (K_test is None) != (r_test is None):
        raise InputError("give both K_test (the [M, N] cross-kernel) and r_test (the [M] initial test "
                         "residual), or neither")
    K_test = _as_tensor(K_test, "K_test")
    r_test = _as_tensor(r_test, "r_test")
    if K_test.ndim != 2 or K_test.shape[1] != N or K_test.shape[0] == 0:
        raise InputError(f"K_test must have shape [M, N={N}] (test rows, training columns) with M >= 1, "
                         f"got shape {tuple(K_test.shape)}")
    if K_test.shape[0] % C:
        raise InputError(f"K_test must have M C rows (C={C} outputs per held-out example), got "
                         f"{K_test.shape[0]} rows")
    if r_test.ndim != 1 or r_test.numel() != K_test.shape[0]:
        raise InputError(f"r_test must have length M={K_test.shape[0]} (K_test's rows), got shape "
                         f"{tuple(r_test.shape)}")
    if not torch.isfinite(K_test).all():
        raise InputError(f"K_test has {int((~torch.isfinite(K_test)).sum())} non-finite entries (NaN or inf)")
    if not torch.isfinite(r_test).all():
        raise InputError(f"r_test has {int((~torch.isfinite(r_test)).sum())} non-finite entries (NaN or inf)")
    return K_test, r_test
