r"""Whole finite networks, batched: the cross-check of the Gram chain and of the NTK theory.

For ``S`` independent networks ``nk.Sequential(Dense, act, ..., Dense)`` in the NTK
parametrization (``z^(l) = sqrt(C_W/n_{l-1}) W h^(l-1) + sqrt(C_b) b`` with standard
normal ``W``, ``b``), the empirical NTK of the first output unit is

.. math::
    \Theta(x_a, x_b) = \sum_{l=1}^{L} \delta^{(l)}_a \cdot \delta^{(l)}_b
        \left(\frac{C_W}{n_{l-1}} h^{(l-1)}_a \cdot h^{(l-1)}_b + C_b\right),
    \qquad \delta^{(l)} = \frac{\partial f}{\partial z^{(l)}},

computed by one explicit batched backward pass (no autograd, no Python loop over
networks), together with the output Gram matrix
:math:`G^{(L)} = C_b + C_W h^{(L-1)} \cdot h^{(L-1)} / n_{L-1}`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..layers import Layer
from ._gauss import derivative
from ._network import check_inputs, read_chain

__all__ = ["sample_networks"]

_WHERE = "nk.theory.sample_networks"
_CHUNK = 1 << 24


def sample_networks(
    net: Layer,
    x: Tensor,
    width: int | None = None,
    n_samples: int = 1000,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Output Gram matrices and empirical NTKs of ``n_samples`` random finite networks.

    Args:
        net: ``nk.Sequential(Dense, act, Dense, ..., act, Dense)``.
        x: inputs ``(P, n0)``.
        width: hidden width (``None``: the Dense layers' ``out_features``).
        n_samples: number of networks.
        generator: random generator.

    Returns:
        ``(gram, ntk)``, each ``(n_samples, P, P)`` float64: ``G^(L)`` and the NTK of the
        first output unit.

    """
    chain = read_chain(net, _WHERE).with_width(width, _WHERE)
    x = check_inputs(x, _WHERE)
    p = x.shape[0]
    dims = [x.shape[1], *chain.widths[:-1]]
    per_net = sum(a * b for a, b in zip(dims[1:], dims[:-1], strict=True)) + dims[-1]
    chunk = max(1, _CHUNK // per_net)
    grams, ntks = [], []
    for start in range(0, n_samples, chunk):
        s = min(n_samples, start + chunk) - start

        def normal(*shape: int, s: int = s) -> Tensor:
            return torch.randn(s, *shape, generator=generator, dtype=torch.float32).double()

        h = x.expand(s, p, dims[0])
        hs, dots, weights = [h], [], []
        for layer in range(chain.depth - 1):
            n_in, n_out = dims[layer], dims[layer + 1]
            w = normal(n_out, n_in)
            z = math.sqrt(chain.cw[layer] / n_in) * (h @ w.transpose(-1, -2))
            z = z + math.sqrt(chain.cb[layer]) * normal(1, n_out)
            act = chain.acts[layer]
            h = act.fn(z)
            weights.append(w)
            dots.append(derivative(act.fn, z))
            hs.append(h)
        w_out = normal(1, dims[-1])
        # Backward from f = z^(L)_1: delta^(L) = 1 for every input.
        delta = torch.ones(s, p, 1, dtype=torch.float64)
        w_next = w_out
        cw_next, n_next = chain.cw[-1], dims[-1]
        ntk = _term(delta, hs[-1], chain.cw[-1], chain.cb[-1])
        for layer in range(chain.depth - 2, -1, -1):
            delta = math.sqrt(cw_next / n_next) * (delta @ w_next) * dots[layer]
            ntk = ntk + _term(delta, hs[layer], chain.cw[layer], chain.cb[layer])
            w_next, cw_next, n_next = weights[layer], chain.cw[layer], dims[layer]
        last = hs[-1]
        grams.append(chain.cb[-1] + chain.cw[-1] * (last @ last.transpose(-1, -2)) / dims[-1])
        ntks.append(ntk)
    return torch.cat(grams), torch.cat(ntks)


def _term(delta: Tensor, h: Tensor, cw: float, cb: float) -> Tensor:
    """``(delta_a . delta_b) (C_W h_a . h_b / n + C_b)``, batched: ``(S, P, P)``."""
    dd = delta @ delta.transpose(-1, -2)
    hh = h @ h.transpose(-1, -2) / h.shape[-1]
    return dd * (cw * hh + cb)
