r"""Monomial-type activations: rectified monomials, monomials, polynomials, Hermite.

Their duals are exact finite sums: the arc-cosine kernels of every degree (rectified
monomials), and the Gaussian moments of polynomials (Hermite polynomials are the
orthogonal case, whose dual is a single power of the correlation). Notation as in
:mod:`neural_kernels.layers.activations`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import torch
from torch import Tensor

from .._validation import check_int_range, check_real
from ..errors import HyperparameterError, describe
from ._elementwise import Elementwise
from ._safe import INV_2PI, safe_acos, safe_sqrt
from .activations import MAX_DEGREE, _masked_correlation

__all__ = ["Hermite", "Monomial", "Polynomial", "RectifiedMonomial"]


def _poly_mul(p: list[int], r: list[int]) -> list[int]:
    out = [0] * (len(p) + len(r) - 1)
    for i, x in enumerate(p):
        for j, y in enumerate(r):
            out[i + j] += x * y
    return out


def _poly_add(*ps: list[int]) -> list[int]:
    out = [0] * max(len(p) for p in ps)
    for p in ps:
        for i, x in enumerate(p):
            out[i] += x
    return out


def _poly_der(p: list[int]) -> list[int]:
    return [i * x for i, x in enumerate(p)][1:] or [0]


@cache
def _arccos_polys(degree: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    r"""Integer polynomials :math:`(P_n, Q_n)` with :math:`J_n = (\pi - \theta)P_n(c) + s Q_n(c)`.

    :math:`J_n` is Cho and Saul's arc-cosine function, built by the recursion
    :math:`J_{n+1} = -\sin\theta\, J_n' + (2n + 1)\cos\theta\, J_n` from :math:`J_0 = \pi -
    \theta`, which gives :math:`P_{n+1} = (1 - c^2)P_n' + (2n+1) c P_n` and
    :math:`Q_{n+1} = P_n + 2n c Q_n + (1 - c^2) Q_n'`.
    """
    p, q = [1], [0]
    one_minus = [1, 0, -1]
    for n in range(degree):
        p, q = (
            _poly_add(_poly_mul(one_minus, _poly_der(p)), [0, *((2 * n + 1) * x for x in p)]),
            _poly_add(p, [0, *(2 * n * x for x in q)], _poly_mul(one_minus, _poly_der(q))),
        )
    return tuple(p), tuple(q)


def _horner(coef: Sequence[float], x: Tensor) -> Tensor:
    """``sum_i coef[i] x^i`` (ascending coefficients) as a tensor of ``x``'s shape."""
    out = torch.full_like(x, float(coef[-1]))
    for a in reversed(coef[:-1]):
        out = out * x + float(a)
    return out


def _arccos_j(degree: int, c: Tensor, theta: Tensor, sin: Tensor) -> Tensor:
    p, q = _arccos_polys(degree)
    return (math.pi - theta) * _horner(p, c) + sin * _horner(q, c)


def _step_degenerate(value: Tensor, q1: Tensor, q2: Tensor) -> Tensor:
    """``E[step(u) step(v)]`` from its arc-cosine ``value``, fixed where a variance is zero.

    A zero variance makes that side the constant ``step(0) = 1`` (``x >= 0``, as the
    finite twin's autograd has it), independent of the other side, so the expectation is
    ``E[step(u)] E[step(v)]`` with ``1/2`` for a non-degenerate side.
    """
    pos1, pos2 = q1 > 0, q2 > 0
    e1 = torch.where(pos1, 0.5, 1.0).to(value.dtype)
    e2 = torch.where(pos2, 0.5, 1.0).to(value.dtype)
    return torch.where(pos1 & pos2, value, e1 * e2)


