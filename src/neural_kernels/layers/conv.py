r"""``Conv`` for 1-D, 2-D and 3-D inputs (PyTorch layout), and ``Flatten``.

A convolution with filter :math:`F` (``prod(kernel_size)`` offsets :math:`t`), stride
:math:`s` and dilation :math:`d` maps the covariance of every pair of positions as

.. math::
    K'_{pp'} = \frac{\sigma_w^2}{|F|} \sum_{t \in F} K_{s p + d t,\; s p' + d t}
        + \sigma_b^2,

with zero padding (``same``: the covariance of a padded position is zero, and the sum is
still divided by the whole filter) or wrap-around (``circular``). The NTK follows as for
:class:`~neural_kernels.layers.dense.Dense`: :math:`\Theta' = K' + \sigma_w^2\,
\mathrm{conv}(\Theta)` (``ntk``) or :math:`\Theta' = N_\text{in}\, \mathrm{conv}(K) +
\sigma_w^2 \mathrm{conv}(\Theta) + [\text{bias}]` (``standard``, :math:`N_\text{in}` the
input channels), where :math:`\mathrm{conv}` is the filter average above.

In the diagonal layout only same-position entries are kept and the window is a box filter.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .. import _native
from .._native.chain import ChainOp
from .._validation import check_parametrization, check_positive_int, check_std
from ..core.block import KernelBlock
from ..core.protocol import Facts, FactsFlow, Flow, ModuleContext, Requirements, Spatial, Variances
from ..errors import LayerCompatibilityError, ShapeError, describe
from ._affine import Std, add_scaled, affine
from ._elementwise import Elementwise
from ._spatial import (
    apply_per_axis,
    check_geometry_rank,
    check_padding,
    expand,
    geometry_value,
    out_size,
    pads,
    pair_axes,
    same_position,
    window_sum,
)
from .base import Layer, one_block, one_facts
from .dense import AffineModule, init_affine

__all__ = ["Conv", "ConvModule", "Flatten"]

_GEOMETRY = ("kernel_size", "stride", "dilation")
_CONV = {1: nn.functional.conv1d, 2: nn.functional.conv2d, 3: nn.functional.conv3d}


def check_channels_first(layer: Layer, facts: Facts, min_spatial: int = 1) -> tuple[int, ...]:
    """A spatial layer needs ``(C, *spatial)`` inputs, channels first; return the spatial shape."""
    if facts.channel_axis == -1 and len(facts.shape) > 1:
        raise LayerCompatibilityError(
            describe(
                repr(layer),
                f"its input has channels last, feature shape {facts.shape} (after a Dense)",
                "Convolutions and pooling take channels-first inputs (N, C, *spatial) as in "
                "torch; start the network with the spatial layers, or transpose the inputs.",
            )
        )
    spatial = facts.shape[1:]
    if len(spatial) < min_spatial or len(spatial) > 3:
        raise ShapeError(
            describe(
                repr(layer),
                f"inputs have feature shape {facts.shape} with {len(spatial)} spatial axes",
                "Pass (N, C, L), (N, C, H, W) or (N, C, D, H, W) inputs; a flattened input "
                "has no spatial axes left.",
            )
        )
    if facts.raw:
        _warn_if_channels_last(layer, facts.shape)
    return spatial


def _warn_if_channels_last(layer: Layer, shape: tuple[int, ...]) -> None:
    """Warn when raw images look channels-last (NHWC, as Neural Tangents and TensorFlow)."""
    channels, *spatial = shape
    if len(spatial) >= 2 and spatial[-1] <= 4 and channels >= 8 and channels >= max(spatial[:-1]):
        perm = ", ".join(["0", str(len(shape))] + [str(i) for i in range(1, len(shape))])
        warnings.warn(
            describe(
                layer,
                f"the raw inputs have feature shape {shape}: {channels} channels on "
                f"{tuple(spatial)} positions, the last axis only {spatial[-1]} wide, which "
                "looks like channels-last images (N, H, W, C)",
                f"Layers read channels first (N, C, H, W) as torch does: pass "
                f"x.permute({perm}) if these are channels-last.",
            ),
            UserWarning,
            stacklevel=2,
        )


@dataclass(frozen=True)
class Conv(Layer):
    r"""Convolution over 1, 2 or 3 spatial axes of channels-first inputs.

    Args:
        out_channels: channels of the output (the width of the finite twin).
        kernel_size: filter size, an int (same on every axis) or a tuple per axis.
        stride: stride, an int or a tuple.
        padding: ``"valid"`` (default, no padding, as ``torch.nn.Conv2d`` and Neural
            Tangents), ``"same"`` (zero padding, output ``ceil(size / stride)``) or
            ``"circular"`` (wrap-around, as ``same``).
        dilation: spacing of the filter taps, an int or a tuple.
        w_std: weight standard deviation :math:`\sigma_w`.
        b_std: bias standard deviation :math:`\sigma_b` (``None``: no bias).
        parametrization: ``"ntk"`` or ``"standard"``; ``fan_in = in_channels *
            prod(kernel_size)``.

    Shapes: input ``(n, C, *spatial)``, output ``(n, out_channels, *spatial_out)``.

    """

    out_channels: int
    kernel_size: int | tuple[int, ...] = 3
    stride: int | tuple[int, ...] = 1
    padding: str = "valid"
    dilation: int | tuple[int, ...] = 1
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
        for name in _GEOMETRY:
            object.__setattr__(self, name, geometry_value(self, name, getattr(self, name)))

    def _geometry(self, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return (
            expand(self.kernel_size, ndim),
            expand(self.stride, ndim),
            expand(self.dilation, ndim),
        )

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        spatial = check_channels_first(self, facts)
        for name in _GEOMETRY:
            check_geometry_rank(self, name, getattr(self, name), len(spatial))
        size, stride, dil = self._geometry(len(spatial))
        out = []
        for n, f, s, d in zip(spatial, size, stride, dil, strict=True):
            span = d * (f - 1) + 1
            if self.padding == "valid" and span > n:
                raise ShapeError(
                    describe(
                        repr(self),
                        f"a filter spanning {span} positions on an input axis of size {n} "
                        "with padding='valid'",
                        "Use a smaller kernel_size or dilation, or padding='same'.",
                    )
                )
            out.append(out_size(n, f, s, d, self.padding))
        return Facts((self.out_channels, *out), True, 0)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        fused = self._fused(k)
        if fused is not None:
            return fused
        size, stride, dil = self._geometry(k.spatial_ndim)
        conv = apply_per_axis(
            k,
            lambda t, axes, i: window_sum(t, axes, size[i], stride[i], dil[i], self.padding),
        )
        scale = 1.0 / math.prod(size)
        w2 = self.w_std * self.w_std
        b2 = 0.0 if self.b_std is None else self.b_std * self.b_std
        nngp = affine(conv.nngp, w2 * scale, b2)
        ntk = None
        if conv.ntk is not None:
            if self.parametrization == "ntk":
                ntk = add_scaled(nngp, conv.ntk, w2 * scale)
            else:
                n_in = k.shape1[0]
                ntk = affine(conv.nngp, float(n_in), 0.0) + (w2 * scale) * conv.ntk
                if self.b_std is not None:
                    ntk = ntk + 1.0
        same = k.cov2 is k.cov1
        cov1 = affine(conv.cov1, w2 * scale, b2)
        spatial1 = [
            out_size(n, f, s, d, self.padding)
            for n, f, s, d in zip(k.shape1[1:], size, stride, dil, strict=True)
        ]
        spatial2 = [
            out_size(n, f, s, d, self.padding)
            for n, f, s, d in zip(k.shape2[1:], size, stride, dil, strict=True)
        ]
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=cov1,
            cov2=cov1 if same else affine(conv.cov2, w2 * scale, b2),
            shape1=(self.out_channels, *spatial1),
            shape2=(self.out_channels, *spatial2),
            is_gaussian=True,
            channel_axis=0,
        )

    def _coefficients(self, ndim: int, channels: int) -> tuple[float, float, float, float, float]:
        """``(a_nn, b_nn, a_tn, a_tt, c_t)`` of the affine maps after the window sums."""
        size = self._geometry(ndim)[0]
        w2 = float(self.w_std * self.w_std) / math.prod(size)
        b2 = 0.0 if self.b_std is None else float(self.b_std * self.b_std)
        if self.parametrization == "ntk":
            return w2, b2, w2, w2, b2
        return w2, b2, float(channels), w2, 0.0 if self.b_std is None else 1.0

    def chain_op(self, facts: Facts) -> ChainOp | None:
        """The convolution of the full layout as a ``conv`` op (not circular padding)."""
        spatial = facts.spatial_shape
        if (
            facts.channel_axis != 0
            or not spatial
            or self.padding == "circular"
            or isinstance(self.w_std, Tensor)
            or isinstance(self.b_std, Tensor)
        ):
            return None
        size, stride, dil = self._geometry(len(spatial))
        geometry = list(zip(spatial, size, stride, dil, strict=True))
        return ChainOp(
            "conv",
            n=tuple(spatial),
            m=tuple(out_size(n, f, s, d, self.padding) for n, f, s, d in geometry),
            taps=size,
            stride=stride,
            dilation=dil,
            before=tuple(pads(n, f, s, d, self.padding)[0] for n, f, s, d in geometry),
            coef=self._coefficients(len(spatial), facts.shape[0]),
        )

    def _compiled_geometry(self, k: KernelBlock) -> tuple[tuple[int, ...], ...] | None:
        """``(size, stride, dilation, padding before, output sizes)`` for the compiled kernels.

        ``None`` where they do not apply: not the full layout, circular padding, or
        hyperparameters given as tensors (for autograd).
        """
        if (
            k.layout != "full"
            or k.spatial_ndim == 0
            or self.padding == "circular"
            or isinstance(self.w_std, Tensor)
            or isinstance(self.b_std, Tensor)
            or k.shape1 != k.shape2
        ):
            return None
        size, stride, dil = self._geometry(k.spatial_ndim)
        geometry = list(zip(k.shape1[1:], size, stride, dil, strict=True))
        before = tuple(pads(n, f, s, d, self.padding)[0] for n, f, s, d in geometry)
        out = tuple(out_size(n, f, s, d, self.padding) for n, f, s, d in geometry)
        return size, stride, dil, before, out

    def _fused(self, k: KernelBlock) -> KernelBlock | None:
        """The full-layout, zero-padded convolution by the compiled kernel (``None``: n/a)."""
        geometry = self._compiled_geometry(k)
        if geometry is None:
            return None
        size, stride, dil, before, out = geometry
        coef = self._coefficients(k.spatial_ndim, k.shape1[0])
        lead = 1 if k.self_pairs else 2
        pair = _native.conv_pairs(k.nngp, k.ntk, lead, size, stride, dil, before, out, coef)
        if pair is None:
            return None
        cov_coef = (coef[0], coef[1], 0.0, 0.0, 0.0)
        covs = []
        for cov in (k.cov1,) if k.cov2 is k.cov1 else (k.cov1, k.cov2):
            if k.self_pairs and cov is k.nngp:  # the same covariance: the same result
                covs.append(pair[0])
                continue
            if k.cov_is_variance:
                for i, axes in enumerate(pair_axes(k, "cov")):
                    cov = window_sum(cov, axes, size[i], stride[i], dil[i], self.padding)
                covs.append(affine(cov, coef[0], coef[1]))
                continue
            got = _native.conv_pairs(cov, None, 1, size, stride, dil, before, out, cov_coef)
            if got is None:
                return None
            covs.append(got[0])
        return k.replace(
            nngp=pair[0],
            ntk=pair[1],
            cov1=covs[0],
            cov2=covs[-1],
            shape1=(self.out_channels, *out),
            shape2=(self.out_channels, *out),
            is_gaussian=True,
            channel_axis=0,
        )

    def fuse_next(
        self, k: KernelBlock, nxt: Layer, variances: tuple[Tensor, Tensor]
    ) -> KernelBlock | None:
        """Run the convolution and a ReLU-like activation in one compiled pass (full layout)."""
        slopes = nxt.arccos_slopes() if isinstance(nxt, Elementwise) else None
        geometry = self._compiled_geometry(k)
        if slopes is None or geometry is None or k.self_pairs:
            return None
        size, stride, dil, before, out = geometry
        coef = self._coefficients(k.spatial_ndim, k.shape1[0])
        pair = _native.conv_abrelu(
            k.nngp, k.ntk, size, stride, dil, before, out, coef, *variances, *slopes
        )
        if pair is None:
            return None
        return k.replace(
            nngp=pair[0],
            ntk=pair[1],
            shape1=(self.out_channels, *out),
            shape2=(self.out_channels, *out),
            is_gaussian=False,
            channel_axis=0,
        )

    def module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        out = one_facts(self, self.infer(Facts(tuple(in_shape), True, 0)))
        width = self.out_channels if ctx.width is None else ctx.width
        return (width, *out.shape[1:])

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        spatial = tuple(in_shape[1:])
        size, stride, dil = self._geometry(len(spatial))
        padding = [
            pads(n, f, s, d, self.padding)
            for n, f, s, d in zip(spatial, size, stride, dil, strict=True)
        ]
        return ConvModule(
            in_channels=int(in_shape[0]),
            out_channels=self.out_channels if ctx.width is None else ctx.width,
            kernel_size=size,
            stride=stride,
            dilation=dil,
            padding=tuple(padding),
            circular=self.padding == "circular",
            w_std=float(self.w_std),
            b_std=None if self.b_std is None else float(self.b_std),
            parametrization=ctx.parametrization or self.parametrization,
            generator=ctx.generator,
            dtype=ctx.dtype,
            device=ctx.device,
        )


class ConvModule(AffineModule):
    """Finite twin of :class:`Conv`: explicit (TensorFlow ``SAME``) padding, then a convolution.

    ``ntk``: weights and biases ``N(0, 1)``, output ``(w_std / sqrt(fan_in)) W * x +
    b_std b``. ``standard``: weights ``N(0, w_std^2 / fan_in)``, biases ``N(0, b_std^2)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        dilation: tuple[int, ...],
        padding: tuple[tuple[int, int], ...],
        circular: bool,
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
        self.dilation = dilation
        self.circular = circular
        # torch's pad takes the last axis first
        self.pad = tuple(p for pair in reversed(padding) for p in pair)
        self.parametrization = parametrization

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(n, C, *spatial)`` to ``(n, out_channels, *spatial_out)``."""
        if any(self.pad):
            x = nn.functional.pad(x, self.pad, mode="circular" if self.circular else "constant")
        conv = _CONV[self.weight.ndim - 2]
        y = conv(x, self.weight, stride=self.stride, dilation=self.dilation) * self.w_scale
        if self.bias is not None:
            shape = (1, -1) + (1,) * (y.ndim - 2)
            y = y + self.b_scale * self.bias.reshape(shape)
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel_size="
            f"{tuple(self.weight.shape[2:])}, stride={self.stride}, dilation={self.dilation}, "
            f"pad={self.pad}, circular={self.circular}, parametrization={self.parametrization!r}"
        )


@dataclass(frozen=True)
class Flatten(Layer):
    r"""Flatten every axis but the batch, as ``torch.flatten(x, 1)``.

    The next ``Dense`` sees ``C * prod(spatial)`` features, so the kernel becomes the mean
    of the same-position covariances:

    .. math::
        K' = \frac{1}{|P|} \sum_{p} K_{pp}, \qquad \Theta' = \frac{1}{|P|} \sum_p \Theta_{pp}.

    Only the diagonal of the spatial covariance is needed.
    """

    requirements: ClassVar[Requirements] = Requirements(
        spatial=Spatial.COLLAPSES, variances=Variances.EXACT
    )

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        return Facts((math.prod(facts.shape),), facts.is_gaussian, -1)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        if k.spatial_ndim == 0:
            return k

        def flat(t: Tensor, which: str) -> Tensor:
            d = same_position(k, t, which)
            lead = 1 if (which == "cov" or k.self_pairs) else 2
            return d.mean(dim=tuple(range(lead, d.ndim)))

        same = k.cov2 is k.cov1
        cov1 = flat(k.cov1, "cov")
        return k.replace(
            nngp=flat(k.nngp, "pair"),
            ntk=None if k.ntk is None else flat(k.ntk, "pair"),
            cov1=cov1,
            cov2=cov1 if same else flat(k.cov2, "cov"),
            shape1=(math.prod(k.shape1),),
            shape2=(math.prod(k.shape2),),
            channel_axis=-1,
        )

    def chain_op(self, facts: Facts) -> ChainOp | None:
        """The mean of the same-position entries as a ``diag`` op."""
        spatial = facts.spatial_shape
        if not spatial:
            return ChainOp("skip")
        return ChainOp("diag", n=tuple(spatial), m=(), scale=1.0 / math.prod(spatial))

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return nn.Flatten(1)
