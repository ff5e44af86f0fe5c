r"""Any elementwise activation, its dual computed by Gauss-Hermite quadrature.

For :math:`(u, v) \sim \mathcal N(0, [[q_1, k], [k, q_2]])` write
:math:`u = \sqrt{q_1}\, z_1`, :math:`v = \sqrt{q_2}\, z_2` with standard normal
:math:`(z_1, z_2)` of correlation :math:`c = k / \sqrt{q_1 q_2}`. Mehler's formula expands
their joint density in the orthonormal Hermite polynomials
:math:`h_n = \mathrm{He}_n / \sqrt{n!}`, which turns the two-dimensional integral into a
power series in :math:`c`:

.. math::
    \mathbb E[\phi(u)\phi(v)] = \sum_{n \ge 0} a_n(q_1)\, a_n(q_2)\, c^n, \qquad
    a_n(q) = \mathbb E_z[\phi(\sqrt q\, z)\, h_n(z)],

and the same with :math:`\phi'` (from autograd) for :math:`\mathbb E[\phi'(u)\phi'(v)]`.

**The rule.** With the ``D``-point Gauss-Hermite rule :math:`(x_i, w_i)` (probabilists'
weight, :math:`\sum_i w_i = 1`) the coefficients are
:math:`a_n(q) = \sum_i w_i\, \phi(\sqrt q\, x_i)\, h_n(x_i)` for :math:`n < D`, and the
series stops at :math:`n = D - 1`. This is exactly a ``D x D`` tensor-product rule on the
nodes :math:`(x_i, x_j)` whose weights :math:`w_i w_j \sum_{n<D} h_n(x_i) h_n(x_j) c^n`
follow the correlation. It

* is exact whenever :math:`\phi` is a polynomial of degree below ``D`` (like the tensor
  Gauss-Hermite rule of Neural Tangents), and converges to the exact dual as ``D`` grows;
* is **symmetric**: swapping the inputs swaps the two factors of every product
  :math:`a_n(q_1) a_n(q_2)`, so the result is bitwise the same;
* equals the one-dimensional ``D``-point rule for :math:`\mathbb E[\phi(\sqrt{q_1} z)
  \phi(\pm\sqrt{q_2} z)]` at correlation :math:`\pm 1` (the discrete rule's Parseval
  identity): no arc-cosine, no Cholesky factor, nothing singular at :math:`c = \pm 1` or at
  zero variance;
* costs ``D`` function (and derivative) evaluations per *distinct variance* plus a
  degree-``D`` Horner evaluation per kernel entry, instead of :math:`D^2` evaluations per
  entry for a tensor-product rule.

**Accuracy.** Gauss-Hermite quadrature converges fast for smooth activations and slowly
for kinks. Largest relative errors of the NNGP / derivative duals measured at
pre-activation variances ``0.1 <= q <= 3`` and correlations ``0.3, 0.9, 1`` (float64):

=========================  =============  =============  =============  =============
activation                 D = 32         D = 64         D = 128        D = 256
=========================  =============  =============  =============  =============
tanh                       1e-3 / 2e-2    3e-5 / 8e-4    1e-7 / 6e-6    3e-11 / 4e-9
erf                        9e-4 / 1e-2    3e-6 / 1e-4    8e-11 / 5e-9   1e-15
sigmoid, softplus, silu    6e-7 / 1e-5    2e-10 / 9e-9   2e-13          1e-15
ELU (kink in phi')         8e-4 / 3e-2    2e-4 / 1e-2    5e-5 / 7e-3    1e-5 / 3e-3
ReLU (kink in phi)         4e-3 / 1e-2    2e-3 / 7e-3    1e-3 / 3e-3    5e-4 / 2e-3
=========================  =============  =============  =============  =============

Larger variances need more nodes (``tanh`` at ``q = 10``: ``2e-4`` at ``D = 128``,
``3e-6`` at ``D = 256``, ``7e-8`` at ``D = 400``). Kinks and jumps converge like
``1 / D``: prefer the closed forms (``ReLU``, ``Sign``, ...) where they exist.

**Cost.** Linear in ``degree`` per kernel entry (orders whose coefficients are rounding
noise, such as the even ones of an odd function, are skipped). On one CPU core a
``1000 x 1000`` kernel through two ``Tanh()`` layers takes about 0.8 s at the default
``degree = 128`` (two ``ReLU`` layers: 0.05 s); raise the degree (up to 4096) for
``1e-10`` with ``tanh``-like functions. An even degree keeps ``0`` off
the nodes, so kinks at the origin (ReLU, ELU, steps) do not depend on which one-sided
derivative autograd picks there, and the step's variance is exact.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.linalg import eigvalsh_tridiagonal
from torch import Tensor, nn

from .._validation import check_int_range, given
from ..core.protocol import ModuleContext
from ..errors import (
    HyperparameterError,
    InputTypeError,
    LayerCompatibilityError,
    NonFiniteError,
    describe,
)
from ._elementwise import Elementwise
from ._nngp_fn import NngpFn, call_nngp_fn, derivative_dual
from ._safe import safe_sqrt

__all__ = ["DEFAULT_DEGREE", "ELU", "Activation", "SiLU", "Sigmoid", "Softplus", "Tanh"]

#: Gauss-Hermite nodes per dimension unless told otherwise (see the module docstring).
DEFAULT_DEGREE = 128
#: Largest degree accepted: the rule holds a ``degree x degree`` table.
MAX_DEGREE = 4096

DualFn = Callable[[Tensor, Tensor, Tensor, bool], "tuple[Tensor, Tensor | None]"]


# ----------------------------------------------------------------------------------------
# The Gauss-Hermite rule and its orthonormal Hermite table
# ----------------------------------------------------------------------------------------


def _hermite_table(x: np.ndarray, rows: int) -> np.ndarray:
    """``H[n, i]`` proportional to ``h_n(x_i)`` for ``n < rows``, each column with its own scale.

    The three-term recurrence of the orthonormal polynomials is run forward; columns that
    grow past ``1e100`` are scaled down (so nothing overflows at large degrees).
    """
    table = np.empty((rows, x.size))
    table[0] = 1.0
    if rows > 1:
        table[1] = x
    for n in range(1, rows - 1):
        table[n + 1] = (x * table[n] - math.sqrt(n) * table[n - 1]) / math.sqrt(n + 1)
        big = np.abs(table[n + 1]) > 1e100
        if big.any():
            table[: n + 2, big] *= 1e-100
    return table


@lru_cache(maxsize=16)
def _rule_numpy(degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes ``x``, square-root weights ``s`` and the table ``Q[n, i] = s_i h_n(x_i)``.

    Nodes are the eigenvalues of the Jacobi matrix, polished by Newton steps on
    ``He_D``; weights come from the Christoffel identity ``w_i = 1 / (D h_{D-1}(x_i)^2)``,
    which stays accurate (relative) where the weights are tiny. ``Q`` is orthogonal:
    its rows are the orthonormal polynomials sampled by the rule.
    """
    d = degree
    x = eigvalsh_tridiagonal(np.zeros(d), np.sqrt(np.arange(1.0, d)))
    for _ in range(3):
        table = _hermite_table(x, d + 1)
        x = x - table[d] / (math.sqrt(d) * table[d - 1])
    x = 0.5 * (x - x[::-1])  # exactly symmetric nodes
    table = _hermite_table(x, d)
    q = table / (math.sqrt(d) * np.abs(table[d - 1]))
    s = q[0].copy()
    return x, s, q


