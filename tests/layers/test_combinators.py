"""The combinators (``layers/combinators.py``): how their finite twins wire the branches.

Their kernels are checked with every network in ``tests/core``; here ``Residual``,
``FanOut``/``Parallel`` and the fan-in layers compute what they say on finite inputs.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import neural_kernels as nk
from neural_kernels.layers.dense import DenseModule


def _dense_modules(model: nn.Module) -> list[DenseModule]:
    return [m for m in model.modules() if isinstance(m, DenseModule)]


def test_residual_computes_x_plus_f_x() -> None:
    net = nk.Sequential(nk.Dense(4), nk.Residual(nk.ReLU(), nk.Dense(4, w_std=1.3, b_std=0.2)))
    model = net.module((3,))
    first, inner = _dense_modules(model)
    x = torch.randn(5, 3)
    h = first(x)
    torch.testing.assert_close(model(x), h + inner(torch.relu(h)))


@pytest.mark.parametrize(
    ("combine", "expected"),
    [
        (nk.FanInSum(), lambda a, b: a + b),
        (nk.FanInProduct(), lambda a, b: a * b),
    ],
    ids=["sum", "product"],
)
def test_fan_in_sum_and_product(combine: nk.Layer, expected: Any) -> None:
    net = nk.Sequential(nk.FanOut(2), nk.Parallel(nk.Dense(3), nk.Dense(3, b_std=0.5)), combine)
    model = net.module((4,))
    first, second = _dense_modules(model)
    x = torch.randn(5, 4)
    torch.testing.assert_close(model(x), expected(first(x), second(x)))


def test_fan_in_concat() -> None:
    net = nk.Sequential(nk.FanOut(2), nk.Parallel(nk.Dense(3), nk.Dense(2)), nk.FanInConcat())
    model = net.module((4,))
    first, second = _dense_modules(model)
    x = torch.randn(5, 4)
    torch.testing.assert_close(model(x), torch.cat([first(x), second(x)], dim=-1))


def test_fan_out_parallel_identity() -> None:
    x = torch.randn(2, 4)
    net = nk.Sequential(
        nk.Dense(4), nk.FanOut(3), nk.Parallel(nk.ReLU(), nk.Identity(), nk.Abs()), nk.FanInConcat()
    )
    model = net.module((4,))
    (dense,) = _dense_modules(model)
    h = dense(x)
    torch.testing.assert_close(model(x), torch.cat([torch.relu(h), h, h.abs()], dim=-1))


def test_network_ending_in_branches_has_no_twin() -> None:
    with pytest.raises(nk.LayerCompatibilityError, match="branches"):
        nk.Sequential(nk.Dense(3), nk.FanOut(2)).module((4,))
