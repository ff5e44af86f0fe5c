r"""The sparse DKM: inducing blocks, layer-by-layer GP conditionals, the variational output.

Only the Gram matrices of ``m`` inducing points, :math:`G_{ii}`, are learned. Every other
point ``t`` (a training minibatch, the test points) gets its blocks from the GP
conditional of its layer, given the prior :math:`K = K(G_{l-1})` over all points:

.. math::
    G_{ti} = K_{ti} K_{ii}^{-1} G_{ii}, \qquad
    g_t = k_t - \mathrm{diag}(K_{ti} K_{ii}^{-1} K_{it})
        + \mathrm{diag}(K_{ti} K_{ii}^{-1} G_{ii} K_{ii}^{-1} K_{it}),

with :math:`g_t = \mathrm{diag}\, G_{tt}`, :math:`k_t = \mathrm{diag}\, K_{tt}`: an
elementwise activation's dual needs nothing else. The output layer is
:math:`q(f_i) = \mathcal N(\mu_c, A)` per output column ``c`` (one :math:`A` shared),
with predictive marginals

.. math::
    \mu_t = K_{ti} K_{ii}^{-1} \mu, \qquad
    v_t = k_t - \mathrm{diag}(K_{ti} K_{ii}^{-1} K_{it})
        + \mathrm{diag}(K_{ti} K_{ii}^{-1} A K_{ii}^{-1} K_{it}).

A batch of ``b`` points costs :math:`O(L(m^3 + b m^2))`, so training is linear in the
number of examples. With the inducing points equal to the training points the sparse
DKM is the full DKM.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .gram import cholesky, gaussian_kl, raw_from_factor, triangular_factor

__all__ = ["Blocks", "VariationalOutput", "conditional", "optimal_gaussian_output"]


class Blocks(NamedTuple):
    """The blocks of a Gram (or kernel) matrix between ``b`` points and ``m`` inducing ones.

    Attributes:
        ti: the cross block, ``(b, m)``.
        t: the diagonal of the ``b`` points' own block, ``(b,)``.

    """

    ti: Tensor
    t: Tensor


def _whiten(k_chol: Tensor, k_ti: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    r"""``W = L^-1 K_it`` and ``P = V^T K_ii^-1 K_it``, both ``(m, b)``, for ``k_chol = L``.

    ``P = (L^-1 V)^T W``: one triangular solve and one product with the ``b`` points
    (``L^-1 V`` costs :math:`O(m^3)`), the two steps that scale with the batch.
    """
    w = torch.linalg.solve_triangular(k_chol, k_ti.transpose(0, 1), upper=False)
    white_v = torch.linalg.solve_triangular(k_chol, v, upper=False)
    return w, white_v.transpose(0, 1) @ w


def conditional(k_chol: Tensor, k: Blocks, v: Tensor, scale: float) -> Blocks:
    r"""The blocks of :math:`G` for ``b`` points given :math:`G_{ii} = V V^\top / \mathrm{scale}`.

    Args:
        k_chol: Cholesky factor of the prior's inducing block :math:`K_{ii}`, ``(m, m)``.
        k: the prior's blocks :math:`K_{ti}` ``(b, m)`` and :math:`k_t` ``(b,)``.
        v: the learned factor :math:`V`, ``(m, m)``.
        scale: ``m`` for a Gram layer, ``1`` for the output covariance ``A``.

    Returns:
        :math:`G_{ti}` ``(b, m)`` and :math:`g_t` ``(b,)`` (the conditional variance is
        clamped at zero against rounding).

    """
    w, proj = _whiten(k_chol, k.ti, v)
    g_ti = proj.transpose(0, 1) @ v.transpose(0, 1) / scale
    g_t = (k.t - w.square().sum(0)).clamp_min(0.0) + proj.square().sum(0) / scale
    return Blocks(g_ti, g_t)


class VariationalOutput(nn.Module):
    r"""The output posterior :math:`q(f_i) = \mathcal N(\mu_c, A)` on ``m`` points, ``c`` columns.

    ``mean`` is :math:`\mu` ``(m, c)``; ``raw`` holds the lower Cholesky factor of
    :math:`A` below the diagonal and the log of its diagonal on it.
    """

    mean: nn.Parameter
    raw: nn.Parameter

    def __init__(self, size: int, columns: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.size, self.columns = size, columns
        self.mean = nn.Parameter(torch.zeros(size, columns, dtype=dtype, device=device))
        self.raw = nn.Parameter(torch.zeros(size, size, dtype=dtype, device=device))

    def set(self, mean: Tensor, cov_chol: Tensor) -> None:
        r"""Put :math:`\mu` = ``mean`` ``(m, c)`` and :math:`A = S S^\top`, ``cov_chol = S``."""
        with torch.no_grad():
            self.mean.copy_(mean)
            self.raw.copy_(raw_from_factor(cov_chol))

    def factor(self) -> Tensor:
        """The lower Cholesky factor ``S`` of ``A``, ``(m, m)``."""
        return triangular_factor(self.raw)

    def kl(self, k_chol: Tensor) -> Tensor:
        r""":math:`\sum_c \mathrm{KL}(\mathcal N(\mu_c, A) \| \mathcal N(0, K_{ii}))`, 0-d."""
        return gaussian_kl(self.factor(), k_chol, 1.0, self.mean)

    def marginals(self) -> tuple[Tensor, Tensor]:
        """Means ``(m, c)`` and variances ``(m,)`` on the ``m`` points themselves."""
        return self.mean, self.factor().square().sum(1)

    def predictive(self, k_chol: Tensor, k: Blocks) -> tuple[Tensor, Tensor]:
        """Means ``(b, c)`` and variances ``(b,)`` of ``f`` at ``b`` other points."""
        w, proj = _whiten(k_chol, k.ti, self.factor())
        white_mean = torch.linalg.solve_triangular(k_chol, self.mean, upper=False)
        mean = w.transpose(0, 1) @ white_mean
        var = (k.t - w.square().sum(0)).clamp_min(0.0) + proj.square().sum(0)
        return mean, var


def optimal_gaussian_output(
    k_chol: Tensor, k_ti: Tensor, y: Tensor, noise_var: Tensor
) -> tuple[Tensor, Tensor]:
    r"""The best :math:`q(f_i)` for a Gaussian likelihood (Titsias): ``(mu, chol A)``.

    With :math:`W = L^{-1} K_{it}` and :math:`B = I + W W^\top / s^2`:
    :math:`\mu = L B^{-1} W y / s^2` and :math:`A = L B^{-1} L^\top`, which maximise the
    objective over the output layer. ``k_ti`` ``(n, m)`` and ``y`` ``(n, c)`` are the
    training points' cross block and targets.
    """
    m = k_chol.shape[0]
    w = torch.linalg.solve_triangular(k_chol, k_ti.transpose(0, 1), upper=False)
    eye = torch.eye(m, dtype=k_chol.dtype, device=k_chol.device)
    b_chol = cholesky(eye + w @ w.transpose(0, 1) / noise_var, 0.0, "the output posterior")
    mean = k_chol @ torch.cholesky_solve(w @ y / noise_var, b_chol)
    inner = torch.linalg.solve_triangular(b_chol, k_chol.transpose(0, 1), upper=False)
    cov = inner.transpose(0, 1) @ inner
    return mean, cholesky(0.5 * (cov + cov.transpose(0, 1)), 0.0, "the output covariance")
