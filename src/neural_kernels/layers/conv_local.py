r"""``ConvLocal``: a locally connected layer (a convolution without weight sharing).

Each output position :math:`p` has its own filter weights and its own bias, so two
different output positions are independent at infinite width, and a position sees the
same-position covariances of its window only:

.. math::
    K'_{pp'} = \delta_{pp'} \Big(\frac{\sigma_w^2}{|F|} \sum_{t \in F}
        K_{s p + t,\; s p + t} + \sigma_b^2\Big).

The NTK follows as for :class:`~neural_kernels.layers.conv.Conv`
(:mod:`neural_kernels.layers._conv_affine`), with the bias (and the standard NTK's bias
term) on same-position pairs only. The layer needs only same-position entries of its
input, so it runs in either spatial layout; in the full layout its output is zero away
from the same-position pairs. This is Neural Tangents' ``ConvLocal``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._validation import check_parametrization, check_positive_int, check_std
from ..core.block import KernelBlock
from ..core.protocol import Facts, FactsFlow, Flow, ModuleContext, Requirements, Variances
from ..errors import ShapeError, describe
from ._affine import Std
from ._conv_affine import affine_conv
from ._spatial import (
    check_geometry_rank,
    check_padding,
    expand,
    geometry_value,
    out_size,
    pad_axis,
    pads,
    pair_axes,
    window_sum,
)
from .base import Layer, one_block, one_facts
from .conv import check_channels_first
from .dense import AffineModule, init_affine

__all__ = ["ConvLocal", "ConvLocalModule"]


def _local_window(t: Tensor, axes: list[int], window: int, stride: int, padding: str) -> Tensor:
    """Box window sum of the same-position entries along one spatial axis.

    ``axes`` is one axis (variances, diagonal layout) or an axis pair (full layout): the
    pair's diagonal is summed and put back on the diagonal of the output pair.
    """
    if len(axes) == 1:
        return window_sum(t, axes, window, stride, 1, padding)
    a, b = axes
    d = t.diagonal(0, a, b)  # the pair's diagonal moved last
    d = window_sum(d, [d.ndim - 1], window, stride, 1, padding)
    return torch.diag_embed(d, 0, a, b)


def _same_position_pattern(k: KernelBlock, which: str, spatial: tuple[int, ...]) -> Tensor | None:
    """Ones on the same-position pairs of a full layout, broadcast against the kernel."""
    groups = pair_axes(k, which)
    if all(len(g) == 1 for g in groups):
        return None
    eyes = [torch.eye(n, dtype=k.dtype, device=k.device) for n in spatial]
    pattern = eyes[0]
    for eye in eyes[1:]:
        pattern = torch.einsum("...,ab->...ab", pattern, eye)
    return pattern


@dataclass(frozen=True)
class ConvLocal(Layer):
    r"""Locally connected layer over 1, 2 or 3 spatial axes of channels-first inputs.

    A convolution whose filter and bias differ at every output position (no weight
    sharing), as Neural Tangents' ``ConvLocal``.

    Args:
        out_channels: channels of the output (the width of the finite twin).
        kernel_size: filter size, an int or a tuple per spatial axis.
        stride: stride, an int or a tuple.
        padding: ``"valid"`` (default), ``"same"`` or ``"circular"``, as for ``Conv``.
        w_std: weight standard deviation :math:`\sigma_w` (a float or a 0-d tensor).
        b_std: bias standard deviation :math:`\sigma_b` (``None``: no bias).
        parametrization: ``"ntk"`` or ``"standard"``; ``fan_in = in_channels *
            prod(kernel_size)``.

    Shapes: input ``(n, C, *spatial)``, output ``(n, out_channels, *spatial_out)``.

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
        check_padding(self, self.padding)
        for name in ("kernel_size", "stride"):
            object.__setattr__(self, name, geometry_value(self, name, getattr(self, name)))

    def _geometry(self, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return expand(self.kernel_size, ndim), expand(self.stride, ndim)

    def _out_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        size, stride = self._geometry(len(spatial))
        return tuple(
            out_size(n, f, s, 1, self.padding)
            for n, f, s in zip(spatial, size, stride, strict=True)
        )

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        spatial = check_channels_first(self, facts)
        for name in ("kernel_size", "stride"):
            check_geometry_rank(self, name, getattr(self, name), len(spatial))
        size, _ = self._geometry(len(spatial))
        for n, f in zip(spatial, size, strict=True):
            if self.padding == "valid" and f > n:
                raise ShapeError(
                    describe(
                        repr(self),
                        f"a filter of {f} on an input axis of size {n} with padding='valid'",
                        "Use a smaller kernel_size, or padding='same'.",
                    )
                )
        return Facts((self.out_channels, *self._out_spatial(spatial)), True, 0)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        size, stride = self._geometry(k.spatial_ndim)

        def run(t: Tensor, which: str) -> Tensor:
            for i, axes in enumerate(pair_axes(k, which)):
                t = _local_window(t, axes, size[i], stride[i], self.padding)
            return t

        cov1 = run(k.cov1, "cov")
        conv = k.replace(
            nngp=run(k.nngp, "pair"),
            ntk=None if k.ntk is None else run(k.ntk, "pair"),
            cov1=cov1,
            cov2=cov1 if k.same_inputs else run(k.cov2, "cov"),
        )
        out1 = self._out_spatial(k.shape1[1:])
        fields = affine_conv(
            k,
            conv,
            w_std=self.w_std,
            b_std=self.b_std,
            parametrization=self.parametrization,
            scale=1.0 / math.prod(size),
            n_in=k.shape1[0],
            bias_pair=_same_position_pattern(k, "pair", out1),
            bias_cov=(_same_position_pattern(k, "cov", out1),) * 2,
        )
        return k.replace(
            **fields,
            shape1=(self.out_channels, *out1),
            shape2=(self.out_channels, *self._out_spatial(k.shape2[1:])),
            is_gaussian=True,
            channel_axis=0,
        )

    def module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        width = self.out_channels if ctx.width is None else ctx.width
        return (width, *self._out_spatial(tuple(in_shape[1:])))

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        spatial = tuple(int(s) for s in in_shape[1:])
        size, stride = self._geometry(len(spatial))
        return ConvLocalModule(
            in_channels=int(in_shape[0]),
            out_channels=self.out_channels if ctx.width is None else ctx.width,
            kernel_size=size,
            stride=stride,
            pads=tuple(
                pads(n, f, s, 1, self.padding)
                for n, f, s in zip(spatial, size, stride, strict=True)
            ),
            circular=self.padding == "circular",
            out_spatial=self._out_spatial(spatial),
            w_std=float(self.w_std),
            b_std=None if self.b_std is None else float(self.b_std),
            parametrization=ctx.parametrization or self.parametrization,
            generator=ctx.generator,
            dtype=ctx.dtype,
            device=ctx.device,
        )


_LETTERS = "defghijklm"


class ConvLocalModule(AffineModule):
    """Finite twin of :class:`ConvLocal`: one filter and one bias per output position.

    ``weight`` has shape ``(out, in, *kernel_size, *out_spatial)``, ``bias`` ``(out,
    *out_spatial)``; parametrized as :class:`~neural_kernels.layers.conv.ConvModule`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        pads: tuple[tuple[int, int], ...],
        circular: bool,
        out_spatial: tuple[int, ...],
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
            (out_channels, in_channels, *kernel_size, *out_spatial),
            in_channels * math.prod(kernel_size),
            w_std,
            b_std,
            parametrization,
            generator=generator,
            dtype=dtype,
            device=device,
        )
        if self.bias is not None:
            bias = torch.randn(
                out_channels, *out_spatial, generator=generator, dtype=dtype, device=device
            )
            if parametrization == "standard":
                bias = bias * (b_std or 0.0)
            self.bias = nn.Parameter(bias)
        self.kernel_size = kernel_size
        self.stride = stride
        self.pads = pads
        self.circular = circular
        self.parametrization = parametrization
        s = len(kernel_size)
        taps, pos = _LETTERS[:s], _LETTERS[s : 2 * s]
        # patches (n, c, *pos, *taps), weight (o, c, *taps, *pos)
        self._equation = f"nc{pos}{taps},oc{taps}{pos}->no{pos}"

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(n, C, *spatial)`` to ``(n, out_channels, *spatial_out)``."""
        for i, (before, after) in enumerate(self.pads):
            x = pad_axis(x, 2 + i, before, after, self.circular)
        for i, (f, s) in enumerate(zip(self.kernel_size, self.stride, strict=True)):
            x = x.unfold(2 + i, f, s)  # windows appended as trailing axes
        y = torch.einsum(self._equation, x, self.weight) * self.w_scale
        if self.bias is not None:
            y = y + self.b_scale * self.bias
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, pads={self.pads}, circular={self.circular}, "
            f"parametrization={self.parametrization!r}"
        )
