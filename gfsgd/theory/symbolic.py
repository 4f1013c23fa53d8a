"""Symbolic derivation of the per-mode generating functions (docs/theory.md#generating-functions), with sympy.

Per mode, the second moments M = [[m11, m12], [m12, m22]] of (mode of d, mode of v) evolve by

    A(M) = R M R^T - gamma tau alpha^2 lam^2 m11 E,   R = [[1 - alpha lam, beta], [-alpha lam, beta]],

a linear map of (m11, m12, m22), i.e. a 3 x 3 matrix A. The generating functions are the resolvent entries

    U_k(z) = [(1 - z A)^{-1} E]_11,   V_k(z) = [(1 - z A)^{-1} e11]_11,

obtained here by solving (1 - z A) M = E and (1 - z A) M = e11 for M; their common denominator is
S_k(z) = det(1 - z A). `derive()` returns all of them; the `check_*` functions show the facts used elsewhere
(closed forms, tau and gamma only through gamma * tau, S at lam = 0, the values at z = 1) and the numeric
checks S_k(z) > 0 and d/dz [z U_k(z)] >= 0 over the stability region; `numeric_functions()` exports them
through lambdify. Runs in a few seconds on CPU: `python -m gfsgd.theory.symbolic` prints the derivation
(the same calls run as-is in a notebook cell).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp

__all__ = ["symbols", "per_mode_map", "derive", "closed_forms", "check_closed_forms", "check_gamma_tau",
           "check_lambda_zero", "check_values_at_one", "check_positivity", "numeric_functions", "main"]


@lru_cache(maxsize=None)
def symbols():
    """The sympy symbols: z, alpha, beta, lam, gamma, tau, gt (= gamma * tau), m11, m12, m22."""
    z, alpha, lam, gamma = sp.symbols("z alpha lambda gamma", positive=True)
    beta, tau, gt = sp.symbols("beta tau gamma_tau", real=True)
    m11, m12, m22 = sp.symbols("m11 m12 m22", real=True)
    return dict(z=z, alpha=alpha, beta=beta, lam=lam, gamma=gamma, tau=tau, gt=gt, m11=m11, m12=m12, m22=m22)


@lru_cache(maxsize=None)
def per_mode_map():
    """The 3 x 3 matrix A of the per-mode map M -> R M R^T - gamma tau alpha^2 lam^2 m11 E on (m11, m12, m22)."""
    s = symbols()
    alpha, beta, lam, gamma, tau = s["alpha"], s["beta"], s["lam"], s["gamma"], s["tau"]
    m = [s["m11"], s["m12"], s["m22"]]
    M = sp.Matrix([[m[0], m[1]], [m[1], m[2]]])
    R = sp.Matrix([[1 - alpha * lam, beta], [-alpha * lam, beta]])
    E = sp.ones(2, 2)
    AM = sp.expand(R * M * R.T - gamma * tau * alpha ** 2 * lam ** 2 * m[0] * E)
    out = [AM[0, 0], AM[0, 1], AM[1, 1]]
    return sp.Matrix(3, 3, lambda i, j: sp.diff(out[i], m[j]))


def _to_vec(X):
    return sp.Matrix([X[0, 0], X[0, 1], X[1, 1]])


@lru_cache(maxsize=None)
def derive():
    """Solve (1 - z A) M = E and (1 - z A) M = e11 for M and return a dict of sympy expressions:
    S (= det(1 - z A), expanded), U (= [M_E]_11), V (= [M_e11]_11), all in z, alpha, beta, lam, gamma, tau."""
    s = symbols()
    A = per_mode_map()
    Mz = sp.eye(3) - s["z"] * A
    S = sp.expand(Mz.det())
    E = sp.ones(2, 2)
    e11 = sp.Matrix([[1, 0], [0, 0]])
    adj = Mz.adjugate()  # (1 - z A)^{-1} = adj / det: exact rational solve
    U = sp.cancel(sp.expand((adj * _to_vec(E))[0]) / S)
    V = sp.cancel(sp.expand((adj * _to_vec(e11))[0]) / S)
    return dict(S=S, U=U, V=V, A=A)


@lru_cache(maxsize=None)
def closed_forms():
    """The closed forms of docs/theory.md#generating-functions as sympy expressions (S, U, V)."""
    s = symbols()
    z, a, b, lam, gt = s["z"], s["alpha"], s["beta"], s["lam"], s["gamma"] * s["tau"]
    S = (1 - b * z) * ((1 + b * z) ** 2 - z * (1 + b - a * lam) ** 2) + gt * a ** 2 * lam ** 2 * z * (1 + b * z)
    U = (1 + b * z) / S
    V = ((1 - b * z) * (1 - b ** 2 * z) + 2 * a * b * lam * z) / S
    return dict(S=S, U=U, V=V)


def check_closed_forms() -> dict:
    """True where the derived S, U, V equal the closed forms identically (sympy simplification to 0)."""
    d, c = derive(), closed_forms()
    return {k: sp.simplify(sp.expand(d[k] - c[k])) == 0 if k == "S" else sp.simplify(sp.cancel(d[k] - c[k])) == 0
            for k in ("S", "U", "V")}


