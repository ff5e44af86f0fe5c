"""nk.feature_learning.lr_transfer: the loss grid, its optima, diverged runs, bad input."""

from __future__ import annotations

import json
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


def test_store_resumes_and_rebuilds_without_training(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from neural_kernels.feature_learning import transfer

    x, y = _data()
    store = tmp_path / "runs.jsonl"
    kw = {"steps": 3, "batch_size": 16, "seeds": 2, "optimizer": "adam", "store": store}
    first = nk.feature_learning.lr_transfer(NET, x, y, [8, 16], [1e-2, 1e-1], "mup", **kw)
    lines = store.read_text().splitlines()
    assert len(lines) == 2 * 2 * 2  # one line per (width, rate, seed)
    rec = json.loads(lines[0])
    assert rec["width"] == 8 and rec["seed"] == 0 and rec["loss"] == first.seed_loss[0, 0, 0]
    with open(store, "a") as fh:  # an interrupted write: a torn last line is skipped
        fh.write('{"label": "torn')

    def refuse(*args: object) -> float:
        raise AssertionError("a stored run was trained again")

    monkeypatch.setattr(transfer, "_train", refuse)
    again = nk.feature_learning.lr_transfer(NET, x, y, [8, 16], [1e-2, 1e-1], "mup", **kw)
    np.testing.assert_array_equal(again.seed_loss, first.seed_loss)
    # a run that differs in anything the key holds (here the steps) is not taken
    with pytest.raises(AssertionError, match="trained again"):
        nk.feature_learning.lr_transfer(NET, x, y, [8, 16], [1e-2], "mup", **{**kw, "steps": 4})
    monkeypatch.undo()
    # a new rate is trained and appended after the torn line, which stays skipped
    more = nk.feature_learning.lr_transfer(NET, x, y, [8, 16], [1e-2, 1e-1, 1.0], "mup", **kw)
    np.testing.assert_array_equal(more.seed_loss[:, :, :2], first.seed_loss)
    assert len(transfer.load_runs(store)) == 2 * 3 * 2


def test_sub_grid_optimum_is_the_parabola_vertex() -> None:
    from neural_kernels.feature_learning.transfer import Transfer

    lrs = tuple(2.0**k for k in range(-8, 0))
    # log loss a parabola in log2 lr with vertex -5.3 (width 8) and -3.6 (width 16); the
    # last row's best rate is the grid's edge
    rows = [np.exp(0.2 * (np.log2(lrs) - c) ** 2 - 3) for c in (-5.3, -3.6)]
    rows.append(np.linspace(2.0, 1.0, len(lrs)))
    tr = Transfer((8, 16, 32), lrs, np.array(rows), "mup", "adam")
    fit = tr.best_log2_lr_fit
    assert fit[0] == pytest.approx(-5.3, abs=1e-9) and fit[1] == pytest.approx(-3.6, abs=1e-9)
    assert fit[2] is None and tr.fit_move is None and tr.fit_slope is None
    two = Transfer((8, 16), lrs, np.array(rows[:2]), "mup", "adam")
    assert two.fit_move == pytest.approx(1.7, abs=1e-9)
    assert two.fit_slope == pytest.approx(1.7, abs=1e-9)
    d = two.as_dict()
    assert d["best_log2_lr_fit"] == two.best_log2_lr_fit and d["fit_move"] == two.fit_move


def test_study_cnn_is_mup_under_adam_coordinate_check() -> None:
    """The study's CNN under Adam: per-layer rates and init as TP5's Table 3, and flat
    activations across width after a few steps under muP (they grow under SP)."""
    from neural_kernels.feature_learning.transfer import architecture

    net = architecture("cnn")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    model = net.module((1, 8, 8), width=32, parametrization="mup", base_width=8)
    rates = {gr["role"]: gr["lr_mult"] for gr in nk.abc.param_groups(model, 1.0, "adam")}
    assert rates == {"input": 1.0, "input bias": 1.0, "hidden": 0.25, "hidden bias": 1.0,
                     "output": 0.25, "output bias": 1.0}  # fmt: skip
    convs = [m for m in model.modules() if hasattr(m, "abc_scale")]
    # init: input N(0, 1/9), hidden N(0, 1/(9 n)), readout N(0, 1/(16 n0 m^2)) (m = n / n0)
    for mod, var in zip(convs, (1 / 9, 1 / (9 * 32), 1 / (16 * 8 * 16)), strict=True):
        assert float(mod.weight.detach().var()) == pytest.approx(var, rel=0.25)

    def make(n: int, p: str) -> torch.nn.Module:
        return net.module((1, 8, 8), width=n, parametrization=p, base_width=8)

    common = {"steps": 3, "lr": 2.0**-5, "optimizer": "adam", "seeds": 2,
              "loss": "cross_entropy"}  # fmt: skip
    # after one Adam step: log-log slopes of mean |activation| against width (0.07 at most
    # under muP, 2.1 for SP's readout on these data)
    mup = nk.abc.coord_check(make, [32, 128, 512], x, y, parametrization="mup", **common)
    sp = nk.abc.coord_check(make, [32, 128, 512], x, y, parametrization="standard", **common)
    assert np.max(np.abs(mup.slopes_at(1))) < 0.3
    assert np.max(sp.slopes_at(1)) > 1.0  # the readout grows about like the width under SP
