r"""An activation known only through its NNGP function: the NTK by autodiff.

For :math:`(u, v) \sim \mathcal N(0, [[q_1, k], [k, q_2]])`, Price's theorem gives the
derivative dual from the NNGP dual alone:

.. math::
    \frac{\partial}{\partial k}\, \mathbb E[\phi(u)\phi(v)] = \mathbb E[\phi'(u)\phi'(v)],

so an activation given by ``nngp_fn(k, q1, q2) = E[phi(u) phi(v)]`` has the NTK map
:math:`\Theta \mapsto \Theta\, \partial_k\, \mathrm{nngp\_fn}(K, q_1, q_2)`, with the
derivative by autograd (as Neural Tangents' ``Elementwise(nngp_fn=...)`` does).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import InputTypeError, LayerCompatibilityError, describe

__all__ = ["NngpFn", "call_nngp_fn", "derivative_dual"]

NngpFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def call_nngp_fn(fn: NngpFn, k: Tensor, q1: Tensor, q2: Tensor, where: object) -> Tensor:
    """``fn(k, q1, q2)``, checked to be a tensor of the shape of ``k``."""
    try:
        out = fn(k, q1, q2)
    except (RuntimeError, TypeError, ValueError) as err:
        raise InputTypeError(
            describe(
                where,
                f"nngp_fn raised {type(err).__name__} on covariances of shape "
                f"{tuple(k.shape)}: {err}",
                "nngp_fn(cov12, var1, var2) must map float tensors (var1, var2 broadcast "
                "against cov12) to E[phi(u) phi(v)] of the shape of cov12, with torch "
                "operations.",
            )
        ) from err
    if not isinstance(out, Tensor):
        raise InputTypeError(
            describe(
                where,
                f"nngp_fn returned {type(out).__name__}, not a tensor",
                "nngp_fn must return a tensor of the shape of its first argument.",
            )
        )
    if out.shape != k.shape:
        raise LayerCompatibilityError(
            describe(
                where,
                f"nngp_fn maps covariances of shape {tuple(k.shape)} to shape {tuple(out.shape)}",
                "nngp_fn must act entrywise and keep the shape of cov12.",
            )
        )
    return out


def derivative_dual(fn: NngpFn, k: Tensor, q1: Tensor, q2: Tensor, where: object) -> Tensor:
    """``d fn(k, q1, q2) / dk`` entrywise, by autograd (differentiable in turn when needed)."""
    outer = torch.is_grad_enabled() and k.requires_grad
    with torch.inference_mode(False), torch.enable_grad():
        if outer:
            leaf = k
        else:
            leaf = k.detach()
            leaf = (leaf.clone() if leaf.is_inference() else leaf).requires_grad_(True)
            q1, q2 = q1.detach(), q2.detach()
        value = call_nngp_fn(fn, leaf, q1, q2, where)
        if not value.requires_grad:
            return torch.zeros_like(k)  # constant in the covariance
        try:
            (grad,) = torch.autograd.grad(value.sum(), leaf, create_graph=outer, allow_unused=True)
        except RuntimeError as err:
            raise LayerCompatibilityError(
                describe(
                    where,
                    f"autograd cannot differentiate nngp_fn ({err})",
                    "Write nngp_fn with differentiable torch operations, or pass "
                    "d_nngp_fn, the derivative in cov12.",
                )
            ) from err
    if grad is None:
        return torch.zeros_like(k)
    return grad if outer else grad.detach()
