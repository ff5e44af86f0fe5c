"""The width sweep (``neural_kernels.empirical.sweep``): finite twins approach the closed form
as they widen, in both parametrizations.
"""

from __future__ import annotations

import json
import math

import torch

import neural_kernels as nk

from .._support.empirical import F64


def test_width_sweep():
    net = nk.Sequential(nk.Dense(64, w_std=1.4, b_std=0.1), nk.ReLU(), nk.Dense(1, b_std=0.1))
    x = torch.randn(6, 3, dtype=F64)
    sweep = nk.width_sweep(net, x, widths=(512, 16), n_seeds=3, train_steps=5)
    assert [(r.parametrization, r.width) for r in sweep.rows] == [
        ("ntk", 16),
        ("ntk", 512),
        ("standard", 16),
        ("standard", 512),
    ]
    for p in ("ntk", "standard"):
        small, big = sweep.select(p)
        assert small.ntk_error > big.ntk_error
        assert small.kernel_change > big.kernel_change > 0
        assert big.train_loss < big.initial_loss
        assert big.n_params == 512 * 3 + 512 + 512 + 1
    data = sweep.to_dict()
    json.dumps(data["rows"])
    assert set(data["summary"]) == {"ntk", "standard"}
    assert sweep.slope("ntk_error", "ntk") < 0
    assert sweep.width_at("ntk_error", 10.0, "ntk") == 16.0
    assert sweep.width_at("ntk_error", 1e-9, "ntk") is None
    # a function (width, parametrization) -> network works too
    again = nk.width_sweep(
        lambda w, p: net, x, widths=(8,), parametrizations="ntk", n_seeds=1, train_steps=0
    )
    assert math.isnan(again.rows[0].kernel_change)
