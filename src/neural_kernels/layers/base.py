"""The layer protocol and the combinators that wire layers into networks.

A layer is a small immutable description (a frozen dataclass). It knows

* how it transforms a :class:`~neural_kernels.kernel.Kernel` (infinite width):
  :meth:`Layer.transform`;
* how to build its finite ``torch.nn.Module`` of any width and parametrization:
  :meth:`Layer.make_module`;
* what it needs from its input and what it outputs, checked before any arithmetic:
  :attr:`Layer.requirements` and :meth:`Layer.infer`.

The public methods every layer inherits are :meth:`Layer.kernel`,
:meth:`Layer.kernel_diag`, :meth:`Layer.module` and :meth:`Layer.out_shape`.

Data flowing between layers is either one value (a tensor, a ``Kernel``, a
:class:`Facts`) or, after :class:`FanOut`, a tuple of them, one per branch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Union, cast

import torch
from torch import Tensor, nn

from ..errors import LayerCompatibilityError, ShapeError, describe
from ..kernel import Kernel

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator

__all__ = [
    "Facts",
    "FanInConcat",
    "FanInProduct",
    "FanInSum",
    "FanOut",
    "Identity",
    "Layer",
    "ModuleContext",
    "Parallel",
    "Requirements",
    "Residual",
    "Sequential",
]

Flow = Union[Kernel, tuple[Kernel, ...]]  # noqa: UP007 (runtime alias, Python 3.10)
Get = Union[str, Sequence[str]]  # noqa: UP007
Progress = Callable[[int, int], None]


# ----------------------------------------------------------------------------------------
# Static facts and declared requirements
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What is known about a layer's input before any arithmetic.

    Attributes:
        shape: feature shape of one example (no batch axis) in the finite network.
        is_gaussian: whether the values are Gaussian at infinite width (raw inputs are
            not: an activation needs a ``Dense`` before it).
        channel_axis: ``0`` (channels first, after a ``Conv``), ``-1`` (channels last,
            after a ``Dense``) or ``None`` (raw inputs: the first layer decides).

    """

    shape: tuple[int, ...]
    is_gaussian: bool = False
    channel_axis: int | None = None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Spatial sizes (``()`` for flat features)."""
        if len(self.shape) <= 1:
            return ()
        return self.shape[1:] if self.channel_axis == 0 else self.shape[:-1]


FactsFlow = Union[Facts, tuple[Facts, ...]]  # noqa: UP007


@dataclass(frozen=True)
class Requirements:
    """What a layer needs from its input, declared once and checked by :meth:`Layer.infer`.

    Attributes:
        gaussian_input: the input must be Gaussian (a ``Dense`` before an activation).
        feature_ndim: the number of feature axes the layer accepts (``1`` for fully
            connected layers), or ``None`` for any.
        branches: ``False`` for a layer that takes one input, ``True`` for one that
            combines the branches produced by :class:`FanOut`.

    """

    gaussian_input: bool = False
    feature_ndim: int | None = None
    branches: bool = False


@dataclass(frozen=True)
class ModuleContext:
    """Options for building a finite twin, passed down the network.

    Attributes:
        width: overrides every hidden width (``None``: the widths the layers declare).
        parametrization: overrides every layer's parametrization (``None``: the layers').
        generator: random generator for the initialisation.
        dtype: dtype of the parameters.
        device: device of the parameters.

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


# ----------------------------------------------------------------------------------------
# The protocol
# ----------------------------------------------------------------------------------------


