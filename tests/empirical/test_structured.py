"""The structured strategy's cotangents (``neural_kernels.empirical._structured``).

The ``k`` output cotangents come from one batched backward pass; they must equal those of
one backward pass per output (the fallback for operations without a batched backward), and
the structured kernel must equal the per-example Jacobian strategy (``torch.func``) to
1e-12 in float64 and 1e-5 in float32, traced and in full blocks.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neural_kernels as nk
from neural_kernels.empirical._structured import _cotangents, _cotangents_loop

from .._support.empirical import rel_err


def _mlp(dtype: torch.dtype) -> nn.Module:
    net = nk.Sequential(
        nk.Dense(16, b_std=None), nk.ReLU(), nk.Dense(16, b_std=None), nk.ReLU(), nk.Dense(4)
    )
    return net.module((7,), generator=torch.Generator().manual_seed(3), dtype=dtype)


def test_batched_cotangents_equal_one_pass_per_output():
    gen = torch.Generator().manual_seed(0)
    w1 = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    w2 = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    z1 = (x @ w1.T).requires_grad_(True)
    z2 = torch.tanh(z1) @ w2.T
    unused = torch.zeros(9, 2, dtype=torch.float64, requires_grad=True)
    batched = _cotangents(z2, [z1, z2, unused])
    looped = _cotangents_loop(z2, [z1, z2, unused])
    assert looped[2] is None and not batched[2].any() and batched[2].shape == (3, 9, 2)
    for a, b in zip(batched[:2], looped[:2], strict=True):
        assert b is not None and a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-14, atol=1e-14)
    # the cotangents of z2 for output o are the one-hot e_o of every example
    assert torch.equal(batched[1], torch.eye(3, dtype=torch.float64)[:, None].expand(3, 9, 3))
    # stored examples-first: a traced Gram product is one GEMM
    assert batched[0].transpose(0, 1).is_contiguous()


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("trace", [True, False])
def test_structured_equals_the_jacobian_strategy(dtype, tol, trace):
    model = _mlp(dtype)
    x = torch.randn(11, 7, generator=torch.Generator().manual_seed(1), dtype=dtype)
    ours = nk.empirical_ntk(model, x, strategy="structured", trace_outputs=trace)
    ref = nk.empirical_ntk(model, x, strategy="jacobian", trace_outputs=trace)
    assert ours.dtype == dtype and ours.shape == ref.shape
    assert rel_err(ours.double(), ref.double()) < tol
