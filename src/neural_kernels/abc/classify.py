r"""Which regime an abc-parametrization puts a network in (Tensor Programs IV, §3 and §5).

For an ``L``-hidden-layer network with exponents :math:`(a_l, b_l)` and one global ``c``
(a per-layer ``c`` is first made global by :meth:`ABC.with_global_c`), with exact rational
arithmetic throughout:

.. math::
    r = \min(a_{L+1} + b_{L+1},\, 2 a_{L+1} + c) + c - 1
        + \min_{l \le L} \bigl[2 a_l + \mathbb{1}(l = 1)\bigr]
    \qquad (\text{Def 3.2}; \ \Delta x^L_t = \Theta(n^{-r})).

* **stable** (Thm 3.3) iff :math:`a_1 + b_1 = 0`, :math:`a_l + b_l = 1/2` for
  :math:`2 \le l \le L`, :math:`a_{L+1} + b_{L+1} \ge 1/2`, :math:`r \ge 0`,
  :math:`2 a_{L+1} + c \ge 1` and :math:`a_{L+1} + b_{L+1} + r \ge 1`;
* **nontrivial** (Thm 3.4, when stable) iff :math:`a_{L+1} + b_{L+1} + r = 1` or
  :math:`2 a_{L+1} + c = 1`;
* for stable nontrivial parametrizations, **feature learning** iff :math:`r = 0` and
  **kernel regime** iff :math:`r > 0` (Thms 3.6, 3.8: the Dynamical Dichotomy);
* per layer, :math:`r_l` is :math:`r` with the minimum replaced by layer ``l``'s own term;
  :math:`W^l` (:math:`l \le L`) is **updated maximally** iff :math:`r_l = 0` (Prop 5.3);
  the readout is updated maximally iff :math:`2 a_{L+1} + c = 1` and **initialised
  maximally** iff :math:`a_{L+1} + b_{L+1} + r = 1` (Prop 5.5); a hidden or input layer is
  initialised maximally iff its stability equality holds. muP is the unique stable
  parametrization that is maximal everywhere (Thm 5.6).

The theorems assume a tanh- or gelu-like nonlinearity, training time ``O(1)`` and a fixed
input dimension; for linear networks the dichotomy can fail.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..errors import HyperparameterError, describe
from ._spec import ABC, as_abc

__all__ = ["Classification", "LayerRegime", "classify"]


@dataclass(frozen=True)
class LayerRegime:
    r"""One layer of a classified parametrization.

    Attributes:
        index: ``l`` in ``1 .. L+1``.
        role: ``"input"``, ``"hidden"`` or ``"output"``.
        r: the layer's exponent: its feature update is :math:`\Theta(n^{-r_l})` (for the
            readout, the exponent of its update's effect on the output).
        updated_maximally: Prop 5.3 (5.5 for the readout).
        initialized_maximally: the layer's stability equality (Prop 5.5 for the readout).

    """

    index: int
    role: str
    r: Fraction
    updated_maximally: bool
    initialized_maximally: bool


@dataclass(frozen=True)
class Classification:
    r"""The regime of an abc-parametrization at a depth (see the module docstring).

    Attributes:
        parametrization: the classified parametrization, with one global ``c``.
        depth: ``L``, the number of hidden layers.
        r: :math:`\Delta x^L_t = \Theta(n^{-r})`.
        stable, nontrivial, feature_learning, kernel_regime: Thms 3.3, 3.4, 3.6, 3.8.
        regime: ``"unstable"``, ``"trivial"``, ``"feature learning"`` or ``"kernel"``.
        maximal: every layer updated and initialised maximally (muP, Thm 5.6).
        layers: one :class:`LayerRegime` per layer, input first.

    """

    parametrization: ABC
    depth: int
    r: Fraction
    stable: bool
    nontrivial: bool
    feature_learning: bool
    kernel_regime: bool
    regime: str
    maximal: bool
    layers: tuple[LayerRegime, ...]

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers and strings (fractions as strings such as ``'1/2'``), for JSON."""
        return {
            "parametrization": self.parametrization.name,
            "depth": self.depth,
            "r": str(self.r),
            "stable": self.stable,
            "nontrivial": self.nontrivial,
            "feature_learning": self.feature_learning,
            "kernel_regime": self.kernel_regime,
            "regime": self.regime,
            "maximal": self.maximal,
            "layers": [
                {
                    "index": lay.index,
                    "role": lay.role,
                    "r": str(lay.r),
                    "updated_maximally": lay.updated_maximally,
                    "initialized_maximally": lay.initialized_maximally,
                }
                for lay in self.layers
            ],
        }


def classify(parametrization: Any, depth: int) -> Classification:
    """Classify an abc-parametrization of an MLP with ``depth`` hidden layers.

    Args:
        parametrization: a name (``"standard"``, ``"ntk"``, ``"mup"``, ``"mean_field"``)
            or an :class:`ABC`; ``"standard"`` means ``c = 0`` (plain SGD), use
            ``ABC.standard(c=1)`` for the stable variant.
        depth: ``L >= 1``, the number of hidden layers.

    Returns:
        A :class:`Classification` computed in exact rational arithmetic.

    Raises:
        ParametrizationError: an unknown name, or a one-hidden-layer parametrization
            (mean field) at ``depth > 1``.
        HyperparameterError: ``depth`` is not an integer >= 1.

    Example::

        >>> nk.abc.classify("mup", 3).regime
        'feature learning'

    """
    spec = as_abc(parametrization, "nk.abc.classify")
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise HyperparameterError(
            describe(
                "nk.abc.classify", f"depth={depth!r}", "Give the number of hidden layers, >= 1."
            )
        )
    L = int(depth)
    roles = ["input"] + ["hidden"] * (L - 1)
    glob = spec.with_global_c()
    groups = [glob.group(role) for role in roles]  # refuses mean field at depth > 1
    a_out, b_out, c = glob.group("output")
    terms = [2 * a + (1 if i == 0 else 0) for i, (a, _, _) in enumerate(groups)]
    head = min(a_out + b_out, 2 * a_out + c) + c - 1
    r = head + min(terms)

    init_eq = [(a + b) == (0 if i == 0 else Fraction(1, 2)) for i, (a, b, _) in enumerate(groups)]
    stable = (
        all(init_eq)
        and a_out + b_out >= Fraction(1, 2)
        and r >= 0
        and 2 * a_out + c >= 1
        and a_out + b_out + r >= 1
    )
    nontrivial = stable and (a_out + b_out + r == 1 or 2 * a_out + c == 1)
    feature_learning = nontrivial and r == 0
    kernel = nontrivial and r > 0
    regime = (
        "unstable"
        if not stable
        else "trivial"
        if not nontrivial
        else "feature learning"
        if feature_learning
        else "kernel"
    )

    layers = [
        LayerRegime(i + 1, role, head + t, head + t == 0, eq)
        for i, (role, t, eq) in enumerate(zip(roles, terms, init_eq, strict=True))
    ]
    layers.append(
        LayerRegime(L + 1, "output", 2 * a_out + c - 1, 2 * a_out + c == 1, a_out + b_out + r == 1)
    )
    maximal = stable and all(lay.updated_maximally and lay.initialized_maximally for lay in layers)
    return Classification(
        parametrization=glob,
        depth=L,
        r=r,
        stable=stable,
        nontrivial=nontrivial,
        feature_learning=feature_learning,
        kernel_regime=kernel,
        regime=regime,
        maximal=maximal,
        layers=tuple(layers),
    )
