r"""The weight and bias standard deviations of a network, read and replaced as a whole.

The integrations (:mod:`neural_kernels.gpytorch`, :mod:`neural_kernels.sklearn`) fit
:math:`\sigma_w` and :math:`\sigma_b` by marginal likelihood. They see a network as the list
of its layers that carry ``w_std`` (and ``b_std``) fields, in the order of the layer tree
(:func:`std_layers`), and rebuild it with new values, floats or 0-d tensors that may
require grad (:func:`with_stds`). Layers are immutable, so the rebuilt network is a new
tree sharing every layer without a std.

``tie="shared"`` gives one :math:`\sigma_w` and one :math:`\sigma_b` to every such layer;
``tie="per_layer"`` one pair per layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from .errors import HyperparameterError, InputTypeError, describe
from .layers.base import Layer
from .layers.combinators import Parallel, Sequential

__all__ = ["TIES", "StdLayer", "check_tie", "initial_stds", "std_layers", "with_stds"]

#: How the stds of a network are tied: one pair in all, or one pair per layer.
TIES = ("shared", "per_layer")

StdLayer = Layer


def check_tie(where: str, tie: str) -> str:
    """``tie`` if it is one of :data:`TIES`, else a :class:`HyperparameterError`."""
    if tie not in TIES:
        raise HyperparameterError(
            describe(where, f"got tie={tie!r}", f"Use one of {', '.join(map(repr, TIES))}.")
        )
    return tie


def check_network(where: str, net: Any) -> Layer:
    """``net`` if it is a layer (a network), else an :class:`InputTypeError`."""
    if not isinstance(net, Layer):
        raise InputTypeError(
            describe(
                where,
                f"got net of type {type(net).__name__}",
                "Pass a network built from neural_kernels layers, e.g. "
                "nk.Sequential(nk.Dense(1), nk.ReLU(), nk.Dense(1)).",
            )
        )
    return net


def _has_std(layer: Layer) -> bool:
    return (
        not layer.children()
        and dataclasses.is_dataclass(layer)
        and any(f.name == "w_std" for f in dataclasses.fields(layer))
    )


def std_layers(net: Layer) -> list[Layer]:
    """The leaf layers of ``net`` with a ``w_std`` field, in the order of the tree."""
    if _has_std(net):
        return [net]
    out: list[Layer] = []
    for child in net.children():
        out.extend(std_layers(child))
    return out


def initial_stds(net: Layer, tie: str) -> tuple[list[float], list[float | None]]:
    """The current ``(w_stds, b_stds)`` of ``net``: one entry each (shared) or one per layer.

    ``None`` stands for a layer without bias. Shared values are the first layer's.
    """
    layers = std_layers(net)
    ws = [_float(layer.w_std) for layer in layers]  # type: ignore[attr-defined]
    bs = [None if layer.b_std is None else _float(layer.b_std) for layer in layers]  # type: ignore[attr-defined]
    if tie == "shared":
        first_b = next((b for b in bs if b is not None), None)
        return ws[:1], [first_b]
    return ws, bs


def _float(value: float | Tensor) -> float:
    return float(value.detach()) if isinstance(value, Tensor) else float(value)


def with_stds(
    net: Layer,
    w_stds: Sequence[float | Tensor],
    b_stds: Sequence[float | Tensor | None],
) -> Layer:
    """``net`` with the i-th std layer's ``w_std``/``b_std`` replaced by the i-th values.

    One value each (length 1) sets every std layer. A layer without bias keeps none.
    """
    layers = std_layers(net)
    count = iter(range(len(layers)))

    def pick(values: Sequence[Any], i: int) -> Any:
        return values[0] if len(values) == 1 else values[i]

    def rebuild(layer: Layer) -> Layer:
        if _has_std(layer):
            i = next(count)
            changes: dict[str, Any] = {"w_std": pick(w_stds, i)}
            b = pick(b_stds, i)
            if layer.b_std is not None and b is not None:  # type: ignore[attr-defined]
                changes["b_std"] = b
            return dataclasses.replace(layer, **changes)  # type: ignore[type-var]
        if isinstance(layer, (Sequential, Parallel)):
            return type(layer)(*(rebuild(child) for child in layer.layers))
        return layer

    return rebuild(net)
