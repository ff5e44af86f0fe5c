"""Small data sets and networks shared by the DKM tests."""

from __future__ import annotations

import math

import pytest
import torch

import neural_kernels as nk

S2 = math.sqrt(2.0)


def relu_net(hidden: int = 2, outputs: int = 1, b_std: float = 0.3) -> nk.Sequential:
    """Dense, then ``hidden + 1`` blocks ReLU-Dense: ``hidden`` learned Gram layers."""
    layers: list[nk.Layer] = [nk.Dense(16)]
    for i in range(hidden + 1):
        width = outputs if i == hidden else 16
        layers += [nk.ReLU(), nk.Dense(width, w_std=S2, b_std=b_std)]
    return nk.Sequential(*layers)


def regression(n: int = 24, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(n, d)`` and noisy nonlinear targets ``(n, 2)``, float64."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    f = torch.stack([torch.sin(x[:, 0] + x[:, 1]), torch.cos(2 * x[:, 2]) * x[:, 3]], 1)
    return x, f + 0.1 * torch.randn(n, 2, generator=gen, dtype=torch.float64)


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return regression()


@pytest.fixture
def x_test() -> torch.Tensor:
    return torch.randn(11, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
