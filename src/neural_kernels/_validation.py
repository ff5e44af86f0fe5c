"""Checks of user input shared by every layer and function: one place, one wording."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from .core.protocol import ModuleContext
from .errors import (
    HyperparameterError,
    InputTypeError,
    NonFiniteError,
    ParametrizationError,
    ShapeError,
    describe,
)

PARAMETRIZATIONS = ("ntk", "standard")
KERNEL_NAMES = ("nngp", "ntk")


def as_tensor(x: Any, name: str, where: object) -> Tensor:
    """Convert ``x`` (tensor, array, nested list) to a floating tensor; check it is finite.

    Integers and booleans become float64; floating tensors keep their dtype.

    Raises:
        InputTypeError: ``x`` is not array-like or has a complex dtype.
        NonFiniteError: ``x`` holds NaN or infinity.

    """
    if isinstance(x, Tensor):
        t = x
    elif isinstance(x, (np.ndarray, list, tuple, numbers.Number)):
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise InputTypeError(
                describe(
                    where,
                    f"{name} could not be read as a numeric array ({err})",
                    "Pass a torch.Tensor or a numpy array of floats.",
                )
            ) from None
    else:
        raise InputTypeError(
            describe(
                where,
                f"{name} has type {type(x).__name__}",
                "Pass a torch.Tensor or a numpy array of floats.",
            )
        )
    if t.is_complex():
        raise InputTypeError(
            describe(where, f"{name} has complex dtype {t.dtype}", "Pass real-valued inputs.")
        )
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise NonFiniteError(
            describe(
                where,
                f"{name} holds {bad} NaN or infinite value(s)",
                "Remove or impute them before computing kernels.",
            )
        )
    return t


def check_batch(x: Tensor, name: str, where: object) -> None:
    """``x`` must have a batch axis and at least one feature axis, and be non-empty."""
    if x.ndim < 2:
        raise ShapeError(
            describe(
                where,
                f"{name} has shape {tuple(x.shape)}",
                "Pass a batch of shape (n, *features); for one example use x[None].",
            )
        )
    if x.shape[0] == 0 or x[0].numel() == 0:
        raise ShapeError(
            describe(
                where,
                f"{name} has shape {tuple(x.shape)} with no entries",
                "Pass at least one example with at least one feature.",
            )
        )


def check_pair(x1: Tensor, x2: Tensor, where: object) -> tuple[Tensor, Tensor]:
    """``x1`` and ``x2`` must share feature shape and device; promote to a common dtype."""
    if x1.shape[1:] != x2.shape[1:]:
        raise ShapeError(
            describe(
                where,
                f"x1 has feature shape {tuple(x1.shape[1:])} but x2 has {tuple(x2.shape[1:])}",
                "Pass inputs with the same shape after the batch axis.",
            )
        )
    if x1.device != x2.device:
        raise InputTypeError(
            describe(
                where,
                f"x1 is on {x1.device} but x2 on {x2.device}",
                "Move both inputs to the same device.",
            )
        )
    dtype = torch.promote_types(x1.dtype, x2.dtype)
    return x1.to(dtype), x2.to(dtype)


def parse_get(
    get: Any,
    where: object,
    allowed: Sequence[str] = KERNEL_NAMES,
    default: tuple[str, ...] | None = None,
) -> tuple[str, ...]:
    """Normalise ``get`` to a tuple of distinct names among ``allowed``, in the order given.

    ``None`` means ``default`` (an error when there is none). The message shows a short
    description of ``get`` (its type and shape for an array), never a whole tensor.
    """
    if get is None and default is not None:
        return default
    if isinstance(get, str):
        names: tuple[Any, ...] | None = (get,)
    elif isinstance(get, Iterable) and not isinstance(get, (Tensor, np.ndarray)):
        names = tuple(get)
    else:
        names = None
    if not names or any(not isinstance(g, str) or g not in allowed for g in names):
        raise HyperparameterError(
            describe(
                where,
                f"get={_short(get)}",
                f"Ask for one of {', '.join(repr(a) for a in allowed)} or a tuple of them.",
            )
        )
    return tuple(dict.fromkeys(names))


def _short(value: Any, limit: int = 60) -> str:
    """A short description of a user value for a message (arrays by type and shape)."""
    if isinstance(value, (Tensor, np.ndarray)):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


T = TypeVar("T")


def given(value: T | None, what: str) -> T:
    """``value``, which the caller asked for and so cannot be ``None`` (type narrowing).

    Raises:
        RuntimeError: ``value`` is ``None`` (a bug in the library, not in the input).

    """
    if value is None:
        raise RuntimeError(f"internal error: {what} was asked for but not computed")
    return value


class _Lazy:
    """A name for error messages, formatted only when an error is raised."""

    def __init__(self, make: Callable[[], str]) -> None:
        self.make = make

    def __str__(self) -> str:
        return self.make()


def _where(layer: object) -> object:
    """How a message names ``layer``: its ``repr``, or the string itself for a function name.

    Formatted lazily: a layer's ``repr`` (a whole network's) is built only when raising.
    """
    if isinstance(layer, (str, _Lazy)):
        return layer
    return _Lazy(lambda: repr(layer))


def check_std(layer: object, name: str, value: Any, allow_none: bool = False) -> None:
    """A standard deviation must be a finite number >= 0 (or ``None`` where allowed)."""
    if value is None:
        if allow_none:
            return
        raise HyperparameterError(
            describe(_where(layer), f"{name}=None", f"Give {name} a number >= 0.")
        )
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise HyperparameterError(
                describe(
                    _where(layer),
                    f"{name} is a tensor of shape {tuple(value.shape)}",
                    f"Pass {name} as a scalar (a 0-d tensor is fine).",
                )
            )
        v = float(value.detach())
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = float(value)
    else:
        raise HyperparameterError(
            describe(
                _where(layer),
                f"{name}={value!r} of type {type(value).__name__}",
                f"Pass {name} as a number >= 0.",
            )
        )
    if not np.isfinite(v) or v < 0:
        raise HyperparameterError(
            describe(
                _where(layer),
                f"{name}={v}",
                f"{name} is a standard deviation: use a finite number >= 0.",
            )
        )


def check_real(
    layer: object,
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    allow_tensor: bool = False,
) -> None:
    """``value`` must be a finite real number (``>= minimum`` when given).

    ``allow_tensor``: a one-element floating tensor (which may require grad) is accepted.
    """
    if allow_tensor and isinstance(value, Tensor):
        if value.numel() != 1 or not value.is_floating_point():
            raise HyperparameterError(
                describe(
                    _where(layer),
                    f"{name} is a {value.dtype} tensor of shape {tuple(value.shape)}",
                    f"Pass {name} as a number or a 0-d floating tensor.",
                )
            )
        value = float(value.detach())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HyperparameterError(
            describe(
                _where(layer),
                f"{name}={value!r} of type {type(value).__name__}",
                f"Pass {name} as a Python float.",
            )
        )
    v = float(value)
    if not math.isfinite(v) or (minimum is not None and v < minimum):
        need = "a finite number" if minimum is None else f"a finite number >= {minimum}"
        raise HyperparameterError(describe(_where(layer), f"{name}={v}", f"Use {need}."))


def check_int_range(
    layer: object, name: str, value: Any, low: int, high: int, meaning: str = ""
) -> None:
    """``value`` must be an integer in ``[low, high]``; ``meaning`` explains the bounds."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not (low <= int(value) <= high)
    ):
        raise HyperparameterError(
            describe(
                _where(layer),
                f"{name}={value!r}",
                f"Use an integer {name} from {low} to {high}{meaning}.",
            )
        )


