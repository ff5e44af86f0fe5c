r"""Pooling: ``AvgPool``, ``SumPool``, ``GlobalAvgPool``, ``GlobalSumPool``.

Pooling mixes positions, so every pooling layer needs the full spatial covariance. A
window pools each axis of a pair on its own:

.. math::
    K'_{pp'} = \frac{1}{|W_p|\,|W_{p'}|} \sum_{a \in W_p} \sum_{b \in W_{p'}} K_{ab},

with :math:`|W_p|` the whole window (``normalize_edges=False``; padded positions count
as zeros) or its positions inside the input (``normalize_edges=True``). Sum pooling
drops the division. Global pooling averages (or sums) over all pairs of positions.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._native.chain import ChainOp
from ..core.protocol import Facts, FactsFlow, Flow, ModuleContext, Requirements, Spatial, Variances
from ..errors import HyperparameterError, ShapeError, describe
from ._spatial import (
    apply_per_axis,
    check_geometry_rank,
    check_padding,
    expand,
    geometry_value,
    out_size,
    pad_axis,
    pads,
    spatial_reduce,
    window_sum,
)
from .base import Layer, one_block, one_facts
from .conv import check_channels_first

__all__ = ["AvgPool", "GlobalAvgPool", "GlobalSumPool", "SumPool"]


def _counts(size: int, window: int, stride: int, padding: str, t: Tensor) -> Tensor:
    """Number of real (not padded) positions in each output window, shape ``(out,)``."""
    ones = torch.ones(size, dtype=t.dtype, device=t.device)
    return window_sum(ones, [0], window, stride, 1, padding)


#: Neural Tangents' spellings of the pooling arguments, and PyTorch's that replace them.
_RENAMED = {"window_shape": "kernel_size", "strides": "stride"}


@dataclass(frozen=True, init=False)
class _Pool(Layer):
    kernel_size: int | tuple[int, ...] = 2
    stride: int | tuple[int, ...] | None = None
    padding: str = "valid"
    normalize_edges: bool = False
    requirements: ClassVar[Requirements] = Requirements(
        channel_axis=0, spatial=Spatial.MIXING, variances=Variances.PAIRS
    )
    average: ClassVar[bool] = True
    deprecated_names: ClassVar[frozenset[str]] = frozenset(_RENAMED)

    def __init__(
        self,
        kernel_size: int | tuple[int, ...] = 2,
        stride: int | tuple[int, ...] | None = None,
        padding: str = "valid",
        normalize_edges: bool = False,
        **renamed: Any,
    ) -> None:
        values: dict[str, Any] = {"kernel_size": kernel_size, "stride": stride}
        for old, value in renamed.items():
            if old not in _RENAMED:
                raise TypeError(
                    f"{type(self).__name__}() got an unexpected keyword argument {old!r}"
                )
            warnings.warn(
                f"{type(self).__name__}({old}=...) is deprecated: use {_RENAMED[old]}=... "
                "(PyTorch's name).",
                DeprecationWarning,
                stacklevel=2,
            )
            values[_RENAMED[old]] = value
        fields = {**values, "padding": padding, "normalize_edges": normalize_edges}
        for name, value in fields.items():  # as given, so that messages can show them
            object.__setattr__(self, name, value)
        check_padding(self, padding)
        if not isinstance(normalize_edges, bool):
            raise HyperparameterError(
                describe(self, f"normalize_edges={normalize_edges!r}", "Pass True or False.")
            )
        for name, value in values.items():
            checked = None if value is None else geometry_value(self, name, value)
            object.__setattr__(self, name, checked)

    @property
    def window_shape(self) -> int | tuple[int, ...]:
        """Deprecated name of :attr:`kernel_size`."""
        warnings.warn(
            "window_shape is deprecated: use kernel_size.", DeprecationWarning, stacklevel=2
        )
        return self.kernel_size

    @property
    def strides(self) -> int | tuple[int, ...] | None:
        """Deprecated name of :attr:`stride`."""
        warnings.warn("strides is deprecated: use stride.", DeprecationWarning, stacklevel=2)
        return self.stride

    def _geometry(self, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        window = expand(self.kernel_size, ndim)
        return window, window if self.stride is None else expand(self.stride, ndim)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        spatial = check_channels_first(self, facts)
        check_geometry_rank(self, "kernel_size", self.kernel_size, len(spatial))
        if self.stride is not None:
            check_geometry_rank(self, "stride", self.stride, len(spatial))
        window, strides = self._geometry(len(spatial))
        out = []
        for n, w, s in zip(spatial, window, strides, strict=True):
            if self.padding == "valid" and w > n:
                raise ShapeError(
                    describe(
                        repr(self),
                        f"a window of {w} on an input axis of size {n} with padding='valid'",
                        "Use a smaller kernel_size or padding='same'.",
                    )
                )
            out.append(out_size(n, w, s, 1, self.padding))
        return Facts((facts.shape[0], *out), facts.is_gaussian, 0)

    def _pool_axis(
        self, t: Tensor, axes: list[int], i: int, window: tuple[int, ...], strides: tuple[int, ...]
    ) -> Tensor:
        for ax in axes:
            size = t.shape[ax]
            t = window_sum(t, [ax], window[i], strides[i], 1, self.padding)
            if not self.average:
                continue
            if self.normalize_edges and self.padding == "same":
                counts = _counts(size, window[i], strides[i], self.padding, t)
                shape = [1] * t.ndim
                shape[ax] = -1
                t = t / counts.reshape(shape)
            else:
                t = t / window[i]
        return t

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        window, strides = self._geometry(k.spatial_ndim)
        out = apply_per_axis(k, lambda t, axes, i: self._pool_axis(t, axes, i, window, strides))

        def shape(s: tuple[int, ...]) -> tuple[int, ...]:
            sizes = [
                out_size(n, w, st, 1, self.padding)
                for n, w, st in zip(s[1:], window, strides, strict=True)
            ]
            return (s[0], *sizes)

        return out.replace(shape1=shape(k.shape1), shape2=shape(k.shape2))

    def chain_op(self, facts: Facts) -> ChainOp | None:
        """Zero-padded pooling of the full layout as a ``pool`` op (not edge-normalised)."""
        spatial = facts.spatial_shape
        normalized = self.average and self.normalize_edges and self.padding == "same"
        if facts.channel_axis != 0 or not spatial or self.padding == "circular" or normalized:
            return None
        window, strides = self._geometry(len(spatial))
        geometry = list(zip(spatial, window, strides, strict=True))
        return ChainOp(
            "pool",
            n=tuple(spatial),
            m=tuple(out_size(n, w, s, 1, self.padding) for n, w, s in geometry),
            taps=window,
            stride=strides,
            dilation=(1,) * len(spatial),
            before=tuple(pads(n, w, s, 1, self.padding)[0] for n, w, s in geometry),
            scale=1.0 / math.prod(window) ** 2 if self.average else 1.0,
        )

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        spatial = tuple(in_shape[1:])
        window, strides = self._geometry(len(spatial))
        padding = tuple(
            pads(n, w, s, 1, self.padding) for n, w, s in zip(spatial, window, strides, strict=True)
        )
        return PoolModule(
            window,
            strides,
            padding,
            self.average,
            self.normalize_edges,
            circular=self.padding == "circular",
        )


@dataclass(frozen=True, init=False)
class AvgPool(_Pool):
    """Average pooling over windows of channels-first inputs, as ``torch.nn.AvgPool2d``.

    Args:
        kernel_size: window size, an int or a tuple per spatial axis.
        stride: stride (default: the window, as in ``torch.nn.AvgPool2d``).
        padding: ``"valid"`` (default), ``"same"`` or ``"circular"``.
        normalize_edges: divide by the positions inside the input rather than by the
            whole window (``same`` padding only).
        window_shape, strides: Neural Tangents' names of ``kernel_size`` and ``stride``,
            deprecated.

    Shapes: ``(n, C, *spatial)`` to ``(n, C, *spatial_out)``.

    """


@dataclass(frozen=True, init=False)
class SumPool(_Pool):
    """Sum pooling over windows: :class:`AvgPool` without the division."""

    average: ClassVar[bool] = False


class PoolModule(nn.Module):
    """Finite twin of :class:`AvgPool` and :class:`SumPool`."""

    def __init__(
        self,
        window: tuple[int, ...],
        strides: tuple[int, ...],
        padding: tuple[tuple[int, int], ...],
        average: bool,
        normalize_edges: bool,
        circular: bool = False,
    ) -> None:
        super().__init__()
        self.circular = circular
        self.window = window
        self.strides = strides
        self.padding = padding
        self.average = average
        self.normalize_edges = normalize_edges

    def _sum(self, x: Tensor) -> Tensor:
        for i, (w, s, (before, after)) in enumerate(
            zip(self.window, self.strides, self.padding, strict=True)
        ):
            ax = 2 + i
            x = pad_axis(x, ax, before, after, circular=self.circular)
            x = window_sum(x, [ax], w, s, 1, "valid")
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Pool ``(n, C, *spatial)``."""
        total = self._sum(x)
        if not self.average:
            return total
        if self.normalize_edges and not self.circular:
            ones = torch.ones_like(x[:1, :1])
            return total / self._sum(ones)
        return total / math.prod(self.window)


