"""examples/integrations.py runs and prints what it claims (small sizes)."""

from __future__ import annotations

import pytest

pytest.importorskip("botorch", reason="needs the botorch extra")
pytest.importorskip("sklearn", reason="needs the sklearn extra")

from .test_examples import _load


def test_integrations(capsys: pytest.CaptureFixture[str]) -> None:
    res = _load("integrations").main(["--n", "40", "--steps", "1", "--k", "4"])
    printed = capsys.readouterr().out
    for word in ("scikit-learn", "GPyTorch", "BoTorch", "permutations"):
        assert word in printed
    # a smooth 2-d function from 40 noisy points: every kernel model explains most of it
    for key in ("sklearn_regressor_r2", "sklearn_gpr_r2", "gpytorch_r2"):
        assert res[key] > 0.8
    assert res["bo_branin_start"] <= res["bo_branin_best"] <= -0.397887 + 1e-6
    # k = 4: tens of models, far fewer than the 2^4 - 1 - 4 = 11 inputs times k^2
    assert 10 <= res["permutation_models_needed"] <= 16 * 11
    # the union bound is sufficient: at least the sampled count, up to its Monte Carlo error
    assert res["permutation_models_bound"] >= 0.9 * res["permutation_models_needed"]
