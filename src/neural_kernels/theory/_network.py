"""Read a fully connected nk network as the chain the finite-width theory covers.

The recursions of :mod:`neural_kernels.theory` hold for

.. code-block:: python

    nk.Sequential(nk.Dense(n1, w, b), act1, nk.Dense(n2, w, b), act2, ..., nk.Dense(nL, w, b))

(nested ``Sequential`` are flattened; ``Identity`` is skipped): layer ``l`` has the
preactivations ``z^(l)``, ``C_W = w_std^2`` and ``C_b = b_std^2``. Anything else is
refused with the offending layer named.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import (
    HyperparameterError,
    LayerCompatibilityError,
    NonFiniteError,
    ShapeError,
    describe,
)
from ..layers import Dense, Elementwise, Identity, Layer, Sequential

__all__ = ["Chain", "chain_network", "check_inputs", "check_width", "input_gram", "read_chain"]


def chain_network(
    activation: Layer, depth: int, width: int, w_std: float, b_std: float = 0.0
) -> Sequential:
    """``Sequential(Dense, act, Dense, ..., act, Dense)``: ``depth`` Dense layers of ``width``."""
    layers: list[Layer] = [Dense(width, w_std=w_std, b_std=b_std)]
    for _ in range(depth - 1):
        layers += [activation, Dense(width, w_std=w_std, b_std=b_std)]
    return Sequential(*layers)


@dataclass(frozen=True)
class Chain:
    """A fully connected network as lists: ``L`` Dense layers, ``L - 1`` activations.

    Attributes:
        cw: ``C_W = w_std^2`` of each Dense layer (length ``L``).
        cb: ``C_b = b_std^2`` of each Dense layer (``0`` without bias).
        widths: ``out_features`` of each Dense layer (hidden widths, then the output's).
        acts: the activation after each hidden Dense layer (length ``L - 1``).
        parametrizations: the parametrization of each Dense layer.

    """

    cw: tuple[float, ...]
    cb: tuple[float, ...]
    widths: tuple[int, ...]
    acts: tuple[Elementwise, ...]
    parametrizations: tuple[str, ...]

    @property
    def depth(self) -> int:
        """``L``, the number of Dense layers."""
        return len(self.cw)

    def with_width(self, width: int | None, where: str) -> Chain:
        """The same chain with every hidden width replaced by ``width`` (if given)."""
        if width is None:
            return self
        check_width(width, where)
        widths = (*([int(width)] * (self.depth - 1)), self.widths[-1])
        return Chain(self.cw, self.cb, widths, self.acts, self.parametrizations)


def check_width(width: object, where: str) -> None:
    """Refuse widths that are not integers of at least one."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise HyperparameterError(
            describe(where, f"width={width!r}", "Pass a hidden width that is an integer >= 1.")
        )


def _flatten(layer: Layer) -> list[Layer]:
    if isinstance(layer, Sequential):
        out: list[Layer] = []
        for child in layer.layers:
            out += _flatten(child)
        return out
    if isinstance(layer, Identity):
        return []
    return [layer]


def _float(value: object) -> float:
    if isinstance(value, Tensor):
        return float(value.detach())
    return float(value)  # type: ignore[arg-type]


def read_chain(net: Layer, where: str) -> Chain:
    """The :class:`Chain` of ``net``, or a ``LayerCompatibilityError`` naming the layer."""
    layers = _flatten(net)
    fix = (
        "The finite-width theory covers nk.Sequential(Dense, activation, Dense, ..., Dense) "
        "with elementwise activations only."
    )
    if not layers or not isinstance(layers[0], Dense):
        first = repr(layers[0]) if layers else "nothing"
        raise LayerCompatibilityError(describe(where, f"the network starts with {first}", fix))
    cw, cb, widths, acts, params = [], [], [], [], []
    expect_dense = True
    for layer in layers:
        if expect_dense:
            if not isinstance(layer, Dense):
                raise LayerCompatibilityError(
                    describe(where, f"{layer!r} where a Dense layer was expected", fix)
                )
            cw.append(_float(layer.w_std) ** 2)
            cb.append(0.0 if layer.b_std is None else _float(layer.b_std) ** 2)
            widths.append(int(layer.out_features))
            params.append(layer.parametrization)
        else:
            if not isinstance(layer, Elementwise):
                raise LayerCompatibilityError(
                    describe(where, f"{layer!r} where an elementwise activation was expected", fix)
                )
            acts.append(layer)
        expect_dense = not expect_dense
    if expect_dense:
        raise LayerCompatibilityError(
            describe(where, f"the network ends with {layers[-1]!r}", fix + " End with Dense.")
        )
    return Chain(tuple(cw), tuple(cb), tuple(widths), tuple(acts), tuple(params))


def check_inputs(x: object, where: str) -> Tensor:
    """``x`` as a float64 ``(P, n0)`` tensor, or a ``ShapeError``."""
    t = torch.as_tensor(x).detach().to(torch.float64)
    if t.dim() != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ShapeError(
            describe(where, f"inputs of shape {tuple(t.shape)}", "Pass x of shape (P, n0).")
        )
    if not bool(torch.isfinite(t).all()):
        raise NonFiniteError(describe(where, "inputs with NaN or infinity", "Pass finite inputs."))
    return t


def input_gram(chain: Chain, x: Tensor) -> Tensor:
    """``K^(1) = C_b + C_W x x^T / n0`` (``(P, P)``, float64)."""
    return chain.cb[0] + chain.cw[0] * (x @ x.T) / x.shape[1]
