"""The structured strategy's cotangents (``neural_kernels.empirical._structured``).

The ``k`` output cotangents (one backward pass of a scalar per output) must equal those of
explicit one-hot output cotangents, the traced Gram product must take both memory layouts,
and the structured kernel must equal the per-example Jacobian strategy (``torch.func``) to
1e-12 in float64 and 1e-5 in float32, traced and in full blocks.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import neural_kernels as nk
from neural_kernels.empirical._features import _gram_sum
from neural_kernels.empirical._structured import _cotangents

from .._support.empirical import rel_err


def _mlp(dtype: torch.dtype) -> nn.Module:
    net = nk.Sequential(
        nk.Dense(16, b_std=None), nk.ReLU(), nk.Dense(16, b_std=None), nk.ReLU(), nk.Dense(4)
    )
    return net.module((7,), generator=torch.Generator().manual_seed(3), dtype=dtype)


def test_cotangents_equal_explicit_one_hot_passes():
    gen = torch.Generator().manual_seed(0)
    w1 = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    w2 = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    z1 = (x @ w1.T).requires_grad_(True)
    z2 = torch.tanh(z1) @ w2.T
    unused = torch.zeros(9, 2, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():  # as the strategy calls it
        got = _cotangents(z2, [z1, z2, unused])
    assert got[2].shape == (3, 9, 2) and not got[2].any()
    for o in range(3):
        onehot = torch.zeros(9, 3, dtype=torch.float64)
        onehot[:, o] = 1.0
        (want,) = torch.autograd.grad(z2, [z1], onehot, retain_graph=True)
        assert torch.allclose(got[0][o], want, rtol=1e-14, atol=1e-14)
    # the cotangents of z2 for output o are the one-hot e_o of every example
    assert torch.equal(got[1], torch.eye(3, dtype=torch.float64)[:, None].expand(3, 9, 3))
    # stored examples-first: a traced Gram product is one GEMM
    assert got[0].transpose(0, 1).is_contiguous()


def test_gram_sum_takes_either_layout():
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(4, 6, 5, generator=gen, dtype=torch.float64)  # (k, b1, D) outputs-first
    b = torch.randn(4, 7, 5, generator=gen, dtype=torch.float64)
    want = torch.einsum("kid,kjd->ij", a, b)
    first = _gram_sum(a, b)
    examples = _gram_sum(a.transpose(0, 1).contiguous().transpose(0, 1),
                         b.transpose(0, 1).contiguous().transpose(0, 1))  # fmt: skip
    assert torch.allclose(first, want, rtol=1e-13, atol=1e-13)
    assert torch.allclose(examples, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("trace", [True, False])
def test_structured_equals_the_jacobian_strategy(dtype, tol, trace):
    model = _mlp(dtype)
    x = torch.randn(11, 7, generator=torch.Generator().manual_seed(1), dtype=dtype)
    ours = nk.empirical_ntk(model, x, strategy="structured", trace_outputs=trace)
    ref = nk.empirical_ntk(model, x, strategy="jacobian", trace_outputs=trace)
    assert ours.dtype == dtype and ours.shape == ref.shape
    assert rel_err(ours.double(), ref.double()) < tol


def _nets(dtype: torch.dtype) -> dict[str, nn.Module]:
    gen = torch.Generator().manual_seed(5)
    no_bias = nk.Sequential(nk.Dense(12, b_std=None), nk.ReLU(), nk.Dense(3, b_std=None))

    def conv(bias: bool) -> nn.Module:
        torch.manual_seed(4)
        return nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1, bias=bias),
            nn.ReLU(),
            nn.Conv2d(3, 4, 3, stride=2, bias=bias),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(16, 3, bias=bias),
        ).to(dtype)

    torch.manual_seed(7)  # a wide convolution at few positions: its term pairs positions
    few = nn.Sequential(
        nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3)
    ).to(dtype)
    return {
        "mlp_no_bias": no_bias.module((7,), generator=gen, dtype=dtype),
        "conv_bias": conv(True),
        "conv_no_bias": conv(False),
        "conv_few_positions": few,
    }


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("name", ["mlp_no_bias", "conv_bias", "conv_no_bias", "conv_few_positions"])
def test_structured_equals_jacobians_with_and_without_bias_and_on_conv_nets(dtype, tol, name):
    model = _nets(dtype)[name]
    shape = {"mlp_no_bias": (7,), "conv_few_positions": (6, 2, 2)}.get(name, (2, 6, 6))
    gen = torch.Generator().manual_seed(6)
    x1 = torch.randn(9, *shape, generator=gen, dtype=dtype)
    x2 = torch.randn(5, *shape, generator=gen, dtype=dtype)
    for trace in ("sum", "full"):
        for b in (None, x2):
            ours = nk.empirical_ntk(model, x1, b, strategy="structured", trace_outputs=trace)
            ref = nk.empirical_ntk(model, x1, b, strategy="jacobian", trace_outputs=trace)
            assert ours.dtype == dtype and ours.shape == ref.shape
            assert rel_err(ours.double(), ref.double()) < tol, (trace, b is None)
