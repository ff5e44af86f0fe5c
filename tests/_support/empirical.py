"""The naive reference of the empirical-kernel tests.

A loop over examples and outputs with ``torch.autograd.grad``: slow, obviously right,
independent of every strategy of ``nk.empirical_ntk``.
"""

from __future__ import annotations

import torch
from torch import nn

F64 = torch.float64


def naive_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(n, k, P): one example and one output at a time, with torch.autograd.grad."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i : i + 1]).reshape(-1)
        per_output = []
        for o in range(out.shape[0]):
            grads = torch.autograd.grad(out[o], params, retain_graph=True, allow_unused=True)
            flat = [
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for g, p in zip(grads, params, strict=True)
            ]
            per_output.append(torch.cat(flat))
        rows.append(torch.stack(per_output))
    return torch.stack(rows)


def naive_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
    """(n1, n2, k, k)."""
    j1 = naive_jacobian(model, x1)
    j2 = j1 if x2 is None else naive_jacobian(model, x2)
    return torch.einsum("iop,jqp->ijoq", j1, j2)


def traced(full: torch.Tensor, trace: str) -> torch.Tensor:
    """The reference reduced over outputs: ``"mean"``, ``"sum"`` or ``"full"``."""
    if trace == "full":
        return full
    diag = full.diagonal(dim1=2, dim2=3)
    return diag.sum(-1) if trace == "sum" else diag.mean(-1)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())