@lru_cache(maxsize=32)
def _rule(degree: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, s, Q^T)`` as tensors: nodes, square-root weights, transposed Hermite table."""
    x, s, q = _rule_numpy(degree)
    x_t, s_t, qt_t = (
        torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device) for a in (x, s, q.T)
    )
    return x_t, s_t, qt_t


# ----------------------------------------------------------------------------------------
# The truncated Mehler series, with a memory-light backward
# ----------------------------------------------------------------------------------------


#: Up to this many ``degree x entries`` elements, the series is summed with all powers of
#: ``c`` at once (a few large tensor operations); beyond, by Horner's rule in place (memory
#: of one chunk, ``degree`` passes).
_VECTOR_LIMIT = 1 << 18


def _powers(c: Tensor, d: int) -> Tensor:
    """``c^0, ..., c^(d-1)`` stacked on a new leading axis (repeated products, exact signs)."""
    return torch.cumprod(torch.cat([torch.ones_like(c)[None], c.expand(d - 1, *c.shape)]), 0)


def _significant(a: Tensor) -> Tensor:
    """Which orders ``n`` of the coefficients ``a`` (``(D, ...)``) rise above rounding noise.

    A coefficient is computed with an absolute error of a few rounding units of the norm
    ``sqrt(sum_n a[n]^2)`` of its column; orders below ``eps / 8`` of it in every column
    (the even orders of an odd function, the far tail of a smooth one) carry only noise.
    """
    flat = a.reshape(a.shape[0], -1)
    tiny = torch.finfo(a.dtype).tiny
    norm = flat.square().sum(0).sqrt().clamp_min(tiny)
    return (flat.abs() / norm).amax(1) > torch.finfo(a.dtype).eps / 8


def _series(a1: Tensor, a2: Tensor, c: Tensor) -> Tensor:
    """``sum_n a1[n] a2[n] c^n`` (no autograd: called inside :class:`_MehlerSeries`).

    Small inputs: all powers of ``c`` at once. Large ones: Horner's rule in place over the
    orders whose coefficients are significant on both sides (the others are rounding noise
    and are skipped, a factor of about two for odd or even activations).
    """
    d = a1.shape[0]
    if d * c.numel() <= _VECTOR_LIMIT:
        return (a1 * a2 * _powers(c, d)).sum(0)
    keep = (_significant(a1) & _significant(a2)).tolist()
    orders = [n for n in range(d) if keep[n]]
    if not orders:
        return torch.zeros_like(c)
    top = orders[-1]
    acc = (a1[top] * a2[top]).expand_as(c).clone()
    same = torch.broadcast_shapes(a1.shape[1:], a2.shape[1:]) == c.shape
    buf = torch.empty_like(c) if same else None
    powers: dict[int, Tensor] = {1: c}
    previous = top
    for n in reversed(orders[:-1]):
        gap = previous - n
        if gap not in powers:
            powers[gap] = c**gap
        p = torch.mul(a1[n], a2[n], out=buf) if buf is not None else a1[n] * a2[n]
        acc.mul_(powers[gap]).add_(p)
        previous = n
    if previous > 0:
        acc.mul_(c**previous)
    return acc


class _MehlerSeries(torch.autograd.Function):
    """``sum_n a1[n] a2[n] c^n`` whose backward keeps only its inputs (no ``D`` copies).

    The backward uses differentiable operations only, so double backward works too.
    """

    @staticmethod
    def forward(ctx: Any, a1: Tensor, a2: Tensor, c: Tensor) -> Tensor:
        ctx.save_for_backward(a1, a2, c)
        return _series(a1, a2, c)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        a1, a2, c = ctx.saved_tensors
        need1, need2, need_c = ctx.needs_input_grad
        d = a1.shape[0]
        g1 = g2 = gc = None
        if d * c.numel() <= _VECTOR_LIMIT:
            powers = _powers(c, d)
            if need_c:
                orders = torch.arange(1, d, dtype=c.dtype, device=c.device)
                orders = orders.view(-1, *[1] * c.dim())
                gc = grad * (a1[1:] * a2[1:] * orders * powers[:-1]).sum(0)
            weighted = grad * powers
            if need1:
                g1 = (weighted * a2).sum_to_size(a1.shape)
            if need2:
                g2 = (weighted * a1).sum_to_size(a2.shape)
            return g1, g2, gc
        if need_c:
            deriv = torch.zeros_like(c)
            for n in range(d - 1, 0, -1):
                deriv = deriv * c + a1[n] * a2[n] * float(n)
            gc = grad * deriv
        if need1 or need2:
            power = torch.ones_like(c)
            parts1: list[Tensor] = []
            parts2: list[Tensor] = []
            for n in range(d):
                weighted = grad * power
                if need1:
                    parts1.append((weighted * a2[n]).sum_to_size(a1.shape[1:]))
                if need2:
                    parts2.append((weighted * a1[n]).sum_to_size(a2.shape[1:]))
                power = power * c
            g1 = torch.stack(parts1) if need1 else None
            g2 = torch.stack(parts2) if need2 else None
        return g1, g2, gc


def _correlation(k: Tensor, q1: Tensor, q2: Tensor) -> Tensor:
    """``clamp(k / sqrt(q1 q2), -1, 1)``, bitwise symmetric in ``(q1, q2)``.

    Where ``q1 q2 <= eps^4`` (a zero input without bias) the correlation is ``0`` with
    zero gradient: there the coefficients ``a_n(q)``, ``n >= 1``, vanish like
    ``q^(n/2)`` but carry rounding noise of ``eps |phi(0)|``, which dividing by
    ``sqrt(q1 q2)`` would blow up (in the gradient with respect to ``k``). The value
    changes by at most ``|phi'|^2 sqrt(q1 q2) <= eps^2``.
    """
    tiny = torch.finfo(k.dtype).tiny
    eps = torch.finfo(k.dtype).eps
    scale = torch.rsqrt(q1.clamp_min(tiny)) * torch.rsqrt(q2.clamp_min(tiny))
    c = (k * scale).clamp(-1.0, 1.0)
    return torch.where(q1 * q2 <= eps**4, torch.zeros_like(c), c)


# ----------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------


def _check_degree(layer: object, degree: Any) -> None:
    """``degree`` is the number of Gauss-Hermite nodes."""
    meaning = f" (the number of Gauss-Hermite nodes; default {DEFAULT_DEGREE})"
    check_int_range(layer, "degree", degree, 2, MAX_DEGREE, meaning)


@dataclass(frozen=True, repr=False)
class _Numerical(Elementwise):
    """An activation whose duals come from Gauss-Hermite quadrature of :meth:`fn`."""

    clamps_correlation: ClassVar[bool] = True

    degree: int = field(default=DEFAULT_DEGREE, kw_only=True)

    def __post_init__(self) -> None:
        _check_degree(self, self.degree)

    def __repr__(self) -> str:
        parts = [
            f"{f.name}={getattr(self, f.name, None)!r}"
            for f in fields(self)
            if f.repr and f.name != "degree"
        ]
        parts.append(f"degree={getattr(self, 'degree', None)!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # -- evaluation of phi and phi' on the nodes ---------------------------------------

    def _call_fn(self, u: Tensor) -> Tensor:
        try:
            out = self.fn(u)
        except (RuntimeError, TypeError, ValueError) as err:
            raise InputTypeError(
                describe(
                    repr(self),
                    f"fn raised {type(err).__name__} on a tensor of shape {tuple(u.shape)} "
                    f"and dtype {u.dtype}: {err}",
                    "fn must map a float tensor of any shape to a tensor of the same shape, "
                    "elementwise (e.g. torch.tanh).",
                )
            ) from err
        if not isinstance(out, Tensor):
            raise InputTypeError(
                describe(
                    repr(self),
                    f"fn returned {type(out).__name__}, not a tensor",
                    "fn must map a float tensor to a tensor of the same shape, elementwise.",
                )
            )
        if out.shape != u.shape:
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    f"fn maps a tensor of shape {tuple(u.shape)} to one of shape "
                    f"{tuple(out.shape)}",
                    "An activation must act elementwise and keep the shape (no reductions, "
                    "no broadcasting against fixed shapes).",
                )
            )
        if not out.is_floating_point():
            out = out.to(u.dtype)
        return out

    def _values(self, u: Tensor, deriv: bool) -> tuple[Tensor, Tensor | None]:
        """``phi(u)`` and, with ``deriv``, ``phi'(u)`` by autograd (differentiable in ``u``)."""
        if not deriv:
            values = self._call_fn(u)
            dvalues = None
        else:
            outer = u.requires_grad and torch.is_grad_enabled()
            # Autograd must run even under no_grad or inference_mode (where tensors are
            # inference tensors that cannot be recorded: copy them out first).
            with torch.inference_mode(False), torch.enable_grad():
                if outer:
                    leaf = u
                else:
                    leaf = u.detach()
                    leaf = (leaf.clone() if leaf.is_inference() else leaf).requires_grad_(True)
                values = self._call_fn(leaf)
                if values.requires_grad:
                    try:
                        (dvalues,) = torch.autograd.grad(
                            values.sum(), leaf, create_graph=outer, allow_unused=True
                        )
                    except RuntimeError as err:
                        raise LayerCompatibilityError(
                            describe(
                                repr(self),
                                f"autograd cannot differentiate fn ({err})",
                                "Use a differentiable torch function, or give the closed "
                                "form with Activation(fn, dual=...).",
                            )
                        ) from err
                else:
                    dvalues = None  # fn is piecewise constant for autograd
            if dvalues is None:
                dvalues = torch.zeros_like(leaf)
            if not outer:
                values = values.detach()
                dvalues = dvalues.detach()
        for name, t in (("fn", values), ("its derivative", dvalues)):
            if t is not None and not bool(torch.isfinite(t).all()):
                raise NonFiniteError(
                    describe(
                        repr(self),
                        f"{name} is not finite at some quadrature nodes (inputs up to "
                        f"{float(u.detach().abs().max()):.3g} in absolute value)",
                        "Use an activation defined and finite on the whole real line.",
                    )
                )
        return values, dvalues

    def _coefficients(self, q: Tensor, deriv: bool, ndim: int) -> tuple[Tensor, Tensor | None]:
        """Hermite coefficients ``a_n(q)`` (and those of ``phi'``), shape ``(D, ..., *q.shape)``.

        ``q`` is padded with leading axes to ``ndim`` dimensions, so that the coefficients
        broadcast against the correlations after their leading ``D`` axis.
        """
        x, s, qt = _rule(self.degree, q.dtype, q.device)
        q = q.reshape((1,) * (ndim - q.dim()) + tuple(q.shape))
        u = safe_sqrt(q).unsqueeze(-1) * x
        values, dvalues = self._values(u, deriv)
        a = ((values * s) @ qt).movedim(-1, 0)
        b = None if dvalues is None else ((dvalues * s) @ qt).movedim(-1, 0)
        return a, b

    # -- the duals -------------------------------------------------------------------------

    def _quadrature(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_nngp: bool, want_dot: bool
    ) -> tuple[Tensor | None, Tensor | None]:
        dtype = torch.promote_types(torch.promote_types(k.dtype, q1.dtype), q2.dtype)
        k, q1, q2 = k.to(dtype), q1.to(dtype), q2.to(dtype)
        c = _correlation(k, q1, q2)
        a1, b1 = self._coefficients(q1, want_dot, c.dim())
        a2, b2 = (a1, b1) if q2 is q1 else self._coefficients(q2, want_dot, c.dim())
        nngp = _MehlerSeries.apply(a1, a2, c) if want_nngp else None
        dot = None
        if want_dot:
            dot = _MehlerSeries.apply(given(b1, "coefficients"), given(b2, "coefficients"), c)
        return nngp, dot

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        nngp, dot = self._quadrature(k, q1, q2, True, want_dot)
        return given(nngp, "the dual"), dot

    def dual_var(self, q: Tensor) -> Tensor:
        """``E[phi(u)^2]`` for ``u ~ N(0, q)`` by the one-dimensional ``degree``-point rule."""
        x, s, _ = _rule(self.degree, q.dtype, q.device)
        values, _ = self._values(safe_sqrt(q).unsqueeze(-1) * x, False)
        return ((values * s) ** 2).sum(-1)


