"""The finite twins built by ``Layer.module``: shapes, initialisation, options, wiring."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

import neural_kernels as nk
from neural_kernels.layers.dense import DenseModule


def _dense_modules(model: nn.Module) -> list[DenseModule]:
    return [m for m in model.modules() if isinstance(m, DenseModule)]


def _mlp(parametrization: str = "ntk", b_std: float | None = 0.1) -> nk.Layer:
    return nk.Sequential(
        nk.Dense(8, w_std=1.4, b_std=b_std, parametrization=parametrization),
        nk.ReLU(),
        nk.Dense(8, w_std=1.4, b_std=b_std, parametrization=parametrization),
        nk.ReLU(),
        nk.Dense(3, b_std=b_std, parametrization=parametrization),
    )


# ----------------------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------------------

NETWORKS = {
    "dense": nk.Dense(6),
    "mlp": _mlp(),
    "layernorm": nk.Sequential(nk.Dense(8), nk.LayerNorm(), nk.ReLU(), nk.Dense(2)),
    "residual": nk.Sequential(nk.Dense(8), nk.Residual(nk.ReLU(), nk.Dense(8)), nk.Dense(2)),
    "fanin_sum": nk.Sequential(nk.FanOut(2), nk.Parallel(nk.Dense(5), nk.Dense(5)), nk.FanInSum()),
    "fanin_product": nk.Sequential(
        nk.Dense(6), nk.FanOut(2), nk.Parallel(nk.Dense(5), nk.Dense(5)), nk.FanInProduct()
    ),
    "fanin_concat": nk.Sequential(
        nk.FanOut(2),
        nk.Parallel(nk.Dense(5), nk.Sequential(nk.Dense(7), nk.ReLU())),
        nk.FanInConcat(),
        nk.Dense(2),
    ),
    "nested": nk.Sequential(
        nk.Dense(8), nk.ReLU(), nk.Sequential(nk.Dense(8), nk.ReLU(), nk.Dense(2))
    ),
}


@pytest.mark.parametrize("width", [None, 16])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_output_shapes(name: str, width: int | None) -> None:
    net = NETWORKS[name]
    model = net.module((4,), width=width)
    assert isinstance(model, nn.Module)
    out = model(torch.randn(3, 4))
    assert out.shape == (3, *net.out_shape((4,)))


def test_dense_acts_on_the_last_axis() -> None:
    model = nk.Sequential(nk.Dense(6), nk.ReLU(), nk.Dense(2)).module((5, 4))
    assert model(torch.randn(3, 5, 4)).shape == (3, 5, 2)


def test_in_shape_may_be_an_int() -> None:
    assert nk.Dense(3).module(4)(torch.randn(2, 4)).shape == (2, 3)


# ----------------------------------------------------------------------------------------
# Initialisation per parametrization
# ----------------------------------------------------------------------------------------

FAN_IN, FAN_OUT = 400, 2500
W_STD, B_STD = 1.7, 0.4


def _big_dense(parametrization: str, b_std: float | None = B_STD) -> DenseModule:
    layer = nk.Dense(FAN_OUT, w_std=W_STD, b_std=b_std, parametrization=parametrization)
    model = layer.module((FAN_IN,), generator=torch.Generator().manual_seed(0))
    assert isinstance(model, DenseModule)
    return model


def test_ntk_parametrization_initialisation() -> None:
    """``W, b ~ N(0, 1)``; the forward pass scales: ``(w_std/sqrt(fan_in)) x W^T + b_std b``."""
    model = _big_dense("ntk")
    w, b = model.weight.detach(), model.bias.detach()
    assert abs(float(w.mean())) < 0.005 and abs(float(w.std()) - 1.0) < 0.005
    assert abs(float(b.mean())) < 0.08 and abs(float(b.std()) - 1.0) < 0.05
    x = torch.randn(5, FAN_IN)
    expected = (W_STD / math.sqrt(FAN_IN)) * x @ w.T + B_STD * b
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_standard_parametrization_initialisation() -> None:
    """``W ~ N(0, w_std^2/fan_in)``, ``b ~ N(0, b_std^2)``; the forward is ``x W^T + b``."""
    model = _big_dense("standard")
    w, b = model.weight.detach(), model.bias.detach()
    w_scale = W_STD / math.sqrt(FAN_IN)
    assert abs(float(w.mean())) < 0.005 * w_scale
    assert abs(float(w.std()) / w_scale - 1.0) < 0.005
    assert abs(float(b.mean())) < 0.08 * B_STD and abs(float(b.std()) / B_STD - 1.0) < 0.05
    x = torch.randn(5, FAN_IN)
    torch.testing.assert_close(model(x), x @ w.T + b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
def test_no_bias_means_no_bias_parameter(parametrization: str) -> None:
    model = _mlp(parametrization, b_std=None).module((4,))
    names = [name for name, _ in model.named_parameters()]
    assert names and all(name.endswith("weight") for name in names)
    assert all(m.bias is None for m in _dense_modules(model))
    # a linear network without biases maps zero to zero
    assert torch.equal(model(torch.zeros(2, 4)), torch.zeros(2, 3))


def test_standard_zero_bias_std_keeps_a_zero_bias() -> None:
    """``b_std=0.0`` keeps a (zero) trainable bias: it adds 1 to the standard NTK."""
    model = nk.Dense(5, b_std=0.0, parametrization="standard").module((3,))
    assert model.bias is not None and torch.equal(model.bias, torch.zeros(5))


# ----------------------------------------------------------------------------------------
# Options: width, parametrization, generator, dtype
# ----------------------------------------------------------------------------------------


def test_width_overrides_hidden_widths_but_not_the_readout() -> None:
    model = _mlp().module((4,), width=32)
    shapes = [(m.in_features, m.out_features) for m in _dense_modules(model)]
    assert shapes == [(4, 32), (32, 32), (32, 3)]
    assert model(torch.randn(2, 4)).shape == (2, 3)


def test_width_keeps_the_readout_of_a_nested_network() -> None:
    model = NETWORKS["nested"].module((4,), width=32)
    shapes = [(m.in_features, m.out_features) for m in _dense_modules(model)]
    assert shapes == [(4, 32), (32, 32), (32, 2)]


def test_width_reaches_residual_and_concatenated_branches() -> None:
    model = NETWORKS["residual"].module((4,), width=16)
    shapes = [(m.in_features, m.out_features) for m in _dense_modules(model)]
    assert shapes == [(4, 16), (16, 16), (16, 2)]
    model = NETWORKS["fanin_concat"].module((4,), width=16)
    shapes = [(m.in_features, m.out_features) for m in _dense_modules(model)]
    assert shapes == [(4, 16), (4, 16), (32, 2)]


def test_parallel_readouts_keep_their_widths() -> None:
    model = NETWORKS["fanin_sum"].module((4,), width=32)
    assert [m.out_features for m in _dense_modules(model)] == [5, 5]


@pytest.mark.parametrize(("declared", "override"), [("ntk", "standard"), ("standard", "ntk")])
def test_parametrization_overrides_every_layer(declared: str, override: str) -> None:
    model = _mlp(declared).module((4,), parametrization=override)
    assert {m.parametrization for m in _dense_modules(model)} == {override}
    kept = _mlp(declared).module((4,))
    assert {m.parametrization for m in _dense_modules(kept)} == {declared}


def test_mixed_parametrizations_are_kept_without_override() -> None:
    net = nk.Sequential(nk.Dense(8), nk.ReLU(), nk.Dense(2, parametrization="standard"))
    assert [m.parametrization for m in _dense_modules(net.module((4,)))] == ["ntk", "standard"]


def test_generator_makes_twins_reproducible() -> None:
    net = NETWORKS["fanin_concat"]

    def params(seed: int) -> list[torch.Tensor]:
        model = net.module((4,), generator=torch.Generator().manual_seed(seed))
        return [p.detach() for p in model.parameters()]

    a, b, c = params(0), params(0), params(1)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not any(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    # without a generator, torch's global generator decides
    torch.manual_seed(7)
    d = [p.detach() for p in net.module((4,)).parameters()]
    torch.manual_seed(7)
    e = [p.detach() for p in net.module((4,)).parameters()]
    assert all(torch.equal(p, q) for p, q in zip(d, e, strict=True))


def test_successive_twins_from_one_generator_differ() -> None:
    g = torch.Generator().manual_seed(0)
    a = nk.Dense(4).module((3,), generator=g).weight
    b = nk.Dense(4).module((3,), generator=g).weight
    assert not torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype(dtype: torch.dtype) -> None:
    model = NETWORKS["layernorm"].module((4,), dtype=dtype)
    assert all(p.dtype == dtype for p in model.parameters())
    out = model(torch.randn(3, 4, dtype=dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_twins_are_trainable() -> None:
    model = _mlp().module((4,))
    loss = model(torch.randn(5, 4)).pow(2).sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_activation_module_applies_fn() -> None:
    act = nk.LeakyReLU(0.3)
    model = nk.Sequential(nk.Dense(5), act).module((5,))
    (dense,) = _dense_modules(model)
    x = torch.randn(3, 5)
    torch.testing.assert_close(model(x), act.fn(dense(x)))


# ----------------------------------------------------------------------------------------
# Bad options
# ----------------------------------------------------------------------------------------

BAD_OPTIONS: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "zero width": ({"width": 0}, nk.HyperparameterError, "width"),
    "fractional width": ({"width": 2.5}, nk.HyperparameterError, "width"),
    "boolean width": ({"width": True}, nk.HyperparameterError, "width"),
    "unknown parametrization": ({"parametrization": "foo"}, nk.ParametrizationError, "foo"),
    "generator not a generator": ({"generator": "x"}, nk.InputTypeError, "generator"),
    "integer dtype": ({"dtype": torch.int64}, nk.InputTypeError, "dtype"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_options_raise(case: str) -> None:
    options, error, words = BAD_OPTIONS[case]
    with pytest.raises(error, match=words) as info:
        _mlp().module((4,), **options)
    assert isinstance(info.value, nk.NeuralKernelsError)
    assert "Sequential(" in str(info.value)
