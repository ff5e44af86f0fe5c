"""GP inference (``neural_kernels.predict.gp``): Neural Tangents' reference predictions,
the infinite-time limit of gradient descent, singular kernels, named-tuple results.
"""

from __future__ import annotations

import math
import pickle
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import neural_kernels as nk

from .._support import reference as ref
from .._support.predict import F64, NET, raises

P = nk.predict


TIMES = ("0.5", "5.0", "inf")


PREDICT_CASES = ref.case_names(predict=True)


def _assert_close(got: torch.Tensor, want: np.ndarray, rtol: float, what: str) -> float:
    """Entrywise ``|got - want| <= rtol * max(|want|, 0.1 * max|want|)``; returns the error."""
    g = got.detach().cpu().numpy()
    assert g.shape == want.shape, f"{what}: shape {g.shape} != reference {want.shape}"
    assert np.isfinite(g).all(), f"{what}: non-finite prediction"
    scale = float(np.abs(want).max())
    err = np.abs(g - want) / np.maximum(np.abs(want), 0.1 * scale)
    worst = float(err.max())
    assert worst <= rtol, f"{what}: relative error {worst:.3e} > {rtol:.0e}"
    return worst


def _check_all(name: str, data: dict, gd, gp, rtol_nngp: float, rtol_ntk: float) -> float:
    """Compare every ``gd_*``/``gp_*`` array; ``gd(t, test)``/``gp()`` give our dicts."""
    worst = 0.0
    checked = set()

    def check(key: str, value: torch.Tensor) -> None:
        nonlocal worst
        rtol = rtol_nngp if "_nngp_" in key else rtol_ntk
        worst = max(worst, _assert_close(value, data[key], rtol, f"{name} {key}"))
        checked.add(key)

    for ts in TIMES:
        out = gd(ts, True)
        for g in ("nngp", "ntk"):
            check(f"gd_{g}_t{ts}_mean", getattr(out, g).mean)
            check(f"gd_{g}_t{ts}_cov", getattr(out, g).cov)
        if ts != "inf":
            out = gd(ts, False)
            for g in ("nngp", "ntk"):
                check(f"gd_{g}_t{ts}_train_mean", getattr(out, g).mean)
                check(f"gd_{g}_t{ts}_train_cov", getattr(out, g).cov)
    out = gp()
    for g in ("nngp", "ntk", "ntkgp"):
        check(f"gp_{g}_mean", getattr(out, g).mean)
        check(f"gp_{g}_cov", getattr(out, g).cov)
    expected = {k for k in data if k.startswith(("gd_", "gp_"))}
    assert checked == expected, f"{name}: unchecked reference arrays {expected - checked}"
    return worst


@pytest.mark.parametrize("name", PREDICT_CASES)
def test_reference_predictions_from_reference_kernels(name: str) -> None:
    data = ref.arrays(name)

    def t(key: str) -> torch.Tensor:
        return torch.from_numpy(data[key])

    y = t("y")
    k_dd = {"nngp": t("nngp_11"), "ntk": t("ntk_11")}
    k_td = {"nngp": t("nngp_12").T, "ntk": t("ntk_12").T}  # x1 = train, x2 = test
    k_tt = {"nngp": t("nngp_22"), "ntk": t("ntk_22")}
    predict_fn = P.gradient_descent_mse(k_dd, y, learning_rate=1.0, diag_reg=1e-3)
    post = P.gp_inference(k_dd, y, diag_reg=1e-3)

    def gd(ts: str, test: bool) -> Any:
        time = None if ts == "inf" else float(ts)
        if test:
            return predict_fn(time, k_test_train=k_td, k_test_test=k_tt, compute_cov=True)
        return predict_fn(time, compute_cov=True)

    _check_all(name, data, gd, lambda: post(k_test_train=k_td, k_test_test=k_tt), 1e-12, 1e-12)


def _inputs(case: dict, x: np.ndarray) -> torch.Tensor:
    """Reference inputs are channels-last; a network starting with Conv takes NC..."""
    t = torch.from_numpy(x)
    if case["layers"][0][0] == "Conv":
        t = t.movedim(-1, 1)
    return t


@pytest.mark.parametrize("name", PREDICT_CASES)
def test_reference_predictions_end_to_end(name: str) -> None:
    case = ref.cases()[name]
    data = ref.arrays(name)
    net = ref.network(case["layers"])
    x1, x2 = _inputs(case, data["x1"]), _inputs(case, data["x2"])
    y = torch.from_numpy(data["y"])
    predict_fn = P.gradient_descent_mse_ensemble(net, x1, y, learning_rate=1.0, diag_reg=1e-3)
    post = P.gp_inference(net.kernel(x1), y, diag_reg=1e-3)
    # Every time in one call (finite times by eigendecomposition, inf by Cholesky).
    times = torch.tensor([float(ts) for ts in TIMES], dtype=torch.float64)
    test = predict_fn(times, x2, compute_cov=True)

    def gd(ts: str, on_test: bool) -> Any:
        if not on_test:
            return predict_fn(float(ts), None, compute_cov=True)
        i = TIMES.index(ts)
        return SimpleNamespace(
            **{g: P.Gaussian(v.mean[i], v.cov[i]) for g, v in zip(test._fields, test, strict=True)}
        )

    def gp() -> Any:
        return post(k_test_train=net.kernel(x2, x1), k_test_test=net.kernel(x2))

    _check_all(name, data, gd, gp, 1e-9, 1e-6)