class Layer:
    """Base class of every layer: an immutable description of one part of a network.

    Subclasses are frozen dataclasses and implement :meth:`transform`,
    :meth:`make_module` and :meth:`infer_facts` (the output facts given valid input
    facts). Shared checks live here, once.
    """

    requirements: ClassVar[Requirements] = Requirements()
    #: The channel axis the layer wants for raw inputs: ``0`` (channels first, ``Conv``),
    #: ``-1`` (channels last, ``Dense``) or ``None`` (no preference).
    input_channel_axis: ClassVar[int | None] = None
    #: Whether the layer needs the full spatial covariance (pooling, attention) rather
    #: than only its same-position entries.
    needs_full: ClassVar[bool] = False
    #: Whether the layer removes the spatial axes using only same-position entries
    #: (``Flatten``), so that earlier layers may run in the diagonal layout.
    collapses_spatial: ClassVar[bool] = False
    #: Whether the layer owns a width (``Dense``, ``Conv``): the last such layer of a
    #: network is its readout, whose width ``module(width=...)`` leaves alone.
    has_width: ClassVar[bool] = False
    #: How the layer works when the engine supplies every layer's exact per-position
    #: variances instead of carrying each input's whole self-covariance (the kernel's
    #: ``cov_variance``): ``"exact"`` (its pairs need only variances and its output
    #: variances follow from its input variances: Dense, Conv, activations), ``"pairs"``
    #: (its pairs need only variances, but its output variances need the whole
    #: self-covariance: pooling; the engine replaces them), ``"no"`` (attention, graphs,
    #: dropout, anything unknown: the engine carries whole self-covariances).
    variance_replay: ClassVar[str] = "no"

    # -- to implement ------------------------------------------------------------------

    def transform(self, k: Flow) -> Flow:
        """Map the input kernel to the output kernel at infinite width."""
        raise NotImplementedError

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        """Build the finite twin of this layer for inputs of feature shape ``in_shape``."""
        raise NotImplementedError

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        """The output facts for input facts that satisfy :attr:`requirements`."""
        return facts

    def transform_network(
        self,
        k: Flow,
        *,
        record: list[Tensor | None] | None = None,
        replay: Callable[[int], tuple[Tensor, Tensor] | None] | None = None,
    ) -> Flow:
        """:meth:`transform` when this layer is the whole network (the engine's entry).

        Args:
            k: the input kernel.
            record: if given, the per-position variances of ``cov1`` after each step
                (each top-level layer) are appended to it.
            replay: if given, ``replay(i)`` returns the exact variances ``(v1, v2)``
                after step ``i``, which replace the kernel's own (see
                :meth:`replays_variances`).

        """
        layers, last_full = self._network_steps()
        return _steps(k, layers, last_full, record, replay)

    def _network_steps(self) -> tuple[list[Layer], int | None]:
        """The network's steps, and the step after which to keep same-position entries only.

        ``None``: never switch to the diagonal layout.
        """
        return [self], None

    def fuse_next(self, k: Kernel, nxt: Layer, variances: tuple[Tensor, Tensor]) -> Kernel | None:
        """Run this layer and ``nxt`` in one step, given the exact variances after this layer.

        Returns ``None`` (the default) when there is no fused implementation; ``Conv``
        followed by a ReLU-like activation has one (see ``neural_kernels._native``).
        """
        return None

    def replay_mode(self) -> str:
        """:attr:`variance_replay` of this layer, or of the layers it is made of."""
        children = list(self._sublayers())
        if not children:
            return self.variance_replay
        return "exact" if all(c.replay_mode() == "exact" for c in children) else "no"

    def replays_variances(self) -> bool:
        """Whether the engine may run this network's example pairs on replayed variances."""
        return self.replay_mode() != "no"

    def first_channel_axis(self) -> int | None:
        """The channel axis the network wants for its raw inputs (see ``input_channel_axis``)."""
        return self.input_channel_axis

    def needs_full_spatial(self) -> bool:
        """Whether any layer of the network needs the full spatial covariance."""
        return self.needs_full

    # -- shared machinery ----------------------------------------------------------------

    def infer(self, facts: FactsFlow) -> FactsFlow:
        """Check the declared requirements against ``facts`` and return the output facts.

        Raises:
            LayerCompatibilityError: the input is not what the layer needs.
            ShapeError: the input has a feature rank the layer does not accept.

        """
        req = self.requirements
        branched = isinstance(facts, tuple)
        if isinstance(facts, tuple) and not req.branches:
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"received {len(facts)} branches from a FanOut",
                    "Combine the branches first with FanInSum, FanInProduct or FanInConcat, "
                    "or apply per-branch layers inside Parallel(...).",
                )
            )
        if not branched and req.branches:
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    "received a single input, not branches",
                    "Put FanOut(n) and Parallel(...) before it, or use Residual(...).",
                )
            )
        if not branched:
            assert isinstance(facts, Facts)
            if req.gaussian_input and not facts.is_gaussian:
                raise LayerCompatibilityError(
                    describe(
                        repr(self),
                        "its input is not Gaussian (it follows another nonlinearity)",
                        "Put a Dense (or Conv) layer before it: the closed-form duals assume "
                        "Gaussian pre-activations.",
                    )
                )
            if req.feature_ndim is not None and len(facts.shape) != req.feature_ndim:
                raise ShapeError(
                    describe(
                        repr(self),
                        f"inputs have feature shape {facts.shape} "
                        f"({len(facts.shape)} feature axes)",
                        f"This layer takes {req.feature_ndim} feature axis "
                        "(inputs of shape (n, features)); flatten the inputs first.",
                    )
                )
        return self.infer_facts(facts)

    def out_shape(self, in_shape: Sequence[int]) -> tuple[int, ...]:
        """Feature shape of the output for inputs of feature shape ``in_shape`` (no batch)."""
        out = self.infer(Facts(tuple(int(s) for s in in_shape)))
        if isinstance(out, tuple):
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"the network ends with {len(out)} branches",
                    "End it with FanInSum, FanInProduct or FanInConcat.",
                )
            )
        return out.shape

    def kernel(
        self,
        x1: Any,
        x2: Any = None,
        get: Get = ("nngp", "ntk"),
        *,
        memory_budget: int | None = None,
        block_size: int | tuple[int, int] | None = None,
        progress: Progress | None = None,
        pattern: Any = None,
        layout: str | None = None,
    ) -> Kernel:
        """NNGP and NTK of the infinitely wide network between ``x1`` and ``x2``.

        Args:
            x1: inputs, a tensor (or array) of shape ``(n1, *features)``.
            x2: inputs of shape ``(n2, *features)``; ``None`` means ``x1`` (and the
                symmetry of the kernel is used to halve the work).
            get: ``"nngp"``, ``"ntk"`` or both.
            memory_budget: bytes of working memory besides the output (default 512 MiB);
                sets the block size.
            block_size: rows (or ``(rows, cols)``) of example pairs per block, overriding
                ``memory_budget``.
            progress: called as ``progress(done, total)`` with counts of example pairs.
            pattern: graph adjacency for ``Aggregate`` layers: a tensor ``(n1, L, L)``
                when ``x2`` is ``None``, else a pair ``(pattern1, pattern2)``.
            layout: for outputs that keep spatial axes, ``"full"`` gives the covariance
                between every two output positions ``(n1, n2, H, H', W, W')``,
                ``"diagonal"`` only same-position covariances ``(n1, n2, H, W)``;
                ``None`` (default) computes the cheapest exact layout (full only when
                a layer needs it, such as pooling or attention).

        Returns:
            A :class:`Kernel` with ``nngp`` and ``ntk`` of shape ``(n1, n2)`` (``ntk`` is
            ``None`` unless asked for), ``cov1`` of shape ``(n1,)``, ``cov2`` of shape
            ``(n2,)``, plus the layout's axis pairs for spatial outputs. The dtype is
            the inputs' (integers become float64).

        """
        from .._engine import compute_kernel

        return compute_kernel(
            self,
            x1,
            x2,
            get,
            memory_budget=memory_budget,
            block_size=block_size,
            progress=progress,
            pattern=pattern,
            layout=layout,
        )

    def kernel_diag(
        self,
        x: Any,
        get: Get = ("nngp", "ntk"),
        *,
        pattern: Any = None,
        layout: str | None = None,
    ) -> Kernel:
        """The kernels ``k(x_i, x_i)`` without building the ``n x n`` matrix.

        Args:
            x: inputs of shape ``(n, *features)``.
            get: ``"nngp"``, ``"ntk"`` or both.
            pattern: graph adjacency ``(n, L, L)`` for ``Aggregate`` layers.
            layout: as in :meth:`kernel`.

        Returns:
            A diagonal :class:`Kernel` whose ``nngp`` and ``ntk`` have shape ``(n,)``.

        """
        from .._engine import compute_kernel_diag

        return compute_kernel_diag(self, x, get, pattern, layout)

    def module(
        self,
        in_shape: Sequence[int] | int,
        width: int | None = None,
        parametrization: str | None = None,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> nn.Module:
        """The finite twin: a ``torch.nn.Module`` initialised as the parametrization says.

        Args:
            in_shape: feature shape of one input (no batch axis), e.g. ``x.shape[1:]``.
            width: overrides every hidden width; the readout (the last ``Dense``) keeps
                its own.
            parametrization: ``"ntk"`` or ``"standard"`` for every layer; ``None`` keeps
                each layer's own.
            generator: random generator for the initialisation (reproducible twins).
            dtype: dtype of the parameters (default: torch's default dtype).
            device: device of the parameters.

        Returns:
            A module mapping ``(n, *in_shape)`` to ``(n, *out_shape(in_shape))``.

        """
        from .._validation import check_module_options

        in_shape = (int(in_shape),) if isinstance(in_shape, int) else tuple(in_shape)
        self.out_shape(in_shape)  # checks the network before building anything
        ctx = check_module_options(self, width, parametrization, generator, dtype, device)
        return self._top_module(in_shape, ctx)

    def _top_module(self, in_shape: tuple[int, ...], ctx: ModuleContext) -> nn.Module:
        """Build the twin of this layer as the whole network (its readout keeps its width)."""
        return self.make_module(in_shape, ctx.without_width() if self.has_width else ctx)

    def module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        """Feature shape of the output of ``make_module(in_shape, ctx)`` (a list for branches).

        The declared :meth:`out_shape` for layers without a width; a layer with
        ``has_width`` overrides it to honour ``ctx.width``.
        """
        return _shape_of(self.infer(_facts_of(in_shape, ctx.channel_axis)))

    def _top_module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        """Feature shape of the output of ``_top_module(in_shape, ctx)``."""
        return self.module_out_shape(in_shape, ctx.without_width() if self.has_width else ctx)

    def _module_out_facts(self, facts: FactsFlow, ctx: ModuleContext, top: bool) -> FactsFlow:
        """The facts of the twin's output: the declared ones, with the twin's shapes.

        ``facts`` carry the twin's input shapes (widths overridden by ``ctx.width``);
        combinators thread them through their children instead (see ``Sequential``).
        """
        shape = _shape_of(facts)
        twin = self._top_module_out_shape(shape, ctx) if top else self.module_out_shape(shape, ctx)
        return _with_shapes(self.infer(facts), twin)

    def _sublayers(self) -> Iterator[Layer]:
        """The layers this layer is made of (its direct children)."""
        for value in vars(self).values():
            if isinstance(value, Layer):
                yield value
            elif isinstance(value, tuple):
                yield from (v for v in value if isinstance(v, Layer))

    def hyperparameters(self) -> Iterator[Tensor]:
        """Tensors among this layer's fields (for the engine's autograd check)."""
        for value in vars(self).values():
            if isinstance(value, Tensor):
                yield value
            elif isinstance(value, Layer):
                yield from value.hyperparameters()
            elif isinstance(value, tuple):
                for v in value:
                    if isinstance(v, Layer):
                        yield from v.hyperparameters()


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
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out
        if self.mode == "product":
            out = xs[0]
            for x in xs[1:]:
                out = out * x
            return out
        return torch.cat(xs, dim=self.axis)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}" + (f", axis={self.axis}" if self.mode == "concat" else "")


