r"""``Index``: select positions of spatial inputs, as ``x[idx]`` (and the ``Slice`` helper).

Indexing keeps a subset of positions along each spatial axis (a ``slice``, any step,
negative included) or picks one position and drops the axis (an ``int``). The kernel is
indexed the same way on both axes of every position pair:

.. math::
    K'_{pp'} = K_{\iota(p)\, \iota(p')}, \qquad \Theta'_{pp'} = \Theta_{\iota(p)\, \iota(p')},

with :math:`\iota` the selected positions. The batch axis and the channel axis (of
infinite width) must be kept whole (``:``). Same-position outputs need same-position
inputs only, so the layer runs in either layout. This is Neural Tangents' ``Index``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, Union

import torch
from torch import Tensor, nn

from ..core.protocol import FactsFlow, Flow, ModuleContext, Requirements, Variances
from ..errors import HyperparameterError, LayerCompatibilityError, ShapeError, describe
from ._spatial import pair_axes
from .base import Layer, one_block, one_facts

__all__ = ["Index", "IndexModule", "Slice"]

Item = Union[int, slice]  # noqa: UP007 (runtime alias, Python 3.10)


class _Slice:
    """``Slice[1:4, ::-1]`` returns ``(slice(1, 4), slice(None, None, -1))``, for :class:`Index`."""

    def __getitem__(self, idx: Any) -> Any:
        return idx

    def __repr__(self) -> str:
        return "Slice"


#: Write ``nk.Index(nk.Slice[:, :, 1:4, ::2])`` for ``x[:, :, 1:4, ::2]``.
Slice = _Slice()


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _valid_item(v: Any) -> bool:
    if v is Ellipsis or _is_int(v):
        return True
    if isinstance(v, slice):
        parts = (v.start, v.stop, v.step)
        return all(p is None or _is_int(p) for p in parts) and v.step != 0
    return False


def _whole(v: Any) -> bool:
    return isinstance(v, slice) and v == slice(None)


def apply_index(t: Tensor, ops: list[tuple[list[int], Item]]) -> Tensor:
    """Index ``t`` along each group of axes (the same ``int`` or ``slice`` on each axis).

    Groups are applied from the last axis to the first, so that the axes an ``int``
    removes do not move the ones still to come.
    """
    for axes, item in sorted(ops, key=lambda op: -op[0][0]):
        for ax in sorted(axes, reverse=True):
            size = t.shape[ax]
            if isinstance(item, slice):
                index = torch.arange(*item.indices(size), device=t.device)
                t = t.index_select(ax, index)
            else:
                t = t.select(ax, int(item) % size)
    return t


@dataclass(frozen=True, init=False)
class Index(Layer):
    r"""Index the inputs as ``x[idx]``: crop, subsample, flip or pick spatial positions.

    Args:
        idx: what ``x[idx]`` would take for ``x`` of shape ``(n, *features)``: a tuple of
            ``slice`` objects, ``int`` s and at most one ``...``; build it with
            :data:`Slice`, e.g. ``nk.Slice[:, :, 2:6, ::-1]``. The batch axis and the
            channel axis must be ``:`` (whole); an ``int`` removes a spatial axis.

    On raw inputs the layer reads them channels first, as ``Conv`` does; after a
    ``Dense`` on sequences ``(n, L, C)`` the channel axis is the last.

    Shapes: ``(n, C, *spatial)`` to ``(n, C, *spatial_selected)``.

    Example::

        net = nk.Sequential(nk.Conv(64, 3), nk.ReLU(), nk.Index(nk.Slice[:, :, :4, :4]),
                            nk.Conv(64, 2), nk.ReLU(), nk.Index(nk.Slice[:, :, 0]),
                            nk.GlobalAvgPool(), nk.Dense(1))

    """

    idx: tuple[Any, ...]
    requirements: ClassVar[Requirements] = Requirements(channel_axis=0, variances=Variances.EXACT)

    def __init__(self, idx: Any) -> None:
        items = idx if isinstance(idx, tuple) else (idx,)
        object.__setattr__(self, "idx", items)
        bad = [v for v in items if not _valid_item(v)]
        if bad or sum(v is Ellipsis for v in items) > 1:
            got = f"an entry {bad[0]!r}" if bad else "more than one '...'"
            raise HyperparameterError(
                describe(
                    self,
                    f"idx={idx!r} has {got}",
                    "Give slices, ints and at most one '...' (basic indexing), e.g. "
                    "nk.Slice[:, :, 1:4, ::2].",
                )
            )

    def _expanded(self, ndim: int) -> tuple[Any, ...]:
        """``idx`` for ``ndim`` axes (batch included): ``...`` and missing axes as ``:``."""
        items = list(self.idx)
        if Ellipsis in items:
            at = items.index(Ellipsis)
            fill = ndim - (len(items) - 1)
            items[at : at + 1] = [slice(None)] * max(fill, 0)
        if len(items) > ndim:
            raise ShapeError(
                describe(
                    repr(self),
                    f"{len(items)} indices for inputs with {ndim} axes (batch included)",
                    "Give at most one index per axis of (n, *features).",
                )
            )
        return tuple(items) + (slice(None),) * (ndim - len(items))

    def _plan(self, shape: tuple[int, ...], channel_axis: int | None) -> list[tuple[int, Item]]:
        """``(spatial axis number, item)`` for every indexed spatial axis (checked)."""
        items = self._expanded(1 + len(shape))
        if not _whole(items[0]):
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"idx indexes the batch axis with {items[0]!r}",
                    "Keep the batch axis whole (':'); select examples before computing the kernel.",
                )
            )
        feature = items[1:]
        channel = len(shape) - 1 if channel_axis == -1 or len(shape) == 1 else 0
        if not _whole(feature[channel]):
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"idx indexes the channel axis (feature axis {channel} of shape "
                    f"{shape}) with {feature[channel]!r}",
                    "Keep the channel axis whole (':'): its width is infinite in the kernel.",
                )
            )
        spatial = [i for i in range(len(shape)) if i != channel]
        plan = []
        for number, axis in enumerate(spatial):
            item = feature[axis]
            if _whole(item):
                continue
            size = shape[axis]
            if isinstance(item, slice):
                if len(range(*item.indices(size))) == 0:
                    raise ShapeError(
                        describe(
                            repr(self),
                            f"{item!r} selects nothing on an axis of size {size}",
                            "Select at least one position.",
                        )
                    )
            elif not -size <= int(item) < size:
                raise ShapeError(
                    describe(
                        repr(self),
                        f"index {item} on an axis of size {size}",
                        f"Use an index from {-size} to {size - 1}.",
                    )
                )
            plan.append((number, item))
        return plan

    @staticmethod
    def _shape(shape: tuple[int, ...], channel: int, plan: list[tuple[int, Item]]) -> tuple:
        spatial = [i for i in range(len(shape)) if i != channel]
        sizes: list[int | None] = list(shape)
        for number, item in plan:
            axis = spatial[number]
            if isinstance(item, slice):
                sizes[axis] = len(range(*item.indices(shape[axis])))
            else:
                sizes[axis] = None
        return tuple(s for s in sizes if s is not None)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        shape = facts.shape
        plan = self._plan(shape, facts.channel_axis)
        channel = len(shape) - 1 if facts.channel_axis == -1 or len(shape) == 1 else 0
        out = self._shape(shape, channel, plan)
        axis = facts.channel_axis if len(out) > 1 else -1
        return facts.replace(shape=out, channel_axis=axis)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        plan = self._plan(k.shape1, k.channel_axis)
        channel = len(k.shape1) - 1 if k.channel_axis == -1 or len(k.shape1) == 1 else 0

        def run(t: Tensor, which: str) -> Tensor:
            groups = pair_axes(k, which)
            return apply_index(t, [(groups[n], item) for n, item in plan])

        cov1 = run(k.cov1, "cov")
        shape1 = self._shape(k.shape1, channel, plan)
        return k.replace(
            nngp=run(k.nngp, "pair"),
            ntk=None if k.ntk is None else run(k.ntk, "pair"),
            cov1=cov1,
            cov2=cov1 if k.same_inputs else run(k.cov2, "cov"),
            shape1=shape1,
            shape2=self._shape(k.shape2, channel, plan),
            channel_axis=k.channel_axis if len(shape1) > 1 else -1,
        )

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        shape = tuple(int(s) for s in in_shape)
        plan = self._plan(shape, ctx.channel_axis)
        channel = len(shape) - 1 if ctx.channel_axis == -1 or len(shape) == 1 else 0
        spatial = [i for i in range(len(shape)) if i != channel]
        return IndexModule([(1 + spatial[n], item) for n, item in plan])


class IndexModule(nn.Module):
    """Finite twin of :class:`Index`: ``x[idx]`` (negative steps included)."""

    def __init__(self, ops: list[tuple[int, Item]]) -> None:
        super().__init__()
        self.ops = [([axis], item) for axis, item in ops]

    def forward(self, x: Tensor) -> Tensor:
        """Index ``x`` of shape ``(n, *features)``."""
        return apply_index(x, self.ops)

    def extra_repr(self) -> str:
        return ", ".join(f"axis {a[0]}: {item!r}" for a, item in self.ops)
