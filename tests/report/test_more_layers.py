"""The ``more_layers`` report section on the digits."""

from __future__ import annotations

import math

import pytest
import torch

from neural_kernels.report.sections import SECTIONS, Context
from neural_kernels.report.sections.more_layers import build

datasets = pytest.importorskip("sklearn.datasets", reason="needs the test extra (scikit-learn)")


def _context(quick: bool) -> Context:
    x, y = datasets.load_digits(return_X_y=True)
    x = torch.as_tensor(x, dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    y = torch.as_tensor(y)
    targets = torch.nn.functional.one_hot(y, 10).double() - 0.1
    return Context(
        x[:200],
        x[200:300],
        targets[:200],
        targets[200:300],
        y[200:300],
        10,
        None,
        None,
        None,
        1e-4,
        0,
        quick,
        True,
        0.1,
    )


def test_section() -> None:
    assert ("more_layers", build) in SECTIONS
    section = build(_context(quick=True))
    data = section.data
    assert section.name == "more_layers" and data["train"] == 80
    for name, r in data["networks"].items():
        assert 0.5 < r["test_accuracy"] <= 1.0, name  # ten classes: chance is 0.1
        assert math.isfinite(r["test_mse"]) and r["kernel_seconds"] > 0
    assert data["monte_carlo"]["ntk_relative_error"] < 0.3
    masking = data["masking"]
    assert (
        0.3 < masking["test_accuracy"] <= 1.0
    )  # rows cropped to 4-8 of 8: still well above chance
    assert masking["padded_vs_unpadded_max_abs"] < 1e-10
    assert len(section.summary) == len(data["networks"]) + 3
