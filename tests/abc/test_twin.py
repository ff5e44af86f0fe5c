"""abc finite twins: ``net.module(..., parametrization=..., base_width=...)``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import neural_kernels as nk
from neural_kernels.abc import ABC
from neural_kernels.layers.conv import ConvModule
from neural_kernels.layers.dense import DenseModule

PARAMS = ["standard", "ntk", "mup", ABC(a=("-1/4", "1/4", "1/4"), b=("1/4", "1/4", "1/2"), c=1)]


def _mlp(depth: int = 2, bias: float = 0.1) -> nk.Sequential:
    layers: list[nk.Layer] = []
    for _ in range(depth):
        layers += [nk.Dense(32, w_std=1.3, b_std=bias), nk.Tanh()]
    return nk.Sequential(*layers, nk.Dense(3, w_std=0.9, b_std=bias))


def _cnn() -> nk.Sequential:
    return nk.Sequential(
        nk.Conv(8, (3, 3), b_std=0.2),
        nk.ReLU(),
        nk.Conv(8, (3, 3), b_std=0.2),
        nk.ReLU(),
        nk.Flatten(),
        nk.Dense(2, b_std=0.2),
    )


@pytest.mark.parametrize("parametrization", PARAMS)
@pytest.mark.parametrize("make", [_mlp, _cnn])
def test_every_parametrization_is_standard_at_the_base_width(
    parametrization: object, make: object
) -> None:
    net = make()  # type: ignore[operator]
    shape = (5,) if make is _mlp else (2, 7, 7)
    std = net.module(shape, width=16, parametrization="standard",
                     generator=torch.Generator().manual_seed(3))  # fmt: skip
    abc = net.module(shape, width=16, parametrization=parametrization, base_width=16,
                     generator=torch.Generator().manual_seed(3))  # fmt: skip
    pairs = list(zip(std.named_parameters(), abc.named_parameters(), strict=True))
    assert pairs
    for (n1, p1), (n2, p2) in pairs:
        assert n1 == n2 and torch.equal(p1, p2)
    x = torch.randn(4, *shape)
    assert torch.equal(std(x), abc(x))
    assert all(g["lr"] == 0.1 for g in nk.abc.param_groups(abc, 0.1))


def test_weight_variances_follow_the_exponents() -> None:
    net = _mlp(depth=2)
    n0, n = 32, 512
    model = net.module((64,), width=n, parametrization="mup", base_width=n0, dtype=torch.float64)
    w_in, w_hid, w_out = (m.weight for m in model if isinstance(m, DenseModule))
    m = n / n0
    # muP in weight space: Var(W_in) = s^2/d, Var(W_hid) = s^2/n, Var(W_out) = s^2/(n m)
    assert w_in.var().item() == pytest.approx(1.3**2 / 64, rel=0.05)
    assert w_hid.var().item() == pytest.approx(1.3**2 / n, rel=0.05)
    assert w_out.var().item() == pytest.approx(0.9**2 / (n * m), rel=0.25)
    info = model.abc_info
    assert info.roles == ("input", "hidden", "output") and info.depth == 2
    assert info.width == n and info.base_width == n0 and info.parametrization.name == "mup"


def test_conv_fan_in_counts_the_kernel() -> None:
    net = _cnn()
    model = net.module((2, 7, 7), width=64, parametrization="ntk", base_width=8,
                       dtype=torch.float64)  # fmt: skip
    convs = [m for m in model if isinstance(m, ConvModule)]
    # hidden conv, NTK: Var = 1 / fan_in with fan_in = 64 * 3 * 3 (= standard's)
    assert convs[1].weight.var().item() == pytest.approx(1 / (64 * 9), rel=0.05)
    assert [c.abc_scale.role for c in convs] == ["input", "hidden"]
    assert convs[1].abc_scale.weight_sgd == pytest.approx(8 / 64)


def test_mean_field_only_with_one_hidden_layer() -> None:
    one = _mlp(depth=1).module((5,), width=64, parametrization="mean_field", base_width=16)
    assert [m.abc_scale.role for m in one if hasattr(m, "abc_scale")] == ["input", "output"]
    with pytest.raises(nk.ParametrizationError, match="one hidden layer"):
        _mlp(depth=2).module((5,), width=64, parametrization="mean_field")


def test_mean_field_equals_mup_with_one_hidden_layer() -> None:
    net = _mlp(depth=1)
    a = net.module((5,), width=256, parametrization="mean_field", base_width=16,
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    b = net.module((5,), width=256, parametrization="mup", base_width=16,
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=0)
    ga = [g["lr"] for g in nk.abc.param_groups(a, 0.1)]
    gb = [g["lr"] for g in nk.abc.param_groups(b, 0.1)]
    assert ga == pytest.approx(gb)


def test_bad_input_names_the_fix() -> None:
    net = _mlp()
    with pytest.raises(nk.ParametrizationError, match="'mu-p'"):
        net.module((5,), width=64, parametrization="mu-p")
    with pytest.raises(nk.HyperparameterError, match="below base_width"):
        net.module((5,), width=8, parametrization="mup", base_width=16)
    with pytest.raises(nk.HyperparameterError, match="width=n"):
        net.module((5,), parametrization="mup")
    with pytest.raises(nk.HyperparameterError, match="base_width"):
        net.module((5,), width=16, parametrization="mup", base_width=0)
    custom = nk.Sequential(nk.Dense(8), nk.LayerNorm(), nk.Dense(8), nk.ReLU(), nk.Dense(1))
    model = custom.module((5,), width=16, parametrization="mup")  # LayerNorm: no parameters
    assert model(torch.randn(2, 5)).shape == (2, 1)
    attention = nk.Sequential(
        nk.Dense(8), nk.GlobalSelfAttention(8, 4, 4, 2), nk.Flatten(), nk.Dense(1)
    )
    with pytest.raises(nk.ModelError, match="cannot scale"):
        attention.module((3, 5), width=16, parametrization="mup")


def test_plain_parametrizations_keep_their_path() -> None:
    net = _mlp()
    model = net.module((5,), width=64, parametrization="ntk")
    assert not hasattr(model, "abc_info")
    assert math.isclose(nk.abc.param_groups(model, 0.2)[0]["lr"], 0.2)
    assert isinstance(model, nn.Module)
