"""Second derivatives of closed-form duals (the finite-width recursions need them)."""

from __future__ import annotations

import math

import torch

import neural_kernels as nk
from neural_kernels.layers._safe import safe_acos


def relu_dual_naive(u: torch.Tensor) -> torch.Tensor:
    k, q1, q2 = u[0], u[1], u[2]
    c = k / torch.sqrt(q1 * q2)
    t = torch.acos(c)
    return torch.sqrt(q1 * q2) / (2 * math.pi) * (torch.sin(t) + (math.pi - t) * c)


def test_relu_dual_hessian_equals_the_naive_formula_inside() -> None:
    u = torch.tensor([0.6, 1.0, 1.2], dtype=torch.float64)

    def dual(v: torch.Tensor) -> torch.Tensor:
        return nk.ReLU().dual(v[0], v[1], v[2], False)[0]

    hess = torch.autograd.functional.hessian(dual, u)
    expected = torch.autograd.functional.hessian(relu_dual_naive, u)
    torch.testing.assert_close(hess, expected, rtol=1e-10, atol=1e-12)


def test_safe_acos_second_derivative() -> None:
    c = torch.tensor([-0.5, 0.0, 0.3, 1.0], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(safe_acos(c).sum(), c, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), c)
    inside = c.detach()[:3]
    torch.testing.assert_close(h[:3], -inside / (1 - inside**2) ** 1.5)
    assert h[3].item() == 0.0  # at the boundary: zero, not NaN
