"""The infinite-width section solves in float64 whatever the kernels' dtype."""

from __future__ import annotations

from types import SimpleNamespace

import torch

import neural_kernels as nk
from neural_kernels.report.sections.infinite_width import _kernel_curves


def test_float32_kernels_are_solved_in_float64() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 6, generator=g, dtype=torch.float32)
    y = torch.randint(0, 3, (120,), generator=g)
    targets = torch.nn.functional.one_hot(y, 3).to(torch.float32) - 1 / 3
    net = nk.Sequential(nk.Dense(8, w_std=1.4, b_std=0.1), nk.ReLU(), nk.Dense(3, b_std=0.1))
    k_train, k_test = net.kernel(x[:100]), net.kernel(x[100:], x[:100])
    ctx = SimpleNamespace(diag_reg=1e-4)
    got = _kernel_curves(k_train, k_test, ctx, targets[:100], targets[100:], y[100:])
    as64 = [k.to(torch.float64) for k in (k_train, k_test)] + [targets[:100].double()]
    expected = _kernel_curves(*as64[:2], ctx, as64[2], targets[100:].double(), y[100:])
    for name in ("nngp", "ntk"):
        assert got[name]["posterior_test_mse"] == expected[name]["posterior_test_mse"]
        assert got[name]["gd_test_mse"] == expected[name]["gd_test_mse"]
