r"""``repeat(layer, n)``: a layer applied ``n`` times, each time with fresh weights.

``repeat(layer, n)`` is the network ``Sequential(layer, layer, ..., layer)`` (``n``
times) with independent weights in every repetition, as Neural Tangents' ``repeat``.
The kernel maps are the same at every repetition, so the plan folds ``layer`` only until
its facts stop changing (once or twice) instead of unrolling ``n`` copies, and the engine
runs it as one step that applies the layer's map ``n`` times. The layer must keep its
output shape from the second repetition on (its first application may change the shape,
e.g. ``Dense(512)`` on raw inputs of any width).

Deep networks, e.g. the depth of a phase diagram::

    net = nk.Sequential(nk.repeat(nk.Sequential(nk.Dense(512, w_std=1.5), nk.Tanh()), 100),
                        nk.Dense(1))
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from ..core.plan import fold, holds_width
from ..core.protocol import (
    Composition,
    FactsFlow,
    Flow,
    KernelLayer,
    ModuleContext,
    Requirements,
    Spatial,
    Variances,
)
from ..errors import HyperparameterError, LayerCompatibilityError, ShapeError, describe
from .base import Layer, facts_of, shape_of, with_shapes

__all__ = ["Repeat", "repeat"]


def _leaves(layer: KernelLayer) -> Iterator[KernelLayer]:
    if layer.composition is Composition.LEAF:
        yield layer
        return
    for child in layer.children():
        yield from _leaves(child)


def _first_channel_axis(layer: KernelLayer) -> int | None:
    """The channel axis the first layer that reads the raw inputs wants."""
    if layer.composition is Composition.LEAF:
        return layer.requirements.channel_axis
    for child in layer.children():
        axis = _first_channel_axis(child)
        if axis is not None:
            return axis
    return None


def _same(a: FactsFlow, b: FactsFlow) -> bool:
    """Whether two facts describe the same kind of values (shape, axis, Gaussianity)."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        return False
    return (a.shape, a.channel_axis, a.is_gaussian) == (b.shape, b.channel_axis, b.is_gaussian)


@dataclass(frozen=True, repr=False)
class Repeat(Layer):
    """``layer`` applied ``n`` times with independent weights (see :func:`repeat`).

    Args:
        layer: the layer (or network) to repeat.
        n: the number of repetitions, ``>= 0`` (``0``: the identity).

    """

    layer: Layer
    n: int

    def __post_init__(self) -> None:
        if not isinstance(self.layer, Layer):
            raise LayerCompatibilityError(
                describe(
                    "Repeat",
                    f"layer={self.layer!r} of type {type(self.layer).__name__}, not a layer",
                    "Pass a neural_kernels layer such as nk.Sequential(nk.Dense(512), nk.ReLU()).",
                )
            )
        if isinstance(self.n, bool) or not isinstance(self.n, numbers.Integral) or self.n < 0:
            raise HyperparameterError(
                describe(
                    f"Repeat({self.layer!r}, n={self.n!r})",
                    f"n={self.n!r}",
                    "n is a number of repetitions: an integer >= 0.",
                )
            )

    def __repr__(self) -> str:
        return f"repeat({self.layer!r}, {self.n})"

    @property
    def requirements(self) -> Requirements:  # type: ignore[override]
        """Those of the layer's steps composed serially."""
        leaves = list(_leaves(self.layer))
        spatial = [leaf.requirements.spatial for leaf in leaves]
        mixing = Spatial.MIXING in spatial
        exact = all(leaf.requirements.variances is Variances.EXACT for leaf in leaves)
        return Requirements(
            channel_axis=_first_channel_axis(self.layer),
            spatial=Spatial.MIXING if mixing else Spatial.LOCAL,
            variances=Variances.EXACT if exact else Variances.CARRY,
            has_width=holds_width(self.layer),
        )

    def tensors(self) -> Iterator[Tensor]:
        yield from self.layer.hyperparameters()

    def _facts(self, facts: FactsFlow) -> list[FactsFlow]:
        """The input facts of each repetition up to the fixed point, and the output's."""
        seen = [facts]
        for i in range(self.n):
            out = fold(self.layer, seen[-1])
            if isinstance(out, tuple):
                raise LayerCompatibilityError(
                    describe(
                        repr(self),
                        f"the repeated layer ends with {len(out)} branches",
                        "Repeat a layer with one output (end branches with FanInSum, ...).",
                    )
                )
            if i > 0 and not _same(out, seen[-1]):
                raise ShapeError(
                    describe(
                        repr(self),
                        f"repetition {i + 1} maps feature shape {shape_of(seen[-1])} to "
                        f"{out.shape}",
                        "Repeat a layer that keeps the shape of its output (the same width "
                        "in and out), or write the layers out with Sequential.",
                    )
                )
            seen.append(out)
            if i > 0:
                break  # a fixed point: every later repetition is the same
        return seen

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        return self._facts(facts)[-1]

    def transform(self, k: Flow) -> Flow:
        for _ in range(self.n):
            k = self.layer.transform(k)
        return k

    # -- the finite twin: n independent copies ------------------------------------------

    def _twins(self, in_shape: Any, ctx: ModuleContext, top: bool) -> nn.Module:
        facts = facts_of(in_shape, ctx.channel_axis)
        modules = []
        for i in range(self.n):
            last = top and i == self.n - 1
            shape, layer_ctx = shape_of(facts), ctx.at(facts)
            build = self.layer._top_module if last else self.layer.make_module
            modules.append(build(shape, layer_ctx))
            facts = self.layer._module_out_facts(facts, layer_ctx, last)
        return nn.Sequential(*modules)

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return self._twins(in_shape, ctx, top=False)

    def _top_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return self._twins(in_shape, ctx, top=True)

    def _out_shape(self, in_shape: Any, ctx: ModuleContext, top: bool) -> Any:
        facts = facts_of(in_shape, ctx.channel_axis)
        for i in range(min(self.n, 2)):
            last = top and i == self.n - 1
            facts = self.layer._module_out_facts(facts, ctx.at(facts), last)
        if top and self.n > 2:
            facts = self.layer._module_out_facts(facts, ctx.at(facts), True)
        return shape_of(facts)

    def module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        return self._out_shape(in_shape, ctx, top=False)

    def _top_module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        return self._out_shape(in_shape, ctx, top=True)

    def _module_out_facts(self, facts: FactsFlow, ctx: ModuleContext, top: bool) -> FactsFlow:
        return with_shapes(self.infer(facts), self._out_shape(shape_of(facts), ctx, top))


def repeat(layer: Layer, n: int) -> Repeat:
    """``layer`` applied ``n`` times, with independent weights in every repetition.

    The same network as ``Sequential(*[layer] * n)``, with its kernel computed without
    unrolling ``n`` copies in the plan (see :mod:`neural_kernels.layers.repeat`).

    Args:
        layer: the layer (or network) to repeat; from the second repetition on it must
            keep the shape of its output.
        n: the number of repetitions (``0``: the identity).

    Returns:
        A :class:`Repeat` layer.

    """
    return Repeat(layer, n)
