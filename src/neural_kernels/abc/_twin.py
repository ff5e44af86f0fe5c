r"""Finite twins in any abc-parametrization: ``net.module(..., base_width=...)``.

The twin stores the weights :math:`W^l` themselves (weight space). With width multiplier
:math:`m = n / n_0` (``n`` = ``width``, :math:`n_0` = ``base_width``, default 1) and the
layer's fan-in at the base width :math:`F_0` (``in_channels * prod(kernel_size)`` for a
convolution; it is the fan-in itself for the input layer, whose fan-in does not grow):

.. math::
    \operatorname{Var}(W^l_{ij}) = \frac{\sigma_w^2}{F_0}\, m^{-2(a_l + b_l)}, \qquad
    \text{SGD learning rate on } W^l = \eta\, m^{-(c_l + 2 a_l)},

so that at the base width (:math:`m = 1`) every parametrization is the standard one,
parameter for parameter (the same random draws as ``parametrization="standard"``).
Biases of width-``n`` layers: :math:`\operatorname{Var} = \sigma_b^2 m^{-2(a_1+b_1)}`,
learning rate :math:`\eta m^{-(c_1 + 2a_1)}`; the readout's bias: :math:`\sigma_b^2` and
:math:`\eta`. The learning rates are applied by :func:`neural_kernels.abc.param_groups`.

Which layer is the input, a hidden or the output layer is read off the network: a layer
whose fan-in does not grow with the width is the input layer, one whose fan-out does not
grow is the readout (as ``mup``'s base shapes do, from a second, shape-only build).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
from torch import nn

from .._validation import check_positive_int
from ..errors import HyperparameterError, ModelError, ParametrizationError, describe
from ..layers.conv import ConvModule
from ..layers.dense import DenseModule
from ._spec import ABC, as_abc

__all__ = ["AbcScale", "TwinInfo", "build_twin", "scalable"]

SCALABLE = (DenseModule, ConvModule)


@dataclass(frozen=True)
class AbcScale:
    """How one affine module of an abc twin is scaled (attached as ``module.abc_scale``).

    Attributes:
        role: ``"input"``, ``"hidden"`` or ``"output"``.
        width_mult: ``m = width / base_width``.
        weight_sgd, bias_sgd: SGD learning-rate multipliers (times ``eta``).
        weight_adam, bias_adam: Adam learning-rate multipliers (``None``: not defined).
        parametrization: the parametrization's name.

    """

    role: str
    width_mult: float
    weight_sgd: float
    bias_sgd: float
    weight_adam: float | None
    bias_adam: float | None
    parametrization: str


@dataclass(frozen=True)
class TwinInfo:
    """What built an abc twin (attached to the top module as ``model.abc_info``)."""

    parametrization: ABC
    width: int
    base_width: int
    depth: int
    roles: tuple[str, ...]


def scalable(module: nn.Module) -> bool:
    """True for the affine modules the abc machinery scales (``Dense``, ``Conv`` twins)."""
    return type(module) in SCALABLE


def _pow(m: Fraction, e: Fraction) -> float:
    """``m ** e``, exactly 1.0 at the base width or for a zero exponent."""
    return 1.0 if e == 0 or m == 1 else float(m) ** float(e)


def _pow_opt(m: Fraction, e: Fraction | None) -> float | None:
    return None if e is None else _pow(m, -e)


def _role(fan_in_grows: bool, fan_out_grows: bool) -> str | None:
    if fan_out_grows:
        return "hidden" if fan_in_grows else "input"
    return "output" if fan_in_grows else None


def build_twin(
    layer: Any,
    in_shape: Sequence[int] | int,
    width: Any,
    parametrization: Any,
    base_width: Any,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """The finite twin of ``layer`` in an abc-parametrization (see the module docstring).

    Args:
        layer: the network (a :class:`~neural_kernels.layers.base.Layer`).
        in_shape: feature shape of one input.
        width: ``n``, every hidden width (required).
        parametrization: a name or an :class:`ABC`; ``None`` takes the layers' own.
        base_width: ``n_0``, the width at which the twin is the standard one (default 1).
        generator: random generator of the initialisation, as in ``Layer.module``.
        dtype: dtype of the parameters.
        device: device of the parameters.

    Returns:
        The twin; each ``Dense``/``Conv`` module carries ``abc_scale``
        (:class:`AbcScale`) and the top module ``abc_info`` (:class:`TwinInfo`).

    Raises:
        HyperparameterError: no ``width``, or ``width < base_width``.
        ParametrizationError: an unknown parametrization, or mean field with more than
            one hidden layer.
        ModelError: the network holds a layer with parameters other than ``Dense`` and
            ``Conv`` (the abc machinery cannot scale it).

    """
    where = f"{layer!r}.module"
    spec = None if parametrization is None else as_abc(parametrization, where)
    if width is None:
        raise HyperparameterError(
            describe(
                where,
                f"parametrization={_name(parametrization)} without width",
                "Pass width=n, the hidden width n of the abc-parametrization.",
            )
        )
    check_positive_int(where, "width", width)
    base = 1 if base_width is None else base_width
    check_positive_int(where, "base_width", base)
    if width < base:
        raise HyperparameterError(
            describe(
                where,
                f"width={width} is below base_width={base}",
                "Give a width >= base_width (the twin equals the standard one at base_width).",
            )
        )
    try:
        model = layer.module(in_shape, width, "standard", generator, dtype=dtype, device=device)
    except ParametrizationError:  # a layer without a standard twin: refused below by name
        model = layer.module(in_shape, width, None, generator, dtype=dtype, device=device)
    if spec is None:  # the layers' own parametrization, when they agree
        names = set(_declared(layer))
        spec = as_abc(names.pop() if len(names) == 1 else "standard", where)
    probe = layer.module(in_shape, width + 1, None, dtype=dtype, device="meta")

    found: list[tuple[nn.Module, str]] = []
    for (name, mod), twin in zip(model.named_modules(), probe.modules(), strict=True):
        if not any(True for _ in mod.parameters(recurse=False)):
            continue
        if not scalable(mod):
            raise ModelError(
                describe(
                    where,
                    f"the twin's module {name or '<top>'!r} ({type(mod).__name__}) has "
                    "parameters the abc machinery cannot scale",
                    "abc-parametrizations scale Dense and Conv layers only; use "
                    "parametrization='standard' or 'ntk' (without base_width) for this network.",
                )
            )
        w, w_probe = mod.weight, twin.weight
        role = _role(w.shape[1] != w_probe.shape[1], w.shape[0] != w_probe.shape[0])
        if role is None:
            raise ModelError(
                describe(
                    where,
                    f"layer {name!r} has no width that grows with width={width}",
                    "Give the network a hidden layer (an abc-parametrization scales widths).",
                )
            )
        found.append((mod, role))
    if not found:
        raise ModelError(
            describe(where, "the network has no Dense or Conv layer", "Add one to scale.")
        )
    roles = tuple(role for _, role in found)
    if "hidden" in roles:
        spec.group("hidden")  # mean field: refuses hidden-to-hidden layers
    m = Fraction(int(width), int(base))
    for mod, role in found:
        _rescale(mod, spec, role, m)
    depth = sum(r != "output" for r in roles)
    setattr(model, "abc_info", TwinInfo(spec, int(width), int(base), depth, roles))  # noqa: B010
    return model


def _rescale(mod: nn.Module, spec: ABC, role: str, m: Fraction) -> None:
    """Scale a standard twin's affine module in place and attach its :class:`AbcScale`."""
    v = spec.variance_exponent(role)
    # the standard twin has Var = sigma^2 / F, and F = F_0 m when the fan-in grows
    init = _pow(m, -v) if role == "input" else _pow(m, Fraction(1, 2) - v)
    weight_sgd = _pow(m, -spec.sgd_exponent(role))
    weight_adam = _pow_opt(m, spec.adam_exponent(role))
    if role == "output":
        bias_init, bias_sgd = 1.0, 1.0
        bias_adam = None if spec.adam is None else 1.0
    else:  # a bias of a width-n layer is an input weight on a constant coordinate
        bias_init = _pow(m, -spec.variance_exponent("input"))
        bias_sgd = _pow(m, -spec.sgd_exponent("input"))
        bias_adam = _pow_opt(m, spec.adam_exponent("input"))
    weight, bias = mod.weight, mod.bias
    with torch.no_grad():
        if isinstance(weight, nn.Parameter) and init != 1.0:
            weight.mul_(init)
        if isinstance(bias, nn.Parameter) and bias_init != 1.0:
            bias.mul_(bias_init)
    scale = AbcScale(
        role=role,
        width_mult=float(m),
        weight_sgd=weight_sgd,
        bias_sgd=bias_sgd,
        weight_adam=weight_adam,
        bias_adam=bias_adam,
        parametrization=spec.name,
    )
    setattr(mod, "abc_scale", scale)  # noqa: B010 (a plain attribute of the module)
    setattr(mod, "parametrization", spec.name)  # noqa: B010


def _declared(layer: Any) -> list[str]:
    """The parametrizations the layers of a network declare."""
    own = getattr(layer, "parametrization", None)
    out = [own] if isinstance(own, str) else []
    for child in layer.children():
        out.extend(_declared(child))
    return out


def _name(parametrization: Any) -> str:
    return parametrization.name if isinstance(parametrization, ABC) else repr(parametrization)
