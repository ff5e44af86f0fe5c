"""Monte Carlo kernels of finite twins whose outputs keep a node (position) axis.

``nk.monte_carlo_kernel`` averages the outputs over every axis but the batch and takes no
graph adjacency; the graph and dropout tests need the per-node kernels
``K[a, b, i, j]`` of outputs ``(n, L, m)`` and the adjacency of each batch, passed to
the twins with ``nk.graph_pattern``. Per-example Jacobians enter ``graph_pattern``
inside the ``vmap``-ed function with the example's own adjacency.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, jacrev, vmap

import neural_kernels as nk


def _context(pattern: Tensor | None) -> Any:
    return contextlib.nullcontext() if pattern is None else nk.graph_pattern(pattern)


def _outputs(model: torch.nn.Module, x: Tensor, a: Tensor | None) -> Tensor:
    with torch.no_grad(), _context(a):
        return model(x)


def _jacobians(
    model: torch.nn.Module, params: dict[str, Tensor], x: Tensor, a: Tensor | None
) -> Tensor:
    """Per-example Jacobians ``(n, outputs, n_params)``; each example's own adjacency."""

    def single(params: dict[str, Tensor], x: Tensor, a: Tensor | None) -> Tensor:
        with _context(None if a is None else a.unsqueeze(0)):
            return functional_call(model, params, (x.unsqueeze(0),)).reshape(-1)

    dims = (None, 0, None if a is None else 0)
    j = vmap(jacrev(single), in_dims=dims, randomness="different")(params, x, a)
    return torch.cat([v.reshape(v.shape[0], v.shape[1], -1) for v in j.values()], -1)


def finite_kernels(
    net: nk.Layer,
    x1: Tensor,
    x2: Tensor | None,
    p1: Tensor | None,
    p2: Tensor | None,
    *,
    width: int,
    samples: int,
    seed: int = 0,
    ntk: bool = True,
) -> dict[str, Tensor]:
    """Means and standard errors of the per-node empirical NNGP and NTK over twins.

    Outputs ``(n, L, m)`` give kernels ``(n1, n2, L, L)`` averaged over the ``m``
    readout units. ``x2=None`` feeds ``x1`` once (the same dropout masks on both sides).
    ``ntk=False`` skips the Jacobians (the NNGP wants many readout units, the NTK few).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    symmetric = x2 is None
    nngps, ntks = [], []
    for _ in range(samples):
        model = net.module(x1.shape[1:], width=width, generator=gen, dtype=x1.dtype)
        params = {k: v.detach() for k, v in model.named_parameters()}

        f1 = _outputs(model, x1, p1)
        f2 = f1 if symmetric else _outputs(model, x2, p2)
        m = f1.shape[-1]
        nngps.append(torch.einsum("aio,bjo->abij", f1, f2) / m)
        if not ntk:
            continue
        j1 = _jacobians(model, params, x1, p1)
        j2 = j1 if symmetric else _jacobians(model, params, x2, p2)
        n1, n2 = j1.shape[0], j2.shape[0]
        j1 = j1.reshape(n1, -1, m, j1.shape[-1])
        j2 = j2.reshape(n2, -1, m, j2.shape[-1])
        ntks.append(torch.einsum("aiop,bjop->abij", j1, j2) / m)
    out = {}
    for name, values in (("nngp", nngps), ("ntk", ntks)):
        if not values:
            continue
        stack = torch.stack(values)
        out[name] = stack.mean(0)
        out[name + "_stderr"] = stack.std(0) / math.sqrt(samples)
    return out


def rel_error(estimate: Tensor, exact: Tensor) -> float:
    """Relative Frobenius error."""
    return float(torch.linalg.norm(estimate - exact) / torch.linalg.norm(exact))
