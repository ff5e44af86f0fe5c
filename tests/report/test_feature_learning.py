"""The ``feature_learning`` report section (quick sizes)."""

from __future__ import annotations

import json

import pytest
import torch

from neural_kernels.report.sections import SECTIONS, Context
from neural_kernels.report.sections.feature_learning import build

datasets = pytest.importorskip("sklearn.datasets", reason="needs the test extra (scikit-learn)")


def _context() -> Context:
    x, y = datasets.load_digits(return_X_y=True)
    x = torch.as_tensor(x[:120], dtype=torch.float64)
    y = torch.as_tensor(y[:120])
    targets = torch.nn.functional.one_hot(y, 10).double()
    return Context(x[:80], x[80:], targets[:80], targets[80:], y[80:], 10, None, None, None,
                   1e-4, 0, True, True, 0.1)  # fmt: skip


def test_section() -> None:
    assert ("feature_learning", build) in SECTIONS
    section = build(_context())
    data = section.data
    assert data["classification"]["mup"]["regime"] == "feature learning"
    assert data["classification"]["ntk"]["regime"] == "kernel"
    assert data["classification"]["standard c=0"]["stable"] is False
    lim = data["linear_limit"]
    assert lim["mup_limit_f0"] == 0.0 and lim["mup_limit_kernel_change"] > 0.5
    assert lim["ntk_kernel_change"][-1] < lim["ntk_kernel_change"][0]
    assert max(data["coord_check"]["standard"]["slopes"]) > max(
        data["coord_check"]["mup"]["slopes"]
    )
    assert set(data["transfer"]) == {"standard", "mup"}
    json.dumps(data)  # every number goes in results.json
