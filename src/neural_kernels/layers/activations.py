r"""Closed-form dual activations.

Each activation :math:`\phi` maps the NNGP :math:`K \mapsto \mathbb E[\phi(u)\phi(v)]` and
the NTK :math:`\Theta \mapsto \Theta\,\mathbb E[\phi'(u)\phi'(v)]` for
:math:`(u, v) \sim \mathcal N(0, [[q_1, K], [K, q_2]])`. See
:mod:`neural_kernels.layers._elementwise` for the protocol.

Notation below: :math:`c = K / \sqrt{q_1 q_2}`, :math:`\theta = \arccos c`,
:math:`S = q_1 + q_2`, :math:`P = q_1 q_2`. Every formula is the exact Gaussian
expectation (checked against two-dimensional quadrature in the tests) and follows Neural
Tangents' conventions; where Neural Tangents differs from the exact dual the class
docstring says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .. import _native
from .._native.chain import ChainOp
from .._numerics import snap_factor
from .._validation import check_real
from ..core.protocol import Facts
from ..errors import HyperparameterError, describe
from ._elementwise import Elementwise
from ._safe import INV_2PI, correlation, safe_acos, safe_sqrt

__all__ = [
    "GELU",
    "RBF",
    "ABReLU",
    "Abs",
    "Cos",
    "Erf",
    "Exp",
    "Gaussian",
    "LeakyReLU",
    "ReLU",
    "Sign",
    "Sin",
]

#: A real hyperparameter: a number, or a 0-d tensor (which may require grad).
Real = float | Tensor

#: Largest polynomial degree accepted (the moment coefficients grow like ``(2n)!``).
MAX_DEGREE = 64


def _abrelu_dual(
    a: Real, b: Real, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
) -> tuple[Tensor, Tensor | None]:
    r"""Dual of :math:`\phi(x) = a \min(x, 0) + b \max(x, 0)`.

    .. math::
        \mathbb E[\phi\phi] = \frac{(a-b)^2}{2\pi}\left(\sqrt{q_1 q_2}\sin\theta - \theta K\right)
            + \frac{a^2 + b^2}{2} K, \qquad
        \mathbb E[\phi'\phi'] = \frac{a^2 + b^2}{2} - \frac{(a-b)^2}{2\pi}\theta
    """
    c, norm = correlation(k, q1, q2)
    theta = safe_acos(c)
    sin = safe_sqrt(1.0 - c * c)
    d2 = (a - b) ** 2 * INV_2PI
    s2 = 0.5 * (a * a + b * b)
    # (a-b)^2/(2 pi) * norm * (sin - theta c) + s2 * norm * c
    inner = sin - theta * c
    nngp = (inner * d2 + c * s2) * norm
    dot = None
    if want_dot:
        dot = s2 - d2 * theta
    return nngp, dot


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _abrelu_kernels(
    layer: Elementwise, a: Real, b: Real, k: Tensor, q1: Tensor, q2: Tensor, ntk: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Both kernels through the compiled arc-cosine dual when it applies, else ``layer.dual``."""
    plain = not isinstance(a, Tensor) and not isinstance(b, Tensor)
    if plain and not _needs_grad(k, q1, q2) and (ntk is None or not _needs_grad(ntk)):
        norm = torch.mul(q1.clamp_min(0.0).sqrt(), q2.clamp_min(0.0).sqrt())
        fused = _native.abrelu_dual(k, norm, ntk, float(a), float(b))
        if fused is not None:
            return fused
    return Elementwise.dual_kernels(layer, k, q1, q2, ntk)


def _relu_dual_inplace(
    k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
) -> tuple[Tensor, Tensor | None]:
    """The arc-cosine dual without autograd: fused, in place, few temporaries.

    Same values as the differentiable path (including the snap of correlations within
    16 rounding units of one, see :func:`~neural_kernels.layers._safe.correlation`).
    """
    tiny = torch.finfo(k.dtype).tiny
    snap = snap_factor(k.dtype)
    c = k * (q1.clamp_min(tiny).rsqrt() * snap)
    c.mul_(q2.clamp_min(tiny).rsqrt()).clamp_(-1.0, 1.0)
    one = torch.ones((), dtype=k.dtype, device=k.device)
    nngp = torch.addcmul(one, c, c, value=-1.0).clamp_min_(0.0).sqrt_()  # sin(theta)
    theta = torch.acos(c)
    theta.neg_().add_(math.pi)  # pi - theta
    nngp.addcmul_(theta, c)
    nngp.mul_(q1.sqrt() * INV_2PI).mul_(q2.sqrt())
    dot = theta.mul_(INV_2PI) if want_dot else None
    return nngp, dot


