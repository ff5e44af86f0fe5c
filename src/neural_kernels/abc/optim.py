r"""Per-layer learning rates of abc twins as ``torch.optim`` parameter groups.

:func:`param_groups` turns a twin built by ``net.module(..., parametrization=...)`` into
parameter groups for any ``torch.optim`` optimizer:

* **SGD** (Tensor Programs IV, Table 1, in weight space): the learning rate of a weight
  :math:`W^l` is :math:`\eta\, m^{-(c_l + 2 a_l)}`, with :math:`m` the width multiplier.
  Under muP: input weights and every bias of a width-``n`` layer :math:`\eta m`, hidden
  weights :math:`\eta`, readout weights :math:`\eta / m`.
* **Adam** (weight space, TP5 Table 3 for muP): matrix-like parameters (hidden and
  readout weights, whose fan-in grows with the width) get :math:`\eta / m`, vector-like
  ones (input weights, biases) :math:`\eta`. Other parametrizations give their own
  ``adam`` exponents (:class:`~neural_kernels.abc.ABC`).

Every group carries ``lr_mult`` (its rate is ``lr * lr_mult``) and ``role``.

**Schedulers.** ``torch.optim.lr_scheduler`` classes that multiply each group's
``initial_lr`` (``LambdaLR``, ``StepLR``, ``CosineAnnealingLR``, ``ExponentialLR``,
``ReduceLROnPlateau``...) keep the per-group ratios. Those that *set* absolute rates from
one number (``OneCycleLR(max_lr=0.1)``, ``CyclicLR(base_lr=..., max_lr=...)``) give every
group the same rate and undo the scaling: pass them one rate per group instead,
``max_lr=nk.abc.scaled_lrs(optimizer, 0.1)``, and call :func:`check_scaling` to verify.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn

from ..errors import HyperparameterError, ModelError, ParametrizationError, describe
from ._twin import AbcScale, scalable

__all__ = ["check_scaling", "param_groups", "scaled_lrs"]

OPTIMIZERS = ("sgd", "adam")


def check_lr(where: str, lr: Any) -> float:
    """``lr`` as a positive finite float.

    Raises:
        HyperparameterError: a learning rate that is not a positive finite number.

    """
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise HyperparameterError(
            describe(where, f"lr={lr!r}", "Give a positive finite learning rate.")
        )
    return float(lr)


def param_groups(model: nn.Module, lr: float, optimizer: str = "sgd") -> list[dict[str, Any]]:
    r"""Parameter groups with the per-layer learning rates of ``model``'s parametrization.

    Args:
        model: a finite twin built by ``net.module(...)`` (or a module holding such twins);
            plain ``"standard"``/``"ntk"`` twins get ``lr`` everywhere.
        lr: the base learning rate :math:`\eta` (the rate at the base width).
        optimizer: ``"sgd"`` (any SGD-like optimizer) or ``"adam"`` (Adam, AdamW, ...).

    Returns:
        A list of dicts ``{"params", "lr", "lr_mult", "role"}``, one per distinct rate,
        for ``torch.optim.SGD(param_groups(model, 0.1))`` or any other optimizer.

    Raises:
        HyperparameterError: ``lr`` is not positive and finite.
        ParametrizationError: an unknown ``optimizer``, or Adam for a parametrization
            without Adam exponents.
        ModelError: ``model`` holds parameters outside ``Dense``/``Conv`` twins (the abc
            machinery cannot scale them).

    """
    where = "nk.abc.param_groups"
    eta = check_lr(where, lr)
    if optimizer not in OPTIMIZERS:
        raise ParametrizationError(
            describe(where, f"optimizer={optimizer!r}", "Use 'sgd' or 'adam'.")
        )
    if not isinstance(model, nn.Module):
        raise ModelError(
            describe(where, f"model has type {type(model).__name__}", "Pass a torch.nn.Module.")
        )
    groups: dict[tuple[float, str], dict[str, Any]] = {}
    for name, mod in model.named_modules():
        own = [(n, p) for n, p in mod.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if not scalable(mod):
            raise ModelError(
                describe(
                    where,
                    f"module {name or '<top>'!r} ({type(mod).__name__}) has parameters the "
                    "abc machinery cannot scale",
                    "Build the model with net.module(..., parametrization=...) from Dense and "
                    "Conv layers, or give that module its own parameter group.",
                )
            )
        scale: AbcScale | None = getattr(mod, "abc_scale", None)
        for pname, p in own:
            mult, role = _multiplier(scale, pname, optimizer, where, name)
            key = (mult, role)
            if key not in groups:
                groups[key] = {"params": [], "lr": eta * mult, "lr_mult": mult, "role": role}
            groups[key]["params"].append(p)
    if not groups:
        raise ModelError(describe(where, "model has no trainable parameters", "Pass a twin."))
    return list(groups.values())


def _multiplier(
    scale: AbcScale | None, pname: str, optimizer: str, where: str, module: str
) -> tuple[float, str]:
    if scale is None:  # a plain standard/ntk twin: plain SGD/Adam is its training
        return 1.0, "plain"
    is_bias = pname == "bias"
    role = f"{scale.role} bias" if is_bias else scale.role
    if optimizer == "sgd":
        return (scale.bias_sgd if is_bias else scale.weight_sgd), role
    mult = scale.bias_adam if is_bias else scale.weight_adam
    if mult is None:
        raise ParametrizationError(
            describe(
                where,
                f"module {module!r} is in parametrization {scale.parametrization!r}, which "
                "has no Adam learning rates",
                "Use optimizer='sgd', or give the ABC its adam=(input, hidden, output) exponents.",
            )
        )
    return mult, role


def scaled_lrs(optimizer: torch.optim.Optimizer | list[dict[str, Any]], lr: float) -> list[float]:
    """One rate per group, ``lr * lr_mult``: for schedulers that set absolute rates.

    Example::

        opt = torch.optim.SGD(nk.abc.param_groups(model, 0.1))
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=nk.abc.scaled_lrs(opt, 0.1), total_steps=100)

    """
    eta = check_lr("nk.abc.scaled_lrs", lr)
    groups = optimizer.param_groups if isinstance(optimizer, torch.optim.Optimizer) else optimizer
    return [eta * float(g.get("lr_mult", 1.0)) for g in groups]


def check_scaling(optimizer: torch.optim.Optimizer, rtol: float = 1e-9) -> float:
    r"""Check that every group's rate is still ``lr_mult`` times one common rate.

    Returns:
        The common base rate :math:`\eta_t` (the rate of a group with ``lr_mult == 1``).

    Raises:
        ParametrizationError: a scheduler (or user code) changed the ratios between groups.

    """
    ratios = [float(g["lr"]) / float(g.get("lr_mult", 1.0)) for g in optimizer.param_groups]
    base = ratios[0]
    for g, ratio in zip(optimizer.param_groups, ratios, strict=True):
        if not math.isclose(ratio, base, rel_tol=rtol, abs_tol=0.0):
            raise ParametrizationError(
                describe(
                    "nk.abc.check_scaling",
                    f"group {g.get('role', '?')!r} has lr {g['lr']:.6g} = {ratio:.6g} x "
                    f"lr_mult {g.get('lr_mult', 1.0):.6g}, but another group has "
                    f"{base:.6g} x its lr_mult",
                    "A scheduler set absolute rates; pass it nk.abc.scaled_lrs(optimizer, lr) "
                    "(one rate per group) instead of a single number.",
                )
            )
    return base
