"""The demo section ``applications``: built on a small synthetic data set."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("sklearn", reason="needs the sklearn extra")

import neural_kernels as nk
from neural_kernels.report.sections import SECTIONS
from neural_kernels.report.sections._common import Context
from neural_kernels.report.sections.applications import build


def test_applications_section() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    labels = torch.arange(60) % 3
    x = centres[labels] + torch.randn(60, 2, generator=g, dtype=torch.float64)
    onehot = torch.nn.functional.one_hot(labels, 3).double() - 1 / 3
    net = nk.Sequential(nk.Dense(64, 1.5, 0.05), nk.ReLU(), nk.Dense(3, 1.0, 0.05))
    ctx = Context(
        x[:40], x[40:], onehot[:40], onehot[40:], labels[40:], 3, net,
        None, None, 1e-4, 0, True, True, 1 / 3,
    )  # fmt: skip
    section = build(ctx)
    assert section.name == "applications" and ("applications", build) in SECTIONS
    json.dumps(section.data)  # every number is JSON-serialisable
    assert min(section.data["classifier_accuracy"].values()) > 0.6
    for row in section.data["permutations"].values():
        assert row["nngp"]["mu_off_c2"] < 0 < row["nngp"]["mu_on_c2"]
        assert row["nngp"]["models_for_90pct"] < row["ntk"]["models_for_90pct"]
        bound = row["nngp"]["models_for_90pct_union_bound"]
        assert (
            0.9 * row["nngp"]["models_for_90pct"] <= bound <= 1.2 * row["nngp"]["models_for_90pct"]
        )
        curve = row["nngp"]["recovery_vs_models"]
        assert curve == sorted(curve) and curve[-1] > 0.9
    assert section.plots and section.summary
