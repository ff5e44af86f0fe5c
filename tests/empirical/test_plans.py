"""The probe and plan kept between calls of ``nk.empirical_ntk`` (``empirical._plans``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

import neural_kernels as nk
from neural_kernels.empirical import _plans, ntk

from .._support.empirical import F64, naive_ntk, rel_err, traced


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Counts the probes (two forward passes) and plans the calls make."""
    seen: list[str] = []
    real_probe, real_plan = ntk.probe, ntk.make_plan

    def probe(*a: object, **k: object) -> int:
        seen.append("probe")
        return real_probe(*a, **k)  # type: ignore[arg-type]

    def make_plan(*a: object, **k: object) -> object:
        seen.append("plan")
        return real_plan(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(ntk, "probe", probe)
    monkeypatch.setattr(ntk, "make_plan", make_plan)
    yield seen


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(F64)


def test_a_second_call_reuses_the_probe_and_plan(probes: list[str]) -> None:
    model = _mlp()
    x = torch.randn(6, 4, dtype=F64)
    first = nk.empirical_ntk(model, x, strategy="structured")
    assert probes == ["probe", "plan"]
    second = nk.empirical_ntk(model, x[:5], strategy="structured")
    assert probes == ["probe", "plan"]
    assert torch.equal(second, first[:5, :5])
    assert rel_err(second, traced(naive_ntk(model, x[:5]), "mean")) < 1e-10


def test_another_structure_or_strategy_probes_again(probes: list[str]) -> None:
    model = _mlp()
    x = torch.randn(5, 4, dtype=F64)
    nk.empirical_ntk(model, x, strategy="structured")
    nk.empirical_ntk(model, x, strategy="jacobian")  # another strategy: no plan
    assert probes == ["probe", "plan", "probe"]
    model[2].weight.requires_grad_(False)  # fewer trainable parameters
    frozen = nk.empirical_ntk(model, x, strategy="structured")
    assert probes[-2:] == ["probe", "plan"]
    full = nk.empirical_ntk(model, torch.randn(5, 4, dtype=torch.float32), dtype=F64)
    assert full.shape == (5, 5)
    model[2].weight.requires_grad_(True)
    assert not torch.equal(nk.empirical_ntk(model, x, strategy="structured"), frozen)


class Switch(nn.Module):
    """Uses one of two layers, by a flag the key does not see."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)
        self.use_b = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.b if self.use_b else self.a)(x)


def test_a_plan_the_model_no_longer_matches_is_dropped(probes: list[str]) -> None:
    model = Switch().to(F64)
    x = torch.randn(4, 3, dtype=F64)
    nk.empirical_ntk(model, x, strategy="structured")
    model.use_b = True
    got = nk.empirical_ntk(model, x, strategy="structured")
    assert probes == ["probe", "plan", "probe", "plan"]
    assert rel_err(got, traced(naive_ntk(model, x), "mean")) < 1e-10
    nk.empirical_ntk(model, x, strategy="structured")  # the new plan is kept
    assert len(probes) == 4


def test_keys_per_model_are_bounded(probes: list[str]) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten()).to(F64)
    lengths = range(4, 4 + _plans.MAX_KEYS + 3)  # one key per input length
    for n in lengths:
        nk.empirical_ntk(model, torch.randn(3, 1, n, dtype=F64), strategy="structured")
    assert len(_plans._CACHE[model]) == _plans.MAX_KEYS
    calls = len(probes)
    nk.empirical_ntk(model, torch.randn(3, 1, lengths[-1], dtype=F64), strategy="structured")
    assert len(probes) == calls  # the newest key is kept
    nk.empirical_ntk(model, torch.randn(3, 1, lengths[0], dtype=F64), strategy="structured")
    assert len(probes) == calls + 2  # the oldest one went
