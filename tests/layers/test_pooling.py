"""Pooling layers: PyTorch's argument names, their Neural Tangents spellings, twins."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk


def test_pytorch_names_and_defaults() -> None:
    pool = nk.AvgPool(3)
    assert pool.kernel_size == 3 and pool.stride is None and pool.padding == "valid"
    assert nk.AvgPool(2).out_shape((4, 6, 6)) == (4, 3, 3)  # stride defaults to the window
    assert nk.SumPool((2, 3), stride=1).out_shape((4, 6, 6)) == (4, 5, 4)


def test_neural_tangents_names_are_deprecated_but_work() -> None:
    with pytest.warns(DeprecationWarning, match="kernel_size"):
        old = nk.AvgPool(window_shape=(2, 2), padding="same")
    with pytest.warns(DeprecationWarning, match="stride"):
        old_stride = nk.AvgPool(2, strides=1)
    assert old == nk.AvgPool((2, 2), padding="same")
    assert old_stride == nk.AvgPool(2, stride=1)
    with pytest.warns(DeprecationWarning):
        assert old.window_shape == (2, 2)
    with pytest.raises(nk.HyperparameterError, match="kernel_size"):
        nk.AvgPool(filter_shape=2)  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", [nk.AvgPool, nk.SumPool])
def test_twins_pool_like_torch(cls: type) -> None:
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    twin = cls(2).module((3, 6, 6), dtype=torch.float64)
    want = torch.nn.functional.avg_pool2d(x, 2)
    if cls is nk.SumPool:
        want = want * 4
    torch.testing.assert_close(twin(x), want)


def test_pooling_kernel_matches_average_of_covariances() -> None:
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    conv = nk.Conv(3, padding="same")
    full = nk.Sequential(conv).kernel(x, layout="full").nngp  # (3, 3, 4, 4, 4, 4)
    pooled = nk.Sequential(conv, nk.AvgPool(2)).kernel(x).nngp  # (3, 3, 2, 2, 2, 2)
    k = full.reshape(3, 3, 2, 2, 2, 2, 2, 2, 2, 2)  # H=(h, dh), H'=(h', dh'), ...
    want = k.mean(dim=(3, 5, 7, 9))
    torch.testing.assert_close(pooled, want)
