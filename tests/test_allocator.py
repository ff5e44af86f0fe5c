"""The allocator is tuned once, where glibc allows it, and the empirical kernels ask."""

from __future__ import annotations

import platform
import sys

import pytest
import torch

import neural_kernels as nk
from neural_kernels import _allocator
from neural_kernels.empirical import ntk as ntk_module

GLIBC = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"


def test_tuning_is_applied_once_and_can_be_declined(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_allocator, "_DONE", [False])
    monkeypatch.setenv("NEURAL_KERNELS_MALLOPT", "0")
    assert _allocator.tune_allocator() is False
    assert _allocator._DONE == [False]
    monkeypatch.delenv("NEURAL_KERNELS_MALLOPT")
    assert _allocator.tune_allocator() is GLIBC
    assert _allocator._DONE == [GLIBC]
    if GLIBC:  # once done, the environment no longer matters
        monkeypatch.setenv("NEURAL_KERNELS_MALLOPT", "0")
        assert _allocator.tune_allocator() is True


def test_the_empirical_ntk_tunes_the_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(ntk_module, "tune_allocator", lambda: calls.append(True) or True)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    k = nk.empirical_ntk(model, torch.randn(5, 3))
    assert k.shape == (5, 5) and calls