def _name_of(fn: Any) -> str:
    self_ = getattr(fn, "__self__", None)
    name = getattr(fn, "__name__", None)
    if self_ is not None and name is not None and not isinstance(self_, type(torch)):
        return f"{self_!r}.{name}"
    return name if isinstance(name, str) else repr(fn)


@dataclass(frozen=True, init=False, repr=False)
class Activation(_Numerical):
    r"""Any elementwise activation ``fn``, its duals by Gauss-Hermite quadrature.

    The NNGP dual :math:`\mathbb E[\phi(u)\phi(v)]` and the derivative dual
    :math:`\mathbb E[\phi'(u)\phi'(v)]` are computed from ``fn`` itself, with
    :math:`\phi'` from autograd (a piecewise-constant ``fn`` such as a step gets
    derivative ``0``, the convention of Neural Tangents). The rule is a truncated Mehler
    series on the ``degree``-point Gauss-Hermite rule: symmetric in the two inputs, exact
    for polynomials of degree below ``degree``, finite at correlation one and at zero
    variance (see :mod:`neural_kernels.layers.quadrature` for accuracy versus degree).

    Args:
        fn: the activation, a callable mapping a float tensor to a tensor of the same
            shape elementwise (``torch.tanh``, ``torch.nn.functional.gelu``, a lambda, ...).
            The layer is picklable when ``fn`` is. ``None`` (with ``nngp_fn`` or
            ``dual``): a kernel-only layer, which has no finite twin.
        dual: optional closed form with the signature of :meth:`Elementwise.dual`,
            ``dual(k, q1, q2, want_dot) -> (nngp, dot or None)``. When given it replaces
            the quadrature (a ``None`` derivative dual is then computed by quadrature,
            or by autograd of the NNGP dual when ``fn`` is ``None``).
        degree: Gauss-Hermite nodes per dimension (an integer from 2 to 4096).
        nngp_fn: optional NNGP dual alone, ``nngp_fn(cov12, var1, var2) = E[phi(u)
            phi(v)]`` for ``(u, v) ~ N(0, [[var1, cov12], [cov12, var2]])`` (``var1``,
            ``var2`` broadcast against ``cov12``), written with torch operations. The
            derivative dual is its derivative in ``cov12`` by autograd (Price's theorem),
            as Neural Tangents' ``Elementwise(fn, nngp_fn)``; see
            :mod:`neural_kernels.layers._nngp_fn`.
        d_nngp_fn: optional derivative of ``nngp_fn`` in ``cov12`` (same signature),
            replacing autograd.

    Attributes:
        fn: the activation.
        closed_form: the ``dual`` argument (``dual`` itself is the method computing the
            duals), so ``Activation(a.fn, a.closed_form, degree=256)`` rebuilds ``a``
            with another degree.
        degree: Gauss-Hermite nodes per dimension.

    At exactly zero variance (a zero input without bias) the correlation is taken as
    ``0`` with a zero derivative, so gradients there are finite but drop the term
    :math:`\phi'(0)\,\mathbb E[\phi'(v)]` of the derivative with respect to the covariance.

    Example::

        act = nk.Activation(torch.tanh, degree=256)
        net = nk.Sequential(nk.Dense(512, w_std=1.5), act, nk.Dense(1))

    """

    fn: Callable[[Tensor], Tensor] | None  # type: ignore[assignment]
    closed_form: DualFn | None = None
    nngp_fn: NngpFn | None = None
    d_nngp_fn: NngpFn | None = None

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor] | None = None,
        dual: DualFn | None = None,
        degree: int = DEFAULT_DEGREE,
        *,
        nngp_fn: NngpFn | None = None,
        d_nngp_fn: NngpFn | None = None,
    ) -> None:
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "closed_form", dual)
        object.__setattr__(self, "degree", degree)
        object.__setattr__(self, "nngp_fn", nngp_fn)
        object.__setattr__(self, "d_nngp_fn", d_nngp_fn)
        for name, value in (("nngp_fn", nngp_fn), ("d_nngp_fn", d_nngp_fn)):
            if value is not None and not callable(value):
                raise InputTypeError(
                    describe(
                        repr(self),
                        f"{name}={value!r} of type {type(value).__name__} is not callable",
                        f"Pass {name}(cov12, var1, var2) -> tensor, or leave it None.",
                    )
                )
        if nngp_fn is not None and dual is not None:
            raise InputTypeError(
                describe(
                    repr(self),
                    "both dual and nngp_fn",
                    "Give one closed form: dual(k, q1, q2, want_dot) or nngp_fn(k, q1, q2).",
                )
            )
        if d_nngp_fn is not None and nngp_fn is None:
            raise InputTypeError(
                describe(repr(self), "d_nngp_fn without nngp_fn", "Give nngp_fn as well.")
            )
        if fn is None and nngp_fn is None and dual is None:
            raise InputTypeError(
                describe(
                    repr(self),
                    "fn=None without nngp_fn or dual",
                    "Give the activation fn, or its NNGP dual nngp_fn(cov12, var1, var2).",
                )
            )
        if fn is not None and not callable(fn):
            raise InputTypeError(
                describe(
                    repr(self),
                    f"fn={fn!r} of type {type(fn).__name__} is not callable",
                    "Pass a function from tensors to tensors, e.g. torch.tanh.",
                )
            )
        if dual is not None and not callable(dual):
            raise InputTypeError(
                describe(
                    repr(self),
                    f"dual={dual!r} of type {type(dual).__name__} is not callable",
                    "Pass dual(k, q1, q2, want_dot) -> (nngp, dot or None), or leave it None "
                    "for quadrature.",
                )
            )
        _check_degree(self, degree)

    def __repr__(self) -> str:
        parts = [f"fn={_name_of(self.fn)}"]
        if self.closed_form is not None:
            parts.append(f"dual={_name_of(self.closed_form)}")
        for name in ("nngp_fn", "d_nngp_fn"):
            value = getattr(self, name, None)
            if value is not None:
                parts.append(f"{name}={_name_of(value)}")
        parts.append(f"degree={getattr(self, 'degree', None)!r}")
        return f"Activation({', '.join(parts)})"

    def _nngp_only(self, k: Tensor, q1: Tensor, q2: Tensor) -> Tensor:
        """The NNGP dual from ``nngp_fn`` or from ``dual`` (no derivative)."""
        if self.nngp_fn is not None:
            return call_nngp_fn(self.nngp_fn, k, q1, q2, repr(self))
        return given(self.closed_form, "dual")(k, q1, q2, False)[0]

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        if self.nngp_fn is not None:
            nngp = call_nngp_fn(self.nngp_fn, k, q1, q2, repr(self))
            if not want_dot:
                return nngp, None
            if self.d_nngp_fn is not None:
                return nngp, call_nngp_fn(self.d_nngp_fn, k, q1, q2, repr(self))
            return nngp, derivative_dual(self._nngp_only, k, q1, q2, repr(self))
        if self.closed_form is None:
            return super().dual(k, q1, q2, want_dot)
        result = self.closed_form(k, q1, q2, want_dot)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise InputTypeError(
                describe(
                    repr(self),
                    f"dual returned {type(result).__name__}, not a pair",
                    "dual(k, q1, q2, want_dot) must return (nngp, dot), dot possibly None.",
                )
            )
        nngp, dot = result
        if want_dot and dot is None:
            if self.fn is None:
                dot = derivative_dual(self._nngp_only, k, q1, q2, repr(self))
            else:
                _, dot = self._quadrature(k, q1, q2, False, True)
        return nngp, dot

    def dual_var(self, q: Tensor) -> Tensor:
        if self.closed_form is None and self.nngp_fn is None:
            return super().dual_var(q)
        return self._nngp_only(q, q, q)

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        if self.fn is None:
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    "fn=None: the layer is known only through its kernel",
                    "Give the activation too, Activation(fn, nngp_fn=...), to build the "
                    "finite network.",
                )
            )
        return super().make_module(in_shape, ctx)


