r"""Exact samples of the Gram chain of a finite fully connected network.

Given the layer below, the preactivations of the ``n_l`` neurons of a hidden layer are
i.i.d. :math:`\mathcal N(0, G^{(l)})` across neurons, so the next Gram matrix

.. math::
    G^{(l+1)} = C_b + \frac{C_W}{n_l} \sum_{j=1}^{n_l} s(z_j) s(z_j)^\top, \qquad
    z_j \sim \mathcal N(0, G^{(l)}),

has exactly the law it has in the whole network, at a cost of ``n_l P`` Gaussians per
layer instead of ``n_l n_{l+1}`` weights: the Monte Carlo engine for checking the
finite-width theory (:func:`~neural_kernels.theory.finite_width`). The output of the
network given ``G^(L)`` is ``N(0, G^(L))`` per output unit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import HyperparameterError, describe
from ..layers import Layer
from ._network import check_inputs, check_width, input_gram, read_chain

__all__ = ["sample_gram_chain"]

_WHERE = "nk.theory.sample_gram_chain"

#: Gaussians drawn at once (memory of a chunk: 8 bytes each, a few copies).
_CHUNK = 1 << 22


def _factor(g: Tensor) -> Tensor:
    """Batched ``F`` with ``F F^T = g`` for PSD ``g`` ``(S, P, P)``."""
    e, u = torch.linalg.eigh(g)
    return u * e.clamp_min(0.0).sqrt()[..., None, :]


def sample_gram_chain(
    net: Layer,
    x: Tensor,
    width: int | None = None,
    n_samples: int = 10000,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample ``G^(1), ..., G^(L)`` of finite networks, exactly, ``n_samples`` times.

    Args:
        net: ``nk.Sequential(Dense, act, Dense, ..., act, Dense)``.
        x: inputs ``(P, n0)``.
        width: hidden width of every hidden layer; ``None`` keeps the Dense layers'
            ``out_features``.
        n_samples: number of independent chains (networks).
        generator: random generator (for reproducibility).

    Returns:
        ``(L, n_samples, P, P)`` float64; ``[0]`` is the deterministic ``K^(1)``.

    Raises:
        HyperparameterError: ``width`` or ``n_samples`` below one.
        LayerCompatibilityError: a layer the chain does not cover (named).

    """
    chain = read_chain(net, _WHERE).with_width(width, _WHERE)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise HyperparameterError(
            describe(_WHERE, f"n_samples={n_samples!r}", "Pass an integer number >= 1.")
        )
    x = check_inputs(x, _WHERE)
    for n in chain.widths[:-1]:
        check_width(n, _WHERE)
    p = x.shape[0]
    g1 = input_gram(chain, x)
    out = torch.empty(chain.depth, n_samples, p, p, dtype=torch.float64)
    out[0] = g1
    widest = max(chain.widths[:-1], default=1)
    chunk = max(1, _CHUNK // (widest * p))
    for start in range(0, n_samples, chunk):
        stop = min(n_samples, start + chunk)
        g = g1.expand(stop - start, p, p)
        for layer in range(chain.depth - 1):
            n = chain.widths[layer]
            act, cw, cb = chain.acts[layer], chain.cw[layer + 1], chain.cb[layer + 1]
            # Gaussians drawn in float32 (five times faster; their rounding, 1e-7, is far
            # below any Monte Carlo error), everything after in float64.
            eps = torch.randn(stop - start, n, p, generator=generator, dtype=torch.float32)
            eps = eps.to(torch.float64)
            if p == 1:  # one input: a scale, no matrix products
                s = act.fn(eps * g.clamp_min(0.0).sqrt())
                g = cb + (cw / n) * s.square().sum(1, keepdim=True)
            else:
                s = act.fn(eps @ _factor(g).transpose(-1, -2))
                g = cb + (cw / n) * (s.transpose(-1, -2) @ s)
            out[layer + 1, start:stop] = g
    return out
