r"""``Aggregate``: message passing over a graph, the layer of graph neural networks.

Each example comes with a (weighted, directed) adjacency matrix :math:`A` of its nodes,
``A[i, j] = w`` for an edge from node ``i`` (the tail) to node ``j`` (the head). The
layer replaces every node by the weighted sum of its predecessors, on every channel:

.. math::
    y_j = \sum_i A_{ij}\, x_i, \qquad y = A^\top x \text{ along the node axis}

(``torch.einsum("bic,bij->bjc", x, A)`` for inputs ``(n, L, C)``). This is the dense
implementation of Neural Tangents' ``stax.Aggregate``. The map is linear and has no
parameters, so for a pair of examples with adjacency :math:`A_1` and :math:`A_2`

.. math::
    K' = A_1^\top K A_2, \qquad \Theta' = A_1^\top \Theta A_2

over the pair of node axes, and each example's covariance with itself becomes
:math:`A^\top K A` with its own adjacency. The layer needs the full covariance between
nodes (``layout="full"``).

The adjacency travels with the inputs: ``net.kernel(x, pattern=A)`` with ``A`` of shape
``(n, L, L)``, ``net.kernel(x1, x2, pattern=(A1, A2))``, ``net.kernel_diag(x,
pattern=A)``. The finite twin reads it from :func:`graph_pattern`::

    model = net.module(x.shape[1:], width=512)
    with nk.graph_pattern(A):
        y = model(x)
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import as_tensor
from ..core.block import KernelBlock
from ..core.protocol import Facts, FactsFlow, Flow, ModuleContext, Requirements, Spatial
from ..errors import (
    HyperparameterError,
    InputTypeError,
    LayerCompatibilityError,
    ShapeError,
    describe,
)
from .base import Layer, one_block, one_facts

__all__ = ["Aggregate", "AggregateModule", "graph_pattern"]

_PATTERN: contextvars.ContextVar[Tensor | None] = contextvars.ContextVar(
    "neural_kernels_graph_pattern", default=None
)


@contextlib.contextmanager
def graph_pattern(pattern: Any) -> Iterator[Tensor]:
    """Give the finite twins of :class:`Aggregate` layers their graph adjacency.

    Inside the ``with`` block every :class:`AggregateModule` (the finite twin of
    :class:`Aggregate`) aggregates with ``pattern``; outside it, calling one is an error.
    Blocks nest (the innermost wins) and are local to the thread or task (a
    :mod:`contextvars` variable), so the module itself holds no state.

    Args:
        pattern: adjacency of the batch about to be fed, shape ``(n, L, L)`` with
            ``pattern[b, i, j]`` the weight of the edge from node ``i`` to node ``j`` of
            example ``b`` (``L`` is the product of the aggregated axes' sizes).

    Yields:
        The pattern as a tensor.

    Example:
        >>> import torch, neural_kernels as nk
        >>> net = nk.Sequential(nk.Dense(64), nk.ReLU(), nk.Aggregate(), nk.Dense(1))
        >>> x, a = torch.randn(2, 5, 3), (torch.rand(2, 5, 5) < 0.5).float()
        >>> model = net.module(x.shape[1:])
        >>> with nk.graph_pattern(a):
        ...     y = model(x)
        >>> y.shape
        torch.Size([2, 5, 1])

    Per-example functions (``torch.func.vmap`` over examples, as for per-example
    Jacobians) enter the block inside the mapped function with the example's own
    adjacency, ``pattern[b : b + 1]``.

    """
    # Tensors are taken as they are (no finiteness check, which would read their values
    # and so fail inside torch.func transforms); arrays and lists are converted.
    t = pattern if isinstance(pattern, Tensor) else as_tensor(pattern, "pattern", "graph_pattern")
    if t.ndim != 3 or t.shape[1] != t.shape[2]:
        raise ShapeError(
            describe(
                "graph_pattern",
                f"pattern has shape {tuple(t.shape)}",
                "Pass one square adjacency matrix per example: shape (n, L, L).",
            )
        )
    token = _PATTERN.set(t)
    try:
        yield t
    finally:
        _PATTERN.reset(token)


def _node_axes(layer: Aggregate, shape: tuple[int, ...], channels_first: bool) -> tuple[int, ...]:
    """Spatial indices (``0`` = the first spatial axis) that ``layer`` aggregates over."""
    ndim = len(shape) + 1  # the input tensor, batch included
    channel = 1 if channels_first else ndim - 1
    spatial = [a for a in range(1, ndim) if a != channel]
    if layer.aggregate_axis is None:
        axes = spatial
    else:
        given = (
            (layer.aggregate_axis,)
            if isinstance(layer.aggregate_axis, int)
            else tuple(layer.aggregate_axis)
        )
        axes = []
        for a in given:
            if not -ndim <= a < ndim or a % ndim not in spatial:
                raise LayerCompatibilityError(
                    describe(
                        repr(layer),
                        f"aggregate_axis={layer.aggregate_axis!r} for inputs (n, *{shape}) "
                        f"with channels {'first' if channels_first else 'last'}",
                        f"Aggregate over node axes of the input tensor, batch included: "
                        f"one or more of {spatial} (not the batch axis 0 nor the channel "
                        f"axis {channel}).",
                    )
                )
            axes.append(a % ndim)
        if len(set(axes)) != len(axes):
            raise HyperparameterError(
                describe(
                    repr(layer),
                    f"aggregate_axis={layer.aggregate_axis!r} repeats an axis",
                    "Name every node axis once.",
                )
            )
        axes = sorted(axes)
    return tuple(spatial.index(a) for a in axes)


def _matmul_nodes(t: Tensor, a: Tensor, batch_dim: int, axes: list[int]) -> Tensor:
    r"""Contract the node axes of ``t`` with ``a``: ``out[.., j] = sum_i t[.., i] a[i, j]``.

    ``a`` has shape ``(B, P, P)`` with ``B = t.shape[batch_dim]`` (one adjacency per
    example along ``batch_dim``) and ``P`` the product of the sizes of ``axes``
    (flattened row-major).
    """
    k = len(axes)
    dest = [0, *range(t.ndim - k, t.ndim)]
    moved = t.movedim([batch_dim, *axes], dest)
    shape = moved.shape
    p = math.prod(shape[t.ndim - k :])
    out = torch.bmm(moved.reshape(shape[0], -1, p), a)
    return out.reshape(shape).movedim(dest, [batch_dim, *axes])


@dataclass(frozen=True)
class Aggregate(Layer):
    r"""Graph aggregation ``y_j = sum_i A_ij x_i`` over the node axes, as NT's ``Aggregate``.

    Args:
        aggregate_axis: the node axes of the input tensor (batch included), an int or a
            tuple; ``None`` (default) aggregates over every axis that is neither the
            batch nor the channel axis. For node features ``(n, L, C)`` it is ``1``.
            Several axes are flattened row-major into one node index, so the adjacency
            of ``(n, H, W, C)`` inputs aggregated over ``(1, 2)`` is ``(n, H*W, H*W)``.
        batch_axis: must be ``0`` (PyTorch layout); accepted for Neural Tangents users.
        channel_axis: the channel axis of the input tensor: ``-1`` (default; after a
            ``Dense``, channels last) or ``1`` (after a ``Conv``, channels first).

    Kernel (dense implementation; :math:`A_1`, :math:`A_2` the adjacency of the two
    examples of a pair, ``(L, L)`` each):

    .. math::
        K' = A_1^\top K A_2, \qquad \Theta' = A_1^\top \Theta A_2 .

    The adjacency is passed with the inputs: ``net.kernel(x, pattern=A)`` (``A`` of
    shape ``(n, L, L)``), ``net.kernel(x1, x2, pattern=(A1, A2))``,
    ``net.kernel_diag(x, pattern=A)``. The finite twin (:class:`AggregateModule`) reads
    it from the :func:`graph_pattern` context manager.

    Shapes: the output has the input's shape.

    Raises:
        InputTypeError: no adjacency was passed to ``kernel()`` (or, for the twin, the
            call is outside ``with graph_pattern(...)``).
        ShapeError: the adjacency's node count differs from the inputs'.

    """

    aggregate_axis: int | tuple[int, ...] | None = None
    batch_axis: int = 0
    channel_axis: int = -1

    def __post_init__(self) -> None:
        if self.batch_axis != 0:
            raise HyperparameterError(
                describe(
                    repr(self),
                    f"batch_axis={self.batch_axis!r}",
                    "Inputs follow PyTorch's layout with the batch on axis 0: use batch_axis=0.",
                )
            )
        if isinstance(self.channel_axis, bool) or self.channel_axis not in (1, -1):
            raise HyperparameterError(
                describe(
                    repr(self),
                    f"channel_axis={self.channel_axis!r}",
                    "Use channel_axis=-1 (channels last, after a Dense) or 1 (channels "
                    "first, after a Conv).",
                )
            )
        bad = self.aggregate_axis
        if bad is not None:
            items = (bad,) if isinstance(bad, int) else bad
            if (
                not isinstance(items, tuple)
                or not items
                or any(isinstance(a, bool) or not isinstance(a, int) for a in items)
            ):
                raise HyperparameterError(
                    describe(
                        repr(self),
                        f"aggregate_axis={bad!r}",
                        "Give aggregate_axis as an int, a non-empty tuple of ints, or None.",
                    )
                )

    @property
    def _channels_first(self) -> bool:
        return self.channel_axis == 1

    @property
    def requirements(self) -> Requirements:  # type: ignore[override]
        """Mixes nodes (the full covariance); reads raw inputs with its own channel axis."""
        return Requirements(channel_axis=0 if self._channels_first else -1, spatial=Spatial.MIXING)

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        if len(facts.shape) < 2:
            raise ShapeError(
                describe(
                    repr(self),
                    f"its input has feature shape {facts.shape}, with no node axis",
                    "Aggregate takes node features (n, L, C) (or (n, C, L) after a Conv "
                    "with channel_axis=1); put it before Flatten or global pooling.",
                )
            )
        if facts.channel_axis is not None and (facts.channel_axis == 0) != self._channels_first:
            have = "first (after a Conv)" if facts.channel_axis == 0 else "last (after a Dense)"
            fix = 1 if facts.channel_axis == 0 else -1
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"its input has channels {have}, feature shape {facts.shape}, but "
                    f"channel_axis={self.channel_axis}",
                    f"Pass channel_axis={fix}.",
                )
            )
        _node_axes(self, facts.shape, self._channels_first)
        axis = facts.channel_axis
        if axis is None:
            axis = 0 if self._channels_first else -1
        return Facts(facts.shape, facts.is_gaussian, axis)

    def _nodes(self, k: KernelBlock) -> tuple[tuple[int, ...], int]:
        """Aggregated spatial indices and their number of nodes for kernel ``k``."""
        axes = _node_axes(self, k.shape1, k.channel_axis == 0)
        sizes = k.spatial_shape
        return axes, math.prod(sizes[i] for i in axes)

    def _check_pattern(self, pattern: Tensor | None, name: str, nodes: int, n: int) -> Tensor:
        if pattern is None:
            raise InputTypeError(
                describe(
                    repr(self),
                    "no graph adjacency was given",
                    "Pass pattern=... to kernel(): an (n, L, L) tensor for kernel(x, "
                    "pattern=A) and kernel_diag(x, pattern=A), or a pair "
                    "pattern=(A1, A2) for kernel(x1, x2, pattern=(A1, A2)).",
                )
            )
        if pattern.shape[0] != n or pattern.shape[-1] != nodes or pattern.shape[-2] != nodes:
            raise ShapeError(
                describe(
                    repr(self),
                    f"{name} has shape {tuple(pattern.shape)} but the inputs here have "
                    f"{nodes} nodes",
                    f"Pass one ({nodes}, {nodes}) adjacency matrix per example "
                    "(node axes flattened row-major).",
                )
            )
        return pattern

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        axes, nodes = self._nodes(k)
        n1 = k.cov1.shape[0]
        n2 = k.cov2.shape[0]
        a1 = self._check_pattern(k.pattern1, "pattern1", nodes, n1)
        a2 = self._check_pattern(k.pattern2, "pattern2", nodes, n2)
        a1 = a1.to(k.dtype)
        a2 = a1 if k.pattern2 is k.pattern1 else a2.to(k.dtype)

        def both(t: Tensor, lead: int, first: Tensor, second: Tensor) -> Tensor:
            # full interleaved layout: spatial axis i sits at lead + 2i (first input) and
            # lead + 2i + 1 (second input)
            t = _matmul_nodes(t, first, 0, [lead + 2 * i for i in axes])
            return _matmul_nodes(t, second, lead - 1, [lead + 2 * i + 1 for i in axes])

        lead = 1 if k.self_pairs else 2
        same = k.cov2 is k.cov1 and a2 is a1
        cov1 = both(k.cov1, 1, a1, a1)
        return k.replace(
            nngp=both(k.nngp, lead, a1, a2),
            ntk=None if k.ntk is None else both(k.ntk, lead, a1, a2),
            cov1=cov1,
            cov2=cov1 if same else both(k.cov2, 1, a2, a2),
        )

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        shape = tuple(int(s) for s in in_shape)
        spatial = _node_axes(self, shape, self._channels_first)
        offset = 2 if self._channels_first else 1
        return AggregateModule(tuple(offset + i for i in spatial))


class AggregateModule(nn.Module):
    """Finite twin of :class:`Aggregate`: ``y_j = sum_i A_ij x_i`` over the node axes.

    The adjacency ``A`` (shape ``(n, L, L)``, one per example of the batch) is not an
    argument of ``forward`` (the twin is an ``nn.Sequential``): it is read from the
    enclosing :func:`graph_pattern` block::

        with nk.graph_pattern(A):
            y = model(x)

    Args:
        axes: the node axes of the input tensor (batch included), flattened row-major.

    """

    def __init__(self, axes: tuple[int, ...]) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: Tensor) -> Tensor:
        """Aggregate ``x`` with the adjacency of the enclosing :func:`graph_pattern`."""
        a = _PATTERN.get()
        if a is None:
            raise InputTypeError(
                describe(
                    "AggregateModule",
                    "called without a graph adjacency",
                    "Wrap the call in `with nk.graph_pattern(A): model(x)`, with A of shape "
                    "(n, L, L).",
                )
            )
        nodes = math.prod(x.shape[ax] for ax in self.axes)
        if a.shape != (x.shape[0], nodes, nodes):
            raise ShapeError(
                describe(
                    "AggregateModule",
                    f"adjacency of shape {tuple(a.shape)} for inputs of shape "
                    f"{tuple(x.shape)} ({nodes} nodes on axes {self.axes})",
                    f"Pass graph_pattern(A) with A of shape ({x.shape[0]}, {nodes}, {nodes}) "
                    "for this batch.",
                )
            )
        return _matmul_nodes(x, a.to(x.dtype), 0, list(self.axes))

    def extra_repr(self) -> str:
        return f"axes={self.axes}"
