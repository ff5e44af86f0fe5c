"""Nonlinear MLPs across width: muP settles on one trained function, NTK on the kernel."""

from __future__ import annotations

import pytest

from neural_kernels.errors import HyperparameterError
from neural_kernels.feature_learning.nonlinear import nonlinear_sweep

pytest.importorskip("sklearn", reason="needs the test extra (scikit-learn digits)")


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gaps_shrink_with_width(activation: str) -> None:
    s = nonlinear_sweep(
        activation, (32, 128, 512), n_train=32, n_test=32, steps=30, lr=1.0, seeds=(0, 1)
    )
    # muP: the gap between successive widths shrinks (towards one trained function)
    assert s.mup_successive_gap[1] < 0.8 * s.mup_successive_gap[0]
    # NTK parametrization: the finite net approaches the kernel prediction
    assert s.ntk_gap_to_kernel[-1] < 0.6 * s.ntk_gap_to_kernel[0]
    assert s.ntk_gap_to_kernel[-1] < 0.25
    # muP leaves the kernel regime: it stays far from the kernel prediction at the widest width
    assert s.mup_gap_to_kernel[-1] > 5 * s.ntk_gap_to_kernel[-1]


def test_bad_input() -> None:
    with pytest.raises(HyperparameterError, match="widths"):
        nonlinear_sweep("relu", (64,))
    with pytest.raises(HyperparameterError, match="activation"):
        nonlinear_sweep("gelu", (16, 32))
    with pytest.raises(HyperparameterError, match="lr"):
        nonlinear_sweep("relu", (16, 32), lr=-1.0)
