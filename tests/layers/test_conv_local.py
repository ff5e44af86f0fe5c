"""ConvLocal: Neural Tangents' values, finite twins, properties, geometry, errors."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk

from .._support.nt16 import assert_matches, assert_twin_agrees, channels_first, load
from .._support.properties import assert_kernel_properties


def test_matches_neural_tangents_2d_full_layout() -> None:
    ref = load("conv_local")
    net = nk.Sequential(
        nk.ConvLocal(8, (2, 3), stride=(1, 2), padding="same", w_std=1.3, b_std=0.1),
        nk.ReLU(),
        nk.ConvLocal(8, 2, padding="valid", w_std=1.2, b_std=0.2, parametrization="standard"),
        nk.Erf(),
        nk.Conv(8, 2, padding="circular", w_std=1.1, b_std=0.05),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )
    assert_matches(net, ref, channels_first(ref["x1"]), channels_first(ref["x2"]))


def test_matches_neural_tangents_1d_flatten() -> None:
    ref = load("conv_local_flatten")
    net = nk.Sequential(
        nk.ConvLocal(8, 3, stride=2, padding="circular", w_std=1.5, b_std=0.1),
        nk.ReLU(),
        nk.ConvLocal(8, 2, padding="same", w_std=1.2, b_std=None, parametrization="standard"),
        nk.ReLU(),
        nk.Flatten(),
        nk.Dense(1, b_std=None),
    )
    assert_matches(net, ref, channels_first(ref["x1"]), channels_first(ref["x2"]))


def test_full_layout_is_zero_between_positions() -> None:
    net = nk.Sequential(nk.Conv(4, 2, padding="same"), nk.ReLU(), nk.ConvLocal(4, 2, b_std=0.3))
    x = torch.randn(3, 2, 4, 3, dtype=torch.float64)
    full = net.kernel(x, layout="full").nngp  # (3, 3, 3, 3, 2, 2)
    same = torch.einsum("ijaabb->ijab", full)
    rebuilt = torch.einsum("ijab,ac,bd->ijacbd", same, torch.eye(3), torch.eye(2))
    torch.testing.assert_close(full, rebuilt.double(), rtol=0, atol=0)
    torch.testing.assert_close(same, net.kernel(x).nngp, rtol=1e-13, atol=0)


def test_properties() -> None:
    net = nk.Sequential(
        nk.ConvLocal(4, 2, padding="same", b_std=0.1),
        nk.ReLU(),
        nk.AvgPool(2),
        nk.ConvLocal(4, 2, w_std=1.2),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1),
    )
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(4, 2, 5, 5, generator=g, dtype=torch.float64)
    x1[2] = x1[0]
    assert_kernel_properties(net, x1, torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
def test_finite_twins_agree(parametrization: str) -> None:
    net = nk.Sequential(
        nk.ConvLocal(
            96,
            (2, 3),
            stride=(1, 2),
            padding="same",
            w_std=1.4,
            b_std=0.2,
            parametrization=parametrization,
        ),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1, parametrization=parametrization),
    )
    x = torch.randn(3, 2, 3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    width = 128 if parametrization == "ntk" else None
    assert_twin_agrees(net, x, samples=24, width=width)


def test_twin_with_shared_weights_is_a_convolution() -> None:
    layer = nk.ConvLocal(3, (3, 2), stride=(2, 1), padding="same", b_std=None)
    model = layer.module((2, 5, 4), dtype=torch.float64)
    w = torch.randn(3, 2, 3, 2, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(w[..., None, None].expand_as(model.weight))
    conv = nk.Conv(3, (3, 2), stride=(2, 1), padding="same", b_std=None).module(
        (2, 5, 4), dtype=torch.float64
    )
    with torch.no_grad():
        conv.weight.copy_(w)
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(model(x), conv(x))
    assert layer.out_shape((2, 5, 4)) == tuple(model(x).shape[1:]) == (3, 3, 4)


def test_errors() -> None:
    with pytest.raises(nk.ShapeError, match="ConvLocal"):
        nk.ConvLocal(3, 5).out_shape((1, 3, 3))
    with pytest.raises(nk.HyperparameterError, match="padding"):
        nk.ConvLocal(3, 2, padding="full")
    with pytest.raises(nk.LayerCompatibilityError, match="channels last"):
        nk.Sequential(nk.Dense(3), nk.ConvLocal(2, 2)).out_shape((5, 4))
