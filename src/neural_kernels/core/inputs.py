r"""The network's input kernel: inputs as features, Gram products, graph patterns.

For raw inputs :math:`x` of ``C`` channels at positions :math:`p`, the input kernel is

.. math::
    K_0(x, x')_{pp'} = \frac1C \sum_c x_{cp}\, x'_{cp'},

one matrix product per block of example pairs; the input NTK is zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._validation import as_tensor
from ..errors import ShapeError, describe
from .block import KernelBlock

__all__ = ["Geometry", "features", "gram", "input_block", "input_variances", "patterns", "self_cov"]


@dataclass(frozen=True)
class Geometry:
    """The raw inputs' layout as the engine reads it.

    Attributes:
        feature_shape: shape of one raw input (no batch axis).
        channel_axis: ``0`` (channels first) or ``-1`` (channels last).
        spatial: the spatial sizes (``()`` for flat inputs).
        layout: ``"full"`` (covariances between every two positions) or ``"diagonal"``.

    """

    feature_shape: tuple[int, ...]
    channel_axis: int
    spatial: tuple[int, ...]
    layout: str

    @property
    def positions(self) -> int:
        """Number of positions (``1`` for flat inputs)."""
        return math.prod(self.spatial)

    @property
    def pair_elements(self) -> int:
        """Entries per example pair of the input kernel."""
        p = self.positions
        return p * p if self.layout == "full" and self.spatial else p


def features(x: Tensor, geo: Geometry) -> Tensor:
    """Inputs as ``(n, positions, channels)``."""
    if geo.channel_axis == 0 and geo.spatial:
        x = x.movedim(1, -1)
    return x.reshape(x.shape[0], geo.positions, x.shape[-1])


def interleave(t: Tensor, lead: int, spatial: tuple[int, ...]) -> Tensor:
    """``(*lead, P, P')`` to the interleaved pair layout ``(*lead, S1, S1', S2, S2', ...)``."""
    s = len(spatial)
    t = t.reshape(*t.shape[:lead], *spatial, *spatial)
    perm = list(range(lead)) + [lead + i + j * s for i in range(s) for j in (0, 1)]
    return t.permute(perm)


def gram(fa: Tensor, fb: Tensor, geo: Geometry) -> Tensor:
    """Input kernel of a block: ``(na, nb, *pairs)``."""
    na, nb, c = fa.shape[0], fb.shape[0], fa.shape[-1]
    if not geo.spatial:
        return (fa[:, 0] @ fb[:, 0].T) / c
    p = geo.positions
    if geo.layout == "full":
        g = torch.mm(fa.reshape(na * p, c) / c, fb.reshape(nb * p, c).T)
        g = g.reshape(na, p, nb, p).transpose(1, 2)
        return interleave(g, 2, geo.spatial).contiguous()
    g = torch.bmm(fa.transpose(0, 1), fb.permute(1, 2, 0)) / c  # (P, na, nb)
    return g.permute(1, 2, 0).reshape(na, nb, *geo.spatial)


def input_variances(f: Tensor, geo: Geometry) -> Tensor:
    """Per-position variances of the inputs, ``(n, *spatial)`` (``(n,)`` without space)."""
    return ((f * f).sum(-1) / f.shape[-1]).reshape(f.shape[0], *geo.spatial)


def self_cov(fa: Tensor, geo: Geometry) -> Tensor:
    """Covariance of each input with itself: ``(n, *pairs)`` (``(n,)`` without space)."""
    if geo.layout == "full" and geo.spatial:
        g = torch.bmm(fa, fa.transpose(1, 2)) / fa.shape[-1]
        return interleave(g, 1, geo.spatial).contiguous()
    return input_variances(fa, geo)


def input_block(
    nngp: Tensor,
    c1: Tensor,
    c2: Tensor,
    geo: Geometry,
    ntk: bool,
    *,
    self_pairs: bool = False,
    pattern1: Tensor | None = None,
    pattern2: Tensor | None = None,
    origin: tuple[int, int] | None = None,
    cov_variance: bool = False,
) -> KernelBlock:
    """The input kernel block (the input NTK is a broadcast zero that takes no memory)."""
    return KernelBlock(
        nngp=nngp,
        ntk=nngp.new_zeros(()).expand(nngp.shape) if ntk else None,
        cov1=c1,
        cov2=c2,
        shape1=geo.feature_shape,
        shape2=geo.feature_shape,
        self_pairs=self_pairs,
        layout=geo.layout,
        channel_axis=geo.channel_axis,
        pattern1=pattern1,
        pattern2=pattern2,
        origin=origin,
        cov_variance=cov_variance,
    )


def patterns(
    pattern: Any, a: Tensor, b: Tensor | None, where: object
) -> tuple[Tensor | None, Tensor | None]:
    """Check graph adjacency ``pattern`` against the inputs; one per batch."""
    if pattern is None:
        return None, None
    if b is None:
        pair = (pattern, pattern) if not isinstance(pattern, (tuple, list)) else tuple(pattern)
    else:
        if not isinstance(pattern, (tuple, list)) or len(pattern) != 2:
            raise ShapeError(
                describe(
                    where,
                    "one adjacency pattern for two input batches",
                    "Pass pattern=(pattern1, pattern2), one (n, L, L) tensor per batch.",
                )
            )
        pair = tuple(pattern)
    out = []
    for name, p, x in (("pattern1", pair[0], a), ("pattern2", pair[1], a if b is None else b)):
        t = as_tensor(p, name, where).to(x.dtype)
        n = x.shape[0]
        if t.ndim != 3 or t.shape[0] != n or t.shape[1] != t.shape[2]:
            raise ShapeError(
                describe(
                    where,
                    f"{name} has shape {tuple(t.shape)} for {n} inputs",
                    f"Pass one square adjacency matrix per example: shape ({n}, L, L).",
                )
            )
        out.append(t)
    return out[0], out[1]
