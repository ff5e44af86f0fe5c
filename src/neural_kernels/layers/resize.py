r"""``ImageResize``: resize the spatial axes by linear or nearest-neighbour interpolation.

Resizing is linear along each spatial axis: ``x' = R x`` with an ``(out, in)`` matrix
:math:`R` of interpolation weights, the same for every channel. The kernel therefore
transforms as

.. math::
    K'_{pp'} = \sum_{a, b} R_{pa} R_{p'b} K_{ab}

on every axis pair (and the same for the NTK), which needs the covariance between
positions (the full layout). The weights are those of ``jax.image.resize`` (Neural
Tangents' ``ImageResize``):

* ``"linear"``: a triangle filter centred on the sample point
  :math:`(p + \tfrac12)\,\mathrm{in}/\mathrm{out} - \tfrac12`, widened by the
  downsampling factor when ``antialias`` (a low-pass filter), normalised to sum to one;
* ``"nearest"``: the input at :math:`\lfloor (p + \tfrac12)\,\mathrm{in}/\mathrm{out}
  \rfloor` (computed in float32, as JAX does). A selection of positions: same-position
  outputs need same-position inputs only, so it runs in either layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._validation import check_positive_int
from ..core.protocol import (
    Facts,
    FactsFlow,
    Flow,
    ModuleContext,
    Requirements,
    Spatial,
    Variances,
)
from ..errors import HyperparameterError, describe
from ._spatial import apply_per_axis, check_geometry_rank
from .base import Layer, one_block, one_facts
from .conv import check_channels_first

__all__ = ["ImageResize", "ResizeModule", "resize_matrix"]

_LINEAR = ("linear", "bilinear", "trilinear", "triangle")
_METHODS = (*_LINEAR, "nearest")


def resize_matrix(size_in: int, size_out: int, method: str, antialias: bool) -> np.ndarray:
    """The ``(size_out, size_in)`` interpolation matrix of one axis (float64)."""
    if size_in == size_out:
        return np.eye(size_in)
    if method == "nearest":
        p = np.arange(size_out, dtype=np.float32) + np.float32(0.5)
        at = np.floor(p * np.float32(size_in) / np.float32(size_out)).astype(np.int64)
        r = np.zeros((size_out, size_in))
        r[np.arange(size_out), np.minimum(at, size_in - 1)] = 1.0
        return r
    inv = size_in / size_out
    width = max(inv, 1.0) if antialias else 1.0
    sample = (np.arange(size_out) + 0.5) * inv - 0.5
    dist = np.abs(sample[None, :] - np.arange(size_in)[:, None]) / width
    w = np.maximum(0.0, 1.0 - dist)  # (in, out)
    total = w.sum(0, keepdims=True)
    keep = np.abs(total) > 1000.0 * float(np.finfo(np.float32).eps)
    w = np.where(keep, w / np.where(total != 0, total, 1.0), 0.0)
    inside = (sample >= -0.5) & (sample <= size_in - 0.5)
    return np.where(inside[None, :], w, 0.0).T


def _apply(t: Tensor, axis: int, r: Tensor) -> Tensor:
    """``r`` (``(out, in)``) applied along ``axis`` of ``t``."""
    return torch.movedim(torch.tensordot(t, r.to(t.dtype), dims=([axis], [1])), -1, axis)


@dataclass(frozen=True)
class ImageResize(Layer):
    r"""Resize the spatial axes of channels-first inputs (``jax.image.resize``).

    Args:
        size: output spatial sizes, an int (every axis) or a tuple per axis; ``-1``
            keeps an axis as it is.
        method: ``"linear"`` (also ``"bilinear"``, ``"trilinear"``, ``"triangle"``) or
            ``"nearest"``.
        antialias: widen the linear filter when downsampling (a low-pass filter), as
            ``jax.image.resize`` and ``torch.nn.functional.interpolate(antialias=True)``.

    Shapes: ``(n, C, *spatial)`` to ``(n, C, *size)``.

    """

    size: int | tuple[int, ...]
    method: str = "linear"
    antialias: bool = True

    @property
    def requirements(self) -> Requirements:  # type: ignore[override]
        """Linear resizing mixes positions; nearest-neighbour resizing only selects them."""
        if self.method == "nearest":
            return Requirements(channel_axis=0, variances=Variances.EXACT)
        return Requirements(channel_axis=0, spatial=Spatial.MIXING, variances=Variances.PAIRS)

    def __post_init__(self) -> None:
        sizes = self.size if isinstance(self.size, tuple) else (self.size,)
        for s in sizes:
            if s != -1:
                check_positive_int(self, "size", s)
        if isinstance(self.size, list):
            object.__setattr__(self, "size", tuple(self.size))
        if not isinstance(self.method, str) or self.method not in _METHODS:
            raise HyperparameterError(
                describe(
                    repr(self),
                    f"method={self.method!r}",
                    "Use 'linear' or 'nearest' (cubic and Lanczos resizing have no closed-form "
                    "kernel here).",
                )
            )
        if not isinstance(self.antialias, bool):
            raise HyperparameterError(
                describe(repr(self), f"antialias={self.antialias!r}", "Pass True or False.")
            )

    def _sizes(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        wanted = (self.size,) * len(spatial) if isinstance(self.size, int) else self.size
        return tuple(n if s == -1 else s for n, s in zip(spatial, wanted, strict=True))

    def _matrices(self, spatial: tuple[int, ...]) -> list[Tensor]:
        method = "nearest" if self.method == "nearest" else "linear"
        return [
            torch.from_numpy(resize_matrix(n, s, method, self.antialias))
            for n, s in zip(spatial, self._sizes(spatial), strict=True)
        ]

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        spatial = check_channels_first(self, facts)
        if not isinstance(self.size, int):
            check_geometry_rank(self, "size", self.size, len(spatial))
        return Facts((facts.shape[0], *self._sizes(spatial)), facts.is_gaussian, 0)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        mats = [r.to(k.device) for r in self._matrices(k.shape1[1:])]

        def resize(t: Tensor, axes: list[int], i: int) -> Tensor:
            for ax in axes:
                t = _apply(t, ax, mats[i])
            return t

        out = apply_per_axis(k, resize)
        return out.replace(
            shape1=(k.shape1[0], *self._sizes(k.shape1[1:])),
            shape2=(k.shape2[0], *self._sizes(k.shape2[1:])),
        )

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return ResizeModule(self._matrices(tuple(int(s) for s in in_shape[1:])))


class ResizeModule(nn.Module):
    """Finite twin of :class:`ImageResize`: the interpolation matrices on each axis."""

    def __init__(self, matrices: list[Tensor]) -> None:
        super().__init__()
        self.sizes = [tuple(r.shape) for r in matrices]
        for i, r in enumerate(matrices):
            self.register_buffer(f"r{i}", r)

    def forward(self, x: Tensor) -> Tensor:
        """Resize ``(n, C, *spatial)``."""
        for i in range(len(self.sizes)):
            r = getattr(self, f"r{i}")
            x = _apply(x, 2 + i, r)
        return x

    def extra_repr(self) -> str:
        return ", ".join(f"{b} -> {a}" for a, b in self.sizes)