@dataclass(frozen=True)
class _ArcCosine(Elementwise):
    r"""An activation :math:`\phi(x) = a \min(x, 0) + b \max(x, 0)`: its dual is an arc-cosine.

    Subclasses give the slopes :math:`(a, b)` (:meth:`arccos_slopes`) and ``fn``; the
    dual, its compiled fused form and the variance map are written here once.
    """

    clamps_correlation: ClassVar[bool] = True

    def slopes(self) -> tuple[Real, Real]:
        """The slopes ``(a, b)``, numbers or 0-d tensors (hyperparameters with grad)."""
        raise NotImplementedError

    def arccos_slopes(self) -> tuple[float, float] | None:
        """The slopes as numbers for the compiled kernels (``None`` for tensor slopes)."""
        a, b = self.slopes()
        if isinstance(a, Tensor) or isinstance(b, Tensor):
            return None
        return (a, b)

    def chain_op(self, facts: Facts) -> ChainOp | None:
        """The arc-cosine dual as an ``act`` op (numbers for slopes only)."""
        slopes = self.arccos_slopes()
        if slopes is None:
            return None
        return ChainOp(
            "act", n=tuple(facts.spatial_shape), slopes=(float(slopes[0]), float(slopes[1]))
        )

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        a, b = self.slopes()
        return _abrelu_dual(a, b, k, q1, q2, want_dot)

    def dual_kernels(
        self, k: Tensor, q1: Tensor, q2: Tensor, ntk: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        a, b = self.slopes()
        return _abrelu_kernels(self, a, b, k, q1, q2, ntk)

    def dual_var(self, q: Tensor) -> Tensor:
        a, b = self.slopes()
        return 0.5 * (a * a + b * b) * q


@dataclass(frozen=True)
class ReLU(_ArcCosine):
    r"""Rectified linear unit :math:`\phi(x) = \max(x, 0)`: the arc-cosine kernel.

    .. math::
        \mathbb E[\phi\phi] = \frac{\sqrt{q_1 q_2}}{2\pi}\left(\sin\theta + (\pi - \theta)\cos\theta
            \right), \qquad \mathbb E[\phi'\phi'] = \frac{\pi - \theta}{2\pi}
    """

    def fn(self, x: Tensor) -> Tensor:
        return torch.relu(x)

    def slopes(self) -> tuple[Real, Real]:
        return (0.0, 1.0)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        if not _needs_grad(k, q1, q2):
            return _relu_dual_inplace(k, q1, q2, want_dot)
        return super().dual(k, q1, q2, want_dot)


@dataclass(frozen=True)
class LeakyReLU(_ArcCosine):
    r"""Leaky ReLU :math:`\phi(x) = \max(x, 0) + \alpha \min(x, 0)`, ``alpha = negative_slope``.

    The dual is that of :class:`ABReLU` with ``a = negative_slope``, ``b = 1``.
    """

    negative_slope: Real = 0.01

    def __post_init__(self) -> None:
        check_real(self, "negative_slope", self.negative_slope, allow_tensor=True)

    def fn(self, x: Tensor) -> Tensor:
        if isinstance(self.negative_slope, Tensor):
            return torch.where(x >= 0, x, self.negative_slope * x)
        return torch.nn.functional.leaky_relu(x, self.negative_slope)

    def slopes(self) -> tuple[Real, Real]:
        return (self.negative_slope, 1.0)


@dataclass(frozen=True)
class ABReLU(_ArcCosine):
    r"""Two-slope linear unit :math:`\phi(x) = a \min(x, 0) + b \max(x, 0)`.

    .. math::
        \mathbb E[\phi\phi] = \frac{(a-b)^2}{2\pi}\left(\sqrt{q_1 q_2}\sin\theta - \theta K\right)
            + \frac{a^2 + b^2}{2} K, \qquad
        \mathbb E[\phi'\phi'] = \frac{a^2 + b^2}{2} - \frac{(a-b)^2}{2\pi}\theta
    """

    a: Real = 0.0
    b: Real = 1.0

    def __post_init__(self) -> None:
        for name in ("a", "b"):
            check_real(self, name, getattr(self, name), allow_tensor=True)

    def fn(self, x: Tensor) -> Tensor:
        return self.a * torch.clamp_max(x, 0.0) + self.b * torch.clamp_min(x, 0.0)

    def slopes(self) -> tuple[Real, Real]:
        return (self.a, self.b)


@dataclass(frozen=True)
class Abs(_ArcCosine):
    r"""Absolute value :math:`\phi(x) = |x|` (:class:`ABReLU` with ``a = -1``, ``b = 1``).

    .. math::
        \mathbb E[\phi\phi] = \frac{2}{\pi}\left(\sqrt{q_1 q_2}\sin\theta - \theta K\right) + K,
        \qquad \mathbb E[\phi'\phi'] = 1 - \frac{2\theta}{\pi}
    """

    def fn(self, x: Tensor) -> Tensor:
        return torch.abs(x)

    def slopes(self) -> tuple[Real, Real]:
        return (-1.0, 1.0)


# ----------------------------------------------------------------------------------------
# Smooth activations
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Erf(Elementwise):
    r"""Scaled error function :math:`\phi(x) = a\,\mathrm{erf}(b x) + c`.

    With :math:`D = (1 + 2b^2 q_1)(1 + 2b^2 q_2) - 4 b^4 K^2`,

    .. math::
        \mathbb E[\phi\phi] = \frac{2a^2}{\pi}\arcsin\frac{2 b^2 K}
            {\sqrt{(1 + 2b^2 q_1)(1 + 2b^2 q_2)}} + c^2, \qquad
        \mathbb E[\phi'\phi'] = \frac{4 a^2 b^2}{\pi \sqrt D}.

    Neural Tangents' ``Sigmoid_like`` is ``Erf(0.5, 1 / 2.4020563531719796, 0.5)``.
    """

    a: Real = 1.0
    b: Real = 1.0
    c: Real = 0.0

    def __post_init__(self) -> None:
        for name in ("a", "b", "c"):
            check_real(self, name, getattr(self, name), allow_tensor=True)

    def fn(self, x: Tensor) -> Tensor:
        return self.a * torch.erf(self.b * x) + self.c

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        b2 = self.b * self.b
        kb = k * (2.0 * b2)
        # D >= 1 + 2 b^2 (q1 + q2): never zero, smooth at correlation one.
        root = torch.sqrt((1.0 + 2.0 * b2 * q1) * (1.0 + 2.0 * b2 * q2) - kb * kb)
        a2 = self.a * self.a
        nngp = torch.atan2(kb, root) * (2.0 * a2 / math.pi) + self.c * self.c
        dot = (4.0 * a2 * b2 / math.pi) / root if want_dot else None
        return nngp, dot

    def dual_var(self, q: Tensor) -> Tensor:
        qb = q * (2.0 * self.b * self.b)
        return (
            torch.atan2(qb, torch.sqrt(1.0 + 2.0 * qb)) * (2.0 * self.a * self.a / math.pi)
            + self.c * self.c
        )


_GELU_MODES = ("none", "tanh")


@dataclass(frozen=True)
class GELU(Elementwise):
    r"""Gaussian error linear unit :math:`\phi(x) = x\,\Phi(x)` (``torch.nn.GELU``).

    With :math:`P_1 = (1 + q_1)(1 + q_2)`, :math:`\delta = \sqrt{P_1 - K^2}` and
    :math:`\alpha = \arctan(K / \delta)`,

    .. math::
        \mathbb E[\phi\phi] = \frac K4 + \frac1{2\pi}\left(\frac{K^2 + P\delta^2}{P_1\delta}
            + K\alpha\right), \qquad
        \mathbb E[\phi'\phi'] = \frac14 + \frac{\alpha}{2\pi} + \frac{K}{2\pi\delta}
            \left(\frac1{\delta^2} + \frac{1 - P}{P_1} + 1\right).

    ``approximate="tanh"`` changes only the finite twin, which then applies
    ``torch.nn.functional.gelu(x, approximate="tanh")``. The kernels stay those of the
    exact GELU, as in Neural Tangents (``Gelu(approximate=True)``); they differ from the
    exact dual of the tanh approximation by about ``1e-4`` relative.
    """

    approximate: str = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.approximate, str) or self.approximate not in _GELU_MODES:
            raise HyperparameterError(
                describe(
                    repr(self),
                    f"approximate={self.approximate!r}",
                    'Use approximate="none" (exact) or approximate="tanh".',
                )
            )

    def fn(self, x: Tensor) -> Tensor:
        return torch.nn.functional.gelu(x, approximate=self.approximate)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        prod = q1 * q2
        prod1 = (1.0 + q1) * (1.0 + q2)
        delta2 = prod1 - k * k  # >= 1 + q1 + q2
        delta = torch.sqrt(delta2)
        angle = torch.atan2(k, delta)
        nngp = ((k * k + prod * delta2) / (prod1 * delta) + k * angle) * INV_2PI + 0.25 * k
        dot = None
        if want_dot:
            inner = 1.0 / delta2 + (1.0 - prod) / prod1 + 1.0
            dot = 0.25 + angle * INV_2PI + inner * k / delta * INV_2PI
        return nngp, dot

    def dual_var(self, q: Tensor) -> Tensor:
        root = torch.sqrt(1.0 + 2.0 * q)
        inner = q / ((q + 1.0) * root) + 0.5 * torch.atan2(q, root)
        return (inner / math.pi + 0.25) * q


