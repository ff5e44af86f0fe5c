"""Sin and Cos duals keep full relative precision for small kernels (no cancellation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import neural_kernels as nk


def _inputs(scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 3, generator=g, dtype=torch.float64) * scale


def _first_layer(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    k = (x @ x.T / x.shape[1]).numpy()
    q = np.diag(k)
    return k, 0.5 * (q[:, None] + q[None, :])


@pytest.mark.parametrize("scale", [1e-7, 1e-3, 1.0, 5.0])
def test_sin_nngp_is_relatively_exact(scale: float) -> None:
    x = _inputs(scale)
    k, half = _first_layer(x)
    out = nk.Sequential(nk.Dense(1), nk.Sin()).kernel(x, get="nngp").nngp.numpy()
    expected = np.sinh(k) * np.exp(-half)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("scale", [1e-7, 1e-3, 1.0])
def test_cos_ntk_derivative_term_is_relatively_exact(scale: float) -> None:
    # For cos: E[phi phi] = cosh(K) e^{-S/2} and E[phi' phi'] = E[sin sin] = sinh(K) e^{-S/2}.
    x = _inputs(scale)
    k, half = _first_layer(x)
    kt = torch.from_numpy(k)
    q = torch.diagonal(kt)
    nngp, dot = nk.Cos().dual(kt, q[:, None].expand_as(kt), q[None, :].expand_as(kt), True)
    np.testing.assert_allclose(dot.numpy(), np.sinh(k) * np.exp(-half), rtol=1e-12, atol=0)
    np.testing.assert_allclose(nngp.numpy(), np.cosh(k) * np.exp(-half), rtol=1e-12, atol=0)


@pytest.mark.parametrize("c", [0.0, 0.3, -1.2, math.pi / 2])
def test_sin_with_phase_matches_the_textbook_formula(c: float) -> None:
    x = _inputs(1.0)
    k, half = _first_layer(x)
    out = nk.Sequential(nk.Dense(1), nk.Sin(a=1.5, b=0.7, c=c)).kernel(x, get="nngp").nngp
    b2 = 0.49
    expected = 0.5 * 2.25 * (np.exp(b2 * (k - half)) - math.cos(2 * c) * np.exp(-b2 * (k + half)))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-15)


def test_large_kernels_stay_finite_with_finite_gradients() -> None:
    x = _inputs(1e3).requires_grad_(True)
    out = nk.Sequential(nk.Dense(1), nk.Sin(b=2.0), nk.Dense(1)).kernel(x).ntk
    assert torch.isfinite(out).all()
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(g).all()
