r"""``LayerNorm``: normalisation over the feature axis.

At infinite width a layer's pre-activations over channels are i.i.d. with mean zero,
so normalisation divides by their root mean square and centring has no effect:

.. math::
    K' = \frac{K}{\sqrt{(\epsilon + \bar q_1)(\epsilon + \bar q_2)}}, \qquad
    \Theta' = \frac{\Theta}{\sqrt{(\epsilon + \bar q_1)(\epsilon + \bar q_2)}},

where :math:`\bar q_i` is the variance of input :math:`i` (averaged over the normalised
axes). Neural Tangents' convention, with ``eps = 1e-12``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..core.protocol import FactsFlow, Flow, ModuleContext, Requirements, Variances
from ..errors import HyperparameterError, ShapeError, describe
from .base import Layer, one_block, one_facts

__all__ = ["LayerNorm", "LayerNormModule"]


def _axes_tuple(axis: Any) -> tuple[int, ...]:
    if isinstance(axis, int):
        return (axis,)
    return tuple(axis) if isinstance(axis, (tuple, list)) else ()


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Normalise each example over the given axes (which must include the channel axis).

    Args:
        axis: tensor axes normalised together (the batch is axis ``0``), an int or a tuple:
            ``-1`` for fully connected inputs or channels-last sequences, ``1`` for the
            channels of ``(n, C, H, W)``, ``(1, 2, 3)`` for all of an image's features.
        eps: added to the variance before the square root.

    Shapes: the output has the input's shape.

    """

    requirements: ClassVar[Requirements] = Requirements(variances=Variances.EXACT)
    axis: int | tuple[int, ...] = -1
    eps: float = 1e-12

    def __post_init__(self) -> None:
        eps = self.eps
        if isinstance(eps, bool) or not (isinstance(eps, (int, float)) and math.isfinite(eps)):
            eps = -1.0
        if eps < 0:
            raise HyperparameterError(
                describe(repr(self), f"eps={self.eps!r}", "Use a small number >= 0.")
            )
        axes = _axes_tuple(self.axis)
        if not axes or any(isinstance(a, bool) or not isinstance(a, int) for a in axes):
            raise HyperparameterError(
                describe(repr(self), f"axis={self.axis!r}", "Give an int or a tuple of ints.")
            )

    def _resolve(self, shape: tuple[int, ...], channel_axis: int | None) -> tuple[int, ...]:
        """The normalised spatial axes, as indices among the spatial axes."""
        ndim = len(shape) + 1
        axes = sorted({a % ndim if -ndim <= a < ndim else -1 for a in _axes_tuple(self.axis)})
        channel = 1 if (channel_axis == 0 and len(shape) > 1) else ndim - 1
        if -1 in axes or 0 in axes or channel not in axes:
            raise ShapeError(
                describe(
                    repr(self),
                    f"normalising axes {self.axis!r} of inputs with feature shape {shape} "
                    f"(channel axis {channel})",
                    f"Normalise the channel axis ({channel}) and optionally spatial axes; never "
                    "the batch axis 0.",
                )
            )
        spatial_axes = [a for a in range(1, ndim) if a != channel]
        return tuple(spatial_axes.index(a) for a in axes if a != channel)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        self._resolve(facts.shape, facts.channel_axis)
        return facts

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        spatial = self._resolve(k.shape1, k.channel_axis)

        def norm(cov: Tensor) -> Tensor:
            v = k.variances(cov)
            if spatial:
                dims = tuple(1 + i for i in spatial)
                v = v.mean(dim=dims, keepdim=True).expand_as(v)
            return torch.rsqrt(v + self.eps)

        r1 = norm(k.cov1)
        same = k.cov2 is k.cov1
        r2 = r1 if same else norm(k.cov2)
        a, b = k.place(r1, r2)
        scale = a * b
        sa, sb = k.place_self(r1)
        cov1 = k.cov1 * (sa * sb)
        if same:
            cov2 = cov1
        else:
            ta, tb = k.place_self(r2)
            cov2 = k.cov2 * (ta * tb)
        ntk = None if k.ntk is None else k.ntk * scale
        return k.replace(nngp=k.nngp * scale, ntk=ntk, cov1=cov1, cov2=cov2)

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        ndim = len(in_shape) + 1
        return LayerNormModule(tuple(a % ndim for a in _axes_tuple(self.axis)), self.eps)


class LayerNormModule(nn.Module):
    """Finite twin of :class:`LayerNorm`: ``(x - mean) / sqrt(var + eps)`` over ``axes``."""

    def __init__(self, axes: tuple[int, ...], eps: float) -> None:
        super().__init__()
        self.axes = axes
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` over the layer's axes (biased variance, no affine map)."""
        mean = x.mean(dim=self.axes, keepdim=True)
        var = x.var(dim=self.axes, keepdim=True, unbiased=False)
        return (x - mean) * torch.rsqrt(var + self.eps)
