"""Index and Slice: Neural Tangents' values, finite twins, properties, errors."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk

from .._support.nt16 import assert_matches, assert_twin_agrees, channels_first, load
from .._support.properties import assert_kernel_properties


def test_slice_helper() -> None:
    assert nk.Slice[:, 1:4, ::-1] == (slice(None), slice(1, 4), slice(None, None, -1))
    assert nk.Index(nk.Slice[:, :, 0]).idx == (slice(None), slice(None), 0)


def test_matches_neural_tangents_2d() -> None:
    ref = load("index")
    net = nk.Sequential(
        nk.Conv(8, 2, padding="same", w_std=1.3, b_std=0.1),
        nk.ReLU(),
        nk.Index(nk.Slice[:, :, 1:5, ::-2]),
        nk.Conv(8, 2, padding="valid", w_std=1.2, b_std=0.2),
        nk.Erf(),
        nk.Index(nk.Slice[:, :, -1, ...]),
        nk.Conv(8, 2, padding="same", w_std=1.1, b_std=None),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )
    assert_matches(net, ref, channels_first(ref["x1"]), channels_first(ref["x2"]))


def test_matches_neural_tangents_1d_flatten() -> None:
    ref = load("index_flatten")
    net = nk.Sequential(
        nk.Conv(8, 3, padding="same", w_std=1.5, b_std=0.1),
        nk.ReLU(),
        nk.Index(nk.Slice[:, :, 5:0:-2]),
        nk.Conv(8, 1, w_std=1.2, b_std=None),  # Neural Tangents' Dense on each position
        nk.ReLU(),
        nk.Flatten(),
        nk.Dense(1, b_std=None),
    )
    assert_matches(net, ref, channels_first(ref["x1"]), channels_first(ref["x2"]))


def test_index_is_the_kernel_of_the_indexed_positions() -> None:
    body = nk.Sequential(nk.Conv(4, 3, padding="same", b_std=0.2), nk.ReLU())
    x = torch.randn(3, 2, 5, 4, dtype=torch.float64)
    full = body.kernel(x, layout="full").ntk  # (3, 3, 5, 5, 4, 4)
    got = nk.Sequential(body, nk.Index(nk.Slice[:, :, ::-2, 1])).kernel(x, layout="full").ntk
    want = full[:, :, [4, 2, 0]][:, :, :, [4, 2, 0]][..., 1, 1]
    torch.testing.assert_close(got, want, rtol=1e-13, atol=0)


def test_properties_and_twins() -> None:
    net = nk.Sequential(
        nk.Conv(96, 2, padding="same", b_std=0.1),
        nk.ReLU(),
        nk.Index(nk.Slice[..., 1:, ::-1]),
        nk.Conv(96, 2, w_std=1.3),
        nk.ReLU(),
        nk.Index(nk.Slice[:, :, 0]),
        nk.GlobalAvgPool(),
        nk.Dense(1),
    )
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(4, 2, 4, 4, generator=g, dtype=torch.float64)
    x1[2] = x1[0]
    assert_kernel_properties(net, x1, torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64))
    assert net.out_shape((2, 4, 4)) == (1,)
    assert_twin_agrees(net, x1[:3], samples=16, width=64)


def test_after_dense_on_sequences() -> None:
    # channels last: the channel axis is the last one
    net = nk.Sequential(nk.Dense(4), nk.ReLU(), nk.Index(nk.Slice[:, 1:3]), nk.Flatten())
    assert net.out_shape((5, 3)) == (8,)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    assert net.module((5, 3), dtype=torch.float64)(x).shape == (2, 8)


BAD = {
    "batch axis": (nk.Slice[1:, :, :], nk.LayerCompatibilityError, "batch axis"),
    "channel axis": (nk.Slice[:, 0], nk.LayerCompatibilityError, "channel axis"),
    "empty": (nk.Slice[:, :, 3:3], nk.ShapeError, "selects nothing"),
    "out of range": (nk.Slice[:, :, 7], nk.ShapeError, "from -4 to 3"),
    "too many": (nk.Slice[:, :, 0, 0, 0], nk.ShapeError, "at most one index"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_errors(name: str) -> None:
    idx, error, match = BAD[name]
    with pytest.raises(error, match=match):
        nk.Sequential(nk.Conv(2, 1), nk.Index(idx)).out_shape((1, 4, 4))


def test_bad_idx_is_refused_at_construction() -> None:
    with pytest.raises(nk.HyperparameterError, match="Index"):
        nk.Index([0, 1])
    with pytest.raises(nk.HyperparameterError, match="more than one"):
        nk.Index((..., 0, ...))
    with pytest.raises(nk.HyperparameterError, match="Index"):
        nk.Index(slice(None, None, 0))
