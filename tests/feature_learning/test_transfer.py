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


def test_adam_per_seed_optima_and_slope() -> None:
    x, y = _data()
    res = nk.feature_learning.lr_transfer(NET, x, y, [8, 16, 32], [1e-3, 1e-2, 1e-1], "mup",
                                          steps=4, batch_size=16, seeds=2,
                                          optimizer="adam")  # fmt: skip
    assert res.optimizer == "adam" and res.steps == 4
    assert res.seed_loss is not None and res.seed_loss.shape == (2, 3, 3)
    np.testing.assert_allclose(res.loss, res.seed_loss.mean(0))
    per_seed = res.best_lr_per_seed
    assert len(per_seed) == 2 and all(len(b) == 3 for b in per_seed)
    # the slope of log2(best rate) against log2(width), by hand
    lw, lb = np.log2(res.widths), np.log2(res.best_lr)
    expected = np.sum((lw - lw.mean()) * (lb - lb.mean())) / np.sum((lw - lw.mean()) ** 2)
    assert res.slope == pytest.approx(expected, abs=1e-12)
    assert res.at_edge == [i in (0, 2) for i in res.best_index]
    d = res.as_dict()
    assert d["optimizer"] == "adam" and len(d["seed_loss"]) == 2 and len(d["seed_shift"]) == 2
    # Adam and SGD are different trainings of the same networks
    sgd = nk.feature_learning.lr_transfer(NET, x, y, [8, 16, 32], [1e-3, 1e-2, 1e-1], "mup",
                                          steps=4, batch_size=16, seeds=2)  # fmt: skip
    assert not np.allclose(sgd.loss, res.loss)
    with pytest.raises(nk.HyperparameterError, match="optimizer"):
        nk.feature_learning.lr_transfer(NET, x, y, [8, 16], [0.1], optimizer="rmsprop")


def test_transfer_study_runs_the_protocol_per_architecture() -> None:
    pytest.importorskip("sklearn", reason="needs the test extra (scikit-learn digits)")
    from neural_kernels.feature_learning.transfer import PROTOCOL, architecture

    res = nk.feature_learning.transfer_study(("mlp", "cnn"), {"mlp": (4, 8), "cnn": (2, 4)},
                                             steps=2, seeds=1, n_train=64,
                                             lrs=[1e-3, 1e-2])  # fmt: skip
    assert set(res) == {"mlp", "cnn"} and set(res["cnn"]) == {"standard", "mup"}
    assert res["cnn"]["mup"].widths == (2, 4) and res["mlp"]["standard"].optimizer == "adam"
    # at the base width SP and muP are the same network: the same losses
    assert res["mlp"]["standard"].loss[0] == pytest.approx(res["mlp"]["mup"].loss[0], rel=1e-5)
    assert PROTOCOL["optimizer"] == "adam" and len(PROTOCOL["lrs"]["adam"]) >= 9
    with pytest.raises(nk.HyperparameterError, match="arch"):
        architecture("transformer")
