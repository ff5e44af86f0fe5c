r"""Learned Gram matrices in Cholesky form, and the Gaussian KL divergences of the objective.

A Gram matrix of ``m`` points is stored as :math:`G = V V^\top / m` with :math:`V` lower
triangular and its diagonal kept as a log, so every :math:`G` the optimiser visits is
symmetric positive definite. It starts at the NNGP, :math:`V = \sqrt m\, \mathrm{chol}(K)`.

The KL divergence between ``c`` independent columns,

.. math::
    \mathrm{KL}\big(\mathcal N(0, G) \,\|\, \mathcal N(0, K)\big)
        = \tfrac12\left[\mathrm{tr}(K^{-1} G) - m - \log\det(K^{-1} G)\right],

is computed from the two Cholesky factors, so that it is exactly zero (to rounding) at
the NNGP initialisation and finite wherever both factors exist.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import SingularKernelError, describe

__all__ = ["GramLayer", "cholesky", "gaussian_kl", "triangular_factor"]

WHERE = "nk.dkm.DKM"


def cholesky(k: Tensor, jitter: float, what: str) -> Tensor:
    r"""Lower Cholesky factor of ``k + jitter * mean(diag k) * I`` (``k``: ``(m, m)``).

    Raises:
        SingularKernelError: ``k`` is not positive definite at this jitter.

    """
    if jitter > 0.0:
        scale = torch.diagonal(k).mean().detach()
        k = k + (jitter * scale) * torch.eye(k.shape[0], dtype=k.dtype, device=k.device)
    factor, info = torch.linalg.cholesky_ex(k)
    if int(info) != 0 or not bool(torch.isfinite(torch.diagonal(factor)).all()):
        raise SingularKernelError(
            describe(
                WHERE,
                f"{what} ({k.shape[0]} x {k.shape[0]}, {k.dtype}) is not positive definite "
                f"at relative jitter {jitter:g}",
                "Remove duplicate points, compute in float64, add a bias (b_std > 0) to the "
                "Dense layers, or raise jitter= (e.g. 1e-6).",
            )
        )
    return factor


def triangular_factor(raw: Tensor) -> Tensor:
    """``V = tril(raw, -1) + diag(exp(diag(raw)))``: lower triangular, positive diagonal."""
    return torch.tril(raw, -1) + torch.diag_embed(torch.exp(torch.diagonal(raw)))


def raw_from_factor(factor: Tensor) -> Tensor:
    """Inverse of :func:`triangular_factor` for a lower factor with positive diagonal."""
    return torch.tril(factor, -1) + torch.diag_embed(torch.log(torch.diagonal(factor)))


def gaussian_kl(
    v: Tensor, k_chol: Tensor, scale: float = 1.0, mean: Tensor | None = None
) -> Tensor:
    r"""``sum_c KL(N(mu_c, V V^T / scale) || N(0, K))`` from ``V`` and ``chol(K)``.

    Args:
        v: lower factor ``(m, m)`` with positive diagonal.
        k_chol: lower Cholesky factor of ``K``, ``(m, m)``.
        scale: the covariance is ``V V^T / scale``.
        mean: means ``(m, c)``, one column per independent Gaussian; ``None``: one
            zero-mean Gaussian.

    Returns:
        A 0-d tensor, in nats.

    """
    columns = 1 if mean is None else mean.shape[1]
    # M = L^-1 V / sqrt(scale) is lower triangular, K^-1 G = M^T M similar, so
    # 2 KL = sum_{i>j} M_ij^2 + sum_i (M_ii^2 - 1 - 2 log M_ii); with d_i = log M_ii the
    # diagonal terms are expm1(2 d) - 2 d, exact to second order around G = K.
    white_v = torch.linalg.solve_triangular(k_chol, v, upper=False)
    off = torch.tril(white_v, -1).square().sum() / scale
    d = torch.log(torch.diagonal(v)) - torch.log(torch.diagonal(k_chol)) - 0.5 * math.log(scale)
    kl = 0.5 * columns * (off + (torch.expm1(2.0 * d) - 2.0 * d).sum())
    if mean is not None:
        white = torch.linalg.solve_triangular(k_chol, mean, upper=False)
        kl = kl + 0.5 * white.square().sum()
    return kl


class GramLayer(nn.Module):
    r"""A learned Gram matrix :math:`G = V V^\top / m` of ``m`` points.

    ``raw`` (``(m, m)``) holds :math:`V` below the diagonal and :math:`\log V_{ii}` on
    it (its upper triangle is unused). :meth:`initialize` puts :math:`G` at a given
    positive definite matrix (the NNGP prior).
    """

    raw: nn.Parameter

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device | None = None) -> None:
        super().__init__()
        self.size = size
        self.raw = nn.Parameter(torch.zeros(size, size, dtype=dtype, device=device))

    def initialize(self, k_chol: Tensor) -> None:
        r"""Set :math:`V = \sqrt m\, L` for ``k_chol = L`` ``(m, m)``, so that ``G = L L^T``."""
        with torch.no_grad():
            self.raw.copy_(raw_from_factor(k_chol.detach() * math.sqrt(self.size)))

    def factor(self) -> Tensor:
        """``V``, lower triangular with positive diagonal, ``(m, m)``."""
        return triangular_factor(self.raw)

    def gram(self) -> Tensor:
        """``G = V V^T / m``, ``(m, m)``, symmetric positive definite."""
        v = self.factor()
        return v @ v.transpose(0, 1) / self.size

    def extra_repr(self) -> str:
        return f"size={self.size}"
