"""ConvTranspose: Neural Tangents' values, finite twins, properties, geometry, errors."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk

from .._support.nt16 import assert_matches, assert_twin_agrees, channels_first, load
from .._support.properties import assert_kernel_properties


def test_matches_neural_tangents_2d() -> None:
    ref = load("conv_transpose")
    net = nk.Sequential(
        nk.Conv(8, (2, 2), padding="same", w_std=1.3, b_std=0.1),
        nk.ReLU(),
        nk.ConvTranspose(8, (3, 2), stride=(2, 1), padding="valid", w_std=1.2, b_std=0.2),
        nk.Erf(),
        nk.ConvTranspose(
            8, (2, 3), stride=2, padding="same", w_std=1.1, b_std=0.05, parametrization="standard"
        ),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )
    assert_matches(net, ref, channels_first(ref["x1"]), channels_first(ref["x2"]))


def test_matches_neural_tangents_1d_flatten() -> None:
    # no mixing layer: the diagonal layout
    ref = load("conv_transpose_flatten")
    net = nk.Sequential(
        nk.ConvTranspose(8, 3, stride=3, padding="same", w_std=1.5, b_std=0.1),
        nk.ReLU(),
        nk.ConvTranspose(8, 4, stride=2, padding="valid", w_std=1.2, b_std=None),
        nk.ReLU(),
        nk.Flatten(),
        nk.Dense(1, b_std=None),
    )
    assert_matches(net, ref, channels_first(ref["x1"]), channels_first(ref["x2"]))


NET = nk.Sequential(
    nk.Conv(8, 2, padding="same", b_std=0.1),
    nk.ReLU(),
    nk.ConvTranspose(8, 3, stride=2, padding="same", w_std=1.3, b_std=0.2),
    nk.ReLU(),
    nk.GlobalAvgPool(),
    nk.Dense(1),
)


def test_properties() -> None:
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    x1[2] = x1[0]
    assert_kernel_properties(NET, x1, torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
def test_finite_twins_agree(parametrization: str) -> None:
    net = nk.Sequential(
        nk.ConvTranspose(
            96, (2, 3), stride=(2, 1), w_std=1.4, b_std=0.1, parametrization=parametrization
        ),
        nk.ReLU(),
        nk.Flatten(),
        nk.Dense(1, parametrization=parametrization),
    )
    x = torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    width = 128 if parametrization == "ntk" else None
    assert_twin_agrees(net, x, samples=24, width=width)


def test_twin_is_torch_conv_transpose() -> None:
    # 'valid' with stride <= kernel is torch's ConvTranspose (flipped filter)
    layer = nk.ConvTranspose(3, (3, 2), stride=2, b_std=None, parametrization="standard")
    model = layer.module((2, 4, 5), dtype=torch.float64)
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    w = model.weight.flip(2, 3).transpose(0, 1)
    want = torch.nn.functional.conv_transpose2d(x, w, stride=2)
    torch.testing.assert_close(model(x), want)
    assert layer.out_shape((2, 4, 5)) == tuple(want.shape[1:])


def test_geometry() -> None:
    assert nk.ConvTranspose(5, 3, stride=2).out_shape((2, 4)) == (5, 9)
    assert nk.ConvTranspose(5, 2, stride=3).out_shape((2, 4)) == (5, 12)
    assert nk.ConvTranspose(5, 3, stride=2, padding="same").out_shape((2, 4, 3)) == (5, 8, 6)
    assert nk.ConvTranspose(5, 3, padding="same").out_shape((2, 4)) == (5, 4)


def test_errors() -> None:
    with pytest.raises(nk.HyperparameterError, match="padding='same'"):
        nk.ConvTranspose(3, 2, padding="SAME")
    with pytest.raises(nk.HyperparameterError, match="circular"):
        nk.ConvTranspose(3, 2, padding="circular")
    with pytest.raises(nk.HyperparameterError, match="stride"):
        nk.ConvTranspose(3, 2, stride=0)
    with pytest.raises(nk.LayerCompatibilityError, match="channels last"):
        nk.Sequential(nk.Dense(3), nk.ConvTranspose(2, 2)).out_shape((5, 4))
    with pytest.raises(nk.HyperparameterError, match="filter_shape"):
        nk.ConvTranspose(3, filter_shape=(2, 2))  # type: ignore[call-arg]