@dataclass(frozen=True, repr=False)
class Tanh(_Numerical):
    r"""Hyperbolic tangent :math:`\phi(x) = \tanh x`, duals by quadrature.

    Args:
        degree: Gauss-Hermite nodes per dimension (see :class:`Activation`).

    """

    def fn(self, x: Tensor) -> Tensor:
        return torch.tanh(x)


@dataclass(frozen=True, repr=False)
class Sigmoid(_Numerical):
    r"""Logistic sigmoid :math:`\phi(x) = 1 / (1 + e^{-x})`, duals by quadrature.

    For the closed-form look-alike of Neural Tangents' ``Sigmoid_like`` use
    ``Erf(0.5, 1 / 2.4020563531719796, 0.5)``.

    Args:
        degree: Gauss-Hermite nodes per dimension (see :class:`Activation`).

    """

    def fn(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


@dataclass(frozen=True, repr=False)
class Softplus(_Numerical):
    r"""Softplus :math:`\phi(x) = \log(1 + e^x)` (``F.softplus``), duals by quadrature.

    Args:
        degree: Gauss-Hermite nodes per dimension (see :class:`Activation`).

    """

    def fn(self, x: Tensor) -> Tensor:
        return torch.nn.functional.softplus(x)


@dataclass(frozen=True, repr=False)
class SiLU(_Numerical):
    r"""SiLU (swish) :math:`\phi(x) = x / (1 + e^{-x})`, duals by quadrature.

    Args:
        degree: Gauss-Hermite nodes per dimension (see :class:`Activation`).

    """

    def fn(self, x: Tensor) -> Tensor:
        return torch.nn.functional.silu(x)


@dataclass(frozen=True, repr=False)
class ELU(_Numerical):
    r"""ELU :math:`\phi(x) = x` for :math:`x > 0`, :math:`\alpha (e^x - 1)` otherwise.

    The derivative jumps at ``0`` unless ``alpha = 1`` (and the second derivative always
    does), so quadrature converges only algebraically: about ``1e-5`` for the NNGP dual
    and ``3e-3`` for the derivative dual at ``degree=256``.

    Args:
        alpha: the negative saturation value (``F.elu``'s ``alpha``).
        degree: Gauss-Hermite nodes per dimension (see :class:`Activation`).

    """

    alpha: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, numbers.Real)
            or not math.isfinite(self.alpha)
        ):
            raise HyperparameterError(
                describe(repr(self), f"alpha={self.alpha!r}", "Use a finite real number.")
            )

    def fn(self, x: Tensor) -> Tensor:
        return torch.nn.functional.elu(x, self.alpha)