def _sinh_exp(x: Tensor, y: Tensor) -> Tensor:
    r""":math:`\sinh(x)\,e^{-y}` for :math:`|x| \le y`, without cancellation or overflow.

    Small :math:`|x|` takes ``sinh`` (exact near 0, where the difference of exponentials
    cancels); larger :math:`|x|` the difference of two exponentials with exponents ``<= 0``.
    """
    small = torch.sinh(x.clamp(-1.0, 1.0)) * torch.exp(-y)
    large = 0.5 * (torch.exp(x - y) - torch.exp(-x - y))
    return torch.where(x.abs() < 1.0, small, large)


def _cos(x: Real) -> Real:
    """``cos`` of a number or of a 0-d tensor (keeping its graph)."""
    return torch.cos(x) if isinstance(x, Tensor) else math.cos(x)


def _sin(x: Real) -> Real:
    """``sin`` of a number or of a 0-d tensor (keeping its graph)."""
    return torch.sin(x) if isinstance(x, Tensor) else math.sin(x)


def _sin_dual(
    a: Real, b: Real, c: Real, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
) -> tuple[Tensor, Tensor | None]:
    r"""Dual of :math:`a \sin(b x + c)`, as a sum of non-negative terms for :math:`K \ge 0`.

    With :math:`x = b^2 K` and :math:`y = b^2 (q_1 + q_2)/2`:

    .. math::
        \mathbb E[\phi\phi] = a^2 \left(\sinh(x) e^{-y} + \sin^2(c)\, e^{-x-y}\right), \qquad
        \mathbb E[\phi'\phi'] = a^2 b^2 \left(\sinh(x) e^{-y} + \cos^2(c)\, e^{-x-y}\right),

    so small kernels keep their full relative precision (no cancellation).
    """
    b2 = b * b
    x = k * b2
    y = (q1 + q2) * (0.5 * b2)
    sh = _sinh_exp(x, y)
    tail = torch.exp(-x - y)
    a2 = a * a
    nngp = (sh + tail * _sin(c) ** 2) * a2
    dot = (sh + tail * _cos(c) ** 2) * (a2 * b2) if want_dot else None
    return nngp, dot