class _IdentityModule(nn.Identity):
    pass


# ----------------------------------------------------------------------------------------
# Combinators
# ----------------------------------------------------------------------------------------


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


@dataclass(frozen=True, init=False, repr=False)
class Sequential(Layer):
    """Layers applied one after the other: ``Sequential(a, b, c)(x) = c(b(a(x)))``."""

    layers: tuple[Layer, ...] = field(default=())

    def __init__(self, *layers: Layer) -> None:
        object.__setattr__(self, "layers", _as_layers("Sequential", layers))

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential({inner})"

    def infer(self, facts: FactsFlow) -> FactsFlow:
        for layer in self.layers:
            facts = layer.infer(facts)
        return facts

    def first_channel_axis(self) -> int | None:
        return _first_axis(self.layers)

    def needs_full_spatial(self) -> bool:
        return any(layer.needs_full_spatial() for layer in self.layers)

    def transform(self, k: Flow) -> Flow:
        for layer in self.layers:
            k = layer.transform(k)
        return k

    def _network_steps(self) -> tuple[list[Layer], int | None]:
        """One step per layer, in the cheapest exact layout.

        After the last layer that needs the full spatial covariance, when a ``Flatten``
        follows, only same-position covariances are kept (``Kernel.to_diagonal_layout``).
        """
        last = max(
            (i for i, lay in enumerate(self.layers) if lay.needs_full_spatial()), default=None
        )
        if last is None or not any(lay.collapses_spatial for lay in self.layers[last + 1 :]):
            last = None  # a spatial output keeps the full covariance
        return list(self.layers), last

    def replays_variances(self) -> bool:
        return all(layer.replay_mode() != "no" for layer in self.layers)

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return self._build(in_shape, ctx, top=False)

    def _top_module(self, in_shape: tuple[int, ...], ctx: ModuleContext) -> nn.Module:
        return self._build(in_shape, ctx, top=True)

    def module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        return _shape_of(self._plan(_facts_of(in_shape, ctx.channel_axis), ctx, False)[1])

    def _top_module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        return _shape_of(self._plan(_facts_of(in_shape, ctx.channel_axis), ctx, True)[1])

    def _module_out_facts(self, facts: FactsFlow, ctx: ModuleContext, top: bool) -> FactsFlow:
        return self._plan(facts, ctx, top)[1]

    def _build(self, in_shape: Any, ctx: ModuleContext, top: bool) -> nn.Module:
        steps, _ = self._plan(_facts_of(in_shape, ctx.channel_axis), ctx, top)
        modules = []
        for layer, facts, is_top in steps:
            shape, layer_ctx = _shape_of(facts), ctx.at(facts)
            if is_top:
                modules.append(layer._top_module(shape, layer_ctx))
            else:
                modules.append(layer.make_module(shape, layer_ctx))
        return nn.Sequential(*modules)

    def _plan(
        self, facts: FactsFlow, ctx: ModuleContext, top: bool
    ) -> tuple[list[tuple[Layer, FactsFlow, bool]], FactsFlow]:
        """Each layer with the facts of the twin's input it gets, and the twin's output facts.

        The twin's shapes follow the widths actually built (``ctx.width`` overrides the
        declared ones), so the facts are threaded through the combinators' children
        rather than inferred from the declared widths. As the whole network (``top``),
        the last layer that holds a width is built as a network in its turn, so that
        the readout keeps its width even inside a nested ``Sequential``.
        """
        readout = None
        if top:
            readout = max(
                (i for i, lay in enumerate(self.layers) if _holds_width(lay)), default=None
            )
        steps = []
        for i, layer in enumerate(self.layers):
            is_top = i == readout
            steps.append((layer, facts, is_top))
            facts = layer._module_out_facts(facts, ctx.at(facts), is_top)
        return steps, facts


