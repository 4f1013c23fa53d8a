"""The analytic infinite-width NTK of NTK-parameterised ReLU MLPs (gfsgd.models.MLP(activation="relu")),
by the arc-cosine recursion: the limit the empirical NTK (gfsgd.ntk.empirical) approaches as the width grows.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from ..errors import InputError

__all__ = ["relu_ntk"]


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
        raise InputError(f"depth must be an integer >= 1 (number of linear layers), got depth={depth!r}")
    L = int(depth)
    X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X).to(dtype)
    same = X2 is None
    X2 = X if X2 is None else torch.as_tensor(np.asarray(X2) if not isinstance(X2, torch.Tensor) else X2).to(dtype)
    if X.ndim != 2 or X2.ndim != 2 or X.shape[1] != X2.shape[1]:
        raise InputError(f"X and X2 must be [N, D] with the same D, got {tuple(X.shape)} and {tuple(X2.shape)}")
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