@dataclass(frozen=True)
class RectifiedMonomial(Elementwise):
    r"""Rectified monomial :math:`\phi(x) = \max(x, 0)^n` (``n = 0``: the step :math:`[x \ge 0]`).

    With Cho and Saul's arc-cosine function :math:`J_n(\theta)`
    (:math:`J_0 = \pi - \theta`, :math:`J_1 = \sin\theta + (\pi - \theta)\cos\theta`, ...),

    .. math::
        \mathbb E[\phi\phi] = \frac{(q_1 q_2)^{n/2}}{2\pi} J_n(\theta), \qquad
        \mathbb E[\phi'\phi'] = \frac{n^2 (q_1 q_2)^{(n-1)/2}}{2\pi} J_{n-1}(\theta)

    and :math:`\mathbb E[\phi'\phi'] = 0` for ``n = 0`` (the delta is dropped). ``n = 1``
    is :class:`ReLU`. On the diagonal :math:`\mathbb E[\phi^2] = (2n-1)!!\, q^n / 2`, finite
    (Neural Tangents 0.6.5 returns NaN there). The step is :math:`[x \ge 0]`, so a
    zero-variance input makes the step (``n = 0``) and the derivative of ``n = 1`` the
    constant ``1``.
    """

    clamps_correlation: ClassVar[bool] = True

    degree: int = 1

    def __post_init__(self) -> None:
        check_int_range(self, "degree", self.degree, 0, MAX_DEGREE)

    def fn(self, x: Tensor) -> Tensor:
        if self.degree == 0:
            return (x >= 0).to(x.dtype)
        return torch.clamp_min(x, 0.0) ** self.degree

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        n = self.degree
        c, norm = _masked_correlation(k, q1, q2)
        theta = safe_acos(c)
        sin = safe_sqrt(1.0 - c * c)
        nngp = _arccos_j(n, c, theta, sin) * INV_2PI
        nngp = nngp * norm**n if n > 0 else _step_degenerate(nngp, q1, q2)
        dot = None
        if want_dot:
            if n == 0:
                dot = torch.zeros_like(k)
            else:
                dot = _arccos_j(n - 1, c, theta, sin) * (n * n * INV_2PI)
                dot = dot * norm ** (n - 1) if n > 1 else _step_degenerate(dot, q1, q2)
        return nngp, dot

    def dual_var(self, q: Tensor) -> Tensor:
        n = self.degree
        if n == 0:
            return torch.where(q > 0, 0.5, 1.0).to(q.dtype)
        return q**n * (0.5 * _double_factorial(2 * n - 1))


def _double_factorial(n: int) -> int:
    return math.prod(range(n, 0, -2))


# ----------------------------------------------------------------------------------------
# Polynomials
# ----------------------------------------------------------------------------------------


