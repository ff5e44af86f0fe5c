r"""``ABC``: an abc-parametrization (Yang & Hu, Tensor Programs IV), per layer group.

A network with input layer :math:`W^1 \in \mathbb{R}^{n \times d}`, hidden layers
:math:`W^2, \dots, W^L \in \mathbb{R}^{n \times n}` and readout
:math:`W^{L+1} \in \mathbb{R}^{d_o \times n}` is abc-parametrized when

.. math::
    W^l = n^{-a_l} w^l, \qquad w^l_{ij} \sim \mathcal{N}(0, n^{-2 b_l}), \qquad
    \text{SGD on } w^l \text{ with learning rate } \eta\, n^{-c_l}.

The finite twins of this library store :math:`W^l` itself (weight space), so the same
network reads

.. math::
    \operatorname{Var}(W^l_{ij}) = n^{-2(a_l + b_l)}, \qquad
    \text{SGD learning rate on } W^l = \eta\, n^{-(c_l + 2 a_l)}.

Tensor Programs IV uses one global ``c``; a per-layer ``c_l`` is equivalent to a global one
through the symmetry :math:`(a_l, b_l, c_l) \to (a_l + \theta, b_l - \theta, c_l - 2\theta)`
(TP4 Eq. 5), which leaves the trained function unchanged, so ``c`` may be given per layer.

The exponents are exact rationals (:class:`fractions.Fraction`): every statement of the
classifier (:func:`neural_kernels.abc.classify`) is an equality between them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..errors import HyperparameterError, ParametrizationError, describe

__all__ = ["ABC", "GROUPS", "NAMES", "Exponent", "as_abc", "exact"]

#: The layer groups of an abc-parametrization, in order.
GROUPS = ("input", "hidden", "output")
#: The parametrizations known by name.
NAMES = ("standard", "ntk", "mup", "mean_field")

Exponent = Fraction | None
Triple = tuple[Fraction, Fraction | None, Fraction]
ZERO = Fraction(0)
HALF = Fraction(1, 2)
ONE = Fraction(1)


def exponent(value: Any, what: str, where: object, allow_none: bool = False) -> Exponent:
    """``value`` as an exact :class:`~fractions.Fraction`.

    Accepts integers, fractions, strings such as ``"1/2"``, and floats that are the
    nearest double to a fraction with denominator at most 4096 (``0.5``, ``1/3``), read
    as that fraction. ``None`` only where ``allow_none``.

    Raises:
        ParametrizationError: ``value`` is not a finite rational number.

    """
    if value is None and allow_none:
        return None
    fix = "Give a finite rational number: an int, a fractions.Fraction or a string like '1/2'."
    if isinstance(value, bool):
        raise ParametrizationError(describe(where, f"{what}={value!r}", fix))
    if isinstance(value, Fraction):
        return value
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise ParametrizationError(describe(where, f"{what}={value!r}", fix)) from None
    if isinstance(value, numbers.Real):
        x = float(value)
        if not math.isfinite(x):
            raise ParametrizationError(describe(where, f"{what}={value!r}", fix))
        frac = Fraction(x).limit_denominator(1 << 12)
        if float(frac) != x:
            raise ParametrizationError(
                describe(
                    where,
                    f"{what}={value!r} is not an exact short fraction",
                    "Give it as a fractions.Fraction or a string such as '1/3'.",
                )
            )
        return frac
    raise ParametrizationError(describe(where, f"{what} has type {type(value).__name__}", fix))


def exact(value: Any, what: str, where: object) -> Fraction:
    """``value`` as an exact :class:`~fractions.Fraction` (``None`` refused)."""
    out = exponent(value, what, where)
    if out is None:
        raise ParametrizationError(
            describe(where, f"{what}=None", "Give a finite rational number.")
        )
    return out


def _triple(value: Any, what: str, where: object, hidden_optional: bool) -> Triple:
    """A per-group triple ``(input, hidden, output)``; a scalar is broadcast."""
    if isinstance(value, (tuple, list)):
        if len(value) != 3:
            raise ParametrizationError(
                describe(
                    where,
                    f"{what} has {len(value)} entries",
                    f"Give {what} as one number or as (input, hidden, output).",
                )
            )
        items = list(value)
    else:
        items = [value, value, value]
    first = exact(items[0], f"{what}[0] (input)", where)
    hidden = exponent(items[1], f"{what}[1] (hidden)", where, allow_none=hidden_optional)
    last = exact(items[2], f"{what}[2] (output)", where)
    return (first, hidden, last)


@dataclass(frozen=True, init=False)
class ABC:
    r"""An abc-parametrization: exponents ``a``, ``b``, ``c`` per layer group.

    Args:
        a: multiplier exponents ``(input, hidden, output)`` (:math:`W^l = n^{-a_l} w^l`).
        b: initialisation exponents (:math:`w^l_{ij} \sim \mathcal{N}(0, n^{-2 b_l})`).
        c: learning-rate exponent, one number (Tensor Programs IV) or per group
            (SGD learning rate :math:`\eta n^{-c_l}` on :math:`w^l`).
        adam: optional weight-space Adam exponents ``(input, hidden, output)``: the Adam
            learning rate on :math:`W^l` is :math:`\eta n^{-\text{adam}_l}`; without them
            ``param_groups(..., optimizer="adam")`` refuses this parametrization.
        name: a label for reprs and reports.

    Exponents are exact rationals: ints, :class:`~fractions.Fraction`, strings such as
    ``"1/2"`` or floats of short fractions (``0.5``). A ``None`` hidden entry means the
    parametrization is defined for one hidden layer only (mean field).

    Biases of width-``n`` layers follow the input group's exponents (a bias is an input
    weight on a constant coordinate); the readout's bias has fixed size and is trained at
    the learning rate :math:`\eta` (it moves the output by :math:`\Theta(\eta)`).

    Example::

        muP = nk.abc.ABC(a=("-1/2", 0, "1/2"), b="1/2", c=0)
        model = net.module((64,), width=1024, parametrization=muP, base_width=64)

    """

    a: Triple
    b: Triple
    c: Triple
    adam: tuple[Fraction, Fraction | None, Fraction] | None
    name: str

    def __init__(self, a: Any, b: Any, c: Any = 0, *, adam: Any = None, name: str = "abc") -> None:
        where = "nk.abc.ABC"
        ta = _triple(a, "a", where, True)
        tb = _triple(b, "b", where, True)
        tc = _triple(c, "c", where, True)
        hidden = [t[1] is None for t in (ta, tb, tc)]
        if any(hidden) and not all(hidden):
            raise ParametrizationError(
                describe(
                    where,
                    "the hidden exponents are given for some of a, b, c but not all",
                    "Give all three hidden entries, or None in each (one hidden layer only).",
                )
            )
        tadam = None if adam is None else _triple(adam, "adam", where, True)
        if not isinstance(name, str):
            raise HyperparameterError(describe(where, f"name={name!r}", "Give a string."))
        object.__setattr__(self, "a", ta)
        object.__setattr__(self, "b", tb)
        object.__setattr__(self, "c", tc)
        object.__setattr__(self, "adam", tadam)
        object.__setattr__(self, "name", name)

    # -- presets (TP4 Table 1; Adam in weight space from TP5 Table 3) -------------------

    @classmethod
    def standard(cls, c: Any = 0) -> ABC:
        """Standard parametrization (PyTorch's default); ``c=0`` is plain SGD at rate eta."""
        return cls(a=0, b=(0, HALF, HALF), c=c, adam=0, name="standard")

    @classmethod
    def ntk(cls) -> ABC:
        """NTK parametrization: multipliers ``n^{-1/2}`` on the hidden and output layers."""
        return cls(a=(0, HALF, HALF), b=0, c=0, adam=(0, HALF, HALF), name="ntk")

    @classmethod
    def mup(cls) -> ABC:
        """Maximal-update parametrization (TP4 Def 5.1), any depth; Adam as in TP5."""
        return cls(a=(-HALF, 0, HALF), b=HALF, c=0, adam=(0, 1, 1), name="mup")

    @classmethod
    def mean_field(cls) -> ABC:
        """Mean-field parametrization (one hidden layer only, TP4 Table 1)."""
        return cls(a=(0, None, 1), b=(0, None, 0), c=(-1, None, -1), adam=(0, None, 1),
                   name="mean_field")  # fmt: skip

    # -- derived ----------------------------------------------------------------------

    @property
    def single_hidden_only(self) -> bool:
        """True when the parametrization is defined for one hidden layer only."""
        return self.a[1] is None

    def group(self, role: str) -> tuple[Fraction, Fraction, Fraction]:
        """``(a, b, c)`` of a layer group (``"input"``, ``"hidden"`` or ``"output"``)."""
        i = GROUPS.index(role)
        a, b, c = self.a[i], self.b[i], self.c[i]
        if a is None or b is None or c is None:
            raise ParametrizationError(
                describe(
                    f"parametrization {self.name!r}",
                    "the network has hidden-to-hidden layers, but this parametrization "
                    "is defined for one hidden layer only (Tensor Programs IV, Table 1)",
                    "Use 'mup', its extension to any depth, or a network with one hidden layer.",
                )
            )
        return a, b, c

    def variance_exponent(self, role: str) -> Fraction:
        """``a + b``: ``Var(W) = n^{-2(a+b)}`` in weight space."""
        a, b, _ = self.group(role)
        return a + b

    def sgd_exponent(self, role: str) -> Fraction:
        """``c + 2a``: the SGD learning rate on ``W`` is ``eta n^{-(c + 2a)}``."""
        a, _, c = self.group(role)
        return c + 2 * a

    def adam_exponent(self, role: str) -> Fraction | None:
        """The weight-space Adam exponent of a group (``None``: not defined)."""
        if self.adam is None:
            return None
        self.group(role)
        return self.adam[GROUPS.index(role)]

    def with_global_c(self, c: Any = None) -> ABC:
        r"""The equivalent parametrization with one ``c`` for every layer (TP4 Eq. 5).

        Each group is shifted by :math:`\theta_l = (c_l - c) / 2`:
        :math:`(a_l + \theta_l, b_l - \theta_l, c)`; ``c`` defaults to the output's.
        """
        ref = self.c[2] if c is None else exact(c, "c", "ABC.with_global_c")
        a: list[Fraction | None] = []
        b: list[Fraction | None] = []
        for ai, bi, ci in zip(self.a, self.b, self.c, strict=True):
            if ai is None or bi is None or ci is None:
                a.append(None)
                b.append(None)
                continue
            theta = (ci - ref) / 2
            a.append(ai + theta)
            b.append(bi - theta)
        cs = (ref, None if self.single_hidden_only else ref, ref)
        return ABC(a=tuple(a), b=tuple(b), c=cs, adam=self.adam, name=self.name)

    def __repr__(self) -> str:
        def fmt(t: tuple[Fraction | None, ...] | None) -> str:
            if t is None:
                return "None"
            return "(" + ", ".join("-" if x is None else str(x) for x in t) + ")"

        return (
            f"ABC(a={fmt(self.a)}, b={fmt(self.b)}, c={fmt(self.c)}, "
            f"adam={fmt(self.adam)}, name={self.name!r})"
        )


_PRESETS = {
    "standard": ABC.standard,
    "ntk": ABC.ntk,
    "mup": ABC.mup,
    "mean_field": ABC.mean_field,
}


def as_abc(parametrization: Any, where: object = "nk.abc") -> ABC:
    """An :class:`ABC` from a name or an :class:`ABC` itself.

    Names: ``"standard"``, ``"ntk"``, ``"mup"``, ``"mean_field"``.

    Raises:
        ParametrizationError: an unknown name or another type.

    """
    if isinstance(parametrization, ABC):
        return parametrization
    if isinstance(parametrization, str) and parametrization in _PRESETS:
        return _PRESETS[parametrization]()
    raise ParametrizationError(
        describe(
            where,
            f"parametrization={parametrization!r}",
            f"Use one of {', '.join(repr(n) for n in NAMES)} or an nk.abc.ABC(a, b, c).",
        )
    )
