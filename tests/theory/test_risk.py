"""Kernel ridge and random-feature risk: the eigenframework against ridge regressions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import neural_kernels as nk
from neural_kernels.errors import (
    HyperparameterError,
    NeuralKernelsError,
    NonFiniteError,
    ShapeError,
)
from neural_kernels.theory import kernel_eigensystem, krr_risk, optimal_ridge, rf_risk
from neural_kernels.theory.risk_experiments import (
    krr_experiment,
    power_law_task,
    rf_experiment,
    twin_features,
    twin_rf_experiment,
)

LAM, V = power_law_task(2000, 1.5, 1.3)


def test_krr_kappa_solves_its_equation():
    for ridge in (0.0, 1e-3, 0.1, 10.0):
        p = krr_risk(LAM, V, 200, ridge)
        lhs = (LAM / (LAM + p.kappa)).sum() + ridge / p.kappa
        assert lhs == pytest.approx(200, rel=1e-12)
        assert p.train_risk == pytest.approx((ridge / (200 * p.kappa)) ** 2 * p.test_risk)


def test_rf_pair_solves_both_equations():
    for k, ridge in ((100, 1e-3), (190, 0.1), (2000, 1e-2), (50, 1.0)):
        p = rf_risk(LAM, V, 200, k, ridge)
        df1 = (LAM / (LAM + p.gamma)).sum()
        assert df1 + ridge / p.kappa == pytest.approx(200, rel=1e-10)
        assert df1 + k * p.kappa / p.gamma == pytest.approx(k, rel=1e-10)


def test_rf_tends_to_krr_with_many_features():
    for ridge in (0.0, 1e-3, 0.1):
        krr = krr_risk(LAM, V, 200, ridge).test_risk
        assert rf_risk(LAM, V, 200, 1e12, ridge).test_risk == pytest.approx(krr, rel=1e-6)
        assert rf_risk(LAM, V, 200, math.inf, ridge).test_risk == krr


def test_zero_ridge_is_the_limit_of_small_ridges():
    for k in (100, 300):
        zero = rf_risk(LAM, V, 200, k, 0.0).test_risk
        assert rf_risk(LAM, V, 200, k, 1e-10).test_risk == pytest.approx(zero, rel=1e-6)


@pytest.mark.parametrize("k", [100, 400, math.inf])
def test_power_law_theory_matches_experiment_at_ridge_01(k):
    theory = rf_risk(LAM, V, 200, k, 0.1).test_risk
    measured, _ = rf_experiment(LAM, V, 200, k, 0.1, trials=10, seed=1)
    assert measured == pytest.approx(theory, rel=0.07)


def test_interpolation_peak_near_k_equals_n_at_small_ridge_only():
    small = {k: rf_risk(LAM, V, 200, k, 1e-3).test_risk for k in (100, 200, 400)}
    assert small[200] > 2 * small[100] and small[200] > 2 * small[400]
    measured = {
        k: rf_experiment(LAM, V, 200, k, 1e-3, trials=4, seed=2)[0] for k in (100, 200, 400)
    }
    assert measured[200] > 2 * measured[100] and measured[200] > 2 * measured[400]
    large = [rf_risk(LAM, V, 200, k, 0.1).test_risk for k in (100, 200, 400)]
    assert large[0] > large[1] > large[2]


def test_optimal_ridge_risk_decreases_in_features_and_samples():
    in_k = [optimal_ridge(LAM, V, 200, k)[1].test_risk for k in (50, 100, 200, 400, math.inf)]
    in_n = [optimal_ridge(LAM, V, n, 300)[1].test_risk for n in (50, 100, 200, 400)]
    assert all(a > b for a, b in itertools.pairwise(in_k))
    assert all(a > b for a, b in itertools.pairwise(in_n))
    ridge, best = optimal_ridge(LAM, V, 200, 300)
    for r in (ridge / 3, ridge * 3):
        assert rf_risk(LAM, V, 200, 300, r).test_risk >= best.test_risk


def test_noise_adds_to_the_risk_through_e0():
    quiet, noisy = krr_risk(LAM, V, 200, 0.1), krr_risk(LAM, V, 200, 0.1, noise=0.5)
    e0 = 200 / (200 - quiet.df2)
    assert noisy.test_risk - quiet.test_risk == pytest.approx(0.5 * e0, rel=1e-12)


def _digits_ntk(n: int):
    from neural_kernels.feature_learning._digits import digits

    x, labels, _, _ = digits(n_train=n)
    y = torch.nn.functional.one_hot(labels, 10).double()
    y = y - y.mean(0)
    layers = [m for _ in range(3) for m in (nk.Dense(256, w_std=2**0.5), nk.ReLU())]
    net = nk.Sequential(*layers, nk.Dense(10))
    return x, y, net.kernel(x, get="ntk").ntk


def test_kernel_eigensystem_reconstructs_kernel_and_targets():
    pytest.importorskip("sklearn", reason="the digits need the sklearn extra")
    _, y, k = _digits_ntk(120)
    lam, v = kernel_eigensystem(k, y)
    assert np.all(lam >= 0) and np.all(np.diff(lam) <= 1e-15)
    assert (v**2).sum() == pytest.approx(float((y**2).sum() / y.shape[0]), rel=1e-10)
    assert lam.sum() == pytest.approx(float(k.diagonal().mean()), rel=1e-10)


def test_digits_ntk_krr_risk_prediction_matches_measurement():
    pytest.importorskip("sklearn", reason="the digits need the sklearn extra")
    _, y, k = _digits_ntk(1797)  # the population: all the digits
    lam, v = kernel_eigensystem(k, y)
    for n, ridge in ((100, 1e-2), (200, 0.1)):
        measured, se = krr_experiment(k, y, n, ridge, trials=6)
        predicted = krr_risk(lam, v, n, ridge).test_risk
        assert measured == pytest.approx(predicted, rel=0.06), (n, ridge, se)


def test_twin_features_give_the_rf_risk():
    pytest.importorskip("sklearn", reason="the digits need the sklearn extra")
    from neural_kernels.feature_learning._digits import digits

    x, labels, _, _ = digits(n_train=400)
    y = torch.nn.functional.one_hot(labels, 10).double()
    y = y - y.mean(0)
    net = nk.Sequential(nk.Dense(64, w_std=2**0.5, b_std=0.1), nk.ReLU(), nk.Dense(10, b_std=0.3))
    phi = twin_features(net, x, 20000, seed=3)
    limit = net.kernel(x, get="nngp").nngp - 0.3**2
    assert torch.allclose(phi @ phi.T, limit, atol=0.05 * float(limit.diagonal().mean()))
    lam, v = kernel_eigensystem(limit, y)
    for k in (50, 300):
        measured, _ = twin_rf_experiment(net, x, y, 100, k, 1e-2, trials=5)
        assert measured == pytest.approx(rf_risk(lam, v, 100, k, 1e-2).test_risk, rel=0.12)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: krr_risk([1.0, -0.1], [1.0, 1.0], 5), HyperparameterError),
        (lambda: krr_risk([1.0, 0.5], [1.0], 5), ShapeError),
        (lambda: krr_risk([1.0, float("nan")], [1.0, 1.0], 5), NonFiniteError),
        (lambda: krr_risk(LAM, V, 0, 0.1), HyperparameterError),
        (lambda: krr_risk(LAM, V, 10, -1.0), HyperparameterError),
        (lambda: krr_risk(LAM, V, 10, 0.1, noise=-1.0), HyperparameterError),
        (lambda: krr_risk(LAM[:5], V[:5], 10, 0.0), HyperparameterError),
        (lambda: rf_risk(LAM, V, 100, 100, 0.0), HyperparameterError),
        (lambda: rf_risk(LAM, V, 100, 0, 0.1), HyperparameterError),
        (lambda: kernel_eigensystem(torch.ones(3, 4), torch.ones(3)), ShapeError),
        (lambda: power_law_task(0), HyperparameterError),
    ],
)
def test_bad_input_is_refused(call, error):
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, NeuralKernelsError)


def test_kernel_eigensystem_of_a_network_is_that_of_its_kernel():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.randn(30, 2, generator=g, dtype=torch.float64)
    net = nk.Sequential(nk.Dense(8, w_std=2**0.5), nk.ReLU(), nk.Dense(2))
    for get in ("nngp", "ntk"):
        lam, v = kernel_eigensystem(net, x, y, get=get)
        lam_k, v_k = kernel_eigensystem(getattr(net.kernel(x, get=get), get), y)
        np.testing.assert_allclose(lam, lam_k, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(v**2, v_k**2, rtol=1e-8, atol=1e-12)
    with pytest.raises(HyperparameterError):
        kernel_eigensystem(net, x)
    with pytest.raises(ShapeError):
        kernel_eigensystem(torch.eye(3), torch.ones(3), torch.ones(3))
