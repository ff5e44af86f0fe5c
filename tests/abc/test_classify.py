"""nk.abc.classify: the rows of Tensor Programs IV's Table 1, in exact arithmetic."""

from __future__ import annotations

from fractions import Fraction

import pytest

import neural_kernels as nk
from neural_kernels.abc import ABC, classify

HALF = Fraction(1, 2)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_standard_sgd_at_constant_rate_is_unstable(depth: int) -> None:
    c = classify("standard", depth)
    assert not c.stable and c.regime == "unstable"


def test_standard_with_c1_is_a_stable_kernel_regime() -> None:
    deep = classify(ABC.standard(c=1), 3)
    assert deep.stable and deep.nontrivial and deep.kernel_regime and not deep.feature_learning
    assert deep.r == HALF
    shallow = classify(ABC.standard(c=1), 1)
    assert shallow.r == Fraction(3, 2) and shallow.regime == "kernel"
    # nontrivial only through the readout's update
    assert shallow.layers[-1].updated_maximally and not shallow.layers[-1].initialized_maximally


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_ntk_is_a_kernel_regime(depth: int) -> None:
    c = classify("ntk", depth)
    assert c.r == HALF and c.stable and c.nontrivial and c.regime == "kernel"
    assert not c.maximal


def test_mean_field_at_depth_one_learns_features() -> None:
    c = classify("mean_field", 1)
    assert c.r == 0 and c.feature_learning and c.maximal
    with pytest.raises(nk.ParametrizationError, match="one hidden layer"):
        classify("mean_field", 2)


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_mup_learns_features_and_is_maximal_everywhere(depth: int) -> None:
    c = classify("mup", depth)
    assert c.r == 0 and c.stable and c.nontrivial and c.feature_learning
    assert c.maximal and len(c.layers) == depth + 1
    assert all(lay.updated_maximally and lay.initialized_maximally for lay in c.layers)
    assert all(isinstance(lay.r, Fraction) for lay in c.layers)


def test_mup_and_mean_field_agree_at_depth_one() -> None:
    assert classify("mup", 1).as_dict()["regime"] == classify("mean_field", 1).as_dict()["regime"]


def test_trivial_parametrization() -> None:
    # readout scaled down too far: stable, but the output never moves at infinite width
    c = classify(ABC(a=(-HALF, 0, 1), b=HALF, c=0), 2)
    assert c.stable and not c.nontrivial and c.regime == "trivial"


@pytest.mark.parametrize("depth", [0, -1, 1.5, True])
def test_depth_must_be_a_positive_int(depth: object) -> None:
    with pytest.raises(nk.HyperparameterError, match="depth"):
        classify("mup", depth)  # type: ignore[arg-type]
