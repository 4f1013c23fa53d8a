"""ETDRK4, the exponential integrator of the SGD SDE's second moments (docs/theory.md#updates).

In the kernel eigenbasis the second-moment equation of the SDE (momentum 0, time in SGD steps) splits into an
elementwise linear part and a coupling through the noise:

    full:  dC~_kl/dt = delta_kl C~_kl + alpha^2 gamma N lambda_k lambda_l (U^T diag(c) U)_kl,   c = diag(U C~ U^T)
           delta_kl = -alpha (lambda_k + lambda_l) - alpha^2 gamma lambda_k lambda_l
    sd:    dA_k/dt = delta_k A_k + gamma alpha^2 lambda_k^2 sum_l A_l,   delta_k = -2 alpha lambda_k - gamma tau alpha^2 lambda_k^2

Both are u' = L * u + F(u) with L elementwise and F linear, which ETDRK4 (Cox and Matthews 2002) integrates
with the linear part exactly: fourth order in the step h for F, exact when F = 0. Its coefficients
phi(L h) are evaluated by the contour mean of Kassam and Trefethen (2005), which has no cancellation at L = 0.
"""
from __future__ import annotations

import math

import torch

__all__ = ["etd_coefficients", "etdrk4_step"]

_CONTOUR_POINTS = 32


def etd_coefficients(L: torch.Tensor, h: float):
    """(E, E2, Q, f1, f2, f3) of ETDRK4 for the elementwise rates L (real tensor) and step h."""
    z = (L * h).to(torch.complex128)
    j = torch.arange(1, _CONTOUR_POINTS + 1, dtype=torch.float64, device=L.device)
    r = torch.exp(1j * math.pi * (j - 0.5) / _CONTOUR_POINTS)  # points on the unit circle
    w = z[..., None] + r  # [..., M]
    ew, ew2 = torch.exp(w), torch.exp(w / 2)
    w3 = w ** 3
    mean = lambda x: (h * x.mean(-1).real).to(L.dtype)  # noqa: E731
    Q = mean((ew2 - 1) / w)
    f1 = mean((-4 - w + ew * (4 - 3 * w + w * w)) / w3)
    f2 = mean((2 + w + ew * (w - 2)) / w3)
    f3 = mean((-4 - 3 * w - w * w + ew * (4 - w)) / w3)
    E = torch.exp(L * h)
    E2 = torch.exp(L * (h / 2))
    return E, E2, Q, f1, f2, f3


def etdrk4_step(u: torch.Tensor, coef, F) -> torch.Tensor:
    """One ETDRK4 step of u' = L * u + F(u) with the coefficients of `etd_coefficients`."""
    E, E2, Q, f1, f2, f3 = coef
    Fu = F(u)
    a = E2 * u + Q * Fu
    Fa = F(a)
    b = E2 * u + Q * Fa
    Fb = F(b)
    c = E2 * a + Q * (2 * Fb - Fu)
    Fc = F(c)
    return E * u + f1 * Fu + 2 * f2 * (Fa + Fb) + f3 * Fc
