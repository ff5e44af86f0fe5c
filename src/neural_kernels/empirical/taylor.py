r"""Linearised networks and their higher-order Taylor expansions in the parameters.

For a model :math:`f(x; \theta)` and its parameters :math:`\theta_0` at construction,

.. math::
    f^{(m)}(x; \theta) = \sum_{j=0}^{m} \frac{1}{j!}\, D^j_\theta f(x; \theta_0)
        [\theta - \theta_0, \ldots, \theta - \theta_0],

evaluated with nested ``torch.func.jvp`` (no Jacobian is formed). Order 1 is the
linearised network :math:`f(x;\theta_0) + J(x;\theta_0)(\theta-\theta_0)`, whose
gradient-descent training is exactly kernel regression with the empirical NTK at
:math:`\theta_0`.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn
from torch.func import jvp

from .._functional import functional_call
from ..errors import HyperparameterError, InputTypeError, ModelError, describe
from ._model import check_modules, forward_ad_ready

__all__ = ["TaylorExpansion", "linearize", "taylor_expand"]


class TaylorExpansion(nn.Module):
    r"""A model expanded to order ``order`` in its parameters around their initial values.

    ``TaylorExpansion(model, order)(x)`` is
    :math:`\sum_{j \le \mathrm{order}} D^j f(x;\theta_0)[\theta-\theta_0]^{j} / j!`.
    Its trainable parameters :math:`\theta` live in :attr:`model` (a deep copy of the
    given model, so they start at :math:`\theta_0` and the original is never touched);
    :math:`\theta_0` is kept in buffers. Train it like any module.

    The expansion is a fixed function of :math:`\theta`: :meth:`train`/:meth:`eval` do
    not change the mode of the inner model (build it from a model in the mode you
    want, normally ``model.eval()``); batch norm and dropout in training mode are refused.

    Attributes:
        model: the copy holding :math:`\theta` (also its buffers and frozen parameters).
        order: the order of the expansion.

    """

    model: nn.Module
    order: int
    _names: tuple[str, ...]
    initial: nn.Module

    def __init__(self, model: nn.Module, order: int, *, where: str = "taylor_expand") -> None:
        if not isinstance(model, nn.Module):
            raise InputTypeError(
                describe(where, f"model has type {type(model).__name__}", "Pass a torch.nn.Module.")
            )
        if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 0:
            raise HyperparameterError(
                describe(where, f"order={order!r}", "Pass an integer order >= 0 (1: linearise).")
            )
        check_modules(model, where)
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        if not names:
            raise ModelError(
                describe(
                    where,
                    f"the model ({type(model).__name__}) has no trainable parameters",
                    "Expand a model with parameters that require grad.",
                )
            )
        super().__init__()
        self.model = copy.deepcopy(model)
        self.order = int(order)
        self._names = tuple(names)
        self.initial = nn.Module()
        params = dict(self.model.named_parameters())
        for i, name in enumerate(self._names):
            self.initial.register_buffer(f"p{i}", params[name].detach().clone())

    def initial_parameters(self) -> dict[str, Tensor]:
        r"""The expansion point :math:`\theta_0`, by parameter name."""
        return {n: getattr(self.initial, f"p{i}") for i, n in enumerate(self._names)}

    def train(self, mode: bool = True) -> TaylorExpansion:
        """Set this module's flag only: the inner model keeps its mode (a fixed function)."""
        self.training = mode
        return self

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Tensor:
        """The expansion at the current parameters; extra arguments go to the model."""
        named = dict(self.model.named_parameters())
        theta0 = self.initial_parameters()
        consts: dict[str, Tensor] = {n: v for n, v in named.items() if n not in theta0}
        consts.update(dict(self.model.named_buffers()))

        def f(p: dict[str, Tensor]) -> Tensor:
            return functional_call(self.model, {**consts, **p}, (x, *args), kwargs)

        if self.order == 0:
            return f(theta0)
        delta = {n: named[n] - theta0[n] for n in self._names}
        forward_ad_ready()
        terms = derivatives(f, theta0, delta, self.order)
        out = terms[0]
        for j in range(1, len(terms)):
            out = out + terms[j] / math.factorial(j)
        return out

    def extra_repr(self) -> str:
        return f"order={self.order}"


def derivatives(
    f: Callable[[dict[str, Tensor]], Tensor],
    p0: dict[str, Tensor],
    delta: dict[str, Tensor],
    order: int,
) -> tuple[Tensor, ...]:
    r"""``(f(p0), Df(p0)[delta], ..., D^order f(p0)[delta, ...])`` by nested ``jvp``."""
    if order == 0:
        return (f(p0),)

    def lower(p: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return derivatives(f, p, delta, order - 1)

    primal, tangent = jvp(lower, (p0,), (delta,))  # type: ignore[misc]  # no aux
    return (*primal, tangent[-1])


def linearize(model: nn.Module) -> TaylorExpansion:
    r"""The linearised network :math:`f(x;\theta_0) + J(x;\theta_0)(\theta - \theta_0)`.

    Returns a trainable ``nn.Module`` whose parameters :math:`\theta` are copies of the
    model's, initialised at :math:`\theta_0` (its output equals the model's there). It is
    evaluated with one ``torch.func.jvp`` (about the cost of two forward passes) and is
    differentiable in :math:`\theta`. Trained by full-batch gradient descent on MSE it
    follows exactly the kernel dynamics of the empirical NTK at :math:`\theta_0`
    (:func:`~neural_kernels.predict.gradient_descent_mse` with
    ``empirical_ntk(model, x_train)``). Same as ``taylor_expand(model, 1)``.

    Example:
        >>> import torch, neural_kernels as nk
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> f_lin = nk.linearize(model)
        >>> x = torch.randn(4, 3)
        >>> torch.allclose(f_lin(x), model(x))
        True

    """
    return TaylorExpansion(model, 1, where="linearize")


def taylor_expand(model: nn.Module, order: int) -> TaylorExpansion:
    r"""The Taylor expansion of ``model`` to ``order`` in its parameters around :math:`\theta_0`.

    :math:`\sum_{j \le \mathrm{order}} D^j f(x;\theta_0)[\theta-\theta_0]^{j} / j!` by
    nested ``torch.func.jvp`` (the cost grows about twofold per order). ``order=0`` is
    the constant :math:`f(x;\theta_0)`, ``order=1`` equals :func:`linearize`. Same
    interface as :func:`linearize`: a trainable module starting at :math:`\theta_0`.
    """
    return TaylorExpansion(model, order)
