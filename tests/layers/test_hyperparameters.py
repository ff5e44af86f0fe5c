"""Every layer checks the type and domain of its hyperparameters at construction.

A wrong value (a string, NaN, a bool where a number is meant) must raise a
``NeuralKernelsError`` naming the layer before any arithmetic, never reach the compiled
code or give NaN later.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch

import neural_kernels as nk

#: Required arguments of the layers that have some.
REQUIRED: dict[str, dict[str, Any]] = {
    "Dense": {"out_features": 3},
    "Conv": {"out_channels": 3},
    "ConvLocal": {"out_channels": 3},
    "ConvTranspose": {"out_channels": 3},
    "FanOut": {"num": 2},
    "GlobalSelfAttention": {"n_chan_out": 4, "n_chan_key": 4, "n_chan_val": 4, "n_heads": 2},
    "Activation": {"fn": torch.tanh},
    "Polynomial": {"coef": (1.0, 2.0)},
    "Hermite": {"degree": 2},
    "ImageResize": {"size": 3},
    "Index": {"idx": (slice(None),)},
    "Monomial": {"degree": 2},
    "RectifiedMonomial": {"degree": 1},
    "Repeat": {"layer": nk.ReLU(), "n": 2},
}
#: Arguments that take callables or layers, not numbers.
NOT_NUMBERS = {("Activation", "fn"), ("Activation", "dual")}


def _layer_classes() -> list[type]:
    out = []
    for name in nk.__all__:
        obj = getattr(nk, name)
        if inspect.isclass(obj) and issubclass(obj, nk.Layer) and obj is not nk.Layer:
            out.append(obj)
    return out


def _cases() -> list[tuple[type, str, Any]]:
    cases = []
    for cls in _layer_classes():
        params = inspect.signature(cls).parameters
        for pname, param in params.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if (cls.__name__, pname) in NOT_NUMBERS:
                continue
            for bad in ("a", float("nan"), [object()]):
                cases.append((cls, pname, bad))
    return cases


@pytest.mark.parametrize(
    ("cls", "name", "bad"), _cases(), ids=lambda v: getattr(v, "__name__", repr(v))
)
def test_bad_hyperparameters_are_refused_at_construction(cls: type, name: str, bad: Any) -> None:
    base = REQUIRED.get(cls.__name__, {})
    cls(**base)  # the valid construction works
    with pytest.raises(nk.NeuralKernelsError) as info:
        cls(**{**base, name: bad})
    assert cls.__name__ in str(info.value)


def test_leaky_relu_slope_string_is_refused_before_the_compiled_code() -> None:
    with pytest.raises(nk.HyperparameterError, match="negative_slope"):
        nk.LeakyReLU("a")  # type: ignore[arg-type]
    with pytest.raises(nk.HyperparameterError, match="ABReLU"):
        nk.ABReLU(a="0.1")  # type: ignore[arg-type]


def test_geometry_is_normalised_once() -> None:
    conv = nk.Conv(3, kernel_size=[3, 2], stride=(1, 2), padding="same")
    assert conv.kernel_size == (3, 2) and conv.stride == (1, 2) and conv.dilation == 1
    with pytest.raises(nk.HyperparameterError, match="2 spatial axes"):
        nk.Sequential(nk.Conv(3, kernel_size=(3, 3, 3), padding="same"), nk.Flatten()).out_shape(
            (1, 5, 5)
        )
