"""Forgetting on split digits: early-stopped against converged sequential training."""

from __future__ import annotations

import pytest

from neural_kernels.errors import HyperparameterError
from neural_kernels.feature_learning.forgetting import forgetting_sweep, split_digits_forgetting

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


def test_sweep_averages_the_runs_over_seeds() -> None:
    r = forgetting_sweep((16, 32), seeds=2, early_steps=2, converged_steps=6)
    assert r.widths == [16, 32] and set(r.runs) == {"16", "32"}
    for i, w in enumerate(r.widths):
        runs = r.runs[str(w)]
        assert [run["width"] for run in runs] == [w, w]
        for regime in ("early", "converged"):
            mean = sum(run["forgetting"][regime] for run in runs) / 2
            assert r.forgetting[regime][i] == pytest.approx(mean)
            acc = sum(run["final_accuracy"][regime] for run in runs) / 2
            assert r.final_accuracy[regime][i] == pytest.approx(acc)
    # the seeds give different initialisations
    assert runs[0]["accuracy"] != runs[1]["accuracy"]
    with pytest.raises(HyperparameterError, match="seeds"):
        forgetting_sweep((16,), seeds=0)
    with pytest.raises(HyperparameterError, match="widths"):
        forgetting_sweep((), seeds=1)
