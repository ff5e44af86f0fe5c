r"""``Dense``: a fully connected layer acting on the last axis, like ``torch.nn.Linear``.

Kernel transform (:math:`\sigma_w` = ``w_std``, :math:`\sigma_b` = ``b_std``, ``0`` when
``b_std is None``):

.. math::
    K' = \sigma_w^2 K + \sigma_b^2

and for the NTK

.. math::
    \Theta' = K' + \sigma_w^2 \Theta \quad \text{(ntk)}, \qquad
    \Theta' = N_\text{in} K + \sigma_w^2 \Theta + [\text{bias}] \quad \text{(standard)},

where :math:`N_\text{in}` is the width of the layer's input in the finite network and the
bias term is ``1`` whenever the layer has a bias (``b_std`` not ``None``), whatever
``b_std``. These are Neural Tangents' conventions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._native.chain import ChainOp
from .._validation import check_parametrization, check_positive_int, check_std
from ..core.protocol import Facts, FactsFlow, Flow, ModuleContext, Requirements, Variances
from ..errors import LayerCompatibilityError, ShapeError, describe
from ._affine import Std, add_scaled, affine, sq
from .base import Layer, one_block, one_facts

__all__ = ["Dense", "DenseModule"]


@dataclass(frozen=True)
class Dense(Layer):
    r"""Fully connected layer ``z = W x + b`` on the last axis.

    Args:
        out_features: width of the output (the hidden width of the finite twin).
        w_std: weight standard deviation :math:`\sigma_w` (a float or a 0-d tensor,
            which may require grad).
        b_std: bias standard deviation :math:`\sigma_b`; ``None`` means no bias.
        parametrization: ``"ntk"`` (``z = (w_std/sqrt(fan_in)) W x + b_std b`` with
            ``W, b ~ N(0, 1)``) or ``"standard"`` (``W ~ N(0, w_std^2/fan_in)``,
            ``b ~ N(0, b_std^2)``).

    Shapes: input ``(n, ..., in_features)``, output ``(n, ..., out_features)``.

    """

    out_features: int
    w_std: Std = 1.0
    b_std: Std | None = 0.0
    parametrization: str = "ntk"
    requirements: ClassVar[Requirements] = Requirements(
        channel_axis=-1, variances=Variances.EXACT, has_width=True
    )

    def __post_init__(self) -> None:
        check_positive_int(self, "out_features", self.out_features)
        check_std(self, "w_std", self.w_std)
        check_std(self, "b_std", self.b_std, allow_none=True)
        check_parametrization(self, self.parametrization)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        if not facts.shape:
            raise ShapeError(
                describe(
                    repr(self), "inputs have no feature axis", "Pass inputs of shape (n, features)."
                )
            )
        if len(facts.shape) > 1 and facts.channel_axis == 0:
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"its input has channels first, feature shape {facts.shape} (after a Conv)",
                    "Dense acts on the last axis: put Flatten() or GlobalAvgPool() before it, "
                    "or ChannelsLast() to apply it at every position.",
                )
            )
        return Facts((*facts.shape[:-1], self.out_features), True, -1)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        w2 = sq(self.w_std)
        b2 = 0.0 if self.b_std is None else sq(self.b_std)
        nngp = affine(k.nngp, w2, b2)
        ntk = None
        if k.ntk is not None:
            if self.parametrization == "ntk":
                ntk = add_scaled(nngp, k.ntk, w2)
            else:
                n_in = k.shape1[-1]
                ntk = affine(k.nngp, float(n_in), 0.0) + w2 * k.ntk
                if self.b_std is not None:
                    ntk = ntk + 1.0
        same = k.cov2 is k.cov1
        cov1 = affine(k.cov1, w2, b2)
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=cov1,
            cov2=cov1 if same else affine(k.cov2, w2, b2),
            shape1=(*k.shape1[:-1], self.out_features),
            shape2=(*k.shape2[:-1], self.out_features),
            is_gaussian=True,
        )

    def chain_op(self, facts: Facts) -> ChainOp | None:
        """On flat features (after a collapse): the affine maps as an ``affine`` op."""
        if len(facts.shape) != 1 or isinstance(self.w_std, Tensor):
            return None
        if isinstance(self.b_std, Tensor):
            return None
        w2 = float(sq(self.w_std))
        b2 = 0.0 if self.b_std is None else float(sq(self.b_std))
        if self.parametrization == "ntk":
            coef = (w2, b2, w2, w2, b2)
        else:
            coef = (w2, b2, float(facts.shape[-1]), w2, 0.0 if self.b_std is None else 1.0)
        return ChainOp("affine", coef=coef)

    def module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        width = self.out_features if ctx.width is None else ctx.width
        return (*tuple(in_shape)[:-1], width)

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        width = self.out_features if ctx.width is None else ctx.width
        return DenseModule(
            in_features=int(in_shape[-1]),
            out_features=width,
            w_std=float(self.w_std),
            b_std=None if self.b_std is None else float(self.b_std),
            parametrization=ctx.parametrization or self.parametrization,
            generator=ctx.generator,
            dtype=ctx.dtype,
            device=ctx.device,
        )


class AffineModule(nn.Module):
    """A module with a parametrized ``weight`` and ``bias`` (see :func:`init_affine`)."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    w_scale: float
    b_scale: float


