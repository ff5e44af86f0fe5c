r"""Which Gram matrices of a fully connected network a deep kernel machine learns.

A network ``Sequential(Dense_0, act_1, Dense_1, act_2, Dense_2, ..., act_L+1, Dense_L+1)``
(each activation optional) becomes a chain of Gram matrices:

* ``G_0`` after the first ``Dense`` is fixed, :math:`G_0 = \sigma_{w,0}^2 X X^\top / d +
  \sigma_{b,0}^2`: a linear map of the inputs' Gram of rank at most ``d + 1``, so it is
  the input layer, not a learned one;
* every later ``Dense`` but the last gives a learned Gram :math:`G_l` whose prior is the
  previous Gram mapped through the activation's dual and the ``Dense``,

  .. math::
      K(G_{l-1}) = \sigma_{w,l}^2\, \mathbb E_{(u, v) \sim \mathcal N(0, G_{l-1})}
          [\phi(u)\phi(v)] + \sigma_{b,l}^2

  (:math:`\sigma_{w,l}^2 G_{l-1} + \sigma_{b,l}^2` without an activation: a linear
  kernel);
* the last ``Dense`` maps :math:`G_L` to the output kernel :math:`K(G_L)`.

Each activation contributes its own dual from the layers (closed forms such as the
arc-cosine of ``ReLU``, ``Erf``, ``GELU``, ``RBF``; Gauss-Hermite quadrature for
``Activation``, ``Tanh``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import LayerCompatibilityError, describe
from ..layers._affine import affine, sq
from ..layers._elementwise import Elementwise
from ..layers._safe import safe_sqrt
from ..layers.base import Layer
from ..layers.combinators import Identity, Sequential
from ..layers.dense import Dense

__all__ = ["Architecture", "GramMap", "parse_network"]

WHERE = "nk.dkm.DKM"


@dataclass(frozen=True)
class GramMap:
    """One step ``G -> K(G)``: an optional activation's dual, then a ``Dense``'s affine map."""

    activation: Elementwise | None
    dense: Dense

    def _affine(self, k: Tensor) -> Tensor:
        b_std = self.dense.b_std
        return affine(k, sq(self.dense.w_std), None if b_std is None else sq(b_std))

    def _dual(self, k: Tensor, q1: Tensor, q2: Tensor) -> Tensor:
        act = self.activation
        if act is None:
            return k
        if not act.clamps_correlation:
            bound = safe_sqrt(q1 * q2)
            k = torch.minimum(torch.maximum(k, -bound), bound)
        return act.dual(k, q1, q2, False)[0]

    def full(self, g: Tensor) -> Tensor:
        """``K(G)`` for a square Gram ``g`` of shape ``(m, m)``; shape ``(m, m)``."""
        d = torch.diagonal(g)
        k = self._dual(g, d[:, None], d[None, :])
        k = self._affine(k)
        return 0.5 * (k + k.transpose(0, 1))

    def cross(self, g_ti: Tensor, g_t: Tensor, g_i: Tensor) -> Tensor:
        """``K_ti`` ``(b, m)`` from ``G_ti`` ``(b, m)``, ``diag G_tt`` ``(b,)``, ``diag G_ii``."""
        return self._affine(self._dual(g_ti, g_t[:, None], g_i[None, :]))

    def diag(self, g_t: Tensor) -> Tensor:
        """``diag K_tt`` from ``diag G_tt`` (shape ``(b,)``): the activation's variance map."""
        act = self.activation
        k = g_t if act is None else act.dual_var(g_t)
        return self._affine(k)


@dataclass(frozen=True)
class Architecture:
    """The parsed network: the input ``Dense``, the learned Gram maps and the output map."""

    input: Dense
    hidden: tuple[GramMap, ...]
    output: GramMap

    @property
    def n_outputs(self) -> int:
        """Width of the last ``Dense`` (the number of classes of a categorical DKM)."""
        return self.output.dense.out_features

    def input_full(self, x: Tensor) -> Tensor:
        """``G_0`` of inputs ``x`` ``(m, d)``: ``w^2 x x^T / d + b^2``; shape ``(m, m)``."""
        return self.input_cross(x, x)

    def input_cross(self, x1: Tensor, x2: Tensor) -> Tensor:
        """``G_0`` between ``x1`` ``(b, d)`` and ``x2`` ``(m, d)``; shape ``(b, m)``."""
        gram = x1 @ x2.transpose(0, 1) / x1.shape[1]
        b_std = self.input.b_std
        return affine(gram, sq(self.input.w_std), None if b_std is None else sq(b_std))

    def input_diag(self, x: Tensor) -> Tensor:
        """``diag G_0`` of ``x`` ``(b, d)``; shape ``(b,)``."""
        q = (x * x).sum(1) / x.shape[1]
        b_std = self.input.b_std
        return affine(q, sq(self.input.w_std), None if b_std is None else sq(b_std))


def _flatten(net: Layer) -> list[Layer]:
    if type(net) is Sequential:
        out: list[Layer] = []
        for child in net.children():
            out.extend(_flatten(child))
        return out
    if isinstance(net, Identity):
        return []
    return [net]


def _refuse(got: str) -> LayerCompatibilityError:
    return LayerCompatibilityError(
        describe(
            WHERE,
            got,
            "A deep kernel machine takes a fully connected network: nk.Sequential of Dense "
            "layers with at most one elementwise activation between two of them, starting "
            "and ending with Dense, e.g. nk.Sequential(nk.Dense(512), nk.ReLU(), "
            "nk.Dense(512), nk.ReLU(), nk.Dense(512), nk.ReLU(), nk.Dense(10)).",
        )
    )


def parse_network(net: object) -> Architecture:
    """Split ``net`` into the input ``Dense``, the learned Gram maps and the output map.

    Raises:
        LayerCompatibilityError: a layer that is not ``Dense``, an elementwise activation
            or ``Identity`` (named with its position), two activations in a row, a network
            that does not start and end with ``Dense``, or fewer than three ``Dense``
            layers (no Gram matrix to learn).

    """
    if not isinstance(net, Layer):
        raise _refuse(f"got {type(net).__name__}, not an nk layer")
    layers = _flatten(net)
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Dense, Elementwise)):
            raise _refuse(f"layer {i}, {layer!r}, is not fully connected")
    head = layers[0] if layers else None
    if not isinstance(head, Dense):
        raise _refuse(f"the network starts with {head!r}, not Dense")
    if not isinstance(layers[-1], Dense):
        raise _refuse(f"the network ends with {layers[-1]!r}, not Dense")
    maps: list[GramMap] = []
    pending: Elementwise | None = None
    for i, layer in enumerate(layers[1:], start=1):
        if isinstance(layer, Elementwise):
            if pending is not None:
                raise _refuse(
                    f"layers {i - 1} and {i}, {pending!r} and {layer!r}, are two activations "
                    "in a row (an activation's dual needs a Gaussian input)"
                )
            pending = layer
        elif isinstance(layer, Dense):
            maps.append(GramMap(pending, layer))
            pending = None
    if len(maps) < 2:
        raise _refuse(
            f"the network has {len(maps) + 1} Dense layer(s), so no Gram matrix to learn (the "
            "Gram after the first Dense is the fixed input layer, the last Dense gives the "
            "output kernel)"
        )
    return Architecture(head, tuple(maps[:-1]), maps[-1])
