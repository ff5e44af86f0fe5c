"""Affine maps of kernels shared by the layers with weights (``Dense``, ``Conv``, attention).

Hyperparameters such as ``w_std`` are numbers or 0-d tensors (which may require grad),
so these helpers accept both and keep autograd working.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Std", "add_scaled", "affine", "sq"]

Std = float | Tensor


def sq(x: Std) -> Std:
    """``x * x`` for a number or a tensor."""
    return x * x


def add_scaled(x: Tensor, y: Tensor, scale: Std) -> Tensor:
    """``x + scale * y`` in one pass when ``scale`` is a number."""
    if isinstance(scale, Tensor):
        return x + scale * y
    return torch.add(x, y, alpha=scale)


def affine(x: Tensor, scale: Std, shift: Std | None) -> Tensor:
    """``scale * x + shift`` in one fresh tensor (safe under autograd; ``None``: no shift)."""
    out = x * scale
    if shift is None or (not isinstance(shift, Tensor) and shift == 0.0):
        return out
    return out + shift if isinstance(shift, Tensor) else out.add_(shift)