def check_positive_int(layer: object, name: str, value: Any) -> None:
    """A width or count must be an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise HyperparameterError(
            describe(_where(layer), f"{name}={value!r}", f"{name} must be an integer >= 1.")
        )


def check_parametrization(
    layer: object, value: Any, allowed: Sequence[str] = PARAMETRIZATIONS
) -> None:
    """The parametrization must be one of ``allowed``."""
    if value not in allowed:
        raise ParametrizationError(
            describe(
                _where(layer),
                f"parametrization={value!r}",
                f"Use one of {', '.join(repr(a) for a in allowed)}.",
            )
        )


def check_generator(where: object, generator: Any) -> None:
    """``generator`` must be ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputTypeError(
            describe(
                where,
                f"generator has type {type(generator).__name__}",
                "Pass a torch.Generator, e.g. torch.Generator().manual_seed(0).",
            )
        )


def check_float_dtype(where: object, dtype: Any) -> None:
    """``dtype`` must be ``None`` or a floating ``torch.dtype``."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise InputTypeError(
            describe(
                where, f"dtype={dtype!r}", "Pass a floating torch dtype such as torch.float64."
            )
        )


def check_module_options(
    layer: object,
    width: Any,
    parametrization: Any,
    generator: Any,
    dtype: Any,
    device: Any,
    channel_axis: int | None,
) -> ModuleContext:
    """Validate the options of ``Layer.module`` and pack them in a ``ModuleContext``."""
    where = _Lazy(lambda: f"{layer!r}.module")
    if width is not None:
        check_positive_int(where, "width", width)
    if parametrization is not None:
        check_parametrization(where, parametrization)
    check_generator(where, generator)
    check_float_dtype(where, dtype)
    return ModuleContext(width, parametrization, generator, dtype, device, channel_axis)
