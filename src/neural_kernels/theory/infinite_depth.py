r"""Infinitely deep, infinitely wide networks as classifiers (Radhakrishnan, Belkin, Uhler).

Inputs on the unit sphere, no biases, the activation normalised to :math:`\mathbb E
\phi(z)^2 = 1`. Its *normalised dual* :math:`\check\phi(\rho) = \mathbb E[\phi(u)\phi(v)]`
(unit variances, correlation :math:`\rho`) is a power series :math:`\sum_i a_i\rho^i`
with :math:`a_i \ge 0`, :math:`\check\phi(1) = 1`, and the kernels of depth ``L`` are

.. math::
    \rho_{l+1} = \check\phi(\rho_l), \qquad
    \Theta_{l+1} = \check\phi(\rho_l) + \Theta_l\, \check\phi'(\rho_l), \qquad
    \rho_0 = \Theta_0 = x \cdot x'.

As :math:`L \to \infty` the classifier :math:`\operatorname{sign} K(x, X) K(X, X)^{-1} y`
tends to

- the **majority vote** when :math:`\check\phi(0) > 0` (ReLU: every correlation is
  driven to one attracting fixed point);
- **1-nearest neighbour** when :math:`\check\phi(0) = \check\phi'(0) = 0`
  (:math:`\rho_L = \rho^{k^L}`);
- a **singular kernel** :math:`\operatorname{sign}\sum_i y_i \psi(x_i \cdot x)`,
  :math:`\psi(\rho) \sim (1 - \rho)^{-\alpha}`, with
  :math:`\alpha = \log(1/\check\phi'(0)) / \log \check\phi'(1)`, when
  :math:`0 < \check\phi'(0) < 1`; Bayes-consistent on :math:`S^{d-1}` iff
  :math:`\alpha = (d - 1)/2`.

Deep kernels of classes 2 and 3 underflow (:math:`\rho^{3^{30}}`): they are iterated here
in log space, :math:`\log|\rho_{l+1}| = \log a_k + k \log|\rho_l|` below
:math:`|\rho| = 10^{-30}` (``a_k`` the lowest nonzero coefficient), and predictions
rescale each test row by its largest entry (a positive factor, so the sign is kept).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._validation import given
from ..errors import HyperparameterError, LayerCompatibilityError, NonFiniteError, describe
from ..layers import Elementwise, Polynomial, Sin
from ..layers.monomials import _hermite_coef

__all__ = [
    "NormalizedDual",
    "deep_kernel",
    "deep_predict",
    "dual",
    "hermite_mixture",
    "optimal_activation",
    "sinh_activation",
]

_TINY = 1e-30
_TOL = 1e-12


@dataclass(frozen=True)
class NormalizedDual:
    r"""The normalised dual :math:`\check\phi` of an activation and its infinite-depth limit.

    Attributes:
        activation: the activation layer.
        phi0: :math:`\check\phi(0)`.
        dphi0: :math:`\check\phi'(0)`.
        dphi1: :math:`\check\phi'(1)`.
        alpha: the singular kernel's exponent (``None`` outside that class).
        classifier: ``"majority vote"``, ``"1-nearest neighbour"``, ``"singular kernel"``
            or ``"linear"`` (:math:`\check\phi(\rho) = \rho`: depth changes nothing).
        lowest_order: ``(k, a_k)``, the lowest nonzero term of the power series at ``0``.

    """

    activation: Elementwise
    phi0: float
    dphi0: float
    dphi1: float
    alpha: float | None
    classifier: str
    lowest_order: tuple[int, float]
    _scale: float = field(repr=False, default=1.0)

    def __call__(self, rho: Tensor) -> Tensor:
        r""":math:`\check\phi(\rho)` elementwise (``rho`` clamped to ``[-1, 1]``)."""
        return self.pair(rho, False)[0]

    def derivative(self, rho: Tensor) -> Tensor:
        r""":math:`\check\phi'(\rho) = \mathbb E[\phi'(u)\phi'(v)]` (normalised) elementwise."""
        return given(self.pair(rho, True)[1], "the derivative dual")

    def pair(self, rho: Tensor, want_dot: bool = True) -> tuple[Tensor, Tensor | None]:
        """``(phi(rho), phi'(rho))`` from one evaluation of the dual (unit variances)."""
        rho = torch.as_tensor(rho, dtype=torch.float64).clamp(-1.0, 1.0)
        one = torch.ones((), dtype=torch.float64)
        value, dot = self.activation.dual(rho, one, one, want_dot)
        value = value * self._scale
        return value, None if dot is None else dot * self._scale


def _lowest_order(
    f: NormalizedDual, phi0: float, dphi0: float, order: int = 8
) -> tuple[int, float]:
    """``(k, a_k)``: the lowest nonzero Taylor coefficient of the dual at ``0``.

    Orders above one (only when ``phi(0) = phi'(0) = 0``) by nested autograd of the
    derivative dual, stopping at the first nonzero one.
    """
    if abs(phi0) > _TOL:
        return 0, phi0
    if abs(dphi0) > _TOL:
        return 1, dphi0
    with torch.enable_grad():
        x = torch.zeros((), dtype=torch.float64, requires_grad=True)
        y = f.derivative(x)
        for i in range(2, order + 1):
            if not y.requires_grad:
                break
            (y,) = torch.autograd.grad(y, x, create_graph=True)
            a = float(y.detach()) / math.factorial(i)
            if abs(a) > _TOL:
                return i, a
    return order + 1, 0.0


def dual(activation: Elementwise) -> NormalizedDual:
    """The normalised dual of ``activation``, its values at 0 and 1 and its deep limit.

    Raises:
        LayerCompatibilityError: ``activation`` is not an elementwise activation, or
            ``E phi(z)^2 = 0``.

    """
    if not isinstance(activation, Elementwise):
        raise LayerCompatibilityError(
            describe(
                "nk.theory.dual",
                f"{activation!r}, not an elementwise activation",
                "Pass an activation layer such as nk.ReLU() or nk.theory.optimal_activation(2).",
            )
        )
    one = torch.ones((), dtype=torch.float64)
    var = float(activation.dual_var(one))
    if not var > 0:
        raise LayerCompatibilityError(
            describe("nk.theory.dual", f"{activation!r} with E phi(z)^2 = {var}", "Use another.")
        )
    f = NormalizedDual(activation, 0.0, 0.0, 0.0, None, "", (0, 0.0), 1.0 / var)
    phi0 = float(f(torch.zeros(())))
    dphi0 = float(f.derivative(torch.zeros(())))
    dphi1 = float(f.derivative(torch.ones(())))
    alpha = None
    if phi0 > _TOL:
        cls = "majority vote"
    elif dphi0 <= _TOL:
        cls = "1-nearest neighbour"
    elif dphi0 < 1.0 - _TOL:
        cls = "singular kernel"
        alpha = math.log(1.0 / dphi0) / math.log(dphi1)
    else:
        cls = "linear"
    return NormalizedDual(
        activation, phi0, dphi0, dphi1, alpha, cls, _lowest_order(f, phi0, dphi0), 1.0 / var
    )


def _check_depth(depth: object, where: str) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise HyperparameterError(
            describe(where, f"depth={depth!r}", "Pass an integer depth >= 0.")
        )
    return depth


def deep_kernel(
    phi: NormalizedDual | Elementwise,
    rho: Tensor,
    depth: int,
    kernel: str = "nngp",
    log_space: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""The depth-``L`` kernel of the correlations ``rho``, as ``(sign, log|K|)``.

    Args:
        phi: a :class:`NormalizedDual` or an activation.
        rho: cosines ``x . x'`` of unit inputs, any shape.
        depth: number of hidden layers ``L``.
        kernel: ``"nngp"`` (:math:`\rho_L`) or ``"ntk"`` (:math:`\Theta_L`; computed in
            linear space: it never underflows).
        log_space: iterate :math:`\log|\rho|` where :math:`|\rho| < 10^{-30}`. With
            ``False`` a kernel that underflows raises instead of returning zeros.

    Returns:
        ``(sign, log_abs)`` of the shape of ``rho``: ``K = sign * exp(log_abs)``.

    Raises:
        NonFiniteError: ``log_space=False`` and a nonzero kernel underflowed.

    """
    where = "nk.theory.deep_kernel"
    f = phi if isinstance(phi, NormalizedDual) else dual(phi)
    depth = _check_depth(depth, where)
    r = torch.as_tensor(rho, dtype=torch.float64).clamp(-1.0, 1.0)
    if kernel == "ntk":
        theta = r.clone()
        for _ in range(depth):
            value, dot = f.pair(r)
            theta = value + theta * given(dot, "the derivative dual")
            r = value
        return torch.sign(theta), theta.abs().log()
    if kernel != "nngp":
        raise HyperparameterError(
            describe(where, f"kernel={kernel!r}", "Pass kernel='nngp' or kernel='ntk'.")
        )
    k, a_k = f.lowest_order
    sign = torch.sign(r)
    logabs = r.abs().log()
    for _ in range(depth):
        small = logabs < math.log(_TINY)
        value = f(sign * logabs.exp())
        if log_space:
            lead_sign = sign if k % 2 else torch.ones_like(sign)
            # k = 0: a constant lead (0 * log 0 would be NaN at exactly orthogonal inputs)
            scaled = k * logabs if k else torch.zeros_like(logabs)
            lead_log = math.log(a_k) + scaled if a_k > 0 else torch.full_like(logabs, -math.inf)
            sign = torch.where(small, lead_sign, torch.sign(value))
            logabs = torch.where(small, lead_log, value.abs().log())
        else:
            if bool((small & (sign != 0)).any()):
                raise NonFiniteError(
                    describe(
                        where,
                        f"correlations below {_TINY:g} at depth {depth} ({f.activation!r})",
                        "Pass log_space=True: the kernel underflows in linear space.",
                    )
                )
            sign, logabs = torch.sign(value), value.abs().log()
    return sign, logabs


def deep_predict(
    phi: NormalizedDual | Elementwise,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    depth: int,
    kernel: str = "nngp",
) -> Tensor:
    """Labels ``sign(K(x, X) K(X, X)^{-1} y)`` of the depth-``L`` kernel, in log space.

    Args:
        phi: a :class:`NormalizedDual` or an activation.
        x_train: ``(n, d)`` training inputs (normalised to the unit sphere here).
        y_train: ``(n,)`` labels in ``{-1, +1}``.
        x_test: ``(m, d)`` test inputs.
        depth: number of hidden layers.
        kernel: ``"nngp"`` or ``"ntk"``.

    Returns:
        ``(m,)`` predicted labels in ``{-1, +1}`` (float64).

    """
    xtr = torch.nn.functional.normalize(torch.as_tensor(x_train, dtype=torch.float64), dim=1)
    xte = torch.nn.functional.normalize(torch.as_tensor(x_test, dtype=torch.float64), dim=1)
    y = torch.as_tensor(y_train, dtype=torch.float64)
    s_tr, l_tr = deep_kernel(phi, xtr @ xtr.T, depth, kernel)
    s_te, l_te = deep_kernel(phi, xte @ xtr.T, depth, kernel)
    # Rescale the train Gram by its diagonal scale and each test row by its maximum:
    # positive factors, so the predicted signs are those of the exact kernel.
    top = l_tr.diagonal().max()
    gram = s_tr * (l_tr - top).exp()
    if kernel == "nngp":
        gram.fill_diagonal_(1.0)  # rho_L(x, x) = 1 exactly
    row_max = l_te.amax(1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    cross = s_te * (l_te - row_max).exp()
    coef = torch.linalg.lstsq(gram, y[:, None]).solution[:, 0]
    out = torch.sign(cross @ coef)
    return torch.where(out == 0, torch.ones_like(out), out)


def hermite_mixture(weights: Sequence[float] | dict[int, float]) -> Polynomial:
    r"""The activation :math:`\phi = \sum_i w_i h_i` (:math:`h_i = He_i/\sqrt{i!}`), normalised.

    Its normalised dual is :math:`\sum_i w_i^2 \rho^i / \sum_i w_i^2`.

    Args:
        weights: ``{degree: w}`` or a sequence ``(w_0, w_1, ...)``.

    """
    items = dict(weights) if isinstance(weights, dict) else dict(enumerate(weights))
    norm = math.sqrt(sum(w * w for w in items.values()))
    if not norm > 0:
        raise HyperparameterError(
            describe("nk.theory.hermite_mixture", f"weights {weights!r}", "Pass a nonzero weight.")
        )
    top = max(items)
    coef = [0.0] * (top + 1)
    for degree, w in items.items():
        scale = w / norm / math.sqrt(math.factorial(degree))
        for i, c in enumerate(_hermite_coef(degree)):
            coef[i] += scale * c
    return Polynomial(coef=tuple(coef))


#: Hermite mixtures with ``alpha = (d - 1)/2`` on ``S^(d-1)`` (Radhakrishnan et al.).
_OPTIMAL = {
    2: {1: 1.0, 7: 1.0},
    3: {1: 1.0, 3: 1.0},
    5: {1: 0.5, 2: math.sqrt(0.5), 3: 0.5},
    9: {1: 0.25, 2: math.sqrt(7.0 / 8.0), 3: 0.25},
}


def optimal_activation(d: int) -> Polynomial:
    """A Hermite mixture whose infinitely deep NNGP classifier is Bayes-consistent on S^(d-1).

    Available for ``d`` in ``(2, 3, 5, 9)``; :func:`sinh_activation` covers any ``d >= 2``.
    """
    if d not in _OPTIMAL:
        raise HyperparameterError(
            describe(
                "nk.theory.optimal_activation",
                f"d={d!r}",
                f"Pass d in {sorted(_OPTIMAL)}, or use nk.theory.sinh_activation(d).",
            )
        )
    return hermite_mixture(_OPTIMAL[d])


def sinh_activation(d: int) -> Sin:
    r""":math:`\phi(x) = A \sin(\sqrt a\, x)` with dual :math:`\sinh(a\rho)/\sinh a` and
    :math:`\alpha = \log(\sinh a / a)/\log(a \coth a) = (d - 1)/2`.

    :math:`\alpha` grows from :math:`1/2` (as :math:`a \to 0`) with :math:`a`, so ``d >= 3``;
    on the circle (``d = 2``) use :func:`optimal_activation`.
    """  # noqa: D205
    from scipy.optimize import brentq

    if isinstance(d, bool) or not isinstance(d, int) or d < 3:
        raise HyperparameterError(
            describe(
                "nk.theory.sinh_activation",
                f"d={d!r}",
                "Pass a dimension d >= 3 (alpha = 1/2 is only the a -> 0 limit); "
                "for d = 2 use nk.theory.optimal_activation(2).",
            )
        )
    target = 0.5 * (d - 1)

    def gap(a: float) -> float:
        return math.log(math.sinh(a) / a) / math.log(a / math.tanh(a)) - target

    a = brentq(gap, 1e-3, 200.0, xtol=1e-13)
    amp = math.sqrt(2.0 / (1.0 - math.exp(-2.0 * a)))  # A^2 e^{-a} sinh(a) = 1
    return Sin(a=amp, b=math.sqrt(a))
