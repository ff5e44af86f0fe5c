"""The ``deep_kernel_machines`` report section on the digits (quick sizes)."""

from __future__ import annotations

import math

import pytest
import torch

from neural_kernels.report.sections import SECTIONS, Context
from neural_kernels.report.sections.deep_kernel_machines import NUS, build

datasets = pytest.importorskip("sklearn.datasets", reason="needs the test extra (scikit-learn)")


def _context() -> Context:
    x, y = datasets.load_digits(return_X_y=True)
    x = torch.as_tensor(x, dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    y = torch.as_tensor(y)
    targets = torch.nn.functional.one_hot(y, 10).double() - 0.1
    return Context(
        x[:200], x[200:500], targets[:200], targets[200:500], y[200:500],
        10, None, None, None, 1e-4, 0, True, True, 0.1,
    )  # fmt: skip


def test_section() -> None:
    assert ("deep_kernel_machines", build) in SECTIONS
    section = build(_context())
    data = section.data
    assert section.name == "deep_kernel_machines"
    assert (data["train"], data["test"]) == (50, 200)
    results = data["results"]
    assert set(results) == {str(nu) for nu in NUS}
    nngp = results["inf"]
    assert nngp["objective_rise"] == 0.0 and nngp["steps"] == 0
    for nu in NUS:
        r = results[str(nu)]
        assert 0.5 < r["test_accuracy"] <= 1.0  # ten classes: chance is 0.1
        assert r["objective_nngp"] == pytest.approx(nngp["objective"], rel=1e-10)
        if math.isfinite(nu):
            assert r["objective"] > r["objective_nngp"]
    # the smaller nu, the larger the objective (the KL penalty is weaker)
    finite = [results[str(nu)]["objective"] for nu in NUS if math.isfinite(nu)]
    assert finite == sorted(finite)
    assert len(section.summary) == len(NUS) + 1 and len(section.plots) == 2
