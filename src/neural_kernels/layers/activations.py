r"""Closed-form dual activations.

Each activation :math:`\phi` maps the NNGP :math:`K \mapsto \mathbb E[\phi(u)\phi(v)]` and
the NTK :math:`\Theta \mapsto \Theta\,\mathbb E[\phi'(u)\phi'(v)]` for
:math:`(u, v) \sim \mathcal N(0, [[q_1, K], [K, q_2]])`. See
:mod:`neural_kernels.layers._elementwise` for the protocol.

Notation below: :math:`c = K / \sqrt{q_1 q_2}`, :math:`\theta = \arccos c`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._elementwise import Elementwise
from ._safe import INV_2PI, correlation, safe_acos, safe_sqrt

__all__ = ["ABReLU", "Abs", "LeakyReLU", "ReLU"]


def _abrelu_dual(
    a: float, b: float, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
) -> tuple[Tensor, Tensor | None]:
    r"""Dual of :math:`\phi(x) = a \min(x, 0) + b \max(x, 0)`.

    .. math::
        \mathbb E[\phi\phi] = \frac{(a-b)^2}{2\pi}\left(\sqrt{q_1 q_2}\sin\theta - \theta K\right)
            + \frac{a^2 + b^2}{2} K, \qquad
        \mathbb E[\phi'\phi'] = \frac{a^2 + b^2}{2} - \frac{(a-b)^2}{2\pi}\theta
    """
    c, norm = correlation(k, q1, q2)
    theta = safe_acos(c)
    sin = safe_sqrt(1.0 - c * c)
    d2 = (a - b) ** 2 * INV_2PI
    s2 = 0.5 * (a * a + b * b)
    # (a-b)^2/(2 pi) * norm * (sin - theta c) + s2 * norm * c
    inner = sin - theta * c
    nngp = (inner * d2 + c * s2) * norm
    dot = None
    if want_dot:
        dot = s2 - d2 * theta
    return nngp, dot


@dataclass(frozen=True)
class ReLU(Elementwise):
    r"""Rectified linear unit :math:`\phi(x) = \max(x, 0)`: the arc-cosine kernel.

    .. math::
        \mathbb E[\phi\phi] = \frac{\sqrt{q_1 q_2}}{2\pi}\left(\sin\theta + (\pi - \theta)\cos\theta
            \right), \qquad \mathbb E[\phi'\phi'] = \frac{\pi - \theta}{2\pi}
    """

    def fn(self, x: Tensor) -> Tensor:
        return torch.relu(x)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        c, norm = correlation(k, q1, q2)
        theta = safe_acos(c)
        pi_minus = math.pi - theta
        sin = safe_sqrt(1.0 - c * c)
        nngp = (sin + pi_minus * c) * norm
        nngp = nngp * INV_2PI
        dot = pi_minus * INV_2PI if want_dot else None
        return nngp, dot

    def dual_var(self, q: Tensor) -> Tensor:
        return 0.5 * q


@dataclass(frozen=True)
class LeakyReLU(Elementwise):
    r"""Leaky ReLU :math:`\phi(x) = \max(x, 0) + \alpha \min(x, 0)`, ``alpha = negative_slope``.

    The dual is that of :class:`ABReLU` with ``a = negative_slope``, ``b = 1``.
    """

    negative_slope: float = 0.01

    def fn(self, x: Tensor) -> Tensor:
        return torch.nn.functional.leaky_relu(x, self.negative_slope)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        return _abrelu_dual(self.negative_slope, 1.0, k, q1, q2, want_dot)

    def dual_var(self, q: Tensor) -> Tensor:
        return 0.5 * (1.0 + self.negative_slope**2) * q


@dataclass(frozen=True)
class ABReLU(Elementwise):
    r"""Two-slope linear unit :math:`\phi(x) = a \min(x, 0) + b \max(x, 0)`.

    .. math::
        \mathbb E[\phi\phi] = \frac{(a-b)^2}{2\pi}\left(\sqrt{q_1 q_2}\sin\theta - \theta K\right)
            + \frac{a^2 + b^2}{2} K, \qquad
        \mathbb E[\phi'\phi'] = \frac{a^2 + b^2}{2} - \frac{(a-b)^2}{2\pi}\theta
    """

    a: float = 0.0
    b: float = 1.0

    def fn(self, x: Tensor) -> Tensor:
        return self.a * torch.clamp_max(x, 0.0) + self.b * torch.clamp_min(x, 0.0)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        return _abrelu_dual(self.a, self.b, k, q1, q2, want_dot)

    def dual_var(self, q: Tensor) -> Tensor:
        return 0.5 * (self.a**2 + self.b**2) * q


@dataclass(frozen=True)
class Abs(Elementwise):
    r"""Absolute value :math:`\phi(x) = |x|` (:class:`ABReLU` with ``a = -1``, ``b = 1``).

    .. math::
        \mathbb E[\phi\phi] = \frac{2}{\pi}\left(\sqrt{q_1 q_2}\sin\theta - \theta K\right) + K,
        \qquad \mathbb E[\phi'\phi'] = 1 - \frac{2\theta}{\pi}
    """

    def fn(self, x: Tensor) -> Tensor:
        return torch.abs(x)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        return _abrelu_dual(-1.0, 1.0, k, q1, q2, want_dot)

    def dual_var(self, q: Tensor) -> Tensor:
        return q
