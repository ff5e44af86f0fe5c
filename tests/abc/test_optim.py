"""nk.abc.param_groups: per-layer learning rates, the abc form they stand for, schedulers."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from torch import nn

import neural_kernels as nk
from neural_kernels.abc import ABC

NET = nk.Sequential(
    nk.Dense(16, b_std=0.3), nk.Tanh(), nk.Dense(16, b_std=0.3), nk.Tanh(), nk.Dense(3, b_std=0.3)
)


def _twin(parametrization: object = "mup", width: int = 128, base: int = 32) -> nn.Module:
    return NET.module((6,), width=width, parametrization=parametrization, base_width=base,
                      dtype=torch.float64, generator=torch.Generator().manual_seed(1))  # fmt: skip


def _rates(groups: list[dict]) -> dict[str, float]:
    return {g["role"]: g["lr"] for g in groups}


def test_mup_sgd_rates_are_table_1_in_weight_space() -> None:
    m = 128 / 32
    rates = _rates(nk.abc.param_groups(_twin(), 0.1))
    assert rates["input"] == pytest.approx(0.1 * m)
    assert rates["input bias"] == pytest.approx(0.1 * m)
    assert rates["hidden"] == pytest.approx(0.1)
    assert rates["hidden bias"] == pytest.approx(0.1 * m)
    assert rates["output"] == pytest.approx(0.1 / m)
    assert rates["output bias"] == pytest.approx(0.1)


def test_mup_adam_divides_matrix_like_weights_by_the_fan_in_multiplier() -> None:
    m = 128 / 32
    rates = _rates(nk.abc.param_groups(_twin(), 0.01, optimizer="adam"))
    assert rates["input"] == pytest.approx(0.01)
    assert rates["input bias"] == pytest.approx(0.01)
    assert rates["hidden bias"] == pytest.approx(0.01)
    assert rates["hidden"] == pytest.approx(0.01 / m)
    assert rates["output"] == pytest.approx(0.01 / m)
    assert rates["output bias"] == pytest.approx(0.01)
    std = _rates(nk.abc.param_groups(_twin("standard"), 0.01, optimizer="adam"))
    assert set(std.values()) == {0.01}


@pytest.mark.parametrize(
    "parametrization", ["mup", "ntk", ABC(a=(0, "1/4", 1), b=(0, "1/4", 0), c=("-1/2", 1, 0))]
)
def test_groups_train_the_abc_form_exactly(parametrization: object) -> None:
    """SGD on W with the groups' rates equals SGD on w (W = m^-a w) at rate eta m^-c."""
    spec = nk.abc.as_abc(parametrization)
    model = _twin(parametrization)
    eta, m = 0.05, Fraction(128, 32)
    x = torch.randn(10, 6, dtype=torch.float64)
    y = torch.randn(10, 3, dtype=torch.float64)

    dense = [mod for mod in model if hasattr(mod, "abc_scale")]
    roles = [mod.abc_scale.role for mod in dense]

    def mult(e: Fraction) -> float:
        return float(m) ** float(e)

    # raw abc parameters: w = m^a W (weights), bias of width-n layers with the input's a
    raw, scale, rate = [], [], []
    for mod, role in zip(dense, roles, strict=True):
        a, _, c = spec.group(role)
        ab, _, cb = spec.group("input") if role != "output" else (Fraction(0), 0, Fraction(0))
        for p, (ea, ec) in ((mod.weight, (a, c)), (mod.bias, (ab, cb))):
            raw.append((p.detach() * mult(ea)).requires_grad_())
            scale.append(mult(-ea))
            rate.append(eta * mult(-ec))

    def raw_forward(inp: torch.Tensor) -> torch.Tensor:
        h = inp
        for i in range(len(dense)):
            w, b = raw[2 * i] * scale[2 * i], raw[2 * i + 1] * scale[2 * i + 1]
            h = h @ w.T + b
            if i < len(dense) - 1:
                h = torch.tanh(h)
        return h

    opt = torch.optim.SGD(nk.abc.param_groups(model, eta))
    for _ in range(4):
        opt.zero_grad()
        (0.5 * ((model(x) - y) ** 2).sum() / 10).backward()
        opt.step()
        loss = 0.5 * ((raw_forward(x) - y) ** 2).sum() / 10
        grads = torch.autograd.grad(loss, raw)
        with torch.no_grad():
            for p, g, r in zip(raw, grads, rate, strict=True):
                p -= r * g
    torch.testing.assert_close(model(x), raw_forward(x), rtol=1e-12, atol=1e-12)


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD(nk.abc.param_groups(_twin(), 0.1), momentum=0.9)


@pytest.mark.parametrize(
    "make",
    [
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
        lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1 / (1 + t)),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(
            o, max_lr=nk.abc.scaled_lrs(o, 0.1), total_steps=10
        ),
        lambda o: torch.optim.lr_scheduler.CyclicLR(
            o,
            base_lr=nk.abc.scaled_lrs(o, 0.01),
            max_lr=nk.abc.scaled_lrs(o, 0.1),
            step_size_up=3,
        ),
    ],
)
def test_schedulers_keep_the_per_group_ratios(make: object) -> None:
    opt = _optimizer()
    mults = [g["lr_mult"] for g in opt.param_groups]
    assert len(set(mults)) > 1
    sched = make(opt)  # type: ignore[operator]
    seen = set()
    for _ in range(6):
        opt.step()
        sched.step()
        base = nk.abc.check_scaling(opt)
        seen.add(round(base, 12))
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(base * g["lr_mult"], rel=1e-9)
    assert len(seen) > 1  # the schedule did change the rate


def test_a_scalar_absolute_schedule_undoes_the_scaling_and_is_caught() -> None:
    opt = _optimizer()
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    opt.step()
    sched.step()
    with pytest.raises(nk.ParametrizationError, match="scaled_lrs"):
        nk.abc.check_scaling(opt)


def test_bad_input() -> None:
    model = _twin()
    for lr in (0, -0.1, math.nan, math.inf, "0.1", True):
        with pytest.raises(nk.HyperparameterError, match="lr="):
            nk.abc.param_groups(model, lr)  # type: ignore[arg-type]
    with pytest.raises(nk.ParametrizationError, match="'rmsprop'"):
        nk.abc.param_groups(model, 0.1, optimizer="rmsprop")
    user = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(nk.ModelError, match="'0' \\(Linear\\)"):
        nk.abc.param_groups(user, 0.1)
    wrapped = nn.Sequential(model, nn.Linear(3, 1))
    with pytest.raises(nk.ModelError, match="cannot scale"):
        nk.abc.param_groups(wrapped, 0.1)
    no_adam = _twin(ABC(a=(0, 0, 0), b=(0, "1/2", "1/2"), c=0))
    with pytest.raises(nk.ParametrizationError, match="adam"):
        nk.abc.param_groups(no_adam, 0.1, optimizer="adam")
    with pytest.raises(nk.HyperparameterError, match="lr="):
        nk.abc.scaled_lrs(torch.optim.SGD(nk.abc.param_groups(model, 0.1)), -1.0)
