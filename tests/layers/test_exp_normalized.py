"""ExpNormalized: Neural Tangents' values, the dual, the finite twin, properties, errors."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk

from .._support.nt16 import assert_matches, assert_twin_agrees, channels_first, load
from .._support.properties import assert_kernel_properties


def test_matches_neural_tangents_fully_connected() -> None:
    ref = load("exp_normalized")
    net = nk.Sequential(
        nk.Dense(8, w_std=1.5, b_std=0.2),
        nk.ExpNormalized(gamma=2.0, shift=-1.0),
        nk.Dense(8, w_std=1.3, b_std=0.1),
        nk.ExpNormalized(gamma=0.7, shift=-0.5),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )
    assert_matches(net, ref, ref["x1"], ref["x2"])


def test_matches_neural_tangents_conv_full_layout() -> None:
    ref = load("exp_normalized_conv")
    net = nk.Sequential(
        nk.Conv(8, 2, padding="same", w_std=1.4, b_std=0.1),
        nk.ExpNormalized(gamma=1.5),
        nk.Conv(8, 2, padding="same", w_std=1.2, b_std=0.2),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )
    assert_matches(net, ref, channels_first(ref["x1"]), channels_first(ref["x2"]))


def test_dual_is_the_closed_form_and_its_derivative() -> None:
    g = torch.Generator().manual_seed(1)
    q1 = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    q2 = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    c = 2 * torch.rand(6, generator=g, dtype=torch.float64) - 1
    k = (c * (q1 * q2).sqrt()).requires_grad_(True)
    layer = nk.ExpNormalized(gamma=1.7, shift=-0.3)
    nngp, dot = layer.dual(k, q1, q2, True)
    want = (q1 * q2).sqrt() * torch.exp(1.7 * (c - 0.3))
    torch.testing.assert_close(nngp, want, rtol=1e-13, atol=0)
    (grad,) = torch.autograd.grad(nngp.sum(), k)
    torch.testing.assert_close(dot, grad, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        layer.dual_var(q1), layer.dual(q1, q1, q1, False)[0], rtol=1e-13, atol=0
    )


def test_twin_activation_has_the_exponential_dual() -> None:
    # phi0 on unit-variance Gaussians of correlation c: E[phi0(u) phi0(v)] = exp(gamma (c + s))
    layer = nk.ExpNormalized(gamma=0.8, shift=-1.0)
    g = torch.Generator().manual_seed(2)
    n, c = 400_000, 0.3
    u = torch.randn(n, generator=g, dtype=torch.float64)
    v = c * u + (1 - c * c) ** 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    prod = layer.unit_fn(u) * layer.unit_fn(v)
    est, err = float(prod.mean()), float(prod.std() / n**0.5)
    want = float(torch.exp(torch.tensor(0.8 * (c - 1.0))))
    assert abs(est - want) < 5 * err, (est, want, err)


def test_properties_and_twins() -> None:
    net = nk.Sequential(
        nk.Conv(64, 2, padding="same", b_std=0.1),
        nk.ExpNormalized(gamma=1.2),
        nk.Conv(64, 2, w_std=1.3),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1),
    )
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    x1[2] = x1[0]
    assert_kernel_properties(net, x1, torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64))
    assert_twin_agrees(net, x1[:3], samples=16, width=96)
    fc = nk.Sequential(
        nk.Dense(64, b_std=0.2), nk.ExpNormalized(gamma=0.8, shift=-0.5), nk.Dense(1)
    )
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    assert_kernel_properties(fc, x, torch.randn(2, 3, generator=g, dtype=torch.float64))
    assert_twin_agrees(fc, x, samples=24, width=256)


def test_tensor_gamma_has_a_gradient() -> None:
    gamma = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    net = nk.Sequential(nk.Dense(8), nk.ExpNormalized(gamma=gamma), nk.Dense(1))
    x = torch.randn(3, 2, dtype=torch.float64)
    (grad,) = torch.autograd.grad(net.kernel(x).ntk.sum(), gamma)
    eps = 1e-6
    up = nk.Sequential(nk.Dense(8), nk.ExpNormalized(gamma=1.3 + eps), nk.Dense(1)).kernel(x)
    down = nk.Sequential(nk.Dense(8), nk.ExpNormalized(gamma=1.3 - eps), nk.Dense(1)).kernel(x)
    fd = float((up.ntk.sum() - down.ntk.sum()) / (2 * eps))
    assert abs(float(grad) - fd) < 1e-6 * max(1.0, abs(fd))


def test_errors() -> None:
    with pytest.raises(nk.LayerCompatibilityError, match="not elementwise"):
        nk.ExpNormalized().fn(torch.zeros(2))
    with pytest.raises(nk.HyperparameterError, match="always clipped"):
        nk.ExpNormalized(do_clip=True)  # type: ignore[call-arg]
    with pytest.raises(nk.HyperparameterError, match="gamma"):
        nk.ExpNormalized(gamma=-1.0)
    with pytest.raises(nk.LayerCompatibilityError):
        nk.Sequential(nk.ExpNormalized(), nk.Dense(1)).kernel(torch.randn(2, 3))