def _steps(
    k: Flow,
    layers: list[Layer],
    last_full: int | None,
    record: list[Tensor | None] | None,
    replay: Callable[[int], tuple[Tensor, Tensor] | None] | None,
) -> Flow:
    """Run ``layers`` in turn (see ``Sequential.transform_network``).

    With replayed variances, a layer may run together with the next one
    (:meth:`Layer.fuse_next`), as both then know every variance they need.
    """
    i = 0
    while i < len(layers):
        layer = layers[i]
        if (
            replay is not None
            and isinstance(k, Kernel)
            and i + 1 < len(layers)
            and last_full not in (i, i + 1)
        ):
            mid, after = replay(i), replay(i + 1)
            fused = None if mid is None else layer.fuse_next(k, layers[i + 1], mid)
            if fused is not None and after is not None:
                k = fused.replace(cov1=after[0], cov2=after[1], cov_variance=True)
                i += 2
                continue
        k = layer.transform(k)
        if i == last_full and isinstance(k, Kernel) and k.spatial_ndim:
            k = k.to_diagonal_layout()
        if record is not None:  # one entry per step (None where branches are in flight)
            record.append(k.variances(k.cov1) if isinstance(k, Kernel) else None)
        if replay is not None and isinstance(k, Kernel):
            exact = replay(i)
            if exact is not None:
                k = k.replace(cov1=exact[0], cov2=exact[1], cov_variance=True)
        i += 1
    return k


