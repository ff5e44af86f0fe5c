"""nk.feature_learning.lr_transfer: the loss grid, its optima, diverged runs, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import neural_kernels as nk

NET = nk.Sequential(nk.Dense(8), nk.ReLU(), nk.Dense(3))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(48, 5, generator=g), torch.randint(0, 3, (48,), generator=g)


def test_grid_optima_and_divergence() -> None:
    x, y = _data()
    res = nk.feature_learning.lr_transfer(NET, x, y, [16, 8], [1e6, 0.05, 0.2], "mup",
                                          steps=5, batch_size=16)  # fmt: skip
    assert res.widths == (8, 16) and res.lrs == (0.05, 0.2, 1e6)
    assert res.loss.shape == (2, 3)
    assert np.all(np.isinf(res.loss[:, 2]))  # an absurd rate diverges and is recorded as inf
    assert np.all(np.isfinite(res.loss[:, :2]))
    assert res.best_lr == [res.lrs[int(np.argmin(r))] for r in res.loss]
    assert 0 <= res.shift <= 1
    d = res.as_dict()
    assert d["loss"][0][2] is None and d["best_lr"] == res.best_lr
    # at the base width the parametrizations coincide: the same losses
    sp = nk.feature_learning.lr_transfer(NET, x, y, [8, 16], [0.05, 0.2], "standard", steps=5,
                                         batch_size=16)  # fmt: skip
    assert sp.loss[0] == pytest.approx(res.loss[0, :2], rel=1e-5)
    assert not math.isclose(sp.loss[1, 1], res.loss[1, 1], rel_tol=1e-6)


def test_bad_input() -> None:
    x, y = _data()
    with pytest.raises(nk.HyperparameterError, match="widths"):
        nk.feature_learning.lr_transfer(NET, x, y, [8], [0.1])
    with pytest.raises(nk.HyperparameterError, match="lr="):
        nk.feature_learning.lr_transfer(NET, x, y, [8, 16], [0.1, -1.0])
    with pytest.raises(nk.HyperparameterError, match="steps"):
        nk.feature_learning.lr_transfer(NET, x, y, [8, 16], [0.1], steps=0)
