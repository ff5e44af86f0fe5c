"""The ``feature_learning_nonlinear`` and ``ntk_limits`` report sections (quick sizes)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from neural_kernels.report.sections import SECTIONS, Context, feature_learning_nonlinear, ntk_limits

pytest.importorskip("sklearn", reason="needs the test extra (scikit-learn)")
plt = pytest.importorskip("matplotlib.pyplot", reason="needs the demo extra (matplotlib)")


def _context() -> Context:
    x = torch.zeros(4, 64, dtype=torch.float64)  # the sections load their own digits
    t = torch.zeros(4, 10, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    return Context(x, x, t, t, y, 10, None, None, None, 1e-4, 0, True, True, 0.1)


def _draw_all(section: object) -> None:
    for plot in section.plots:  # type: ignore[attr-defined]
        fig, ax = plt.subplots()
        plot.draw(ax)
        assert ax.get_lines(), plot.name
        plt.close(fig)


def test_nonlinear_section() -> None:
    assert ("feature_learning_nonlinear", feature_learning_nonlinear.build) in SECTIONS
    section = feature_learning_nonlinear.build(_context())
    data = json.loads(json.dumps(section.data, allow_nan=False))
    for act in ("tanh", "relu"):
        s = data[act]
        assert s["ntk_gap_to_kernel"][-1] < s["ntk_gap_to_kernel"][0]
        assert s["mup_successive_gap"][-1] < s["mup_successive_gap"][0]
    _draw_all(section)


def test_ntk_limits_section() -> None:
    assert ("ntk_limits", ntk_limits.build) in SECTIONS
    section = ntk_limits.build(_context())
    data = json.loads(json.dumps(section.data, allow_nan=False))
    runs = data["sweep"]["runs"]
    assert set(runs) == {"ntk", "standard", "standard_fixed", "mup"}
    ntk = runs["ntk"]["1"]
    assert ntk["256"]["kernel_movement"] < ntk["16"]["kernel_movement"]
    assert math.isfinite(data["ntk_gp_vs_ensemble"]["ntk_gp"]["log_likelihood"])
    fg = data["forgetting"]
    assert fg["widths"] == [64, 256] and set(fg["runs"]) == {"64", "256"}
    for regime in ("early", "converged"):
        assert all(0.0 <= v <= 1.0 for v in fg["forgetting"][regime])
    assert any("forgetting early" in line for line in section.summary)
    _draw_all(section)
