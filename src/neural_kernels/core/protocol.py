"""What a layer declares and what the engine needs from it.

A layer is a small immutable description. Before any arithmetic the engine folds the
network once (:mod:`neural_kernels.core.plan`): it threads :class:`Facts` (shapes,
Gaussianity, channel axis) through the layer tree, checks each layer's declared
:class:`Requirements` against its input, and composes those requirements serially (one
layer after another) and in parallel (branches) to choose the cheapest exact layout.

The engine drives layers only through :class:`KernelLayer`; the concrete base class
with the public methods (``kernel``, ``module``, ...) is
:class:`neural_kernels.layers.base.Layer`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Union

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from .._native.chain import ChainOp
    from .block import KernelBlock

__all__ = [
    "Composition",
    "Facts",
    "FactsFlow",
    "Flow",
    "KernelLayer",
    "ModuleContext",
    "Requirements",
    "Spatial",
    "Variances",
]


@dataclass(frozen=True)
class Facts:
    """What is known about a layer's input before any arithmetic.

    Attributes:
        shape: feature shape of one example (no batch axis) in the finite network.
        is_gaussian: whether the values are Gaussian at infinite width (raw inputs are
            not: an activation needs a ``Dense`` before it).
        channel_axis: ``0`` (channels first, after a ``Conv``), ``-1`` (channels last,
            after a ``Dense``) or ``None`` (raw inputs: the first layer decides).
        raw: whether these are the network's raw inputs (no layer has acted yet).
        sources: tokens of the independent randomness the values are made of: the raw
            inputs' token, or a fresh one for each layer with its own random weights
            (``Dense``, ``Conv``, attention). Branches whose sources overlap are
            correlated, which ``FanInProduct`` must know.

    """

    shape: tuple[int, ...]
    is_gaussian: bool = False
    channel_axis: int | None = None
    raw: bool = False
    sources: frozenset[object] = field(default=frozenset(), compare=False, repr=False)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Spatial sizes (``()`` for flat features)."""
        if len(self.shape) <= 1:
            return ()
        return self.shape[1:] if self.channel_axis == 0 else self.shape[:-1]

    def replace(self, **changes: object) -> Facts:
        """A copy with the given fields changed (a layer's output is never raw)."""
        changes.setdefault("raw", False)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


FactsFlow = Union[Facts, tuple[Facts, ...]]  # noqa: UP007 (runtime alias, Python 3.10)
Flow = Union["KernelBlock", tuple["KernelBlock", ...]]


class Spatial(enum.Enum):
    """How a layer uses the covariance between positions of spatial inputs.

    ``LOCAL``: its same-position outputs need only same-position inputs (``Dense``,
    ``Conv``, activations, normalisation), so it runs in either layout. ``MIXING``: it
    needs the covariance between every two positions (pooling, attention, graphs).
    ``COLLAPSES``: it removes the spatial axes using only same-position entries
    (``Flatten``), so the layers before it may keep only those.
    """

    LOCAL = "local"
    MIXING = "mixing"
    COLLAPSES = "collapses"


class Variances(enum.Enum):
    """What a layer needs of each input's covariance with itself inside a block of pairs.

    ``EXACT``: only per-position variances, and its output variances follow from them
    (``Dense``, ``Conv``, activations): the engine may replay each step's exact
    variances, recorded once per example. ``PAIRS``: its pairs need only variances, but
    its output variances need the whole self-covariance (pooling): the engine replaces
    them with the recorded ones. ``CARRY``: it needs whole self-covariances (attention,
    graphs, dropout, anything unknown).
    """

    EXACT = "exact"
    PAIRS = "pairs"
    CARRY = "carry"


class Composition(enum.Enum):
    """How a layer combines its children: ``LEAF`` (none), ``SERIAL`` or ``PARALLEL``."""

    LEAF = "leaf"
    SERIAL = "serial"
    PARALLEL = "parallel"


@dataclass(frozen=True)
class Requirements:
    """What a layer needs from its input, declared once and checked by the plan fold.

    Attributes:
        gaussian_input: the input must be Gaussian (a ``Dense`` before an activation).
        feature_ndim: the number of feature axes the layer accepts, or ``None`` for any.
        branches: ``False`` for a layer that takes one input, ``True`` for one that
            combines the branches produced by ``FanOut``.
        channel_axis: the channel axis the layer wants for raw inputs: ``0`` (channels
            first, ``Conv``), ``-1`` (channels last, ``Dense``) or ``None``.
        spatial: how it uses the covariance between positions (:class:`Spatial`).
        variances: what it needs of self-covariances in a block (:class:`Variances`).
        has_width: whether the layer owns a width (``Dense``, ``Conv``): the last such
            layer of a network is its readout, which ``module(width=...)`` leaves alone.

    """

    gaussian_input: bool = False
    feature_ndim: int | None = None
    branches: bool = False
    channel_axis: int | None = None
    spatial: Spatial = Spatial.LOCAL
    variances: Variances = Variances.CARRY
    has_width: bool = False


@dataclass(frozen=True)
class ModuleContext:
    """Options for building a finite twin, passed down the network.

    Attributes:
        width: overrides every hidden width (``None``: the widths the layers declare).
        parametrization: overrides every layer's parametrization (``None``: the layers').
        generator: random generator for the initialisation.
        dtype: dtype of the parameters.
        device: device of the parameters.
        channel_axis: the channel axis of the current input (set while building).

    """

    width: int | None = None
    parametrization: str | None = None
    generator: torch.Generator | None = None
    dtype: torch.dtype | None = None
    device: torch.device | str | None = None
    channel_axis: int | None = None

    def without_width(self) -> ModuleContext:
        """The same context with the width override removed (for a readout layer)."""
        return dataclasses.replace(self, width=None)

    def at(self, facts: FactsFlow) -> ModuleContext:
        """The context for a layer whose input has these static facts."""
        first = facts[0] if isinstance(facts, tuple) else facts
        return dataclasses.replace(self, channel_axis=first.channel_axis)


class KernelLayer(Protocol):
    """What the engine needs from a layer (see :class:`neural_kernels.layers.base.Layer`)."""

    @property
    def requirements(self) -> Requirements:
        """The layer's declared needs."""
        ...

    @property
    def composition(self) -> Composition:
        """Whether the layer is a leaf, a serial or a parallel combination."""
        ...

    def children(self) -> tuple[KernelLayer, ...]:
        """The layers it is made of, in order (empty for a leaf)."""
        ...

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        """A leaf's output facts for input facts that satisfy its requirements."""
        ...

    def transform(self, k: Flow) -> Flow:
        """Map the input kernel block to the output kernel block at infinite width."""
        ...

    def fuse_next(
        self, k: KernelBlock, nxt: KernelLayer, variances: tuple[Tensor, Tensor]
    ) -> KernelBlock | None:
        """Run this layer and ``nxt`` in one step, or ``None`` (no fused implementation)."""
        ...

    def chain_op(self, facts: Facts) -> ChainOp | None:
        """The layer as an op of the compiled per-chunk chain, or ``None``."""
        ...

    def tensors(self) -> Iterator[Tensor]:
        """Tensors among the layer's own fields (hyperparameters that may need grad)."""
        ...
