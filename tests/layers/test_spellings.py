"""PyTorch's names and defaults, and clear errors for Neural Tangents' spellings."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk


@pytest.mark.parametrize(
    ("make", "spelling"),
    [
        (lambda: nk.Dense(3, W_std=1.5), "w_std"),
        (lambda: nk.Dense(3, parameterization="standard"), "parametrization"),
        (lambda: nk.Conv(3, filter_shape=(3, 3)), "kernel_size"),
        (lambda: nk.Conv(3, strides=2), "stride"),
        (lambda: nk.Dropout(rate=0.9), "drop probability"),
    ],
)
def test_neural_tangents_keywords_name_the_spelling_to_use(make, spelling: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(nk.HyperparameterError, match=spelling):
        make()


def test_upper_case_padding_is_refused_with_the_lower_case_spelling() -> None:
    with pytest.raises(nk.HyperparameterError, match="padding='same'"):
        nk.Conv(3, padding="SAME")
    with pytest.raises(nk.HyperparameterError, match="padding='valid'"):
        nk.AvgPool(2, padding="VALID")


def test_conv_pads_like_torch_by_default() -> None:
    conv = nk.Conv(4, 3)
    assert conv.padding == "valid"
    assert conv.out_shape((2, 8, 8)) == (4, 6, 6)
    twin = conv.module((2, 8, 8), dtype=torch.float64)
    assert twin(torch.randn(1, 2, 8, 8, dtype=torch.float64)).shape == (1, 4, 6, 6)
    assert torch.nn.Conv2d(2, 4, 3)(torch.randn(1, 2, 8, 8)).shape == (1, 4, 6, 6)


def test_channels_last_images_get_a_warning_with_the_permutation() -> None:
    net = nk.Sequential(nk.Conv(4, padding="same"), nk.Flatten(), nk.Dense(1))
    with pytest.warns(UserWarning, match=r"permute\(0, 3, 1, 2\)"):
        net.kernel(torch.randn(2, 16, 16, 3, dtype=torch.float64))
    net.kernel(torch.randn(2, 3, 16, 16, dtype=torch.float64))  # channels first: silent


def test_overriding_methods_have_docstrings() -> None:
    for cls in (nk.ReLU, nk.Erf, nk.Sin, nk.RBF, nk.Dense, nk.Conv, nk.GlobalAvgPool):
        for name in ("dual", "dual_var", "transform", "fn"):
            method = getattr(cls, name, None)
            if method is not None:
                assert method.__doc__, f"{cls.__name__}.{name}"
