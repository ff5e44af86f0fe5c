"""ChannelsLast / ChannelsFirst: convolutions then attention, NHWC inputs, twins."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk

from .._support.nt16 import assert_matches, assert_twin_agrees, channels_first, load
from .._support.properties import assert_kernel_properties


def _imdb_like(first: nk.Layer | None = None) -> nk.Sequential:
    head = [first] if first is not None else []
    return nk.Sequential(
        *head,
        nk.Conv(8, 3, padding="same", w_std=1.4, b_std=0.1),
        nk.ReLU(),
        nk.Conv(8, 2, padding="same", w_std=1.3, b_std=0.05),
        nk.ReLU(),
        nk.ChannelsLast(),
        nk.GlobalSelfAttention(8, 8, 8, n_heads=2, b_std=None, attention_mechanism="softmax"),
        nk.ReLU(),
        nk.Dense(8, w_std=1.2, b_std=None),
        nk.Erf(),
        nk.GlobalAvgPool(),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )


def test_conv_then_attention_matches_neural_tangents() -> None:
    ref = load("channels")
    assert_matches(_imdb_like(), ref, channels_first(ref["x1"]), channels_first(ref["x2"]))
    # channels-last inputs (as Neural Tangents takes them) through ChannelsFirst
    assert_matches(_imdb_like(nk.ChannelsFirst()), ref, ref["x1"], ref["x2"])


def test_kernel_is_unchanged_and_shapes_follow() -> None:
    body = nk.Sequential(nk.Conv(6, 2, padding="same"), nk.ReLU())
    x = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    a = body.kernel(x, layout="full")
    moved = nk.Sequential(body, nk.ChannelsLast())
    b = moved.kernel(x, layout="full")
    torch.testing.assert_close(a.ntk, b.ntk, rtol=0, atol=0)
    assert moved.out_shape((2, 4, 5)) == (4, 5, 6)
    back = nk.Sequential(moved, nk.ChannelsFirst(), nk.ChannelsFirst())
    assert back.out_shape((2, 4, 5)) == (6, 4, 5)
    model = back.module((2, 4, 5))
    assert model(torch.randn(2, 2, 4, 5)).shape == (2, 6, 4, 5)


def test_dense_per_position_after_conv_properties_and_twins() -> None:
    net = nk.Sequential(
        nk.Conv(128, 2, padding="same", b_std=0.1),
        nk.ReLU(),
        nk.ChannelsLast(),
        nk.Dense(128, w_std=1.3),
        nk.ReLU(),
        nk.ChannelsFirst(),
        nk.AvgPool(2),
        nk.Flatten(),
        nk.Dense(1),
    )
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(4, 2, 4, 4, generator=g, dtype=torch.float64)
    x1[2] = x1[0]
    assert_kernel_properties(net, x1, torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64))
    # Dense on each position is a 1x1 convolution
    conv = nk.Sequential(
        *net.layers[:2], nk.Conv(128, 1, w_std=1.3), *net.layers[4:5], *net.layers[6:]
    )
    torch.testing.assert_close(net.kernel(x1).ntk, conv.kernel(x1).ntk, rtol=1e-13, atol=0)
    assert_twin_agrees(net, x1[:3], samples=16, width=64)


def test_errors() -> None:
    with pytest.raises(nk.ShapeError, match="no spatial axis"):
        nk.Sequential(nk.Dense(3), nk.ChannelsLast()).out_shape((4,))
    with pytest.raises(nk.LayerCompatibilityError, match="ChannelsLast"):
        nk.Sequential(nk.Conv(3, 2), nk.GlobalSelfAttention(4, 4, 4, 1)).out_shape((2, 5))
    with pytest.raises(nk.LayerCompatibilityError, match="ChannelsLast"):
        nk.Sequential(nk.Conv(3, 2), nk.Dense(4)).out_shape((2, 5))
