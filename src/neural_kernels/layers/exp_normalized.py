r"""``ExpNormalized``: the Gaussian normalized kernel of Shankar et al. (2020).

For pre-activations with covariance :math:`K` and variances :math:`q_1, q_2` (per
position), with the correlation :math:`c = K / \sqrt{q_1 q_2}` (clamped to
:math:`[-1, 1]`):

.. math::
    K' = \sqrt{q_1 q_2}\; e^{\gamma (c + s)}, \qquad
    \Theta' = \gamma\, e^{\gamma (c + s)}\, \Theta,

with ``gamma`` :math:`\gamma` and ``shift`` :math:`s`. The NTK factor is
:math:`\partial K' / \partial K`. This is Neural Tangents' ``ExpNormalized``.

**Finite twin.** For unit-variance Gaussians :math:`(u, v)` of correlation :math:`c`,
:math:`\phi_0(z) = e^{\gamma s / 2}\, e^{\sqrt\gamma z - \gamma/2}` has
:math:`\mathbb E[\phi_0(u)\phi_0(v)] = e^{\gamma(c + s)}` (the generating function of the
Hermite polynomials). The twin divides each position's channels by their root mean
square :math:`\hat\sigma`, applies :math:`\phi_0` and multiplies by :math:`\hat\sigma`;
at infinite width :math:`\hat\sigma \to \sqrt q` and its kernels converge to the formulas
above (the terms through :math:`\hat\sigma` in the NTK vanish as ``1/width``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import check_real
from ..core.protocol import ModuleContext
from ..errors import LayerCompatibilityError, describe
from ._elementwise import Elementwise
from ._safe import correlation

__all__ = ["ExpNormalized", "ExpNormalizedModule"]

Real = float | Tensor


@dataclass(frozen=True)
class ExpNormalized(Elementwise):
    r"""The Gaussian normalized kernel :math:`\sqrt{q_1 q_2}\, e^{\gamma (K/\sqrt{q_1 q_2} + s)}`.

    Args:
        gamma: the exponent's scale :math:`\gamma \ge 0` (a float or a 0-d tensor, which
            may require grad).
        shift: :math:`s`, added to the correlation before the exponential (``-1``: the
            kernel of an input with itself is its variance).

    The correlation is always clamped to ``[-1, 1]`` (Neural Tangents' ``do_clip=True``).
    Needs Gaussian inputs (a ``Dense`` or ``Conv`` before it). Shapes: any, unchanged.

    Example::

        net = nk.Sequential(nk.Dense(512), nk.ExpNormalized(gamma=2.0), nk.Dense(1))

    """

    gamma: Real = 1.0
    shift: Real = -1.0

    def __post_init__(self) -> None:
        check_real(self, "gamma", self.gamma, minimum=0.0, allow_tensor=True)
        check_real(self, "shift", self.shift, allow_tensor=True)

    def fn(self, x: Tensor) -> Tensor:
        """Refused: the layer is not elementwise (its twin divides by each position's RMS)."""
        raise LayerCompatibilityError(
            describe(
                repr(self),
                "a call of fn, the elementwise function",
                "ExpNormalized is not elementwise: its finite twin normalises each position "
                "by the root mean square of its channels (net.module(...) builds it); "
                "unit_fn is the function applied to the normalised values.",
            )
        )

    def unit_fn(self, x: Tensor) -> Tensor:
        r""":math:`\phi_0`, applied to unit-variance (normalised) inputs by the twin."""
        g = self.gamma
        root = g**0.5 if isinstance(g, Tensor) else math.sqrt(g)
        return torch.exp(root * x + 0.5 * g * (self.shift - 1.0))

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        c, norm = correlation(k, q1, q2)
        e = torch.exp((c + self.shift) * self.gamma)
        return norm * e, (e * self.gamma if want_dot else None)

    def dual_var(self, q: Tensor) -> Tensor:
        return q * torch.exp((self.shift + 1.0) * self.gamma * torch.ones_like(q))

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        shape = tuple(int(s) for s in in_shape)
        axis = 1 if (ctx.channel_axis == 0 and len(shape) > 1) else -1
        return ExpNormalizedModule(self, axis)


class ExpNormalizedModule(nn.Module):
    """Finite twin of :class:`ExpNormalized`: ``rms * phi0(x / rms)``, rms over channels."""

    def __init__(self, layer: ExpNormalized, channel_dim: int) -> None:
        super().__init__()
        self.layer = layer
        self.channel_dim = channel_dim

    def forward(self, x: Tensor) -> Tensor:
        """Apply the twin to ``x`` of shape ``(n, *features)``."""
        rms = x.square().mean(dim=self.channel_dim, keepdim=True).sqrt()
        rms = rms.clamp_min(torch.finfo(x.dtype).tiny)
        return rms * self.layer.unit_fn(x / rms)

    def extra_repr(self) -> str:
        return f"{self.layer!r}, channel dim {self.channel_dim}"