def _holds_width(layer: Layer) -> bool:
    """Whether ``layer`` or one of its sublayers owns a width."""
    return layer.has_width or any(_holds_width(sub) for sub in layer._sublayers())


def _first_axis(layers: Sequence[Layer]) -> int | None:
    for layer in layers:
        axis = layer.first_channel_axis()
        if axis is not None:
            return axis
    return None


def _facts_of(shape: Any, channel_axis: int | None = None) -> FactsFlow:
    if isinstance(shape, list):
        return tuple(Facts(tuple(s), True, channel_axis) for s in shape)
    return Facts(tuple(shape), True, channel_axis)


def _shape_of(facts: FactsFlow) -> Any:
    if isinstance(facts, tuple):
        return [f.shape for f in facts]
    return facts.shape


def _with_shapes(facts: FactsFlow, shape: Any) -> FactsFlow:
    if isinstance(facts, tuple):
        return tuple(
            dataclasses.replace(f, shape=tuple(s)) for f, s in zip(facts, shape, strict=True)
        )
    return dataclasses.replace(facts, shape=tuple(shape))


@dataclass(frozen=True)
class FanOut(Layer):
    """Copy the input into ``num`` identical branches."""

    variance_replay: ClassVar[str] = "exact"

    num: int

    def __post_init__(self) -> None:
        from .._validation import check_positive_int

        check_positive_int(self, "num", self.num)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        assert isinstance(facts, Facts)
        return (facts,) * self.num

    def transform(self, k: Flow) -> Flow:
        assert isinstance(k, Kernel)
        return (k,) * self.num

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return _FanOutModule(self.num)


