r"""Gaussian expectations of products of an activation at a few correlated points.

The finite-width recursions need averages such as :math:`\langle s^4\rangle_K`,
:math:`\langle s'^2 (z^2 - K)\rangle_K` (one point) and the four-point moments
:math:`\mathbb E[s(z_a) s(z_b) s(z_c) s(z_d)]` for :math:`z \sim \mathcal N(0, K)`
(up to four distinct points). Activations of the library are smooth except, at most,
at zero (ReLU, leaky ReLU, absolute value, sign, rectified monomials, ELU), so:

- one point: Gauss-Legendre on ``[-R, 0]`` and ``[0, R]`` (``R = 12`` standard
  deviations): machine precision for functions smooth on each half-line;
- two points: polar coordinates of the whitened Gaussian, Gauss-Legendre along each
  arc between the angles where ``z_a = 0`` or ``z_b = 0`` and along the radius:
  machine precision for the same functions;
- three or four points: tensor Gauss-Hermite in whitened coordinates (about ``1e-6``
  relative for smooth activations, ``1e-3`` for kinked ones).

Nothing here loops over examples: each call integrates one set of distinct points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from functools import cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["derivative", "expect_1d", "gauss_points"]

#: Half-width of the integration range in standard deviations (tail mass ~1e-33).
_RANGE = 12.0


@cache
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


@cache
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / math.sqrt(2.0 * math.pi)


def _std_1d(n: int) -> tuple[Tensor, Tensor]:
    """Nodes ``g`` and weights for ``E f(g)``, ``g ~ N(0, 1)``: split Gauss-Legendre."""
    x, w = _legendre(n)
    half = 0.5 * _RANGE
    pos = half * (x + 1.0)
    nodes = np.concatenate([-pos[::-1], pos])
    weights = np.concatenate([w[::-1], w]) * half
    weights = weights * np.exp(-0.5 * nodes**2) / math.sqrt(2.0 * math.pi)
    return torch.as_tensor(nodes), torch.as_tensor(weights)


def derivative(fn: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    """``fn'(z)`` of an elementwise function, by autograd; shape of ``z``."""
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(zz).sum(), zz)
    return grad.detach()


def expect_1d(k: float, n: int = 160) -> tuple[Tensor, Tensor]:
    """Nodes ``z`` and weights ``w`` with ``sum w f(z) = E f(z)``, ``z ~ N(0, k)`` (float64)."""
    g, w = _std_1d(n)
    return g * math.sqrt(max(k, 0.0)), w


def _factor(cov: Tensor) -> Tensor:
    """``L`` with ``L L^T = cov`` for a PSD (possibly singular) matrix: eigen-square-root."""
    e, u = torch.linalg.eigh(cov)
    return u * e.clamp_min(0.0).sqrt()


def _polar_2d(cov: Tensor, n_arc: int = 48, n_rad: int = 96) -> tuple[Tensor, Tensor]:
    """Nodes ``(N, 2)`` and weights for ``E f(z)``, ``z ~ N(0, cov)``, 2 points."""
    lf = _factor(cov)
    kinks = []
    for i in range(2):
        row = lf[i]
        if float(row.abs().max()) > 0.0:
            base = math.atan2(float(row[1]), float(row[0]))
            kinks += [
                (base + 0.5 * math.pi) % (2 * math.pi),
                (base - 0.5 * math.pi) % (2 * math.pi),
            ]
    edges = sorted({0.0, *kinks})
    edges.append(2 * math.pi)
    xa, wa = _legendre(n_arc)
    angles, aweights = [], []
    for lo, hi in itertools.pairwise(edges):
        if hi - lo <= 0.0:
            continue
        angles.append(lo + 0.5 * (hi - lo) * (xa + 1.0))
        aweights.append(0.5 * (hi - lo) * wa)
    t = torch.as_tensor(np.concatenate(angles))
    wt = torch.as_tensor(np.concatenate(aweights)) / (2 * math.pi)
    xr, wr = _legendre(n_rad)
    r = torch.as_tensor(0.5 * _RANGE * (xr + 1.0))
    wr_t = torch.as_tensor(0.5 * _RANGE * wr) * r * torch.exp(-0.5 * r * r)
    omega = torch.stack([torch.cos(t), torch.sin(t)], -1)  # (A, 2)
    g = r[:, None, None] * omega[None]  # (R, A, 2)
    z = g.reshape(-1, 2) @ lf.T
    w = (wr_t[:, None] * wt[None]).reshape(-1)
    return z, w


def _hermite_nd(cov: Tensor, n: int) -> tuple[Tensor, Tensor]:
    m = cov.shape[0]
    x, w = _hermite(n)
    xt, wt = torch.as_tensor(x), torch.as_tensor(w)
    grids = torch.meshgrid(*([xt] * m), indexing="ij")
    g = torch.stack([gr.reshape(-1) for gr in grids], -1)
    wgrid = torch.meshgrid(*([wt] * m), indexing="ij")
    weight = torch.ones(g.shape[0], dtype=torch.float64)
    for wg in wgrid:
        weight = weight * wg.reshape(-1)
    return g @ _factor(cov).T, weight


def gauss_points(cov: Tensor) -> tuple[Tensor, Tensor]:
    """Nodes ``(N, m)`` and weights ``(N,)`` for ``E f(z)``, ``z ~ N(0, cov)``, ``m <= 4``.

    Args:
        cov: ``(m, m)`` positive semi-definite covariance, float64.

    Returns:
        ``(z, w)`` with ``sum_i w_i f(z_i) ~ E f(z)``.

    """
    cov = cov.detach().to(torch.float64)
    m = cov.shape[0]
    if m == 1:
        z, w = expect_1d(float(cov[0, 0]))
        return z[:, None], w
    if m == 2:
        return _polar_2d(cov)
    return _hermite_nd(cov, 48 if m == 3 else 20)
