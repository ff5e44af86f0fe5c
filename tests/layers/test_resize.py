"""ImageResize: Neural Tangents' values, finite twins, interpolation weights, errors."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk
from neural_kernels.core.plan import plan_network
from neural_kernels.layers.resize import resize_matrix

from .._support.nt16 import assert_matches, assert_twin_agrees, channels_first, load
from .._support.properties import assert_kernel_properties


def test_matches_neural_tangents() -> None:
    ref = load("resize")
    # (Neural Tangents' ImageResize applies the sizes to swapped axes after an odd number
    # of Convs in the full layout, so the case resizes raw inputs and after two Convs.)
    net = nk.Sequential(
        nk.ImageResize((7, 3), "linear"),
        nk.Conv(8, 2, padding="same", w_std=1.3, b_std=0.1),
        nk.ReLU(),
        nk.Conv(8, 2, w_std=1.2, b_std=0.2),
        nk.Erf(),
        nk.ImageResize((2, 5), "nearest"),
        nk.Conv(8, 2, padding="same", w_std=1.1, b_std=None),
        nk.ReLU(),
        nk.ImageResize(3, "linear", antialias=False),
        nk.Flatten(),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )
    assert_matches(net, ref, channels_first(ref["x1"]), channels_first(ref["x2"]))


def test_linear_upsampling_is_torch_bilinear() -> None:
    # upsampling without corners aligned: torch's half-pixel rule with clamped edges
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    model = nk.ImageResize((8, 10)).module((3, 4, 5))
    want = torch.nn.functional.interpolate(x, size=(8, 10), mode="bilinear", align_corners=False)
    torch.testing.assert_close(model(x), want)


def test_weights_are_convex_combinations() -> None:
    for n_in, n_out in ((5, 2), (4, 9), (7, 3), (3, 3)):
        r = torch.from_numpy(resize_matrix(n_in, n_out, "linear", True))
        assert r.shape == (n_out, n_in) and bool((r >= 0).all())
        torch.testing.assert_close(r.sum(1), torch.ones(n_out, dtype=torch.float64))


def test_properties_and_twins() -> None:
    net = nk.Sequential(
        nk.Conv(96, 2, padding="same", b_std=0.1),
        nk.ReLU(),
        nk.ImageResize((5, -1)),
        nk.Conv(96, 2, w_std=1.3),
        nk.ReLU(),
        nk.ImageResize(2, "nearest"),
        nk.Flatten(),
        nk.Dense(1),
    )
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(4, 2, 3, 4, generator=g, dtype=torch.float64)
    x1[2] = x1[0]
    assert_kernel_properties(net, x1, torch.randn(3, 2, 3, 4, generator=g, dtype=torch.float64))
    assert_twin_agrees(net, x1[:3], samples=16, width=64)


def test_errors() -> None:
    with pytest.raises(nk.HyperparameterError, match="'linear' or 'nearest'"):
        nk.ImageResize(4, "cubic")
    with pytest.raises(nk.HyperparameterError, match="size"):
        nk.ImageResize(0)
    with pytest.raises(nk.HyperparameterError, match="2 spatial axes"):
        nk.Sequential(nk.Conv(2, 1), nk.ImageResize((3, 3, 3))).out_shape((1, 4, 4))


def test_nearest_needs_no_covariance_between_positions() -> None:
    body = nk.Sequential(nk.Conv(4, 2, padding="same", b_std=0.1), nk.ReLU())
    net = nk.Sequential(body, nk.ImageResize((7, 2), "nearest"), nk.Conv(4, 2), nk.ReLU())
    assert not plan_network(net, (2, 4, 5), lambda: "test").mixing
    x = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    diagonal = nk.Sequential(net, nk.Flatten(), nk.Dense(1)).kernel(x)
    full = nk.Sequential(net, nk.AvgPool(1), nk.Flatten(), nk.Dense(1)).kernel(x)
    torch.testing.assert_close(diagonal.ntk, full.ntk, rtol=1e-12, atol=0)