def _sin_var(a: Real, b: Real, c: Real, q: Tensor) -> Tensor:
    r""":math:`\mathbb E[\phi(u)^2] = a^2 ((1 - e^{-2 b^2 q})/2 + \sin^2(c) e^{-2 b^2 q})`."""
    two_x = q * (-2.0 * b * b)
    return (-0.5 * torch.expm1(two_x) + torch.exp(two_x) * _sin(c) ** 2) * (a * a)


@dataclass(frozen=True)
class Sin(Elementwise):
    r"""Sine :math:`\phi(x) = a \sin(b x + c)`.

    .. math::
        \mathbb E[\phi\phi] = \frac{a^2}2\left(e^{b^2(K - S/2)} - \cos(2c)\,e^{-b^2(K + S/2)}
            \right), \qquad
        \mathbb E[\phi'\phi'] = \frac{a^2 b^2}2\left(e^{b^2(K - S/2)}
            + \cos(2c)\,e^{-b^2(K + S/2)}\right).
    """

    a: Real = 1.0
    b: Real = 1.0
    c: Real = 0.0

    def __post_init__(self) -> None:
        for name in ("a", "b", "c"):
            check_real(self, name, getattr(self, name), allow_tensor=True)

    def fn(self, x: Tensor) -> Tensor:
        return self.a * torch.sin(self.b * x + self.c)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        return _sin_dual(self.a, self.b, self.c, k, q1, q2, want_dot)

    def dual_var(self, q: Tensor) -> Tensor:
        return _sin_var(self.a, self.b, self.c, q)


