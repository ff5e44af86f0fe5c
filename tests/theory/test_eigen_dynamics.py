"""Training residuals along the NTK's eigendirections: trained twins against the theory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neural_kernels as nk
from neural_kernels.errors import HyperparameterError, ShapeError
from neural_kernels.theory import eigendirection_dynamics


def _task():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 5, generator=g, dtype=torch.float64)
    y = torch.sin(x[:, :1] * 2.0) + 0.3 * x[:, 1:2]
    net = nk.Sequential(nk.Dense(64, w_std=2**0.5, b_std=0.1), nk.ReLU(), nk.Dense(1, b_std=0.1))
    return net, x, y


def test_residual_decays_like_the_kernel_predicts_and_the_gap_shrinks_with_width():
    net, x, y = _task()
    r = eigendirection_dynamics(net, x, y, widths=(32, 2048), seeds=2, n_directions=3)
    lam = np.linalg.eigvalsh(net.kernel(x, get="ntk").ntk.numpy())[::-1][:3]
    np.testing.assert_allclose(r.eigenvalues, lam, rtol=1e-10)
    lr = y.numel() / (2 * lam[0])
    steps = np.rint(r.times / lr)
    np.testing.assert_allclose(r.theory, (1 - lr * lam / y.numel())[None, :] ** steps[:, None])
    assert r.theory[-1, -1] < np.exp(-2.5)
    assert r.gap[2048] < 0.5 * r.gap[32]
    assert r.gap[2048] < 0.05
    np.testing.assert_allclose(r.measured[2048], r.theory, atol=0.1)


def test_bad_input():
    net, x, y = _task()
    with pytest.raises(ShapeError):
        eigendirection_dynamics(net, x, y[:, 0])
    with pytest.raises(HyperparameterError):
        eigendirection_dynamics(net, x, y, widths=(0,))
    with pytest.raises(HyperparameterError):
        eigendirection_dynamics(net, x, y, learning_rate=-1.0)
