r"""Full-batch gradient descent on the mean squared error: the one training loop.

The width sweep (:func:`~neural_kernels.width_sweep`) and the demo report train finite
networks with it, in the conventions of :mod:`neural_kernels.predict`: the loss is

.. math:: L(\theta) = \frac{1}{2N} \sum_{i, o} (f_o(x_i; \theta) - y_{io})^2,
          \qquad N = y.\mathrm{numel}(),

and ``steps`` steps :math:`\theta \leftarrow \theta - \eta \nabla_\theta L` of learning
rate :math:`\eta` reach the training time ``t = steps`` of
``predict.gradient_descent_mse(..., learning_rate=eta)`` (absolute time
:math:`\tau = \eta\, t`), up to the discretisation.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import HyperparameterError, InputTypeError, ModelError, ShapeError, describe

__all__ = ["train_mse"]


def train_mse(
    model: nn.Module, x: Tensor, y: Tensor, *, learning_rate: float, steps: int
) -> Tensor:
    r"""Train ``model`` in place by ``steps`` full-batch gradient-descent steps on MSE.

    Every trainable parameter (``requires_grad=True``) takes the steps
    :math:`\theta \leftarrow \theta - \eta \nabla_\theta \frac{1}{2N}\sum (f(x) - y)^2`
    (plain gradient descent: no momentum, no weight decay), the model in its current mode.

    Args:
        model: the network, mapping ``x`` to outputs of the shape of ``y``.
        x: training inputs ``(n, *features)``.
        y: targets, the shape of ``model(x)``.
        learning_rate: the step size :math:`\eta > 0`.
        steps: the number of steps, ``>= 0``.

    Returns:
        The loss before each step and after the last one, shape ``(steps + 1,)``, detached.

    Raises:
        InputTypeError: ``model`` is not a module.
        ModelError: the model has no trainable parameters.
        ShapeError: ``model(x)`` and ``y`` differ in shape.
        HyperparameterError: a learning rate that is not a positive finite number, or
            ``steps`` not an integer ``>= 0``.

    """
    where = "train_mse"
    if not isinstance(model, nn.Module):
        raise InputTypeError(
            describe(where, f"model has type {type(model).__name__}", "Pass a torch.nn.Module.")
        )
    _check_options(learning_rate, steps, where)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelError(
            describe(
                where,
                f"the model ({type(model).__name__}) has no trainable parameters",
                "Train a model with parameters that require grad.",
            )
        )
    lr = float(learning_rate)
    losses: list[Tensor] = []
    for _ in range(int(steps)):
        loss = _loss(model, x, y, where)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p.sub_(lr * g)
        losses.append(loss.detach())
    with torch.no_grad():
        losses.append(_loss(model, x, y, where))
    return torch.stack(losses)


def _loss(model: nn.Module, x: Tensor, y: Tensor, where: str) -> Tensor:
    r""":math:`\frac{1}{2N}\sum (f(x) - y)^2` with ``N = y.numel()``."""
    out = model(x)
    if out.shape != y.shape:
        raise ShapeError(
            describe(
                where,
                f"the model's outputs have shape {tuple(out.shape)} but y has {tuple(y.shape)}",
                "Pass targets of the shape of model(x).",
            )
        )
    return 0.5 * ((out - y) ** 2).mean()


def _check_options(learning_rate: Any, steps: Any, where: str) -> None:
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, numbers.Real)
        or not math.isfinite(learning_rate)
        or learning_rate <= 0
    ):
        raise HyperparameterError(
            describe(where, f"learning_rate={learning_rate!r}", "Pass a finite number > 0.")
        )
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise HyperparameterError(describe(where, f"steps={steps!r}", "Pass an integer >= 0."))
