"""Activation hyperparameters given as tensors: gradients of the kernels, finite twins."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import neural_kernels as nk

from .._support.nt16 import assert_twin_agrees

MAKERS: dict[str, tuple[Callable[[object], nk.Layer], float]] = {
    "RBF.gamma": (lambda t: nk.RBF(gamma=t), 0.7),
    "LeakyReLU.negative_slope": (lambda t: nk.LeakyReLU(t), 0.2),
    "ABReLU.a": (lambda t: nk.ABReLU(t, 1.0), -0.4),
    "Erf.a": (lambda t: nk.Erf(t, 0.8, 0.1), 1.1),
    "Erf.b": (lambda t: nk.Erf(1.0, t, 0.1), 0.8),
    "Sin.c": (lambda t: nk.Sin(1.0, 1.2, t), 0.3),
    "Cos.b": (lambda t: nk.Cos(1.0, t, 0.2), 0.9),
    "Exp.b": (lambda t: nk.Exp(0.5, t), 0.4),
    "Gaussian.b": (lambda t: nk.Gaussian(1.0, t), -0.5),
}


def _total(act: nk.Layer, x: torch.Tensor) -> torch.Tensor:
    net = nk.Sequential(nk.Dense(4, w_std=1.2, b_std=0.1), act, nk.Dense(1))
    k = net.kernel(x)
    return k.nngp.sum() + k.ntk.sum()


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_gradient_matches_finite_differences(name: str) -> None:
    make, v = MAKERS[name]
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.tensor(v, dtype=torch.float64, requires_grad=True)
    _total(make(t), x).backward()
    assert t.grad is not None
    eps = 1e-6
    fd = (_total(make(v + eps), x) - _total(make(v - eps), x)) / (2 * eps)
    assert abs(float(t.grad) - float(fd)) <= 1e-6 * max(1.0, abs(float(fd)))
    # the value is that of the plain number
    torch.testing.assert_close(_total(make(t), x).detach(), _total(make(v), x), rtol=1e-14, atol=0)


def test_rbf_gamma_gradient_is_analytic() -> None:
    # Dense(w_std=1, b_std=None) then RBF: K = exp(-gamma |x - x'|^2 / d)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gamma = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    k = nk.Sequential(nk.Dense(1, b_std=None), nk.RBF(gamma=gamma)).kernel(x, get="nngp").nngp
    (grad,) = torch.autograd.grad(k.sum(), gamma)
    d2 = torch.cdist(x, x) ** 2 / 3
    want = -(d2 * torch.exp(-0.6 * d2)).sum()
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-12)


def test_tensor_hyperparameters_in_the_finite_twin() -> None:
    slope = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    net = nk.Sequential(
        nk.Dense(256, w_std=1.3, b_std=0.2),
        nk.LeakyReLU(slope),
        nk.Dense(256),
        nk.RBF(gamma=gamma),
        nk.Dense(1),
    )
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        assert_twin_agrees(net, x, samples=16, width=256)


def test_float32_kernel_with_a_float64_hyperparameter() -> None:
    gamma = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    net = nk.Sequential(nk.Dense(4), nk.RBF(gamma=gamma), nk.Dense(1))
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(3))
    k = net.kernel(x)
    assert k.nngp.dtype == torch.float32
    torch.testing.assert_close(k.nngp.double(), net.kernel(x.double()).nngp, rtol=1e-5, atol=0)


def test_bad_tensors_are_refused() -> None:
    with pytest.raises(nk.HyperparameterError, match="gamma"):
        nk.RBF(gamma=torch.tensor([0.1, 0.2]))
    with pytest.raises(nk.HyperparameterError, match="gamma"):
        nk.RBF(gamma=torch.tensor(-1.0))
    with pytest.raises(nk.HyperparameterError, match="negative_slope"):
        nk.LeakyReLU(torch.tensor(1))
