"""DotGeneral: Neural Tangents' values, the linear map of positions, twins, properties, errors."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk

from .._support.nt16 import assert_matches, assert_twin_agrees, channels_first, load
from .._support.properties import assert_kernel_properties


def _body() -> nk.Sequential:
    return nk.Sequential(nk.Conv(8, 2, padding="same", w_std=1.3, b_std=0.1), nk.ReLU())


def _head() -> list[nk.Layer]:
    return [nk.GlobalAvgPool(), nk.Dense(1, w_std=1.0, b_std=0.1)]


def test_matches_neural_tangents_contractions_and_scalar() -> None:
    ref = load("dot_general")
    net = nk.Sequential(
        _body(),
        # nk numbers axes in (n, C, H, W): Neural Tangents' W (2 in NHWC) is 3 here
        nk.DotGeneral(rhs=ref["w_vec"], dimension_numbers=(((3,), (0,)), ((), ()))),
        nk.Conv(8, 2, padding="same", w_std=1.2, b_std=0.2),
        nk.Erf(),
        nk.DotGeneral(lhs=ref["h_mix"], dimension_numbers=(((1,), (2,)), ((), ()))),
        nk.DotGeneral(rhs=2.0),
        *_head(),
    )
    assert_matches(net, ref, channels_first(ref["x1"]), channels_first(ref["x2"]))


def test_matches_neural_tangents_free_axes() -> None:
    ref = load("dot_general_free")
    mixed = nk.Sequential(
        _body(), nk.DotGeneral(rhs=ref["w_mix"], dimension_numbers=(((3,), (0,)), ((), ())))
    )
    assert mixed.out_shape((2, 4, 5)) == (8, 4, 3)
    net = nk.Sequential(mixed, *_head())
    assert_matches(net, ref, channels_first(ref["x1"]), channels_first(ref["x2"]))


def test_matches_neural_tangents_batch_dimension() -> None:
    ref = load("dot_general_batch")
    dg = nk.DotGeneral(rhs=ref["h_batch"], dimension_numbers=(((), ()), ((2,), (0,))))
    assert nk.Sequential(_body(), dg).out_shape((2, 4, 3)) == (8, 4, 3, 2)
    net = nk.Sequential(_body(), dg, *_head())
    assert_matches(net, ref, channels_first(ref["x1"]), channels_first(ref["x2"]))


def test_kernel_is_m_k_mt_of_the_full_kernel() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 4, generator=g, dtype=torch.float64)  # lhs: H (4) -> 2
    x = torch.randn(3, 2, 4, 3, generator=g, dtype=torch.float64)
    body = _body()
    k = body.kernel(x, layout="full")  # (3, 3, H, H', W, W')
    net = nk.Sequential(body, nk.DotGeneral(lhs=a, dimension_numbers=(((1,), (2,)), ((), ()))))
    got = net.kernel(x, layout="full")
    for name in ("nngp", "ntk"):
        want = torch.einsum("ph,xyhkwv,qk->xypqwv", a, getattr(k, name), a)
        torch.testing.assert_close(getattr(got, name), want, rtol=1e-13, atol=1e-15)
    twin = net.module((2, 4, 3), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = twin[0](x)
    torch.testing.assert_close(twin(x), torch.einsum("ph,nchw->ncpw", a, y))


def test_properties_and_twins() -> None:
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 4, generator=g, dtype=torch.float64)
    net = nk.Sequential(
        nk.Conv(64, 2, padding="same", b_std=0.1),
        nk.ReLU(),
        nk.DotGeneral(rhs=mix, dimension_numbers=(((2,), (1,)), ((), ()))),  # H: 4 -> 3 (last)
        nk.Conv(64, 2, w_std=1.3),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1),
    )
    x1 = torch.randn(4, 2, 4, 3, generator=g, dtype=torch.float64)
    x1[2] = x1[0]
    assert_kernel_properties(net, x1, torch.randn(3, 2, 4, 3, generator=g, dtype=torch.float64))
    assert_twin_agrees(net, x1[:3], samples=16, width=64)


def test_channels_last_sequences_and_flat_inputs() -> None:
    g = torch.Generator().manual_seed(4)
    w = torch.randn(5, generator=g, dtype=torch.float64)
    # after Dense on sequences (n, L, C): L is axis 1
    seq = nk.Sequential(
        nk.Dense(6), nk.ReLU(), nk.DotGeneral(rhs=w, dimension_numbers=(((1,), (0,)), ((), ())))
    )
    assert seq.out_shape((5, 3)) == (6,)
    x = torch.randn(3, 5, 3, generator=g, dtype=torch.float64)
    k = nk.Sequential(nk.Dense(6), nk.ReLU()).kernel(x, layout="full")
    got = nk.Sequential(seq, nk.Dense(1, b_std=None)).kernel(x)
    torch.testing.assert_close(got.nngp, torch.einsum("p,xypq,q->xy", w, k.nngp, w))
    # a scalar on flat features scales both kernels by its square
    fc = nk.Sequential(nk.Dense(4), nk.Erf())
    xf = torch.randn(3, 2, generator=g, dtype=torch.float64)
    scaled = nk.Sequential(fc, nk.DotGeneral(lhs=-1.5)).kernel(xf)
    torch.testing.assert_close(scaled.ntk, 2.25 * fc.kernel(xf).ntk)
    assert nk.Sequential(fc, nk.DotGeneral()).kernel(xf).nngp.equal(fc.kernel(xf).nngp)


BAD = {
    "channel axis": (
        (((1,), (0,)), ((), ())),
        torch.ones(8),
        nk.LayerCompatibilityError,
        "channel",
    ),
    "batch axis": ((((0,), (0,)), ((), ())), torch.ones(3), nk.LayerCompatibilityError, "batch"),
    "sizes": ((((2,), (0,)), ((), ())), torch.ones(5), nk.ShapeError, "same size"),
    "out of range": ((((7,), (0,)), ((), ())), torch.ones(4), nk.ShapeError, "axis 7"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_errors(name: str) -> None:
    dims, rhs, error, match = BAD[name]
    with pytest.raises(error, match=match):
        nk.Sequential(nk.Conv(8, 1), nk.DotGeneral(rhs=rhs, dimension_numbers=dims)).out_shape(
            (2, 4, 4)
        )


def test_bad_arguments_are_refused_at_construction() -> None:
    with pytest.raises(nk.HyperparameterError, match="one constant"):
        nk.DotGeneral(lhs=1.0, rhs=2.0)
    with pytest.raises(nk.HyperparameterError, match="dimension_numbers"):
        nk.DotGeneral(rhs=torch.ones(2), dimension_numbers=((1,), (0,)))
    with pytest.raises(nk.HyperparameterError, match="finite"):
        nk.DotGeneral(rhs=torch.tensor([1.0, float("nan")]))
    big = nk.DotGeneral(rhs=torch.ones(100, 100))
    assert "tensor (100, 100)" in repr(big)  # never prints the whole constant


def test_neural_tangents_axis_keywords_name_the_spelling_to_use() -> None:
    with pytest.raises(nk.HyperparameterError, match="ChannelsLast"):
        nk.DotGeneral(rhs=2.0, channel_axis=2)  # type: ignore[call-arg]
    with pytest.raises(nk.HyperparameterError, match="batch axis"):
        nk.DotGeneral(rhs=2.0, batch_axis=1)  # type: ignore[call-arg]
