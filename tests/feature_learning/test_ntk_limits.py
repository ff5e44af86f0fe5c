"""Limits of the NTK perspective: kernel statistics, Jacobian stability, movement, gap."""

from __future__ import annotations

import math

import pytest

from neural_kernels.errors import HyperparameterError
from neural_kernels.feature_learning.ntk_limits import ntk_gp_vs_ensemble, ntk_limits_sweep

pytest.importorskip("sklearn", reason="needs the test extra (scikit-learn digits)")


def test_ntk_parametrization_becomes_lazy_with_width() -> None:
    r = ntk_limits_sweep(
        (16, 256), (1,), ("ntk", "mup"), n_train=24, n_test=24, n_probe=2, steps=30
    )
    run = r.runs["ntk"]["1"]
    assert all(not run[w]["diverged"] for w in ("16", "256"))
    # the empirical NTK Gram is positive definite with a finite condition number
    assert 0 < run["256"]["lambda_min"] <= run["256"]["lambda_max"]
    assert math.isclose(
        run["256"]["condition"], run["256"]["lambda_max"] / run["256"]["lambda_min"]
    )
    # wider: kernel moves less, the net stays closer to its linearisation, J more stable
    for key in ("kernel_movement", "linearisation_gap", "jacobian_constant"):
        assert run["256"][key] < 0.7 * run["16"][key], key
    # muP at the widest width moves its kernel far more than the NTK parametrization
    assert r.runs["mup"]["1"]["256"]["kernel_movement"] > 3 * run["256"]["kernel_movement"]


def test_ntk_gp_against_ensemble_scores() -> None:
    g = ntk_gp_vs_ensemble(128, 1, 3, n_train=32, n_test=32, steps=60)
    for scores in (g.ntk_gp, g.ensemble):
        assert math.isfinite(scores["log_likelihood"])
        assert 0.0 <= scores["coverage_50"] <= scores["coverage_90"] <= 1.0
        assert scores["accuracy"] > 0.2  # well above chance (0.1) on ten digits


def test_bad_input() -> None:
    with pytest.raises(HyperparameterError, match="setups"):
        ntk_limits_sweep((16,), (1,), ("bogus",))
    with pytest.raises(HyperparameterError, match="depths"):
        ntk_limits_sweep((16,), (0,))
    with pytest.raises(HyperparameterError, match="members"):
        ntk_gp_vs_ensemble(16, 1, 1)
