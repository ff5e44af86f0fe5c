"""Kernel comparisons and the kernel tracker (``neural_kernels.empirical.diagnostics``)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import neural_kernels as nk

from .._support.empirical import F64


def test_kernel_comparisons():
    a = torch.randn(6, 6, dtype=F64)
    k = a @ a.T
    assert nk.kernel_distance(k, k) == 0.0
    assert nk.kernel_distance(k, 3 * k) == pytest.approx(2.0)
    assert nk.kernel_cosine_distance(k, 3 * k) == pytest.approx(0.0, abs=1e-12)
    assert nk.centered_kernel_alignment(k, 3 * k + 5) == pytest.approx(1.0)
    b = torch.randn(6, 6, dtype=F64)
    assert nk.centered_kernel_alignment(k, b @ b.T) < 1.0
    full = torch.randn(4, 4, 2, 2, dtype=F64)
    assert nk.kernel_distance(full, full * 2) == pytest.approx(1.0)
    with pytest.raises(nk.ShapeError):
        nk.kernel_distance(k, k[:3])
    with pytest.raises(nk.NeuralKernelsError, match="zero"):
        nk.kernel_distance(torch.zeros(3, 3), k[:3, :3])


def test_kernel_tracker_during_training():
    model = nn.Sequential(nn.Linear(3, 64), nn.Tanh(), nn.Dropout(0.1), nn.Linear(64, 1)).double()
    x = torch.randn(16, 3, dtype=F64)
    y = torch.sin(x.sum(1, keepdim=True))
    tracker = nk.KernelTracker(model, x[:6])  # dropout in training mode: evaluated in eval mode
    first = tracker.record(0)
    assert first.kernel_distance == 0.0 and first.linearization_gap == 0.0 and first.cka == 1.0
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    for step in range(1, 21):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        if step % 10 == 0:
            tracker.record(step)
    assert model.training  # the tracker restored the mode
    hist = tracker.as_dict()
    assert hist["step"] == [0, 10, 20]
    assert 0 < hist["kernel_distance"][1] < hist["kernel_distance"][2] < 1
    assert 0 < hist["relative_linearization_gap"][2] < 1 and hist["cka"][2] < 1
    json.dumps(hist)
