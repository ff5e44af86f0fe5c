"""Helpers shared by the spatial layers: window arithmetic on kernel axis pairs.

Spatial kernels hold one axis pair per spatial axis (``layout="full"``, interleaved
``(..., H, H', W, W')``) or one axis per spatial axis (``layout="diagonal"``,
``(..., H, W)``). A convolution shifts both axes of a pair by the same filter offset
(a *diagonal* window), pooling windows each axis of a pair on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..core.block import KernelBlock, same_position_equation
from ..errors import HyperparameterError, describe

PADDINGS = ("same", "valid", "circular")


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def geometry_value(layer: object, name: str, value: Any) -> int | tuple[int, ...]:
    """A window size, stride or dilation, checked once at construction.

    Returns ``value`` as a positive int (the same on every axis) or a tuple of them.

    Raises:
        HyperparameterError: anything else.

    """
    if _positive_int(value):
        return int(value)
    if isinstance(value, (tuple, list)) and value and all(_positive_int(v) for v in value):
        return tuple(int(v) for v in value)
    raise HyperparameterError(
        describe(
            layer,
            f"{name}={value!r}",
            f"Give {name} as a positive int or a tuple of positive ints (one per spatial axis).",
        )
    )


def expand(value: int | tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """A geometry value (see :func:`geometry_value`) for ``ndim`` spatial axes."""
    return (value,) * ndim if isinstance(value, int) else value


def check_geometry_rank(layer: object, name: str, value: int | tuple[int, ...], ndim: int) -> None:
    """A tuple geometry value must have one entry per spatial axis."""
    if not isinstance(value, int) and len(value) != ndim:
        raise HyperparameterError(
            describe(
                layer,
                f"{name}={value!r} for inputs with {ndim} spatial axes",
                f"Give {name} as an int or a tuple of {ndim} ints.",
            )
        )


def check_padding(layer: object, padding: Any) -> None:
    """``padding`` must be one of ``same``, ``valid``, ``circular``."""
    if padding not in PADDINGS:
        nt = isinstance(padding, str) and padding.lower() in PADDINGS
        fix = (
            f"Spell it in lower case, padding={padding.lower()!r} (Neural Tangents writes "
            f"{padding!r})."
            if nt
            else "Use 'valid' (the default, as torch), 'same' or 'circular'."
        )
        raise HyperparameterError(describe(layer, f"padding={padding!r}", fix))


def out_size(size: int, window: int, stride: int, dilation: int, padding: str) -> int:
    """Output length of a window along one axis (TensorFlow's ``SAME``/``VALID`` rules)."""
    span = dilation * (window - 1) + 1
    if padding == "valid":
        return (size - span) // stride + 1
    return -(-size // stride)


def pads(size: int, window: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    """Padding ``(before, after)`` along one axis; ``same`` puts the extra one after."""
    if padding == "valid":
        return 0, 0
    out = out_size(size, window, stride, dilation, padding)
    total = max((out - 1) * stride + dilation * (window - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def pad_axis(t: Tensor, axis: int, before: int, after: int, circular: bool) -> Tensor:
    """Pad ``t`` along ``axis`` with zeros or by wrapping around."""
    if before == 0 and after == 0:
        return t
    n = t.shape[axis]
    if circular:
        parts = []
        if before:
            parts.append(t.narrow(axis, n - before, before))
        parts.append(t)
        if after:
            parts.append(t.narrow(axis, 0, after))
        return torch.cat(parts, axis)
    shape = list(t.shape)
    shape[axis] = n + before + after
    out = t.new_zeros(shape)
    out.narrow(axis, before, n).copy_(t)
    return out


def _slice(t: Tensor, axes: Sequence[int], start: int, count: int, stride: int) -> Tensor:
    index: list[Any] = [slice(None)] * t.ndim
    for ax in axes:
        index[ax] = slice(start, start + stride * (count - 1) + 1, stride)
    return t[tuple(index)]


def window_sum(
    t: Tensor,
    axes: Sequence[int],
    window: int,
    stride: int,
    dilation: int,
    padding: str,
) -> Tensor:
    r"""Sum over a window shifted alike along every axis in ``axes``.

    With two axes (a pair of a full layout) this is the diagonal window of a
    convolution, :math:`\sum_t K[s p + d t, s p' + d t]`; with one axis it is a plain
    box filter.
    """
    size = t.shape[axes[0]]
    before, after = pads(size, window, stride, dilation, padding)
    count = out_size(size, window, stride, dilation, padding)
    if stride == 1 and padding == "same":
        return _same_window_sum(t, axes, window, dilation, before)
    for ax in axes:
        t = pad_axis(t, ax, before, after, padding == "circular")
    acc = _slice(t, axes, 0, count, stride)
    for offset in range(1, window):
        acc = acc + _slice(t, axes, offset * dilation, count, stride)
    return acc


def _same_window_sum(
    t: Tensor, axes: Sequence[int], window: int, dilation: int, before: int
) -> Tensor:
    """Stride-one zero-padded window sum by in-place shifted adds: no padded copy.

    A tap at shift ``delta`` adds ``t[p + delta, p' + delta]`` where both indices fall
    inside the input (outside, the padded covariance is zero).
    """
    size = t.shape[axes[0]]
    shifts = [i * dilation - before for i in range(window)]
    acc = t.clone() if 0 in shifts else torch.zeros_like(t)
    for delta in shifts:
        if delta == 0 or abs(delta) >= size:
            continue
        lo, hi = max(0, -delta), min(size, size - delta)
        dst: list[Any] = [slice(None)] * t.ndim
        src: list[Any] = [slice(None)] * t.ndim
        for ax in axes:
            dst[ax] = slice(lo, hi)
            src[ax] = slice(lo + delta, hi + delta)
        acc[tuple(dst)] += t[tuple(src)]
    return acc


def pair_axes(k: KernelBlock, which: str) -> list[list[int]]:
    """For each spatial axis, the axes of ``nngp`` (``which="pair"``) or ``cov`` holding it."""
    s = k.spatial_ndim
    lead = 1 if (which == "cov" or k.self_pairs) else 2
    single = k.cov_is_variance if which == "cov" else k.pairs_are_same_position
    if single:
        return [[lead + i] for i in range(s)]
    return [[lead + 2 * i, lead + 2 * i + 1] for i in range(s)]


def apply_per_axis(k: KernelBlock, fn: Any) -> KernelBlock:
    """Apply ``fn(tensor, axes, spatial_index)`` to nngp, ntk, cov1 and cov2 of ``k``."""

    def run(t: Tensor, which: str) -> Tensor:
        for i, axes in enumerate(pair_axes(k, which)):
            t = fn(t, axes, i)
        return t

    same = k.cov2 is k.cov1
    cov1 = run(k.cov1, "cov")
    # pairs of an example with itself whose covariance is the NNGP itself: once
    alike = k.self_pairs and k.nngp is k.cov1 and pair_axes(k, "pair") == pair_axes(k, "cov")
    return k.replace(
        nngp=cov1 if alike else run(k.nngp, "pair"),
        ntk=None if k.ntk is None else run(k.ntk, "pair"),
        cov1=cov1,
        cov2=cov1 if same else run(k.cov2, "cov"),
    )


def spatial_reduce(k: KernelBlock, t: Tensor, which: str, op: str) -> Tensor:
    """Mean or sum of ``t`` over all its spatial axes (full: all position pairs)."""
    axes = [ax for group in pair_axes(k, which) for ax in group]
    if not axes:
        return t
    return t.mean(dim=axes) if op == "mean" else t.sum(dim=axes)


def same_position(k: KernelBlock, t: Tensor, which: str) -> Tensor:
    """The same-position entries of ``t`` (the diagonal of each axis pair)."""
    if k.cov_is_variance if which == "cov" else k.pairs_are_same_position:
        return t
    lead = 1 if which == "cov" else k.lead
    return torch.einsum(same_position_equation(lead, k.spatial_ndim), t)


def prod(values: Sequence[int]) -> int:
    """Product of ints (1 for an empty sequence)."""
    return math.prod(values)
