"""The training loop of the sweep and the report (``neural_kernels.empirical.training``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neural_kernels as nk

from .._support.empirical import F64


def test_train_mse_takes_exact_gradient_steps():
    """On a linear model the steps are the kernel steps f <- f - lr/N K (f - y), exactly."""
    gen = torch.Generator().manual_seed(2)
    model = nn.Linear(4, 3, bias=False).double()
    x = torch.randn(7, 4, generator=gen, dtype=F64)
    y = torch.randn(7, 3, generator=gen, dtype=F64)
    with torch.no_grad():
        f = model(x)
    k = nk.empirical_ntk(model, x)  # the per-output kernel, shared by the 3 outputs
    lr, steps = 0.3, 25
    losses = nk.empirical.train_mse(model, x, y, learning_rate=lr, steps=steps)
    expected = [0.5 * float(((f - y) ** 2).mean())]
    for _ in range(steps):
        f = f - lr / y.numel() * k @ (f - y)
        expected.append(0.5 * float(((f - y) ** 2).mean()))
    assert losses.shape == (steps + 1,) and not losses.requires_grad
    torch.testing.assert_close(losses, torch.tensor(expected, dtype=F64), rtol=1e-12, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), f, rtol=1e-12, atol=1e-13)
    with pytest.raises(nk.ShapeError, match="shape"):
        nk.empirical.train_mse(model, x, y[:, :2], learning_rate=lr, steps=1)
    with pytest.raises(nk.HyperparameterError, match="learning_rate"):
        nk.empirical.train_mse(model, x, y, learning_rate=-1.0, steps=1)
    with pytest.raises(nk.HyperparameterError, match="steps"):
        nk.empirical.train_mse(model, x, y, learning_rate=lr, steps=1.5)
    with pytest.raises(nk.ModelError, match="no trainable"):
        nk.empirical.train_mse(model.requires_grad_(False), x, y, learning_rate=lr, steps=1)
