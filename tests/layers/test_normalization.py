"""``LayerNorm`` (``layers/normalization.py``): its finite twin normalises the last axis.

Its kernel is checked against Neural Tangents (the ``cnn_layernorm`` reference case) and for
finiteness and positive semi-definiteness in ``tests/core``.
"""

from __future__ import annotations

import torch

import neural_kernels as nk


def test_layernorm_normalises_the_last_axis() -> None:
    model = nk.LayerNorm().module((64,))
    y = model(3.0 * torch.randn(4, 64, dtype=torch.float64) + 1.0)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        y.var(-1, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-9, rtol=0
    )
