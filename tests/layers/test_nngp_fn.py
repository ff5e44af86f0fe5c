"""Activation(fn=None, nngp_fn=...): the NTK by autodiff of the NNGP dual."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import neural_kernels as nk

from .._support.nt16 import assert_matches, assert_twin_agrees, load
from .._support.properties import assert_kernel_properties


def erf_nngp(k: Tensor, q1: Tensor, q2: Tensor) -> Tensor:
    return 2 / math.pi * torch.asin(2 * k / torch.sqrt((1 + 2 * q1) * (1 + 2 * q2)))


def sin_nngp(k: Tensor, q1: Tensor, q2: Tensor) -> Tensor:
    return torch.exp(-(q1 + q2) / 2) * torch.sinh(k)


def _net(erf: nk.Layer, sin: nk.Layer) -> nk.Sequential:
    return nk.Sequential(
        nk.Dense(8, w_std=1.5, b_std=0.2),
        erf,
        nk.Dense(8, w_std=1.3, b_std=0.1),
        sin,
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )


KERNEL_ONLY = _net(nk.Activation(nngp_fn=erf_nngp), nk.Activation(nngp_fn=sin_nngp))


def test_matches_neural_tangents() -> None:
    ref = load("nngp_fn")
    assert_matches(KERNEL_ONLY, ref, ref["x1"], ref["x2"])


def test_equals_the_closed_forms() -> None:
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    closed = _net(nk.Erf(), nk.Sin()).kernel(x)
    got = KERNEL_ONLY.kernel(x)
    torch.testing.assert_close(got.nngp, closed.nngp, rtol=1e-13, atol=0)
    torch.testing.assert_close(got.ntk, closed.ntk, rtol=1e-12, atol=0)


def test_properties_and_gradients() -> None:
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    x1[2] = x1[0]
    assert_kernel_properties(KERNEL_ONLY, x1, torch.randn(3, 3, generator=g, dtype=torch.float64))
    # the NTK is differentiable in the inputs (second derivatives of nngp_fn)
    x = x1[:3].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(KERNEL_ONLY.kernel(x, x1[1:]).ntk.sum(), x)
    closed = _net(nk.Erf(), nk.Sin())
    (want,) = torch.autograd.grad(closed.kernel(x, x1[1:]).ntk.sum(), x)
    torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)


def test_finite_twin_uses_fn() -> None:
    net = _net(
        nk.Activation(torch.erf, nngp_fn=erf_nngp), nk.Activation(torch.sin, nngp_fn=sin_nngp)
    )
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert_twin_agrees(net, x, samples=16, width=256)


def test_derivative_given() -> None:
    def d_sin(k: Tensor, q1: Tensor, q2: Tensor) -> Tensor:
        return torch.exp(-(q1 + q2) / 2) * torch.cosh(k)

    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    net = _net(nk.Erf(), nk.Activation(nngp_fn=sin_nngp, d_nngp_fn=d_sin))
    torch.testing.assert_close(net.kernel(x).ntk, _net(nk.Erf(), nk.Sin()).kernel(x).ntk)


def test_dual_without_fn_differentiates_its_nngp() -> None:
    def dual(k: Tensor, q1: Tensor, q2: Tensor, want_dot: bool) -> tuple[Tensor, None]:
        return sin_nngp(k, q1, q2), None

    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    net = _net(nk.Erf(), nk.Activation(dual=dual))
    torch.testing.assert_close(net.kernel(x).ntk, _net(nk.Erf(), nk.Sin()).kernel(x).ntk)


def test_errors() -> None:
    with pytest.raises(nk.InputTypeError, match="fn=None"):
        nk.Activation()
    with pytest.raises(nk.InputTypeError, match="nngp_fn"):
        nk.Activation(nngp_fn="erf")  # type: ignore[arg-type]
    with pytest.raises(nk.InputTypeError, match="one closed form"):
        nk.Activation(dual=lambda k, a, b, d: (k, None), nngp_fn=erf_nngp)
    with pytest.raises(nk.LayerCompatibilityError, match="finite network"):
        KERNEL_ONLY.module(3)
    bad = nk.Sequential(nk.Dense(2), nk.Activation(nngp_fn=lambda k, a, b: k.sum()))
    with pytest.raises(nk.LayerCompatibilityError, match="shape"):
        bad.kernel(torch.randn(3, 2, dtype=torch.float64))
