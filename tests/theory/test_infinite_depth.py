"""Infinitely deep networks on the sphere: duals, classes, deep kernels and classifiers."""

from __future__ import annotations

import math

import pytest
import torch

import neural_kernels as nk
from neural_kernels.theory import sphere

T = nk.theory


def test_hermite_mixture_dual_is_the_squared_weights_series() -> None:
    f = T.dual(T.hermite_mixture({1: 1.0, 2: 2.0, 3: 0.5}))
    rho = torch.linspace(-1, 1, 9, dtype=torch.float64)
    want = (rho + 4 * rho**2 + 0.25 * rho**3) / 5.25
    torch.testing.assert_close(f(rho), want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        f.derivative(rho), (1 + 8 * rho + 0.75 * rho**2) / 5.25, rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize(
    ("activation", "cls"),
    [
        (nk.ReLU(), "majority vote"),
        (T.hermite_mixture({2: 1.0, 3: 1.0}), "1-nearest neighbour"),
        (T.hermite_mixture({1: 1.0, 3: 1.0}), "singular kernel"),
    ],
)
def test_each_activation_falls_in_its_class(activation: nk.Layer, cls: str) -> None:
    assert T.dual(activation).classifier == cls


@pytest.mark.parametrize("d", [2, 3, 5, 9])
def test_optimal_activations_have_alpha_half_the_sphere_dimension(d: int) -> None:
    # alpha = log(1/phi'(0)) / log(phi'(1)) from the dual's power series by hand.
    weights = {2: {1: 1.0, 7: 1.0}, 3: {1: 1.0, 3: 1.0}}.get(d)
    f = T.dual(T.optimal_activation(d))
    assert f.alpha == pytest.approx((d - 1) / 2, rel=1e-6)
    if weights is not None:
        total = sum(w * w for w in weights.values())
        a0 = weights[1] ** 2 / total
        a1 = sum(i * w * w for i, w in weights.items()) / total
        assert f.alpha == pytest.approx(math.log(1 / a0) / math.log(a1), rel=1e-9)


@pytest.mark.parametrize("d", [3, 4, 7])
def test_sinh_activation_has_the_target_alpha(d: int) -> None:
    assert T.dual(T.sinh_activation(d)).alpha == pytest.approx((d - 1) / 2, rel=1e-6)


def test_log_space_matches_linear_space_and_keeps_underflowing_kernels() -> None:
    f = T.dual(T.hermite_mixture({2: 1.0, 3: 1.0}))
    rho = torch.tensor([0.9, 0.5, -0.3], dtype=torch.float64)
    s_log, l_log = T.deep_kernel(f, rho, 4)
    s_lin, l_lin = T.deep_kernel(f, rho, 4, log_space=False)
    torch.testing.assert_close(s_log * l_log.exp(), s_lin * l_lin.exp(), rtol=1e-10, atol=0)
    _, logabs = T.deep_kernel(f, rho, 40)
    assert bool(torch.isfinite(logabs).all()) and bool((logabs < math.log(1e-30)).all())
    with pytest.raises(nk.NonFiniteError, match="log_space=True"):
        T.deep_kernel(f, rho, 40, log_space=False)


def test_deep_nearest_neighbour_class_predicts_like_one_nearest_neighbour() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = sphere.sample_dirichlet_sphere(40, generator=g)
    xt, _ = sphere.sample_dirichlet_sphere(30, generator=g)
    deep = T.deep_predict(T.hermite_mixture({2: 1.0, 3: 1.0}), x, y, xt, depth=30)
    torch.testing.assert_close(deep, sphere.nearest_neighbour_predict(x, y, xt))


def test_the_dirichlet_law_has_the_stated_bayes_and_majority_accuracies() -> None:
    x, y = sphere.sample_dirichlet_sphere(20000, generator=torch.Generator().manual_seed(1))
    bayes = float((sphere.bayes_predict(x) == y).double().mean())
    majority = float((y > 0).double().mean())
    assert bayes == pytest.approx(0.76, abs=0.015)
    assert majority == pytest.approx(0.6, abs=0.015)
    assert bayes > majority


def test_bad_input_is_refused() -> None:
    with pytest.raises(nk.HyperparameterError, match="depth"):
        T.deep_kernel(nk.ReLU(), torch.zeros(2, dtype=torch.float64), -1)
    with pytest.raises(nk.HyperparameterError, match="kernel="):
        T.deep_kernel(nk.ReLU(), torch.zeros(2, dtype=torch.float64), 2, kernel="cntk")
    with pytest.raises(nk.LayerCompatibilityError):
        T.dual(nk.Dense(3))  # type: ignore[arg-type]
    with pytest.raises(nk.HyperparameterError, match="d="):
        T.optimal_activation(4)
    with pytest.raises(nk.HyperparameterError, match="optimal_activation"):
        T.sinh_activation(2)


def test_orthogonal_inputs_keep_a_finite_kernel() -> None:
    # rho = 0 exactly: the log-space lead of a dual with a constant term is log(a_0)
    rho = torch.tensor([0.0, 1 / math.pi], dtype=torch.float64)
    sign, logabs = T.deep_kernel(nk.ReLU(), rho, 5)
    assert bool(torch.isfinite(logabs).all())
    one_more = (sign * logabs.exp())[0]
    s1, l1 = T.deep_kernel(nk.ReLU(), rho[1:], 4)
    torch.testing.assert_close(one_more, (s1 * l1.exp())[0], rtol=1e-12, atol=0)
