"""Layer.kernel / kernel_diag: Neural Tangents' input masking is refused, not ignored."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk


def test_mask_constant_is_refused_with_a_fix() -> None:
    net = nk.Sequential(nk.Conv(4, 2), nk.ReLU(), nk.GlobalAvgPool(), nk.Dense(1))
    x = torch.randn(3, 2, 5, dtype=torch.float64)
    with pytest.raises(nk.LayerCompatibilityError, match=r"mask_constant=0\.0.*nk\.Index"):
        net.kernel(x, mask_constant=0.0)
    with pytest.raises(nk.LayerCompatibilityError, match="mask_constant"):
        net.kernel_diag(x, mask_constant=-1)
    # None (the default) is no masking
    torch.testing.assert_close(net.kernel(x, mask_constant=None).nngp, net.kernel(x).nngp)
