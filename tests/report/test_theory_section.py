"""The ``theory`` report section (quick sizes): every check's numbers in its data."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from neural_kernels.report import Progress
from neural_kernels.report.sections import SECTIONS
from neural_kernels.report.sections.theory import build


def test_section() -> None:
    assert ("theory", build) in SECTIONS
    ctx = SimpleNamespace(quick=True, progress=lambda label: Progress(label, enabled=False))
    section = build(ctx)  # type: ignore[arg-type]
    assert section.name == "theory"
    data = section.data
    assert set(data) == {"finite_width", "criticality", "infinite_depth", "risk", "eigen_dynamics"}
    relu = data["finite_width"]["rows"][0]
    assert relu["theory"] == pytest.approx((1 + 5 / 64) ** 7 - 1)
    assert abs(relu["z"]) < 5
    curve = data["criticality"]["curves"]["relu critical"]["vertex"]
    assert curve[-1] == pytest.approx(5 * 11 / 12)
    power = data["risk"]["power_law"]
    for c in power["curves"].values():
        assert all(math.isfinite(v) and v > 0 for v in c["measured"] + c["theory"])
    dyn = data["eigen_dynamics"]
    assert dyn["gap"]["512"] < dyn["gap"]["32"]
    assert len(section.plots) == 5 and all(p.name.startswith("theory_") for p in section.plots)