@dataclass(frozen=True)
class _GlobalPool(Layer):
    requirements: ClassVar[Requirements] = Requirements(
        channel_axis=0, spatial=Spatial.MIXING, variances=Variances.PAIRS
    )
    average: ClassVar[bool] = True

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        if len(facts.shape) < 2:
            raise ShapeError(
                describe(
                    repr(self),
                    f"its input has feature shape {facts.shape}, with no spatial axis",
                    "Global pooling needs spatial inputs: put it before Flatten, not after.",
                )
            )
        channels = facts.shape[0] if facts.channel_axis == 0 else facts.shape[-1]
        return Facts((channels,), facts.is_gaussian, -1)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        op = "mean" if self.average else "sum"
        same = k.cov2 is k.cov1
        cov1 = spatial_reduce(k, k.cov1, "cov", op)
        channels = k.shape1[0] if k.channel_axis == 0 else k.shape1[-1]
        if k.mask1 is not None and self.average:  # masked inputs: mean over unmasked only
            from .masking import global_mean_counts

            c12, c11, c22 = global_mean_counts(self, k)
            total = spatial_reduce(k, k.cov1, "cov", "sum") / c11
            return k.replace(
                nngp=spatial_reduce(k, k.nngp, "pair", "sum") / c12,
                ntk=None if k.ntk is None else spatial_reduce(k, k.ntk, "pair", "sum") / c12,
                cov1=total,
                cov2=total if same else spatial_reduce(k, k.cov2, "cov", "sum") / c22,
                shape1=(channels,),
                shape2=(channels,),
                channel_axis=-1,
            )
        return k.replace(
            nngp=spatial_reduce(k, k.nngp, "pair", op),
            ntk=None if k.ntk is None else spatial_reduce(k, k.ntk, "pair", op),
            cov1=cov1,
            cov2=cov1 if same else spatial_reduce(k, k.cov2, "cov", op),
            shape1=(channels,),
            shape2=(channels,),
            channel_axis=-1,
        )

    def chain_op(self, facts: Facts) -> ChainOp | None:
        """The mean (or sum) over all position pairs as a ``global`` op."""
        spatial = facts.spatial_shape
        if not spatial:
            return None
        scale = 1.0 / math.prod(spatial) ** 2 if self.average else 1.0
        return ChainOp("global", n=tuple(spatial), m=(), scale=scale)

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        channels_last = ctx.channel_axis == -1
        return GlobalPoolModule(self.average, channel_axis=-1 if channels_last else 1)


@dataclass(frozen=True)
class GlobalAvgPool(_GlobalPool):
    r"""Average over all spatial positions: :math:`K' = \frac{1}{|P|^2}\sum_{pp'} K_{pp'}`.

    Shapes: ``(n, C, *spatial)`` (or ``(n, L, C)`` after a ``Dense``) to ``(n, C)``.
    """


@dataclass(frozen=True)
class GlobalSumPool(_GlobalPool):
    r"""Sum over all spatial positions: :math:`K' = \sum_{pp'} K_{pp'}`."""

    average: ClassVar[bool] = False


class GlobalPoolModule(nn.Module):
    """Finite twin of global pooling; knows the channel axis from the network."""

    def __init__(self, average: bool, channel_axis: int = 1) -> None:
        super().__init__()
        self.average = average
        self.channel_axis = channel_axis

    def forward(self, x: Tensor) -> Tensor:
        """Pool every axis except the batch and the channel axis."""
        axes = [a for a in range(1, x.ndim) if a != self.channel_axis % x.ndim]
        return x.mean(dim=axes) if self.average else x.sum(dim=axes)
