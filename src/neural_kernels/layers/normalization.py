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

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import HyperparameterError, ShapeError, describe
from ..kernel import Kernel
from .base import Facts, FactsFlow, Flow, Layer, ModuleContext

__all__ = ["LayerNorm", "LayerNormModule"]


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Normalise each example over its last (feature) axis, without an affine map.

    Args:
        axis: the normalised axis; for fully connected inputs ``-1``.
        eps: added to the variance before the square root.

    Shapes: input and output ``(n, features)``.

    """

    axis: int = -1
    eps: float = 1e-12

    def __post_init__(self) -> None:
        if not (isinstance(self.eps, (int, float)) and self.eps >= 0):
            raise HyperparameterError(
                describe(repr(self), f"eps={self.eps!r}", "Use a small number >= 0.")
            )

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        assert isinstance(facts, Facts)
        ndim = len(facts.shape)
        if self.axis not in (-1, ndim):
            raise ShapeError(
                describe(
                    repr(self),
                    f"normalising axis {self.axis} of inputs with feature shape {facts.shape}",
                    "Normalise the channel axis, axis=-1.",
                )
            )
        return facts

    def transform(self, k: Flow) -> Flow:
        assert isinstance(k, Kernel)
        v1 = k.cov1 + self.eps
        v2 = k.cov2 + self.eps
        if k.diagonal:
            scale = 1.0 / v1
        else:
            scale = torch.rsqrt(v1).unsqueeze(-1) * torch.rsqrt(v2).unsqueeze(-2)
        ntk = None if k.ntk is None else k.ntk * scale
        same = k.cov2 is k.cov1
        cov1 = k.cov1 / v1
        return k.replace(
            nngp=k.nngp * scale, ntk=ntk, cov1=cov1, cov2=cov1 if same else k.cov2 / v2
        )

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return LayerNormModule(self.eps)


class LayerNormModule(nn.Module):
    """Finite twin of :class:`LayerNorm`: ``(x - mean) / sqrt(var + eps)`` over the last axis."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` of shape ``(n, ..., features)`` over its last axis."""
        return nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps)
