"""Numerically safe building blocks for closed-form duals.

At correlation one (identical inputs) the arc-cosine and square-root terms of many
duals have infinite derivatives that cancel analytically; evaluated naively their
gradients are ``inf - inf = NaN``. The functions here return the correct values and
a zero derivative exactly at the boundary (where the derivative of the total is
carried by the other, finite terms), so kernels are differentiable everywhere.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._numerics import snap_factor

__all__ = ["correlation", "safe_acos", "safe_sqrt"]


class _SafeAcos(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, c: Tensor) -> Tensor:
        # Save the input itself, not its clamped copy: a tensor made inside ``forward``
        # is a constant to double backward, which would drop ``acos''`` from Hessians.
        ctx.save_for_backward(c)
        return torch.acos(c.clamp(-1.0, 1.0))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (c,) = ctx.saved_tensors
        one_minus = 1.0 - c * c
        inside = one_minus > 0
        d = -torch.rsqrt(torch.where(inside, one_minus, torch.ones_like(one_minus)))
        return grad * torch.where(inside, d, torch.zeros_like(d))


class _SafeSqrt(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = torch.sqrt(x.clamp_min(0.0))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        pos = out > 0
        d = 0.5 / torch.where(pos, out, torch.ones_like(out))
        return grad * torch.where(pos, d, torch.zeros_like(d))


def safe_acos(c: Tensor) -> Tensor:
    """``arccos(clamp(c, -1, 1))`` with derivative ``0`` where ``|c| >= 1``."""
    if torch.is_grad_enabled() and c.requires_grad:
        return _SafeAcos.apply(c)
    return torch.acos(c.clamp(-1.0, 1.0))


def safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(max(x, 0))`` with derivative ``0`` where ``x <= 0``."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _SafeSqrt.apply(x)
    return torch.sqrt(x.clamp_min(0.0))


def _rsqrt_var(q: Tensor) -> Tensor:
    tiny = torch.finfo(q.dtype).tiny
    return torch.rsqrt(q.clamp_min(tiny))


def correlation(k: Tensor, q1: Tensor, q2: Tensor) -> tuple[Tensor, Tensor]:
    """The correlation ``c = k / sqrt(q1 q2)`` clamped to ``[-1, 1]``, and ``sqrt(q1 q2)``.

    Zero variances give ``c = 0`` (then ``k = 0`` too), never NaN. Correlations within
    ``16`` rounding units of ``+-1`` are snapped to ``+-1``: there the arc-cosine turns
    rounding noise of ``1e-16`` into angles of ``1e-8``, while the exact answer for
    identical inputs is ``0``.

    Args:
        k: covariances, any shape.
        q1: variances broadcastable against ``k``.
        q2: variances broadcastable against ``k``.

    Returns:
        ``(c, norm)`` with ``c`` of the shape of ``k`` and ``norm = sqrt(q1 q2)``
        broadcast to it.

    """
    c = k * (_rsqrt_var(q1) * snap_factor(k.dtype))
    c = c * _rsqrt_var(q2)
    c = c.clamp(-1.0, 1.0)
    norm = safe_sqrt(q1) * safe_sqrt(q2)
    return c, norm


INV_2PI = 1.0 / (2.0 * math.pi)