def test_large_t_is_the_cholesky_limit(problem: dict) -> None:
    fn = P.gradient_descent_mse(problem["kdd"], problem["y"], learning_rate=0.5, diag_reg=1e-2)
    for args in ({"k_test_train": problem["ktd"], "k_test_test": problem["ktt"]}, {}):
        late = fn(1e9, **args, compute_cov=True)
        limit = fn(None, **args, compute_cov=True)
        also = fn(math.inf, **args, compute_cov=True)
        for g in ("nngp", "ntk"):
            torch.testing.assert_close(
                getattr(late, g).mean, getattr(limit, g).mean, rtol=1e-8, atol=1e-10
            )
            torch.testing.assert_close(
                getattr(late, g).cov, getattr(limit, g).cov, rtol=1e-8, atol=1e-10
            )
            assert torch.equal(getattr(also, g).mean, getattr(limit, g).mean)
    # The limit is the GP posterior.
    post = P.gp_inference(problem["kdd"], problem["y"], diag_reg=1e-2)
    gp = post(("nngp", "ntk"), problem["ktd"], problem["ktt"])
    limit = fn(None, k_test_train=problem["ktd"], k_test_test=problem["ktt"])
    for g in ("nngp", "ntk"):
        torch.testing.assert_close(
            getattr(limit, g).mean, getattr(gp, g).mean, rtol=1e-13, atol=1e-13
        )
        torch.testing.assert_close(
            getattr(limit, g).cov, getattr(gp, g).cov, rtol=1e-13, atol=1e-13
        )


def test_singular_and_indefinite_kernels() -> None:
    x = torch.randn(6, 3, dtype=F64)
    x = torch.cat([x, x[:2]])  # duplicate training points: a singular kernel
    k = NET.kernel(x)
    y = torch.randn(8, 1, dtype=F64)
    kt = NET.kernel(torch.randn(3, 3, dtype=F64), x)
    for fn in (P.gp_inference(k, y), P.gradient_descent_mse(k, y)):
        args = (None,) if fn.__name__ == "predict_fn" else ()
        msg = raises(
            nk.SingularKernelError, "singular|positive definite", fn, *args, k_test_train=kt
        )
        assert "diag_reg" in msg
    # With a regulariser it works; at finite times a singular PSD kernel is fine too.
    assert torch.isfinite(P.gp_inference(k, y, diag_reg=1e-6)("ntk", kt).mean).all()
    assert torch.isfinite(P.gradient_descent_mse(k, y)(3.0, k_test_train=kt, get="ntk").mean).all()
    # Indefinite and non-symmetric matrices.
    bad = torch.diag(torch.tensor([1.0, -1.0, 2.0], dtype=F64))
    msg = raises(nk.SingularKernelError, "semi-definite", P.gradient_descent_mse(bad, y[:3]), 1.0)
    assert "diag_reg" in msg
    asym = torch.eye(3, dtype=F64) + torch.triu(torch.ones(3, 3, dtype=F64), 1)
    raises(nk.SingularKernelError, "not symmetric", P.gradient_descent_mse(asym, y[:3]), 1.0)
    assert issubclass(nk.SingularKernelError, ValueError)


def test_several_kernels_are_a_named_tuple_in_the_order_asked(problem: dict) -> None:
    kdd, ktd, ktt, y = problem["kdd"], problem["ktd"], problem["ktt"], problem["y"]
    fn = P.gradient_descent_mse(kdd, y, diag_reg=1e-3)
    single = {g: fn(1.0, k_test_train=ktd, get=g) for g in ("nngp", "ntk")}
    fx_ntk, fx_nngp = fn(1.0, k_test_train=ktd, get=("ntk", "nngp"))
    assert torch.equal(fx_ntk.mean, single["ntk"].mean)
    assert torch.equal(fx_nngp.mean, single["nngp"].mean)
    both = fn(1.0, k_test_train=ktd)
    assert isinstance(both, P.Predictions) and isinstance(both, tuple)
    assert both._fields == ("nngp", "ntk") and torch.equal(both.ntk.mean, single["ntk"].mean)
    post = P.gp_inference(kdd, y, diag_reg=1e-3)(("ntkgp", "nngp"), ktd, ktt)
    assert post._fields == ("ntkgp", "nngp") and isinstance(post.ntkgp, P.Gaussian)
    assert P.gp_inference(kdd, y, diag_reg=1e-3)(None, ktd)._fields == ("nngp", "ntk", "ntkgp")
    ens = P.gradient_descent_mse_ensemble(NET, problem["x"], y, diag_reg=1e-3)(1.0, problem["xt"])
    assert ens._fields == ("nngp", "ntk")
    torch.testing.assert_close(ens.ntk.mean, single["ntk"].mean, rtol=1e-12, atol=1e-14)
    # Reading it like the former dict still works, with a DeprecationWarning.
    with pytest.warns(DeprecationWarning, match="named tuple"):
        assert both["ntk"] is both.ntk
    with pytest.warns(DeprecationWarning):
        assert "ntk" in both and "ntkgp" not in both
    with pytest.warns(DeprecationWarning):
        assert both.keys() == ("nngp", "ntk")
    with pytest.warns(DeprecationWarning):
        assert [name for name, _ in both.items()] == ["nngp", "ntk"]
    with pytest.warns(DeprecationWarning):
        assert both.values() == tuple(both) and both.get("ntkgp") is None
    with pytest.warns(DeprecationWarning), pytest.raises(KeyError):
        both["ntkgp"]
    assert both[1] is both.ntk  # integer indexing is a tuple's
    again = pickle.loads(pickle.dumps(both))
    assert again._fields == both._fields and torch.equal(again.ntk.mean, both.ntk.mean)