@dataclass(frozen=True)
class Cos(Elementwise):
    r"""Cosine :math:`\phi(x) = a \cos(b x + c)`: :class:`Sin` with phase :math:`c + \pi/2`.

    .. math::
        \mathbb E[\phi\phi] = \frac{a^2}2\left(e^{b^2(K - S/2)} + \cos(2c)\,e^{-b^2(K + S/2)}
            \right), \qquad
        \mathbb E[\phi'\phi'] = \frac{a^2 b^2}2\left(e^{b^2(K - S/2)}
            - \cos(2c)\,e^{-b^2(K + S/2)}\right).
    """

    a: Real = 1.0
    b: Real = 1.0
    c: Real = 0.0

    def __post_init__(self) -> None:
        for name in ("a", "b", "c"):
            check_real(self, name, getattr(self, name), allow_tensor=True)

    def fn(self, x: Tensor) -> Tensor:
        return self.a * torch.cos(self.b * x + self.c)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        return _sin_dual(self.a, self.b, self.c + 0.5 * math.pi, k, q1, q2, want_dot)

    def dual_var(self, q: Tensor) -> Tensor:
        return _sin_var(self.a, self.b, self.c + 0.5 * math.pi, q)


@dataclass(frozen=True)
class RBF(Elementwise):
    r"""Random-Fourier-feature activation :math:`\phi(x) = \sqrt2\sin(\sqrt{2\gamma}\,x + \pi/4)`.

    Its NNGP is the RBF (squared exponential) kernel of the pre-activations:

    .. math::
        \mathbb E[\phi\phi] = e^{-\gamma(q_1 + q_2 - 2K)}, \qquad
        \mathbb E[\phi'\phi'] = 2\gamma\, e^{-\gamma(q_1 + q_2 - 2K)},

    so after ``Dense(w_std=1, b_std=None)`` on ``d`` features the NNGP is
    :math:`\exp(-\gamma \lVert x - x'\rVert^2 / d)`, with :math:`\gamma = 1/(2\ell^2)`.
    """

    gamma: Real = 1.0

    def __post_init__(self) -> None:
        check_real(self, "gamma", self.gamma, minimum=0.0, allow_tensor=True)

    def fn(self, x: Tensor) -> Tensor:
        return math.sqrt(2.0) * torch.sin((2.0 * self.gamma) ** 0.5 * x + 0.25 * math.pi)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        nngp = torch.exp((2.0 * k - q1 - q2) * self.gamma)
        dot = nngp * (2.0 * self.gamma) if want_dot else None
        return nngp, dot

    def dual_var(self, q: Tensor) -> Tensor:
        return torch.ones_like(q)


@dataclass(frozen=True)
class Exp(Elementwise):
    r"""Exponential :math:`\phi(x) = a e^{b x}`.

    .. math::
        \mathbb E[\phi\phi] = a^2 e^{b^2 (S/2 + K)}, \qquad
        \mathbb E[\phi'\phi'] = a^2 b^2 e^{b^2 (S/2 + K)}.

    Always finite, but grows fast: ``b^2 q`` beyond about 350 (float64) or 40 (float32)
    overflows.
    """

    a: Real = 1.0
    b: Real = 1.0

    def __post_init__(self) -> None:
        for name in ("a", "b"):
            check_real(self, name, getattr(self, name), allow_tensor=True)

    def fn(self, x: Tensor) -> Tensor:
        return self.a * torch.exp(self.b * x)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        b2 = self.b * self.b
        nngp = torch.exp((0.5 * (q1 + q2) + k) * b2) * (self.a * self.a)
        dot = nngp * b2 if want_dot else None
        return nngp, dot

    def dual_var(self, q: Tensor) -> Tensor:
        return torch.exp(q * (2.0 * self.b * self.b)) * (self.a * self.a)


