"""repeat(layer, n): Neural Tangents' values, the unrolled network, twins, plan, errors."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk
from neural_kernels.core.plan import plan_network

from .._support.nt16 import assert_matches, assert_twin_agrees, channels_first, load
from .._support.properties import assert_kernel_properties

BLOCK = nk.Sequential(
    nk.Conv(8, 2, padding="same", w_std=1.4, b_std=0.1),
    nk.ReLU(),
    nk.Conv(8, 2, padding="same", w_std=1.3, b_std=0.2),
    nk.Erf(),
)


def _cnn(middle: nk.Layer) -> nk.Sequential:
    return nk.Sequential(
        nk.Conv(8, 1, w_std=1.2, b_std=None),
        nk.ReLU(),
        middle,
        nk.GlobalAvgPool(),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )


def test_matches_neural_tangents() -> None:
    ref = load("repeat")
    assert_matches(
        _cnn(nk.repeat(BLOCK, 3)), ref, channels_first(ref["x1"]), channels_first(ref["x2"])
    )


def test_deep_matches_neural_tangents() -> None:
    ref = load("repeat_deep")
    step = nk.Sequential(nk.Erf(), nk.Dense(8, w_std=1.5, b_std=0.05))
    net = nk.Sequential(
        nk.Dense(8, w_std=1.5, b_std=0.05), nk.repeat(step, 40), nk.Erf(), nk.Dense(1, b_std=None)
    )
    assert_matches(net, ref, ref["x1"], ref["x2"])


def test_equals_the_unrolled_network_without_unrolling_the_plan() -> None:
    x = torch.randn(4, 2, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rolled, unrolled = _cnn(nk.repeat(BLOCK, 5)), _cnn(nk.Sequential(*[BLOCK] * 5))
    a, b = rolled.kernel(x), unrolled.kernel(x)
    torch.testing.assert_close(a.nngp, b.nngp, rtol=1e-12, atol=0)
    torch.testing.assert_close(a.ntk, b.ntk, rtol=1e-12, atol=0)
    deep = nk.Sequential(nk.Dense(4), nk.repeat(nk.Sequential(nk.ReLU(), nk.Dense(4)), 1000))
    assert len(plan_network(deep, (3,), lambda: "test").steps) == 2


def test_first_repetition_may_change_the_width() -> None:
    # Dense(16) on raw inputs of width 3, then on its own outputs
    net = nk.Sequential(
        nk.repeat(nk.Sequential(nk.Dense(16, b_std=0.1), nk.ReLU()), 3), nk.Dense(1)
    )
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    unrolled = nk.Sequential(*[nk.Dense(16, b_std=0.1), nk.ReLU()] * 3, nk.Dense(1))
    torch.testing.assert_close(net.kernel(x).ntk, unrolled.kernel(x).ntk, rtol=1e-13, atol=0)
    model = net.module(3, width=32)
    assert len(model[0]) == 3 and model[0][2][0].weight.shape == (32, 32)
    assert net.out_shape((3,)) == (1,)
    x2 = x[:2].clone()
    x2[1] = x2[0]
    assert_kernel_properties(net, x, x2)


def test_finite_twins_have_independent_weights_and_agree() -> None:
    net = _cnn(nk.repeat(BLOCK, 2))
    model = net.module((2, 3, 3), width=4)
    first, second = model[2][0][0], model[2][1][0]
    assert not torch.equal(first.weight, second.weight)
    deep = nk.Sequential(
        nk.Dense(8, b_std=0.1), nk.repeat(nk.Sequential(nk.Erf(), nk.Dense(8, w_std=1.5)), 3)
    )
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert_twin_agrees(nk.Sequential(deep, nk.ReLU(), nk.Dense(1)), x, samples=16, width=128)


def test_readout_inside_repeat_keeps_its_width() -> None:
    net = nk.repeat(nk.Sequential(nk.Dense(5), nk.ReLU(), nk.Dense(5)), 3)
    model = net.module(5, width=64)
    assert model(torch.randn(2, 5)).shape == (2, 5)
    assert model[1][0].weight.shape == (64, 64) and model[2][2].weight.shape == (5, 64)


def test_errors() -> None:
    with pytest.raises(nk.ShapeError, match="keeps the shape"):
        nk.repeat(nk.Sequential(nk.Conv(4, 2), nk.ReLU()), 3).out_shape((2, 5, 5))
    with pytest.raises(nk.HyperparameterError, match="n=-1"):
        nk.repeat(nk.ReLU(), -1)
    with pytest.raises(nk.LayerCompatibilityError, match="not a layer"):
        nk.repeat("relu", 2)  # type: ignore[arg-type]
    with pytest.raises(nk.LayerCompatibilityError, match="Dense"):
        nk.repeat(nk.ReLU(), 2).out_shape((3,))  # raw inputs are not Gaussian
    assert nk.repeat(nk.ReLU(), 0).out_shape((3,)) == (3,)
