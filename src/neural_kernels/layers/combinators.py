r"""Combinators: ``Sequential``, ``Parallel``, ``FanOut``, ``FanIn*``, ``Residual``, ``Identity``.

Data flowing between layers is either one value (a tensor, a kernel block, facts) or,
after :class:`FanOut`, a tuple of them, one per branch. ``Sequential`` composes its
layers serially and ``Parallel`` its branches in parallel; the plan fold
(:mod:`neural_kernels.core.plan`) composes their requirements accordingly.

For independent zero-mean branches :math:`b` the fan-in layers map

.. math::
    \text{sum: } K = \sum_b K_b, \qquad
    \text{product: } K = \prod_b K_b, \qquad
    \text{concat: } K = \frac{\sum_b C_b K_b}{\sum_b C_b}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from .._validation import check_positive_int
from ..core.block import KernelBlock
from ..core.protocol import (
    Composition,
    Facts,
    FactsFlow,
    Flow,
    ModuleContext,
    Requirements,
    Variances,
)
from ..errors import HyperparameterError, LayerCompatibilityError, ShapeError, describe
from .base import Layer, facts_of, one_block, shape_of

__all__ = [
    "FanInConcat",
    "FanInProduct",
    "FanInSum",
    "FanOut",
    "Identity",
    "Parallel",
    "Residual",
    "Sequential",
]


def _as_layers(owner: str, layers: Sequence[Any]) -> tuple[Layer, ...]:
    bad = [layer for layer in layers if not isinstance(layer, Layer)]
    if bad:
        raise LayerCompatibilityError(
            describe(
                owner,
                f"got {bad[0]!r} of type {type(bad[0]).__name__}, which is not a layer",
                "Pass neural_kernels layers such as nk.Dense(...) or nk.ReLU().",
            )
        )
    return tuple(layers)


def _branches(layer: Layer, k: Flow) -> tuple[KernelBlock, ...]:
    if not isinstance(k, tuple):
        raise LayerCompatibilityError(
            describe(repr(layer), "received a single input", "Put FanOut(n) before it.")
        )
    return k


def _facts_branches(layer: Layer, facts: FactsFlow) -> tuple[Facts, ...]:
    if not isinstance(facts, tuple):
        raise LayerCompatibilityError(
            describe(repr(layer), "received a single input", "Put FanOut(n) before it.")
        )
    return facts


@dataclass(frozen=True, init=False, repr=False)
class Sequential(Layer):
    """Layers applied one after the other: ``Sequential(a, b, c)(x) = c(b(a(x)))``."""

    composition: ClassVar[Composition] = Composition.SERIAL

    layers: tuple[Layer, ...] = field(default=())

    def __init__(self, *layers: Layer) -> None:
        object.__setattr__(self, "layers", _as_layers("Sequential", layers))

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential({inner})"

    def children(self) -> tuple[Layer, ...]:
        return self.layers

    def transform(self, k: Flow) -> Flow:
        for layer in self.layers:
            k = layer.transform(k)
        return k

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return self._build(in_shape, ctx, top=False)

    def _top_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return self._build(in_shape, ctx, top=True)

    def module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        return shape_of(self._twin_plan(facts_of(in_shape, ctx.channel_axis), ctx, False)[1])

    def _top_module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        return shape_of(self._twin_plan(facts_of(in_shape, ctx.channel_axis), ctx, True)[1])

    def _module_out_facts(self, facts: FactsFlow, ctx: ModuleContext, top: bool) -> FactsFlow:
        return self._twin_plan(facts, ctx, top)[1]

    def _build(self, in_shape: Any, ctx: ModuleContext, top: bool) -> nn.Module:
        steps, _ = self._twin_plan(facts_of(in_shape, ctx.channel_axis), ctx, top)
        modules = []
        for layer, facts, is_top in steps:
            shape, layer_ctx = shape_of(facts), ctx.at(facts)
            if is_top:
                modules.append(layer._top_module(shape, layer_ctx))
            else:
                modules.append(layer.make_module(shape, layer_ctx))
        return nn.Sequential(*modules)

    def _twin_plan(
        self, facts: FactsFlow, ctx: ModuleContext, top: bool
    ) -> tuple[list[tuple[Layer, FactsFlow, bool]], FactsFlow]:
        """Each layer with the facts of the twin's input it gets, and the twin's output facts.

        The twin's shapes follow the widths actually built (``ctx.width`` overrides the
        declared ones). As the whole network (``top``), the last layer that holds a width
        is built as a network in its turn, so that the readout keeps its width even
        inside a nested ``Sequential``.
        """
        readout = None
        if top:
            readout = max(
                (i for i, lay in enumerate(self.layers) if lay._holds_width()), default=None
            )
        steps = []
        for i, layer in enumerate(self.layers):
            is_top = i == readout
            steps.append((layer, facts, is_top))
            facts = layer._module_out_facts(facts, ctx.at(facts), is_top)
        return steps, facts


@dataclass(frozen=True)
class FanOut(Layer):
    """Copy the input into ``num`` identical branches."""

    requirements: ClassVar[Requirements] = Requirements(variances=Variances.EXACT)

    num: int

    def __post_init__(self) -> None:
        check_positive_int(self, "num", self.num)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        return (facts,) * self.num  # type: ignore[return-value]

    def transform(self, k: Flow) -> Flow:
        return (one_block(self, k),) * self.num

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return _FanOutModule(self.num)


@dataclass(frozen=True, init=False, repr=False)
class Parallel(Layer):
    """Apply the i-th layer to the i-th branch: ``Parallel(f, g)((x, y)) = (f(x), g(y))``."""

    composition: ClassVar[Composition] = Composition.PARALLEL
    requirements: ClassVar[Requirements] = Requirements(branches=True)

    layers: tuple[Layer, ...] = field(default=())

    def __init__(self, *layers: Layer) -> None:
        object.__setattr__(self, "layers", _as_layers("Parallel", layers))

    def __repr__(self) -> str:
        return f"Parallel({', '.join(repr(layer) for layer in self.layers)})"

    def children(self) -> tuple[Layer, ...]:
        return self.layers

    def transform(self, k: Flow) -> Flow:
        ks = _branches(self, k)
        outs = [
            one_block(layer, layer.transform(kk)) for layer, kk in zip(self.layers, ks, strict=True)
        ]
        return tuple(outs)

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return _ParallelModule(
            [layer.make_module(s, ctx) for layer, s in zip(self.layers, in_shape, strict=True)]
        )

    def _top_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        # parallel readouts: each branch keeps its readout's width
        return _ParallelModule(
            [layer._top_module(s, ctx) for layer, s in zip(self.layers, in_shape, strict=True)]
        )

    def module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        return shape_of(self._module_out_facts(facts_of(in_shape, ctx.channel_axis), ctx, False))

    def _top_module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        return shape_of(self._module_out_facts(facts_of(in_shape, ctx.channel_axis), ctx, True))

    def _module_out_facts(self, facts: FactsFlow, ctx: ModuleContext, top: bool) -> FactsFlow:
        branches = _facts_branches(self, facts)
        outs = [
            layer._module_out_facts(f, ctx.at(f), top)
            for layer, f in zip(self.layers, branches, strict=True)
        ]
        return cast("tuple[Facts, ...]", tuple(outs))


def _check_same_shapes(layer: Layer, facts: tuple[Facts, ...]) -> None:
    shapes = [f.shape for f in facts]
    if any(s != shapes[0] for s in shapes):
        raise ShapeError(
            describe(
                repr(layer),
                f"branch shapes differ: {shapes}",
                "Give every branch the same output width (or use FanInConcat).",
            )
        )


def _sum(xs: Sequence[Tensor]) -> Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def _prod(xs: Sequence[Tensor]) -> Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out


def _ntks(ks: Sequence[KernelBlock]) -> list[Tensor] | None:
    ntks = [kk.ntk for kk in ks]
    return None if any(t is None for t in ntks) else cast("list[Tensor]", ntks)


@dataclass(frozen=True)
class FanInSum(Layer):
    r"""Sum the branches. For independent zero-mean branches the kernels add.

    .. math::
        K = \sum_b K_b, \qquad \Theta = \sum_b \Theta_b
    """

    requirements: ClassVar[Requirements] = Requirements(branches=True, variances=Variances.EXACT)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        branches = _facts_branches(self, facts)
        _check_same_shapes(self, branches)
        return branches[0].replace(is_gaussian=all(f.is_gaussian for f in branches))

    def transform(self, k: Flow) -> Flow:
        ks = _branches(self, k)
        ntks = _ntks(ks)
        return ks[0].replace(
            nngp=_sum([kk.nngp for kk in ks]),
            ntk=None if ntks is None else _sum(ntks),
            cov1=_sum([kk.cov1 for kk in ks]),
            cov2=_sum([kk.cov2 for kk in ks]),
            is_gaussian=all(kk.is_gaussian for kk in ks),
        )

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return _FanInModule("sum")


@dataclass(frozen=True)
class FanInProduct(Layer):
    r"""Multiply the branches elementwise; for independent zero-mean branches the kernels are.

    .. math::
        K = \prod_b K_b, \qquad \Theta = \sum_b \Theta_b \prod_{c \ne b} K_c

    The formula needs the branches to be *independent*: each branch must start with its
    own random layer (a ``Dense`` or ``Conv``) after the ``FanOut``. Branches that apply
    only nonlinearities to the same values, such as ``FanOut(2)`` followed by
    ``Parallel(Sin(), Erf())``, are correlated, and their product is refused.
    """

    requirements: ClassVar[Requirements] = Requirements(branches=True, variances=Variances.EXACT)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        branches = _facts_branches(self, facts)
        _check_same_shapes(self, branches)
        for b, first in enumerate(branches):
            for c in range(b + 1, len(branches)):
                if first.sources & branches[c].sources:
                    raise LayerCompatibilityError(
                        describe(
                            repr(self),
                            f"branches {b} and {c} are functions of the same random values "
                            "(no Dense or Conv with its own weights separates them after the "
                            "FanOut), so they are correlated and the kernel of their product "
                            "is not the product of their kernels",
                            "Start each multiplied branch with its own Dense (or Conv), e.g. "
                            "Parallel(Sequential(Dense(n), Sin()), Sequential(Dense(n), Erf())).",
                        )
                    )
        union = frozenset().union(*(f.sources for f in branches))
        return branches[0].replace(
            is_gaussian=len(branches) == 1 and branches[0].is_gaussian, sources=union
        )

    def transform(self, k: Flow) -> Flow:
        ks = _branches(self, k)
        nngps = [kk.nngp for kk in ks]
        ntks = _ntks(ks)
        ntk = None
        if ntks is not None:
            ntk = _sum([t * _prod(nngps[:b] + nngps[b + 1 :]) for b, t in enumerate(ntks)])
        return ks[0].replace(
            nngp=_prod(nngps),
            ntk=ntk,
            cov1=_prod([kk.cov1 for kk in ks]),
            cov2=_prod([kk.cov2 for kk in ks]),
            is_gaussian=len(ks) == 1 and ks[0].is_gaussian,
        )

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return _FanInModule("product")


@dataclass(frozen=True)
class FanInConcat(Layer):
    r"""Concatenate the branches along the channel (last) axis.

    Concatenating channels averages the kernels weighted by the branch widths
    :math:`C_b`:

    .. math::
        K = \frac{\sum_b C_b K_b}{\sum_b C_b}, \qquad
        \Theta = \frac{\sum_b C_b \Theta_b}{\sum_b C_b}

    The concatenated channels are Gaussian with *different* covariances per branch, so
    the output is not one Gaussian kernel: a nonlinearity must not follow directly
    (the mean of its duals is not the dual of the mean). Put a ``Dense`` (or ``Conv``)
    after it, as in Neural Tangents.
    """

    requirements: ClassVar[Requirements] = Requirements(branches=True, variances=Variances.EXACT)

    axis: int = -1

    def __post_init__(self) -> None:
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise HyperparameterError(
                describe(self, f"axis={self.axis!r}", "Give the channel axis as an int (-1).")
            )

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        branches = _facts_branches(self, facts)
        ndim = len(branches[0].shape)
        if self.axis not in (-1, ndim) or any(len(f.shape) != ndim for f in branches):
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"concatenation along axis {self.axis} of feature shapes "
                    f"{[f.shape for f in branches]}",
                    "Concatenate along the channel axis (axis=-1) of branches of equal rank.",
                )
            )
        rest = {f.shape[:-1] for f in branches}
        if len(rest) != 1:
            raise ShapeError(
                describe(
                    repr(self),
                    f"branch shapes {[f.shape for f in branches]} differ beyond the channel axis",
                    "Make the branches agree on every axis except the channel axis.",
                )
            )
        width = sum(f.shape[-1] for f in branches)
        gaussian = len(branches) == 1 and branches[0].is_gaussian  # see the class docstring
        return Facts((*branches[0].shape[:-1], width), gaussian, branches[0].channel_axis)

    def transform(self, k: Flow) -> Flow:
        ks = _branches(self, k)
        weights = [kk.shape1[-1] for kk in ks]
        total = float(sum(weights))

        def mean(xs: Sequence[Tensor]) -> Tensor:
            return _sum([(w / total) * x for w, x in zip(weights, xs, strict=True)])

        ntks = _ntks(ks)
        return ks[0].replace(
            nngp=mean([kk.nngp for kk in ks]),
            ntk=None if ntks is None else mean(ntks),
            cov1=mean([kk.cov1 for kk in ks]),
            cov2=mean([kk.cov2 for kk in ks]),
            shape1=(*ks[0].shape1[:-1], sum(kk.shape1[-1] for kk in ks)),
            shape2=(*ks[0].shape2[:-1], sum(kk.shape2[-1] for kk in ks)),
            is_gaussian=len(ks) == 1 and ks[0].is_gaussian,
        )

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return _FanInModule("concat", -1)


@dataclass(frozen=True)
class Identity(Layer):
    """The identity map: kernels and values pass unchanged."""

    requirements: ClassVar[Requirements] = Requirements(variances=Variances.EXACT)

    def transform(self, k: Flow) -> Flow:
        return k

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return nn.Identity()


@dataclass(frozen=True, init=False, repr=False)
class Residual(Sequential):
    """A residual block ``x + f(x)`` with ``f = Sequential(*layers)``.

    Equal to ``Sequential(FanOut(2), Parallel(Sequential(*layers), Identity()), FanInSum())``.
    """

    def __init__(self, *layers: Layer) -> None:
        branch = Sequential(*_as_layers("Residual", layers))
        object.__setattr__(self, "layers", (FanOut(2), Parallel(branch, Identity()), FanInSum()))

    @property
    def branch(self) -> Sequential:
        """The residual branch ``f``."""
        parallel = cast("Parallel", self.layers[1])
        return cast("Sequential", parallel.layers[0])

    def __repr__(self) -> str:
        return "Residual(" + ", ".join(repr(layer) for layer in self.branch.layers) + ")"

    def _top_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return self.make_module(in_shape, ctx)

    def _top_module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        return self.module_out_shape(in_shape, ctx)

    def _module_out_facts(self, facts: FactsFlow, ctx: ModuleContext, top: bool) -> FactsFlow:
        return super()._module_out_facts(facts, ctx, False)


# ----------------------------------------------------------------------------------------
# Finite modules of the combinators
# ----------------------------------------------------------------------------------------


class _FanOutModule(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return (x,) * self.n


class _ParallelModule(nn.Module):
    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, xs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return tuple(m(x) for m, x in zip(self.branches, xs, strict=True))


class _FanInModule(nn.Module):
    def __init__(self, mode: str, axis: int = -1) -> None:
        super().__init__()
        self.mode = mode
        self.axis = axis

    def forward(self, xs: tuple[Tensor, ...]) -> Tensor:
        if self.mode == "sum":
            return _sum(xs)
        if self.mode == "product":
            return _prod(xs)
        return torch.cat(xs, dim=self.axis)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}" + (f", axis={self.axis}" if self.mode == "concat" else "")
