r"""``ConvTranspose``: the transposed (fractionally strided) convolution.

A transposed convolution with filter :math:`F` and stride :math:`s` spreads each input
position :math:`i` over the outputs :math:`p = s i + t - a` (:math:`t \in F`, :math:`a`
the padding before). Each tap has its own independent weights, so only pairs of outputs
reached through the *same* tap are correlated:

.. math::
    K'_{pp'} = \frac{\sigma_w^2}{|F|} \sum_{t \in F} K_{(p + a - t)/s,\;(p' + a - t)/s}
        + \sigma_b^2,

the sum running over the taps for which both indices are integers inside the input.
Equivalently: insert :math:`s - 1` zeros between the covariance entries along every
axis of a pair, pad with zeros, and take a stride-one diagonal window sum, as for
:class:`~neural_kernels.layers.conv.Conv`. Same-position outputs need only same-position
inputs, so the layer runs in either spatial layout. The NTK follows as for ``Conv``
(:mod:`neural_kernels.layers._conv_affine`), with ``fan_in = in_channels *
prod(kernel_size)``.

The padding follows ``jax.lax.conv_transpose`` (Neural Tangents' ``ConvTranspose``):
``"valid"`` gives ``size * stride + max(kernel - stride, 0)`` outputs per axis, ``"same"``
gives ``size * stride``. For ``stride <= kernel`` ``"valid"`` is
``torch.nn.ConvTranspose2d(padding=0)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._validation import check_parametrization, check_positive_int, check_std
from ..core.protocol import Facts, FactsFlow, Flow, ModuleContext, Requirements, Variances
from ..errors import HyperparameterError, describe
from ._affine import Std
from ._conv_affine import affine_conv
from ._spatial import (
    apply_per_axis,
    check_geometry_rank,
    expand,
    geometry_value,
    window_sum,
)
from .base import Layer, one_block, one_facts
from .conv import _CONV, check_channels_first
from .dense import AffineModule, init_affine

__all__ = ["ConvTranspose", "ConvTransposeModule", "transpose_pads", "transpose_size"]

_PADDINGS = ("valid", "same")


def transpose_pads(window: int, stride: int, padding: str) -> tuple[int, int]:
    """Zeros ``(before, after)`` around the stride-dilated input (``lax.conv_transpose``)."""
    if padding == "same":
        total = window + stride - 2
        before = window - 1 if stride > window - 1 else -(-total // 2)
    else:
        total = window + stride - 2 + max(window - stride, 0)
        before = window - 1
    return before, total - before


def transpose_size(size: int, window: int, stride: int, padding: str) -> int:
    """Output length along one axis: ``size * stride`` (+ ``max(window - stride, 0)``)."""
    before, after = transpose_pads(window, stride, padding)
    return (size - 1) * stride + 1 + before + after - window + 1


def dilate_pad(t: Tensor, axes: list[int], stride: int, before: int, after: int) -> Tensor:
    """Insert ``stride - 1`` zeros between entries along ``axes`` and pad with zeros."""
    size = t.shape[axes[0]]
    span = (size - 1) * stride + 1
    shape = list(t.shape)
    index: list[Any] = [slice(None)] * t.ndim
    for ax in axes:
        shape[ax] = before + span + after
        index[ax] = slice(before, before + span, stride)
    out = t.new_zeros(shape)
    out[tuple(index)] = t
    return out


def _transpose_window(t: Tensor, axes: list[int], window: int, stride: int, padding: str) -> Tensor:
    before, after = transpose_pads(window, stride, padding)
    return window_sum(dilate_pad(t, axes, stride, before, after), axes, window, 1, 1, "valid")


@dataclass(frozen=True)
class ConvTranspose(Layer):
    r"""Transposed convolution over 1, 2 or 3 spatial axes of channels-first inputs.

    Args:
        out_channels: channels of the output (the width of the finite twin).
        kernel_size: filter size, an int or a tuple per spatial axis.
        stride: stride (upsampling factor), an int or a tuple.
        padding: ``"valid"`` (default; ``size * stride + max(kernel - stride, 0)``
            outputs) or ``"same"`` (``size * stride`` outputs), as
            ``jax.lax.conv_transpose`` and Neural Tangents' ``ConvTranspose``.
        w_std: weight standard deviation :math:`\sigma_w` (a float or a 0-d tensor).
        b_std: bias standard deviation :math:`\sigma_b` (``None``: no bias).
        parametrization: ``"ntk"`` or ``"standard"``; ``fan_in = in_channels *
            prod(kernel_size)``.

    Shapes: input ``(n, C, *spatial)``, output ``(n, out_channels, *spatial_out)``.

    Example::

        up = nk.Sequential(nk.Conv(64, 3, padding="same"), nk.ReLU(),
                           nk.ConvTranspose(64, 2, stride=2), nk.ReLU(), nk.Flatten(),
                           nk.Dense(1))

    """

    out_channels: int
    kernel_size: int | tuple[int, ...] = 3
    stride: int | tuple[int, ...] = 1
    padding: str = "valid"
    w_std: Std = 1.0
    b_std: Std | None = 0.0
    parametrization: str = "ntk"
    requirements: ClassVar[Requirements] = Requirements(
        channel_axis=0, variances=Variances.EXACT, has_width=True
    )

    def __post_init__(self) -> None:
        check_positive_int(self, "out_channels", self.out_channels)
        check_std(self, "w_std", self.w_std)
        check_std(self, "b_std", self.b_std, allow_none=True)
        check_parametrization(self, self.parametrization)
        if self.padding not in _PADDINGS:
            lower = isinstance(self.padding, str) and self.padding.lower() in _PADDINGS
            fix = (
                f"Spell it in lower case, padding={self.padding.lower()!r}."
                if lower
                else "Use 'valid' (the default) or 'same'; circular padding is not "
                "available for transposed convolutions."
            )
            raise HyperparameterError(describe(repr(self), f"padding={self.padding!r}", fix))
        for name in ("kernel_size", "stride"):
            object.__setattr__(self, name, geometry_value(self, name, getattr(self, name)))

    def _geometry(self, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return expand(self.kernel_size, ndim), expand(self.stride, ndim)

    def _out_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        size, stride = self._geometry(len(spatial))
        return tuple(
            transpose_size(n, f, s, self.padding)
            for n, f, s in zip(spatial, size, stride, strict=True)
        )

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        spatial = check_channels_first(self, facts)
        for name in ("kernel_size", "stride"):
            check_geometry_rank(self, name, getattr(self, name), len(spatial))
        return Facts((self.out_channels, *self._out_spatial(spatial)), True, 0)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        size, stride = self._geometry(k.spatial_ndim)
        conv = apply_per_axis(
            k, lambda t, axes, i: _transpose_window(t, axes, size[i], stride[i], self.padding)
        )
        fields = affine_conv(
            k,
            conv,
            w_std=self.w_std,
            b_std=self.b_std,
            parametrization=self.parametrization,
            scale=1.0 / math.prod(size),
            n_in=k.shape1[0],
        )
        return k.replace(
            **fields,
            shape1=(self.out_channels, *self._out_spatial(k.shape1[1:])),
            shape2=(self.out_channels, *self._out_spatial(k.shape2[1:])),
            is_gaussian=True,
            channel_axis=0,
        )

    def module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        width = self.out_channels if ctx.width is None else ctx.width
        return (width, *self._out_spatial(tuple(in_shape[1:])))

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        size, stride = self._geometry(len(in_shape) - 1)
        return ConvTransposeModule(
            in_channels=int(in_shape[0]),
            out_channels=self.out_channels if ctx.width is None else ctx.width,
            kernel_size=size,
            stride=stride,
            pads=tuple(
                transpose_pads(f, s, self.padding) for f, s in zip(size, stride, strict=True)
            ),
            w_std=float(self.w_std),
            b_std=None if self.b_std is None else float(self.b_std),
            parametrization=ctx.parametrization or self.parametrization,
            generator=ctx.generator,
            dtype=ctx.dtype,
            device=ctx.device,
        )


class ConvTransposeModule(AffineModule):
    """Finite twin of :class:`ConvTranspose`: dilate by the stride, pad, convolve.

    This is ``jax.lax.conv_transpose``: zeros inserted between the inputs, zero padding
    ``pads``, then a stride-one convolution with weights ``(out, in, *kernel_size)``
    (parametrized as :class:`~neural_kernels.layers.conv.ConvModule`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        pads: tuple[tuple[int, int], ...],
        w_std: float,
        b_std: float | None,
        parametrization: str,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> None:
        super().__init__()
        init_affine(
            self,
            (out_channels, in_channels, *kernel_size),
            in_channels * math.prod(kernel_size),
            w_std,
            b_std,
            parametrization,
            generator=generator,
            dtype=dtype,
            device=device,
        )
        self.stride = stride
        self.pads = pads
        self.parametrization = parametrization

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(n, C, *spatial)`` to ``(n, out_channels, *spatial_out)``."""
        for i, (s, (before, after)) in enumerate(zip(self.stride, self.pads, strict=True)):
            x = dilate_pad(x, [2 + i], s, before, after)
        y = _CONV[self.weight.ndim - 2](x, self.weight) * self.w_scale
        if self.bias is not None:
            y = y + self.b_scale * self.bias.reshape((1, -1) + (1,) * (y.ndim - 2))
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel_size="
            f"{tuple(self.weight.shape[2:])}, stride={self.stride}, pads={self.pads}, "
            f"parametrization={self.parametrization!r}"
        )
