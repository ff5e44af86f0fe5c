"""nk.sklearn: estimators pass check_estimator, the GP kernel fits w_std/b_std by likelihood."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="needs the sklearn extra")

from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.utils.estimator_checks import check_estimator

import neural_kernels as nk
from neural_kernels.sklearn import NeuralKernel, NeuralKernelClassifier, NeuralKernelRegressor


def net() -> nk.Sequential:
    return nk.Sequential(nk.Dense(1, 1.2, 0.1), nk.ReLU(), nk.Dense(1, 1.2, 0.1))


@pytest.mark.parametrize("estimator", [NeuralKernelRegressor(), NeuralKernelClassifier()])
def test_check_estimator(estimator: object) -> None:
    # on_skip=None: only the array-API and pandas checks skip (SCIPY_ARRAY_API, pandas absent)
    results = check_estimator(estimator, on_skip=None)
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {
        "check_array_api_input",
        *(f"check_{k}_data_not_an_array" for k in ("regressor", "classifier")),
    }
    assert sum(r["status"] == "passed" for r in results) > 40


def test_regressor_equals_closed_form_kernel_ridge() -> None:
    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(15, 3)), rng.normal(size=(6, 3))
    y = np.sin(x[:, 0]) + x[:, 1]
    model = NeuralKernelRegressor(net(), get="nngp", diag_reg=1e-3).fit(x, y)
    k = net().kernel(torch.tensor(x), None, "nngp").nngp.numpy()
    kt = net().kernel(torch.tensor(xt), torch.tensor(x), "nngp").nngp.numpy()
    reg = 1e-3 * np.trace(k) / len(k)
    expected = kt @ np.linalg.solve(k + reg * np.eye(len(k)), y)
    np.testing.assert_allclose(model.predict(xt), expected, rtol=1e-8)
    # at a finite time the fit is not yet at the data; at t=inf it is (up to the ridge)
    early = NeuralKernelRegressor(net(), get="ntk", t=0.5, diag_reg=1e-6).fit(x, y)
    late = NeuralKernelRegressor(net(), get="ntk", diag_reg=1e-6).fit(x, y)
    assert np.abs(late.predict(x) - y).max() < 1e-2 < np.abs(early.predict(x) - y).max()


def test_params_clone_and_classifier_probabilities() -> None:
    model = NeuralKernelClassifier(net(), get="nngp", temperature=0.5)
    copy = clone(model)
    assert copy.get_params()["temperature"] == 0.5 and copy.get_params()["get"] == "nngp"
    copy.set_params(get="ntk", diag_reg=1e-2)
    assert copy.get == "ntk" and model.get == "nngp"
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-2, 1, (20, 2)), rng.normal(2, 1, (20, 2))])
    y = np.array(["a"] * 20 + ["b"] * 20)
    copy.fit(x, y)
    p = copy.predict_proba(x)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert (copy.predict(x) == copy.classes_[p.argmax(1)]).all() and copy.score(x, y) > 0.9


def test_bad_input_names_the_fix() -> None:
    x = np.ones((4, 2))
    with pytest.raises(nk.HyperparameterError, match="get="):
        NeuralKernelRegressor(get="both").fit(x, np.ones(4))
    with pytest.raises(nk.ShapeError, match="in_shape"):
        NeuralKernelRegressor(in_shape=(1, 3)).fit(x, np.ones(4))
    with pytest.raises(nk.InputTypeError, match="neural_kernels layers"):
        NeuralKernelRegressor(net=torch.nn.Linear(2, 1)).fit(x, np.ones(4))
    with pytest.raises(nk.HyperparameterError, match="layers"):
        NeuralKernel(net(), w_std=[1.0, 2.0, 3.0])(x)


def test_bad_shapes_are_shape_errors_with_scikit_learns_words() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=6)
    reg = NeuralKernelRegressor(net()).fit(x, y)
    # the words scikit-learn's estimator checks look for, then the fix
    with pytest.raises(nk.ShapeError, match=r"X has 3 features, but .* expecting 2") as err:
        reg.predict(rng.normal(size=(2, 3)))
    assert isinstance(err.value, ValueError) and "Pass X (n, d)" in str(err.value)
    with pytest.raises(nk.ShapeError, match="inconsistent numbers of samples"):
        NeuralKernelRegressor(net()).fit(x, y[:5])
    with pytest.raises(nk.ShapeError, match="dim 3"):
        NeuralKernelRegressor(net()).fit(x, np.ones((6, 2, 2)))
    with pytest.raises(nk.ShapeError, match="1d array"):
        NeuralKernelClassifier(net()).fit(x, np.ones((6, 2)))
    with pytest.raises(nk.NonFiniteError, match="NaN"):
        NeuralKernelRegressor(net()).fit(np.full((6, 2), np.nan), y)


def test_kernel_gradient_matches_finite_differences() -> None:
    x = np.random.default_rng(2).normal(size=(7, 3))
    kern = NeuralKernel(net(), get="ntk", w_std=[1.1, 0.8], b_std=0.3)
    k, grad = kern(x, eval_gradient=True)
    assert grad.shape == (7, 7, 3)
    np.testing.assert_allclose(kern.diag(x), np.diag(k), rtol=1e-12)
    eps = 1e-6
    for j in range(3):
        theta = kern.theta.copy()
        theta[j] += eps
        up = kern.clone_with_theta(theta)(x)
        theta[j] -= 2 * eps
        down = kern.clone_with_theta(theta)(x)
        np.testing.assert_allclose(grad[..., j], (up - down) / (2 * eps), rtol=1e-5, atol=1e-8)


def test_gaussian_process_and_kernel_ridge_use_the_kernel() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(30, 2))
    y = np.abs(x[:, 0]) * 3 + 2 + 0.05 * rng.normal(size=30)  # the offset needs a bias
    kern = NeuralKernel(net(), w_std=0.5, b_std=0.5) + WhiteKernel(1e-2)
    gp = GaussianProcessRegressor(kern, random_state=0).fit(x, y)
    start = GaussianProcessRegressor(kern, optimizer=None).fit(x, y)
    assert gp.log_marginal_likelihood_value_ > start.log_marginal_likelihood_value_
    assert not np.allclose(gp.kernel_.k1.theta, kern.k1.theta)
    ridge = KernelRidge(alpha=1e-2, kernel=NeuralKernel(net())).fit(x, y)
    assert ridge.score(x, y) > 0.9


def test_short_names_are_the_estimators() -> None:
    x = np.random.default_rng(0).standard_normal((12, 3))
    y = x[:, 0]
    reg = nk.sklearn.KernelRegressor(net(), get="nngp").fit(x, y)
    assert isinstance(reg, NeuralKernelRegressor)
    np.testing.assert_allclose(
        reg.predict(x), NeuralKernelRegressor(net(), get="nngp").fit(x, y).predict(x)
    )
    assert nk.sklearn.KernelClassifier is NeuralKernelClassifier
