"""Forgetting on split digits: early-stopped against converged sequential training."""

from __future__ import annotations

import pytest

from neural_kernels.errors import HyperparameterError
from neural_kernels.feature_learning.forgetting import split_digits_forgetting

pytest.importorskip("sklearn", reason="needs the test extra (scikit-learn digits)")


def test_converged_training_forgets_more() -> None:
    r = split_digits_forgetting(64, 1, "ntk", early_steps=5, converged_steps=60)
    assert not any(r.diverged.values())
    # right after its own training, a task is learned well above chance (0.5)
    assert r.accuracy["converged"][0][0] > 0.9
    assert r.forgetting["converged"] > r.forgetting["early"]  # type: ignore[operator]
    assert all(0.0 <= a <= 1.0 for row in r.accuracy["early"] for a in row)


def test_divergence_is_flagged_not_silent() -> None:
    r = split_digits_forgetting(64, 1, "mup", lr=1e4, early_steps=2, converged_steps=3)
    assert r.diverged["converged"] and r.forgetting["converged"] is None


def test_bad_input() -> None:
    with pytest.raises(HyperparameterError, match="parametrization"):
        split_digits_forgetting(16, 1, "mean_field")
    with pytest.raises(HyperparameterError, match="early_steps"):
        split_digits_forgetting(16, 1, early_steps=10, converged_steps=5)