@dataclass(frozen=True)
class Gaussian(Elementwise):
    r"""Gaussian bump :math:`\phi(x) = a e^{b x^2}` (``b < 0`` for a bump).

    With :math:`D = (1 - 2b q_1)(1 - 2b q_2) - 4 b^2 K^2`,

    .. math::
        \mathbb E[\phi\phi] = \frac{a^2}{\sqrt D}, \qquad
        \mathbb E[\phi'\phi'] = \frac{4 a^2 b^2 K}{D^{3/2}}.

    For ``b > 0`` the expectation :math:`\mathbb E[\phi(u)^2]` is finite only while
    :math:`4 b q < 1`; a larger input variance raises :class:`HyperparameterError`.
    """

    a: Real = 1.0
    b: Real = -1.0

    def __post_init__(self) -> None:
        for name in ("a", "b"):
            check_real(self, name, getattr(self, name), allow_tensor=True)

    def fn(self, x: Tensor) -> Tensor:
        return self.a * torch.exp(self.b * x * x)

    def _check_domain(self, *qs: Tensor) -> None:
        if self.b <= 0:
            return
        q = max(float(t.detach().max()) for t in qs)
        if 4.0 * self.b * q >= 1.0:
            raise HyperparameterError(
                describe(
                    repr(self),
                    f"the input variance reaches q={q:.6g}, so 4*b*q={4.0 * self.b * q:.6g} "
                    f">= 1 and E[phi(u)^2] = E[a^2 exp(2 b u^2)] is infinite",
                    f"Use b < 1/(4 q) = {0.25 / q:.6g} (b <= 0 is always finite), or shrink "
                    "the variance before this layer (smaller w_std or b_std).",
                )
            )

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        self._check_domain(q1, q2)
        b = self.b
        det = (1.0 - 2.0 * b * q1) * (1.0 - 2.0 * b * q2) - (4.0 * b * b) * k * k
        inv_root = torch.rsqrt(det)
        a2 = self.a * self.a
        nngp = inv_root * a2
        dot = k * inv_root**3 * (4.0 * a2 * b * b) if want_dot else None
        return nngp, dot

    def dual_var(self, q: Tensor) -> Tensor:
        self._check_domain(q)
        return torch.rsqrt(1.0 - 4.0 * self.b * q) * (self.a * self.a)


# ----------------------------------------------------------------------------------------
# Homogeneous activations: arc-cosine kernels
# ----------------------------------------------------------------------------------------


def _masked_correlation(k: Tensor, q1: Tensor, q2: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`correlation` with ``c = norm = 0`` and zero gradients where a variance is zero.

    A zero variance (a zero input without bias) makes that side a constant; the kernel
    is not differentiable there (it is a cone in the input), and the plain square roots
    would give infinite or NaN gradients. Masking the variances first (the double-where
    trick) gives the zero subgradient instead.
    """
    pos1, pos2 = q1 > 0, q2 > 0
    c, norm = correlation(
        k, torch.where(pos1, q1, torch.ones_like(q1)), torch.where(pos2, q2, torch.ones_like(q2))
    )
    both = pos1 & pos2
    zero = torch.zeros((), dtype=k.dtype, device=k.device)
    return torch.where(both, c, zero), torch.where(both, norm, zero)


@dataclass(frozen=True)
class Sign(Elementwise):
    r"""Sign :math:`\phi(x) = \mathrm{sign}(x)`.

    .. math::
        \mathbb E[\phi\phi] = 1 - \frac{2\theta}\pi = \frac2\pi\arcsin c, \qquad
        \mathbb E[\phi'\phi'] = 0.

    The derivative is a delta at zero, which is dropped (Neural Tangents' convention),
    so the NTK after ``Sign`` comes only from later layers. A zero-variance input gives
    :math:`\phi = 0`.
    """

    clamps_correlation: ClassVar[bool] = True

    def fn(self, x: Tensor) -> Tensor:
        return torch.sign(x)

    def dual(
        self, k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool
    ) -> tuple[Tensor, Tensor | None]:
        c, _ = _masked_correlation(k, q1, q2)  # c = 0 where a variance is zero: phi = 0
        nngp = 1.0 - safe_acos(c) * (2.0 / math.pi)
        dot = torch.zeros_like(k) if want_dot else None
        return nngp, dot

    def dual_var(self, q: Tensor) -> Tensor:
        return (q > 0).to(q.dtype)