def init_affine(
    module: AffineModule,
    weight_shape: tuple[int, ...],
    fan_in: int,
    w_std: float,
    b_std: float | None,
    parametrization: str,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: Any = None,
) -> None:
    """Give ``module`` its ``weight``, ``bias``, ``w_scale`` and ``b_scale`` for a parametrization.

    ``ntk``: ``weight``, ``bias`` ``~ N(0, 1)``, scaled in the forward pass by ``w_scale =
    w_std / sqrt(fan_in)`` and ``b_scale = b_std``. ``standard``: ``weight ~ N(0, w_std^2 /
    fan_in)``, ``bias ~ N(0, b_std^2)``, scales ``1``. ``b_std=None``: no bias.
    """
    opts: dict[str, Any] = {"generator": generator, "dtype": dtype, "device": device}
    weight = torch.randn(*weight_shape, **opts)
    bias = None if b_std is None else torch.randn(weight_shape[0], **opts)
    w_scale = w_std / math.sqrt(fan_in)
    if parametrization == "ntk":
        module.w_scale, module.b_scale = w_scale, (b_std or 0.0)
    else:
        weight = weight * w_scale
        if bias is not None and b_std is not None:
            bias = bias * b_std
        module.w_scale, module.b_scale = 1.0, 1.0
    module.weight = nn.Parameter(weight)
    module.bias = None if bias is None else nn.Parameter(bias)


class DenseModule(AffineModule):
    """Finite twin of :class:`Dense`: a linear map on the last axis.

    ``ntk``: ``weight`` and ``bias`` are ``N(0, 1)`` and the forward pass scales them,
    ``y = (w_std / sqrt(in_features)) x W^T + b_std b``. ``standard``: ``weight`` is
    ``N(0, w_std^2 / in_features)``, ``bias`` is ``N(0, b_std^2)``, ``y = x W^T + b``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        w_std: float,
        b_std: float | None,
        parametrization: str,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.parametrization = parametrization
        init_affine(
            self,
            (out_features, in_features),
            in_features,
            w_std,
            b_std,
            parametrization,
            generator=generator,
            dtype=dtype,
            device=device,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(n, ..., in_features)`` to ``(n, ..., out_features)``."""
        y = nn.functional.linear(x, self.weight) * self.w_scale
        if self.bias is not None:
            y = y + self.b_scale * self.bias
        return y

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"parametrization={self.parametrization!r}, bias={self.bias is not None}"
        )
