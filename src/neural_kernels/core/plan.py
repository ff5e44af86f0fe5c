"""The plan fold: one walk over the layer tree before any arithmetic.

The fold threads :class:`~neural_kernels.core.protocol.Facts` through the network,
checks every layer's declared :class:`~neural_kernels.core.protocol.Requirements`
against its input, and composes the requirements as Neural Tangents' ``requirements``
does:

* **serially** (``Sequential``): the steps of nested serial layers are concatenated,
  the raw inputs' channel axis is fixed by the first layer that wants one, and the
  network needs the full spatial covariance when any step mixes positions;
* **in parallel** (``Parallel``): a step made of branches mixes positions when any
  branch does, and allows replayed variances only when every branch does exactly.

The result, a :class:`Plan`, is all the engine needs: the flat list of steps, the
layout to compute in, the step after which only same-position entries are kept, whether
variances may be replayed, and the hyperparameter tensors (for autograd).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from ..errors import LayerCompatibilityError, ShapeError, describe
from .protocol import (
    Composition,
    Facts,
    FactsFlow,
    KernelLayer,
    Requirements,
    Spatial,
    Variances,
)

__all__ = ["Plan", "Step", "fold", "holds_width", "plan_network"]

Where = Callable[[], str]


@dataclass(frozen=True)
class Step:
    """One step of the engine's loop: a leaf, or a layer made of branches.

    Attributes:
        layer: the layer run by this step.
        spatial: ``MIXING`` when the step (or a branch inside it) mixes positions,
            ``COLLAPSES`` for a leaf that removes the spatial axes, else ``LOCAL``.
        variances: what the step needs of self-covariances (see ``Variances``).

    """

    layer: KernelLayer
    spatial: Spatial
    variances: Variances


@dataclass
class _Walk:
    """State shared by one fold: the raw inputs' channel axis and the tensors seen."""

    input_channel_axis: int | None = None
    tensors: list[Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    """What the engine needs to know about a network before any arithmetic.

    Attributes:
        steps: the network's steps (nested serial layers flattened).
        out: the facts of the network's output.
        input_channel_axis: the channel axis of the raw inputs (``0`` or ``-1``).
        mixing: whether some step needs the covariance between positions.
        switch_after: index of the step after which only same-position entries are
            kept (the last mixing step, when a step removing the spatial axes follows;
            if its output is branches, from the first single block after it); ``None``
            to keep the layout to the end.
        replays: whether every step allows replayed variances.
        tensors: the hyperparameter tensors of every layer.

    """

    steps: tuple[Step, ...]
    out: FactsFlow
    input_channel_axis: int
    mixing: bool
    switch_after: int | None
    replays: bool
    tensors: tuple[Tensor, ...]


def _single_input(layer: KernelLayer) -> LayerCompatibilityError:
    return LayerCompatibilityError(
        describe(
            repr(layer),
            "received a single input, not branches",
            "Put FanOut(n) and Parallel(...) before it, or use Residual(...).",
        )
    )


def _check_leaf(layer: KernelLayer, req: Requirements, facts: FactsFlow) -> None:
    """The declared requirements of a leaf against its input facts."""
    if isinstance(facts, tuple):
        if not req.branches:
            raise LayerCompatibilityError(
                describe(
                    repr(layer),
                    f"received {len(facts)} branches from a FanOut",
                    "Combine the branches first with FanInSum, FanInProduct or FanInConcat, "
                    "or apply per-branch layers inside Parallel(...).",
                )
            )
        return
    if req.branches:
        raise _single_input(layer)
    if req.gaussian_input and not facts.is_gaussian:
        got = (
            "it acts on the raw inputs, which are not Gaussian"
            if facts.raw
            else "its input is not Gaussian (it follows a nonlinearity, a FanInProduct or a "
            "FanInConcat of several branches)"
        )
        raise LayerCompatibilityError(
            describe(
                repr(layer),
                got,
                "Put a Dense (or Conv) layer before it: the closed-form duals assume "
                "Gaussian pre-activations.",
            )
        )
    if req.feature_ndim is not None and len(facts.shape) != req.feature_ndim:
        raise ShapeError(
            describe(
                repr(layer),
                f"inputs have feature shape {facts.shape} ({len(facts.shape)} feature axes)",
                f"This layer takes {req.feature_ndim} feature axis "
                "(inputs of shape (n, features)); flatten the inputs first.",
            )
        )


def _side(axis: int | None) -> str:
    return "first" if axis == 0 else "last"


def _fix_raw_axis(
    layer: KernelLayer, req: Requirements, facts: FactsFlow, walk: _Walk
) -> FactsFlow:
    """Give raw inputs the channel axis the first layer that acts on them wants."""
    if isinstance(facts, tuple):
        return tuple(_fix_raw_axis(layer, req, f, walk) for f in facts)  # type: ignore[misc]
    if not facts.raw or facts.channel_axis is not None or req.channel_axis is None:
        return facts
    if walk.input_channel_axis is None:
        walk.input_channel_axis = req.channel_axis
    elif walk.input_channel_axis != req.channel_axis and len(facts.shape) > 1:
        raise LayerCompatibilityError(
            describe(
                repr(layer),
                f"it reads the raw inputs with channels {_side(req.channel_axis)}, but an "
                f"earlier layer reads them with channels {_side(walk.input_channel_axis)}",
                "Give every branch that acts on the raw inputs the same kind of first layer "
                "(Conv reads channels first, Dense channels last).",
            )
        )
    return dataclasses.replace(facts, channel_axis=walk.input_channel_axis)


def _with_sources(out: FactsFlow, facts: FactsFlow, req: Requirements) -> FactsFlow:
    """Track independent randomness: fresh after random weights, else inherited."""
    if isinstance(out, tuple):
        return out
    if req.has_width:
        return dataclasses.replace(out, sources=frozenset({object()}))
    if isinstance(facts, tuple):  # branches combined: made of all of their randomness
        return dataclasses.replace(out, sources=frozenset().union(*(f.sources for f in facts)))
    return out if out.sources else dataclasses.replace(out, sources=facts.sources)


@dataclass(frozen=True)
class _Folded:
    out: FactsFlow
    steps: tuple[Step, ...]
    spatial: Spatial
    variances: Variances
    mixing: bool


def _fold(layer: KernelLayer, facts: FactsFlow, walk: _Walk) -> _Folded:
    walk.tensors.extend(layer.tensors())
    kind = layer.composition
    if kind is Composition.SERIAL:
        steps: list[Step] = []
        for child in layer.children():
            sub = _fold(child, facts, walk)
            facts = sub.out
            steps.extend(sub.steps)
        mixing = any(s.spatial is Spatial.MIXING for s in steps)
        exact = all(s.variances is Variances.EXACT for s in steps)
        variances = Variances.EXACT if exact else Variances.CARRY
        spatial = Spatial.MIXING if mixing else Spatial.LOCAL
        return _Folded(facts, tuple(steps), spatial, variances, mixing)
    req = layer.requirements
    if kind is Composition.PARALLEL:
        children = layer.children()
        if not isinstance(facts, tuple):
            raise _single_input(layer)
        if len(facts) != len(children):
            raise LayerCompatibilityError(
                describe(
                    repr(layer),
                    f"has {len(children)} branches but received {len(facts)}",
                    f"Use FanOut({len(children)}) before it, or give it one layer per branch.",
                )
            )
        subs = [_fold(c, f, walk) for c, f in zip(children, facts, strict=True)]
        mixing = any(s.mixing for s in subs)
        exact = all(s.variances is Variances.EXACT for s in subs)
        variances = Variances.EXACT if exact else Variances.CARRY
        spatial = Spatial.MIXING if mixing else Spatial.LOCAL
        out: FactsFlow = tuple(s.out for s in subs)  # type: ignore[misc]
        step = Step(layer, spatial, variances)
        return _Folded(out, (step,), spatial, variances, mixing)
    facts = _fix_raw_axis(layer, req, facts, walk)
    _check_leaf(layer, req, facts)
    out = _with_sources(layer.infer_facts(facts), facts, req)
    step = Step(layer, req.spatial, req.variances)
    mixing = req.spatial is Spatial.MIXING
    return _Folded(out, (step,), req.spatial, req.variances, mixing)


def fold(layer: KernelLayer, facts: FactsFlow) -> FactsFlow:
    """The output facts of ``layer`` for input ``facts``, checking every requirement.

    Raises:
        LayerCompatibilityError: a layer cannot follow what comes before it.
        ShapeError: a layer does not accept the feature shape it receives.

    """
    return _fold(layer, facts, _Walk()).out


def plan_network(layer: KernelLayer, feature_shape: tuple[int, ...], where: Where) -> Plan:
    """Fold the network for raw inputs of ``feature_shape`` (see the module docstring).

    Args:
        layer: the network.
        feature_shape: shape of one raw input (no batch axis).
        where: returns the name errors use for the calling function (called only when
            an error is raised).

    Raises:
        LayerCompatibilityError: an impossible network, or one that ends in branches.

    """
    walk = _Walk()
    raw = Facts(feature_shape, raw=True, sources=frozenset({"inputs"}))
    folded = _fold(layer, raw, walk)
    if isinstance(folded.out, tuple):
        raise LayerCompatibilityError(
            describe(
                where(),
                f"the network ends with {len(folded.out)} branches",
                "End it with FanInSum, FanInProduct or FanInConcat.",
            )
        )
    steps = folded.steps
    last = max((i for i, s in enumerate(steps) if s.spatial is Spatial.MIXING), default=None)
    if last is not None and not any(s.spatial is Spatial.COLLAPSES for s in steps[last + 1 :]):
        last = None  # a spatial output keeps the full covariance
    axis = walk.input_channel_axis
    return Plan(
        steps=steps,
        out=folded.out,
        input_channel_axis=-1 if axis is None else axis,
        mixing=folded.mixing,
        switch_after=last,
        replays=all(s.variances is not Variances.CARRY for s in steps),
        tensors=tuple(walk.tensors),
    )


def holds_width(layer: KernelLayer) -> bool:
    """Whether ``layer`` or one of the layers it is made of owns a width."""
    if layer.composition is Composition.LEAF:
        return layer.requirements.has_width
    return layer.requirements.has_width or any(holds_width(c) for c in layer.children())
