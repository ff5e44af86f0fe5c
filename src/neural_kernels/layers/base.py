"""``Layer``: the base class of every layer, and the public methods they all share.

A layer is a small immutable description (a frozen dataclass). It knows

* how it transforms a kernel block at infinite width: :meth:`Layer.transform`;
* how to build its finite ``torch.nn.Module`` of any width and parametrization:
  :meth:`Layer.make_module`;
* what it needs from its input, declared once in :attr:`Layer.requirements` and checked
  by the plan fold (:mod:`neural_kernels.core.plan`) before any arithmetic, and its
  output facts: :meth:`Layer.infer_facts`.

Every layer inherits :meth:`Layer.kernel`, :meth:`Layer.kernel_diag`,
:meth:`Layer.module` and :meth:`Layer.out_shape`. The combinators that wire layers into
networks are in :mod:`neural_kernels.layers.combinators`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Union, overload

import torch
from torch import Tensor, nn

from .._validation import check_module_options
from ..core import engine

if TYPE_CHECKING:
    from .._native.chain import ChainOp
    from ..store.stored import StoredKernel
from ..core.block import KernelBlock
from ..core.plan import fold, holds_width, plan_network
from ..core.protocol import (
    Composition,
    Facts,
    FactsFlow,
    Flow,
    ModuleContext,
    Requirements,
    Spatial,
    Variances,
)
from ..errors import HyperparameterError, LayerCompatibilityError, describe
from ..kernel import Kernel

__all__ = ["Facts", "Layer", "ModuleContext", "Requirements", "one_block", "one_facts"]

Get = Union[str, Sequence[str]]  # noqa: UP007 (runtime alias, Python 3.10)
Progress = Callable[[int, int], None]

#: Neural Tangents' spellings of layer arguments, and this library's.
_NT_SPELLINGS = {
    "W_std": "w_std",
    "W_key_std": "w_key_std",
    "W_value_std": "w_value_std",
    "W_query_std": "w_query_std",
    "W_out_std": "w_out_std",
    "W_pos_emb_std": "w_pos_emb_std",
    "parameterization": "parametrization",
    "filter_shape": "kernel_size",
    "window_shape": "kernel_size",
    "strides": "stride",
    "out_dim": "out_features",
    "out_chan": "out_channels",
    "rate": "p (the drop probability, 1 - rate)",
    "dimension_numbers": "the channels-first layout (N, C, *spatial) of torch",
    "batch_axis": "nothing: the batch axis is always the first",
    "channel_axis": "ChannelsLast() / ChannelsFirst() to move the channel axis",
    "do_clip": "nothing: the correlation is always clipped to [-1, 1]",
    "precision": "the inputs' dtype (float64 recommended)",
}
#: Class attributes of earlier versions, now fields of ``Requirements``.
_LEGACY = {
    "input_channel_axis": lambda v: {"channel_axis": v},
    "needs_full": lambda v: {"spatial": Spatial.MIXING} if v else {},
    "collapses_spatial": lambda v: {"spatial": Spatial.COLLAPSES} if v else {},
    "has_width": lambda v: {"has_width": bool(v)},
    "variance_replay": lambda v: {"variances": {"no": Variances.CARRY}.get(v, Variances(v))},
}


class Layer:
    """Base class of every layer: an immutable description of one part of a network.

    Subclasses are frozen dataclasses. A leaf implements :meth:`transform`,
    :meth:`make_module` and, when it changes them, :meth:`infer_facts`; it declares
    what it needs in :attr:`requirements`. Shared checks live in the plan fold, once.
    """

    #: What the layer needs from its input (checked before any arithmetic).
    requirements: ClassVar[Requirements] = Requirements()
    #: Leaf, or a serial or parallel combination of :meth:`children`.
    composition: ClassVar[Composition] = Composition.LEAF
    #: Former names of this library's own arguments, still accepted with a warning.
    deprecated_names: ClassVar[frozenset[str]] = frozenset()

    def __new__(cls, *args: Any, **kwargs: Any) -> Layer:
        """Refuse Neural Tangents' argument names with the name to use instead."""
        if kwargs:
            accepted = _parameters(cls)  # type: ignore[arg-type]  # a class is hashable
            for name in kwargs:
                if name in _NT_SPELLINGS and name not in accepted | cls.deprecated_names:
                    raise HyperparameterError(
                        describe(
                            f"{cls.__name__}(...)",
                            f"got the keyword {name!r} (Neural Tangents' spelling)",
                            f"Use {_NT_SPELLINGS[name]} instead; see "
                            "docs/migrating_from_neural_tangents.md.",
                        )
                    )
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _inherit_docstrings(cls)
        legacy = {name: cls.__dict__[name] for name in _LEGACY if name in cls.__dict__}
        if legacy:
            warnings.warn(
                f"{cls.__name__} sets {sorted(legacy)}: these class attributes are "
                "deprecated; declare requirements = Requirements(...) instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            changes: dict[str, Any] = {}
            for name, value in legacy.items():
                changes.update(_LEGACY[name](value))
            cls.requirements = dataclasses.replace(cls.requirements, **changes)

    # -- to implement ------------------------------------------------------------------

    def transform(self, k: Flow) -> Flow:
        """Map the input kernel block to the output kernel block at infinite width."""
        raise NotImplementedError

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        """Build the finite twin of this layer for inputs of feature shape ``in_shape``."""
        raise NotImplementedError

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        """The output facts for input facts that satisfy :attr:`requirements`."""
        return facts

    def children(self) -> tuple[Layer, ...]:
        """The layers this layer is made of, in order (empty for a leaf)."""
        return ()

    def fuse_next(
        self, k: KernelBlock, nxt: Any, variances: tuple[Tensor, Tensor]
    ) -> KernelBlock | None:
        """Run this layer and ``nxt`` in one step, given the exact variances after this layer.

        Returns ``None`` (the default) when there is no fused implementation; ``Conv``
        followed by a ReLU-like activation has one (see ``neural_kernels._native``).
        """
        return None

    def chain_op(self, facts: Facts) -> ChainOp | None:
        """The layer as one op of the compiled per-chunk chain, for input ``facts``.

        The engine runs a network's whole chain in one compiled call per chunk of the
        full layout when every step has one (see ``neural_kernels._native.chain``);
        ``None`` (the default) keeps the network on the per-layer path.
        """
        return None

    def tensors(self) -> Iterator[Tensor]:
        """Tensors among this layer's own fields (hyperparameters that may need grad)."""
        for value in vars(self).values():
            if isinstance(value, Tensor):
                yield value

    # -- public ----------------------------------------------------------------------

    def hyperparameters(self) -> Iterator[Tensor]:
        """Tensors among the fields of this layer and the layers it is made of."""
        yield from self.tensors()
        for child in self.children():
            yield from child.hyperparameters()

    def infer(self, facts: FactsFlow) -> FactsFlow:
        """Check the declared requirements against ``facts`` and return the output facts.

        Raises:
            LayerCompatibilityError: the input is not what a layer needs.
            ShapeError: the input has a feature rank a layer does not accept.

        """
        return fold(self, facts)

    def out_shape(self, in_shape: Sequence[int]) -> tuple[int, ...]:
        """Feature shape of the output for inputs of feature shape ``in_shape`` (no batch)."""
        shape = tuple(int(s) for s in in_shape)
        plan = plan_network(self, shape, lambda: repr(self))
        if isinstance(plan.out, tuple):  # pragma: no cover (plan_network refuses it)
            raise LayerCompatibilityError(describe(repr(self), "branches", "End them."))
        return plan.out.shape

    @overload
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
        mask_constant: Any = None,
        store: None = None,
        client: None = None,
        scheduler: None = None,
    ) -> Kernel: ...

    @overload
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
        mask_constant: Any = None,
        store: str | os.PathLike[str],
        client: Any = None,
        scheduler: Any = None,
    ) -> StoredKernel: ...

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
        mask_constant: Any = None,
        store: str | os.PathLike[str] | None = None,
        client: Any = None,
        scheduler: Any = None,
    ) -> Kernel | StoredKernel:
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
            mask_constant: input masking as Neural Tangents' ``mask_constant``: entries
                equal to it (``NaN`` matches ``NaN``) are masked, e.g. the padding of
                sequences of different lengths; see :mod:`neural_kernels.layers.masking`
                for the layers that accept masks and what they do.
            store: a folder path: compute the kernel block by block into a zarr store
                there (resuming a previous run) and return a
                :class:`~neural_kernels.store.StoredKernel` (needs the ``scale`` extra;
                see :mod:`neural_kernels.store`; ``pattern`` is not supported).
            client: with ``store``, a ``dask.distributed.Client`` running the blocks.
            scheduler: with ``store``, ``"local"`` (a ``LocalCluster``) or an address.

        Returns:
            A :class:`~neural_kernels.kernel.Kernel` with ``nngp`` and ``ntk`` of shape
            ``(n1, n2)`` (``ntk`` is ``None`` unless asked for), ``cov1`` of shape
            ``(n1,)``, ``cov2`` of shape ``(n2,)``, plus the layout's axis pairs for
            spatial outputs. The dtype is the inputs' (integers become float64). With
            ``x2=None`` the pairs of an example with itself equal :meth:`kernel_diag`.

        Raises:
            NonFiniteError: the inputs hold NaN/inf, or the kernel overflows at some
                layer (the message names the layer and what to change).

        """
        if mask_constant is not None:
            _refuse_mask_options(self, store, client, scheduler, pattern)
            from .masking import compute_masked_kernel

            return compute_masked_kernel(
                self,
                x1,
                x2,
                get,
                mask_constant,
                layout=layout,
                memory_budget=memory_budget,
                block_size=block_size,
                progress=progress,
            )
        if store is not None or client is not None or scheduler is not None:
            from .._optional import require_scale

            path = require_scale("kernel(store=...)", store, pattern)
            from ..store import compute_stored

            return compute_stored(
                self,
                x1,
                x2,
                get,
                path,
                memory_budget=memory_budget,
                block_size=block_size,
                progress=progress,
                layout=layout,
                client=client,
                scheduler=scheduler,
            )
        return engine.compute_kernel(
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
        mask_constant: Any = None,
    ) -> Kernel:
        """The kernels ``k(x_i, x_i)`` without building the ``n x n`` matrix.

        Args:
            x: inputs of shape ``(n, *features)``.
            get: ``"nngp"``, ``"ntk"`` or both.
            pattern: graph adjacency ``(n, L, L)`` for ``Aggregate`` layers.
            layout: as in :meth:`kernel`.
            mask_constant: input masking, as in :meth:`kernel`.

        Returns:
            A :class:`~neural_kernels.kernel.Kernel` with ``self_pairs=True`` whose
            ``nngp`` and ``ntk`` have shape ``(n,)`` (plus axis pairs for spatial outputs).

        """
        if mask_constant is not None:
            _refuse_mask_options(self, None, None, None, pattern)
            from .masking import compute_masked_kernel

            return compute_masked_kernel(
                self, x, None, get, mask_constant, layout=layout, diagonal=True
            )
        return engine.compute_kernel_diag(self, x, get, pattern, layout)

    def module(
        self,
        in_shape: Sequence[int] | int,
        width: int | None = None,
        parametrization: Any = None,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        base_width: int | None = None,
    ) -> nn.Module:
        """The finite twin: a ``torch.nn.Module`` initialised as the parametrization says.

        Args:
            in_shape: feature shape of one input (no batch axis), e.g. ``x.shape[1:]``.
            width: overrides every hidden width; the readout (the last ``Dense``) keeps
                its own.
            parametrization: ``"ntk"`` or ``"standard"`` for every layer; ``None`` keeps
                each layer's own. ``"mup"``, ``"mean_field"`` or an ``nk.abc.ABC`` build
                an abc-parametrized twin (see :mod:`neural_kernels.abc`).
            generator: random generator for the initialisation (reproducible twins).
            dtype: dtype of the parameters (default: torch's default dtype).
            device: device of the parameters.
            base_width: the width at which an abc-parametrized twin equals the standard
                one (as ``mup``'s base shapes); given, the twin is built by
                :mod:`neural_kernels.abc` whatever the parametrization.

        Returns:
            A module mapping ``(n, *in_shape)`` to ``(n, *out_shape(in_shape))``.

        """
        if base_width is not None or parametrization not in (None, "ntk", "standard"):
            from ..abc._twin import build_twin  # abc-parametrizations: muP, mean field, ABC

            return build_twin(
                self, in_shape, width, parametrization, base_width, generator,
                dtype=dtype, device=device,
            )  # fmt: skip
        shape = (int(in_shape),) if isinstance(in_shape, int) else tuple(int(s) for s in in_shape)
        plan = plan_network(self, shape, lambda: repr(self))  # checks the network first
        ctx = check_module_options(
            self, width, parametrization, generator, dtype, device, plan.input_channel_axis
        )
        return self._top_module(shape, ctx)

    # -- finite twins: shapes follow the widths actually built -------------------------

    def _top_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        """Build the twin of this layer as the whole network (its readout keeps its width)."""
        return self.make_module(in_shape, ctx.without_width() if self._owns_width() else ctx)

    def _owns_width(self) -> bool:
        return self.requirements.has_width

    def module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        """Feature shape of the output of ``make_module(in_shape, ctx)`` (a list for branches).

        The declared output shape for layers without a width; a layer that owns a width
        overrides it to honour ``ctx.width``.
        """
        return shape_of(self.infer(facts_of(in_shape, ctx.channel_axis)))

    def _top_module_out_shape(self, in_shape: Any, ctx: ModuleContext) -> Any:
        """Feature shape of the output of ``_top_module(in_shape, ctx)``."""
        return self.module_out_shape(in_shape, ctx.without_width() if self._owns_width() else ctx)

    def _module_out_facts(self, facts: FactsFlow, ctx: ModuleContext, top: bool) -> FactsFlow:
        """The facts of the twin's output: the declared ones, with the twin's shapes.

        ``facts`` carry the twin's input shapes (widths overridden by ``ctx.width``);
        combinators thread them through their children instead.
        """
        shape = shape_of(facts)
        twin = self._top_module_out_shape(shape, ctx) if top else self.module_out_shape(shape, ctx)
        return with_shapes(self.infer(facts), twin)

    def _holds_width(self) -> bool:
        return holds_width(self)


@functools.cache
def _parameters(cls: type) -> frozenset[str]:
    """Names ``cls(...)`` accepts (its ``__init__`` parameters)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover (builtins without a signature)
        return frozenset()
    return frozenset(params)


#: Methods whose overrides take the base class's docstring when they have none.
_DOCUMENTED = ("transform", "make_module", "infer_facts", "fn", "dual", "dual_var", "dual_kernels")


def _inherit_docstrings(cls: type) -> None:
    """Give overriding protocol methods without a docstring their base's (for ``help``)."""
    for name in _DOCUMENTED:
        method = cls.__dict__.get(name)
        if method is None or getattr(method, "__doc__", None):
            continue
        for base in cls.__mro__[1:]:
            doc = getattr(base.__dict__.get(name), "__doc__", None)
            if doc:
                method.__doc__ = doc
                break


def _refuse_mask_options(
    layer: object, store: Any, client: Any, scheduler: Any, pattern: Any
) -> None:
    """Options that input masking does not combine with: refuse them."""
    for name, value in (
        ("store", store),
        ("client", client),
        ("scheduler", scheduler),
        ("pattern", pattern),
    ):
        if value is not None:
            raise LayerCompatibilityError(
                describe(
                    repr(layer),
                    f"mask_constant together with {name}=...",
                    f"Masked kernels are computed in memory without {name}: drop one of them.",
                )
            )


def one_block(layer: object, k: Flow) -> KernelBlock:
    """``k`` as one kernel block; branches are refused (the plan fold prevents them)."""
    if isinstance(k, tuple):
        raise LayerCompatibilityError(
            describe(
                repr(layer),
                f"received {len(k)} branches from a FanOut",
                "Combine the branches first with FanInSum, FanInProduct or FanInConcat.",
            )
        )
    return k


def one_facts(layer: object, facts: FactsFlow) -> Facts:
    """``facts`` of one input; branches are refused (the plan fold prevents them)."""
    if isinstance(facts, tuple):
        raise LayerCompatibilityError(
            describe(
                repr(layer),
                f"received {len(facts)} branches from a FanOut",
                "Combine the branches first with FanInSum, FanInProduct or FanInConcat.",
            )
        )
    return facts


def facts_of(shape: Any, channel_axis: int | None = None) -> FactsFlow:
    """Facts of a twin's input of feature shape ``shape`` (a list for branches)."""
    if isinstance(shape, list):  # independent branches: the network is checked already
        return tuple(
            Facts(tuple(s), True, channel_axis, sources=frozenset({object()})) for s in shape
        )
    return Facts(tuple(shape), True, channel_axis, sources=frozenset({object()}))


def shape_of(facts: FactsFlow) -> Any:
    """Feature shape(s) of ``facts`` (a list for branches)."""
    if isinstance(facts, tuple):
        return [f.shape for f in facts]
    return facts.shape


def with_shapes(facts: FactsFlow, shape: Any) -> FactsFlow:
    """``facts`` with their shapes replaced (the twin's, when widths are overridden)."""
    if isinstance(facts, tuple):
        return tuple(
            dataclasses.replace(f, shape=tuple(s)) for f, s in zip(facts, shape, strict=True)
        )
    return dataclasses.replace(facts, shape=tuple(shape))


#: Combinators that lived in this module before ``layers/combinators.py``.
_MOVED = frozenset(
    {"FanInConcat", "FanInProduct", "FanInSum", "FanOut", "Identity", "Parallel", "Residual"}
    | {"Sequential"}
)


def __getattr__(name: str) -> Any:
    """The combinators' former home: still importable from here, with a warning."""
    if name in _MOVED:
        from . import combinators

        warnings.warn(
            f"neural_kernels.layers.base.{name} is deprecated: import it from "
            f"neural_kernels (nk.{name}) or neural_kernels.layers.combinators.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(combinators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