@dataclass(frozen=True, init=False, repr=False)
class Parallel(Layer):
    """Apply the i-th layer to the i-th branch: ``Parallel(f, g)((x, y)) = (f(x), g(y))``."""

    layers: tuple[Layer, ...] = field(default=())
    requirements: ClassVar[Requirements] = Requirements(branches=True)

    def __init__(self, *layers: Layer) -> None:
        object.__setattr__(self, "layers", _as_layers("Parallel", layers))

    def __repr__(self) -> str:
        return f"Parallel({', '.join(repr(layer) for layer in self.layers)})"

    def first_channel_axis(self) -> int | None:
        return _first_axis(self.layers)

    def needs_full_spatial(self) -> bool:
        return any(layer.needs_full_spatial() for layer in self.layers)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        assert isinstance(facts, tuple)
        if len(facts) != len(self.layers):
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"has {len(self.layers)} branches but received {len(facts)}",
                    f"Use FanOut({len(self.layers)}) before it, or give it one layer per branch.",
                )
            )
        outs = [layer.infer(f) for layer, f in zip(self.layers, facts, strict=True)]
        return cast("tuple[Facts, ...]", tuple(outs))

    def transform(self, k: Flow) -> Flow:
        assert isinstance(k, tuple)
        outs = [layer.transform(kk) for layer, kk in zip(self.layers, k, strict=True)]
        return cast("tuple[Kernel, ...]", tuple(outs))

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
        return _shape_of(self._module_out_facts(_facts_of(in_shape, ctx.channel_axis), ctx, False))

    def _top_module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        return _shape_of(self._module_out_facts(_facts_of(in_shape, ctx.channel_axis), ctx, True))

    def _module_out_facts(self, facts: FactsFlow, ctx: ModuleContext, top: bool) -> FactsFlow:
        assert isinstance(facts, tuple)
        return tuple(
            layer._module_out_facts(f, ctx.at(f), top)  # type: ignore[misc]
            for layer, f in zip(self.layers, facts, strict=True)
        )


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


@dataclass(frozen=True)
class FanInSum(Layer):
    r"""Sum the branches. For independent zero-mean branches the kernels add.

    .. math::
        K = \sum_b K_b, \qquad \Theta = \sum_b \Theta_b
    """

    variance_replay: ClassVar[str] = "exact"

    requirements: ClassVar[Requirements] = Requirements(branches=True)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        assert isinstance(facts, tuple)
        _check_same_shapes(self, facts)
        return dataclasses.replace(facts[0], is_gaussian=all(f.is_gaussian for f in facts))

    def transform(self, k: Flow) -> Flow:
        assert isinstance(k, tuple)
        ntk = None if k[0].ntk is None else _sum([kk.ntk for kk in k])  # type: ignore[misc]
        return k[0].replace(
            nngp=_sum([kk.nngp for kk in k]),
            ntk=ntk,
            cov1=_sum([kk.cov1 for kk in k]),
            cov2=_sum([kk.cov2 for kk in k]),
            is_gaussian=all(kk.is_gaussian for kk in k),
        )

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return _FanInModule("sum")


def _sum(xs: list[Tensor]) -> Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def _prod(xs: list[Tensor]) -> Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out