def check_gamma_tau() -> bool:
    """tau and gamma enter S only as gamma * tau: with gamma = gamma_tau / tau, tau drops out of S, U and V."""
    s = symbols()
    d = derive()
    for key in ("S", "U", "V"):
        e = sp.simplify(d[key].subs(s["gamma"], s["gt"] / s["tau"]))
        if s["tau"] in e.free_symbols:
            return False
    return True


def check_lambda_zero() -> bool:
    """S at lam = 0 is (1 - z)(1 - beta z)(1 - beta^2 z)."""
    s = symbols()
    z, b = s["z"], s["beta"]
    return sp.expand(derive()["S"].subs(s["lam"], 0) - (1 - z) * (1 - b * z) * (1 - b ** 2 * z)) == 0


def check_values_at_one() -> dict:
    """The values at z = 1: S_k(1) = alpha lam [(1 - beta)(2(1 + beta) - alpha lam) + gamma tau alpha lam (1 + beta)],
    U_k(1) = (1 + beta) / S_k(1), V_k(1) = [(1 - beta)(1 - beta^2) + 2 alpha beta lam] / S_k(1)."""
    s = symbols()
    a, b, lam, gt = s["alpha"], s["beta"], s["lam"], s["gamma"] * s["tau"]
    d = derive()
    S1 = a * lam * ((1 - b) * (2 * (1 + b) - a * lam) + gt * a * lam * (1 + b))
    return dict(S=sp.expand(d["S"].subs(s["z"], 1) - S1) == 0,
                U=sp.simplify(d["U"].subs(s["z"], 1) - (1 + b) / S1) == 0,
                V=sp.simplify(d["V"].subs(s["z"], 1) - ((1 - b) * (1 - b ** 2) + 2 * a * b * lam) / S1) == 0)


@lru_cache(maxsize=None)
def numeric_functions():
    """lambdify exports (numpy, broadcasting) of the derived expressions, each f(z, lam, alpha, beta, gamma_tau):
    S, U, V and dzU = d/dz [z U_k(z)]."""
    s = symbols()
    d = derive()
    args = (s["z"], s["lam"], s["alpha"], s["beta"], s["gt"])
    sub = {s["gamma"]: s["gt"] / s["tau"]}
    out = {}
    for key in ("S", "U", "V"):
        out[key] = sp.lambdify(args, sp.simplify(d[key].subs(sub)), modules="numpy")
    dz = sp.diff(s["z"] * d["U"].subs(sub), s["z"])
    out["dzU"] = sp.lambdify(args, sp.simplify(dz), modules="numpy")
    return out


def check_positivity(n_samples: int = 200_000, seed: int = 0) -> dict:
    """Numeric check of the proof ingredients (docs/theory.md#generating-functions) over the stability region
    -1 < beta < 1, 0 < alpha lam < 2 (1 + beta), 0 <= gamma tau <= 1, z in (0, 1):
    S_k(z) > 0 and d/dz [z U_k(z)] >= 0. Returns the sample minima and the number of violations."""
    f = numeric_functions()
    rng = np.random.default_rng(seed)
    beta = rng.uniform(-1, 1, n_samples) * (1 - 1e-9)
    u = rng.uniform(0, 1, n_samples) * 2 * (1 + beta)  # alpha lam; take lam = 1, alpha = u
    gt = rng.uniform(0, 1, n_samples)
    z = rng.uniform(0, 1, n_samples)
    one = np.ones(n_samples)
    S = f["S"](z, one, u, beta, gt)
    dzU = f["dzU"](z, one, u, beta, gt)
    return dict(min_S=float(S.min()), min_dzU=float(dzU.min()), violations_S=int((S <= 0).sum()),
                violations_dzU=int((dzU < -1e-12 * np.abs(dzU).max()).sum()), n_samples=n_samples)


def main():
    """Print the derivation and the checks (python -m gfsgd.theory.symbolic)."""
    d = derive()
    print("Per-mode map A on (m11, m12, m22):")
    sp.pprint(d["A"], num_columns=160)
    c = closed_forms()
    print("\nS_k(z) = det(1 - z A) =", sp.factor(d["S"]))
    print("      closed form:", c["S"])
    print("\nU_k(z) = [(1 - z A)^-1 E]_11 =", sp.factor(d["U"]))
    print("\nV_k(z) = [(1 - z A)^-1 e11]_11 =", sp.factor(d["V"]))
    print("\nclosed forms of docs/theory.md#generating-functions:", check_closed_forms())
    print("tau and gamma only through gamma * tau:", check_gamma_tau())
    print("S at lambda = 0 is (1 - z)(1 - beta z)(1 - beta^2 z):", check_lambda_zero())
    print("values at z = 1:", check_values_at_one())
    print("positivity over the stability region:", check_positivity())


if __name__ == "__main__":
    main()