@cache
def _hermite_rows(
    coef: tuple[float, ...] | tuple[int, ...],
) -> tuple[tuple[float, ...] | None, ...]:
    r"""Coefficients (in :math:`q`) of :math:`s_l(q) = \sum_i a_{2i+l} \frac{(2i+l)!}{2^i i!} q^i`.

    :math:`s_l(q) / \sqrt{l!}` is the ``l``-th normalised Hermite coefficient of
    :math:`x \mapsto \phi(\sqrt q\, x)`. ``None`` marks an identically zero row.
    """
    d = len(coef) - 1
    rows: list[tuple[float, ...] | None] = []
    for order in range(d + 1):
        row = tuple(
            float(
                coef[2 * i + order] * (math.factorial(2 * i + order) // (2**i * math.factorial(i)))
            )
            for i in range((d - order) // 2 + 1)
        )
        rows.append(row if any(r != 0.0 for r in row) else None)
    return tuple(rows)


def _polynomial_dual(
    rows: tuple[tuple[float, ...] | None, ...],
    k: Tensor,
    q1: Tensor,
    q2: Tensor,
    want_dot: bool,
    scale: float = 1.0,
) -> tuple[Tensor, Tensor | None]:
    r"""Dual of a polynomial from its :func:`_hermite_rows`, a polynomial in ``k, q1, q2``.

    .. math::
        \mathbb E[\phi\phi] = \sum_l \frac{s_l(q_1) s_l(q_2)}{l!} K^l, \qquad
        \mathbb E[\phi'\phi'] = \sum_{l \ge 1} \frac{s_l(q_1) s_l(q_2)}{(l-1)!} K^{l-1}.

    No square root or division: exact and smooth everywhere, zero variances included.
    """
    weights: list[Tensor | None] = []
    for order, row in enumerate(rows):
        if row is None:
            weights.append(None)
        else:
            s1s2 = _horner(row, q1) * _horner(row, q2)
            weights.append(s1s2 * (scale / math.factorial(order)))
    nngp = torch.zeros_like(k)
    for weight in reversed(weights):
        nngp = nngp * k
        if weight is not None:
            nngp = nngp + weight
    dot = None
    if want_dot:
        dot = torch.zeros_like(k)
        for order in range(len(weights) - 1, 0, -1):
            dot = dot * k
            weight = weights[order]
            if weight is not None:
                dot = dot + weight * float(order)
    return nngp, dot


@dataclass(frozen=True)
class Monomial(Elementwise):
    r"""Monomial :math:`\phi(x) = x^n`.

    .. math::
        \mathbb E[u^n v^n] = \sum_{m=0}^{\lfloor n/2\rfloor}
            \frac{(n!)^2}{4^m (m!)^2 (n-2m)!} K^{n-2m} (q_1 q_2)^m, \qquad
        \mathbb E[\phi'\phi'] = n^2\, \mathbb E[u^{n-1} v^{n-1}]

    (e.g. :math:`2K^2 + q_1 q_2` for ``n = 2``; :math:`(2n-1)!!\,q^n` on the diagonal).
    """

    degree: int = 2

    def __post_init__(self) -> None:
        check_int_range(self, "degree", self.degree, 0, MAX_DEGREE)

    def fn(self, x: Tensor) -> Tensor:
        return x**self.degree

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        rows = _hermite_rows((0.0,) * self.degree + (1.0,))
        return _polynomial_dual(rows, k, q1, q2, want_dot)

    def dual_var(self, q: Tensor) -> Tensor:
        return q**self.degree * float(_double_factorial(2 * self.degree - 1))


@dataclass(frozen=True)
class Polynomial(Elementwise):
    r"""Polynomial :math:`\phi(x) = \sum_i a_i x^i` with ``coef = (a_0, a_1, ...)``.

    Expanding :math:`\phi(\sqrt q\,z)` in normalised Hermite polynomials of ``z`` gives,
    with :math:`s_l(q) = \sum_i a_{2i+l} \frac{(2i+l)!}{2^i\, i!} q^i`,

    .. math::
        \mathbb E[\phi\phi] = \sum_l \frac{s_l(q_1) s_l(q_2)}{l!} K^l, \qquad
        \mathbb E[\phi'\phi'] = \sum_{l \ge 1} \frac{s_l(q_1) s_l(q_2)}{(l-1)!} K^{l-1},

    Neural Tangents' ``Polynomial`` written without its divisions by :math:`\sqrt{q_1
    q_2}` (so zero variances are fine).
    """

    coef: tuple[float, ...] = (0.0, 1.0)

    def __post_init__(self) -> None:
        coef = self.coef
        if isinstance(coef, (str, bytes)) or not isinstance(coef, Sequence):
            try:
                coef = tuple(coef)  # numpy arrays, generators
            except TypeError:
                raise HyperparameterError(
                    describe(
                        repr(self),
                        f"coef of type {type(self.coef).__name__}",
                        "Pass the coefficients (a_0, a_1, ...) as a tuple of floats.",
                    )
                ) from None
        if not 1 <= len(coef) <= MAX_DEGREE + 1:
            raise HyperparameterError(
                describe(
                    repr(self),
                    f"{len(coef)} coefficients",
                    f"Pass between 1 and {MAX_DEGREE + 1} coefficients (a_0, a_1, ...).",
                )
            )
        for i, a in enumerate(coef):
            check_real(self, f"coef[{i}]", a)
        object.__setattr__(self, "coef", tuple(float(a) for a in coef))

    def fn(self, x: Tensor) -> Tensor:
        return _horner(self.coef, x)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        return _polynomial_dual(_hermite_rows(self.coef), k, q1, q2, want_dot)


@cache
def _hermite_coef(degree: int) -> tuple[int, ...]:
    """Integer coefficients (ascending) of the probabilists' Hermite polynomial He_n."""
    prev: tuple[int, ...] = (1,)  # He_0
    cur: tuple[int, ...] = (0, 1)  # He_1
    if degree == 0:
        return prev
    for n in range(1, degree):  # He_{n+1} = x He_n - n He_{n-1}
        nxt = [0, *cur]
        for i, a in enumerate(prev):
            nxt[i] -= n * a
        prev, cur = cur, tuple(nxt)
    return cur


@dataclass(frozen=True)
class Hermite(Elementwise):
    r"""Normalised probabilists' Hermite polynomial :math:`\phi(x) = He_n(x)/\sqrt{n!}`.

    Orthonormal under :math:`\mathcal N(0, 1)`. For unit-variance inputs
    (:math:`q_1 = q_2 = 1`) the dual is simply

    .. math::
        \mathbb E[\phi\phi] = K^n, \qquad \mathbb E[\phi'\phi'] = n K^{n-1},

    which is what Neural Tangents' ``Hermite`` returns whatever the variances (it assumes
    unit variance). Here the dual is exact for any variances: that of
    :class:`Polynomial` with the coefficients of :math:`He_n / \sqrt{n!}`; it equals
    :math:`K^n` exactly when :math:`q_1 = q_2 = 1`.
    """

    degree: int = 1

    def __post_init__(self) -> None:
        check_int_range(self, "degree", self.degree, 0, MAX_DEGREE)

    def fn(self, x: Tensor) -> Tensor:
        coef = _hermite_coef(self.degree)
        return _horner(coef, x) * (1.0 / math.sqrt(math.factorial(self.degree)))

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        rows = _hermite_rows(_hermite_coef(self.degree))  # exact integer arithmetic
        scale = 1.0 / math.factorial(self.degree)
        return _polynomial_dual(rows, k, q1, q2, want_dot, scale)