@dataclass(frozen=True)
class FanInProduct(Layer):
    r"""Multiply the branches elementwise; for independent zero-mean branches the kernels are.

    .. math::
        K = \prod_b K_b, \qquad \Theta = \sum_b \Theta_b \prod_{c \ne b} K_c
    """

    variance_replay: ClassVar[str] = "exact"

    requirements: ClassVar[Requirements] = Requirements(branches=True)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        assert isinstance(facts, tuple)
        _check_same_shapes(self, facts)
        return dataclasses.replace(facts[0], is_gaussian=len(facts) == 1 and facts[0].is_gaussian)

    def transform(self, k: Flow) -> Flow:
        assert isinstance(k, tuple)
        nngps = [kk.nngp for kk in k]
        ntk = None
        if k[0].ntk is not None:
            ntk = _sum(
                [kk.ntk * _prod(nngps[:b] + nngps[b + 1 :]) for b, kk in enumerate(k)]  # type: ignore[operator]
                if len(k) > 1
                else [k[0].ntk]  # type: ignore[list-item]
            )
        return k[0].replace(
            nngp=_prod(nngps),
            ntk=ntk,
            cov1=_prod([kk.cov1 for kk in k]),
            cov2=_prod([kk.cov2 for kk in k]),
            is_gaussian=len(k) == 1 and k[0].is_gaussian,
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

    variance_replay: ClassVar[str] = "exact"

    axis: int = -1
    requirements: ClassVar[Requirements] = Requirements(branches=True)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        assert isinstance(facts, tuple)
        ndim = len(facts[0].shape)
        if self.axis not in (-1, ndim) or any(len(f.shape) != ndim for f in facts):
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"concatenation along axis {self.axis} of feature shapes "
                    f"{[f.shape for f in facts]}",
                    "Concatenate along the channel axis (axis=-1) of branches of equal rank.",
                )
            )
        rest = {f.shape[:-1] for f in facts}
        if len(rest) != 1:
            raise ShapeError(
                describe(
                    repr(self),
                    f"branch shapes {[f.shape for f in facts]} differ beyond the channel axis",
                    "Make the branches agree on every axis except the channel axis.",
                )
            )
        width = sum(f.shape[-1] for f in facts)
        gaussian = len(facts) == 1 and facts[0].is_gaussian  # see the class docstring
        return Facts((*facts[0].shape[:-1], width), gaussian, facts[0].channel_axis)

    def transform(self, k: Flow) -> Flow:
        assert isinstance(k, tuple)
        weights = [kk.shape1[-1] for kk in k]
        total = float(sum(weights))

        def mean(xs: list[Tensor]) -> Tensor:
            return _sum([(w / total) * x for w, x in zip(weights, xs, strict=True)])

        ntk = None if k[0].ntk is None else mean([kk.ntk for kk in k])  # type: ignore[misc]
        shape1 = (*k[0].shape1[:-1], sum(kk.shape1[-1] for kk in k))
        shape2 = (*k[0].shape2[:-1], sum(kk.shape2[-1] for kk in k))
        return k[0].replace(
            nngp=mean([kk.nngp for kk in k]),
            ntk=ntk,
            cov1=mean([kk.cov1 for kk in k]),
            cov2=mean([kk.cov2 for kk in k]),
            shape1=shape1,
            shape2=shape2,
            is_gaussian=len(k) == 1 and k[0].is_gaussian,
        )

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return _FanInModule("concat", -1)


@dataclass(frozen=True)
class Identity(Layer):
    """The identity map: kernels and values pass unchanged."""

    variance_replay: ClassVar[str] = "exact"

    def transform(self, k: Flow) -> Flow:
        return k

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        return _IdentityModule()


@dataclass(frozen=True, init=False, repr=False)
class Residual(Sequential):
    """A residual block ``x + f(x)`` with ``f = Sequential(*layers)``.

    Equal to ``Sequential(FanOut(2), Parallel(Sequential(*layers), Identity()), FanInSum())``.
    """

    def __init__(self, *layers: Layer) -> None:
        branch = Sequential(*_as_layers("Residual", layers))
        object.__setattr__(self, "layers", (FanOut(2), Parallel(branch, Identity()), FanInSum()))

    def __repr__(self) -> str:
        branch = self.layers[1].layers[0]  # type: ignore[attr-defined]
        return "Residual(" + ", ".join(repr(layer) for layer in branch.layers) + ")"

    def _top_module(self, in_shape: tuple[int, ...], ctx: ModuleContext) -> nn.Module:
        return self.make_module(in_shape, ctx)

    def _top_module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        return self.module_out_shape(in_shape, ctx)

    def _module_out_facts(self, facts: FactsFlow, ctx: ModuleContext, top: bool) -> FactsFlow:
        return super()._module_out_facts(facts, ctx, False)
