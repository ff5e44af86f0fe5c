"""``Dense``: the kernel formulas of both parametrizations, the finite twin, bad input.

A linear network's empirical NTK does not depend on its weights, so the finite twin of a
single ``Dense`` reproduces the closed form exactly, at any width.
"""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk

F64 = torch.float64


def _inputs(n: int = 5, d: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
@pytest.mark.parametrize("b_std", [0.3, 0.0, None])
def test_two_layers_follow_the_formula(parametrization: str, b_std: float | None) -> None:
    x = _inputs()
    w1, w2, width = 1.3, 0.7, 6
    net = nk.Sequential(
        nk.Dense(width, w_std=w1, b_std=b_std, parametrization=parametrization),
        nk.Dense(1, w_std=w2, b_std=b_std, parametrization=parametrization),
    )
    k = net.kernel(x)
    b2 = 0.0 if b_std is None else b_std**2
    bias = 0.0 if b_std is None else 1.0
    k0 = x @ x.T / x.shape[1]
    k1 = w1**2 * k0 + b2
    k2 = w2**2 * k1 + b2
    if parametrization == "ntk":
        t1 = k1
        t2 = k2 + w2**2 * t1
    else:  # N_in K + w^2 T + [bias], N_in the finite input width of each layer
        t1 = x.shape[1] * k0 + bias
        t2 = width * k1 + w2**2 * t1 + bias
    torch.testing.assert_close(k.nngp, k2, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(k.ntk, t2, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
def test_finite_twin_of_one_layer_is_exact(parametrization: str) -> None:
    x1, x2 = _inputs(5), _inputs(3, seed=1)
    net = nk.Sequential(nk.Dense(3, w_std=1.4, b_std=0.2, parametrization=parametrization))
    model = net.module((4,), generator=torch.Generator().manual_seed(0), dtype=F64)
    assert model(x1).shape == (5, 3)
    exact = net.kernel(x1, x2, get="ntk").ntk
    torch.testing.assert_close(nk.empirical_ntk(model, x1, x2), exact, rtol=1e-12, atol=1e-13)


def test_acts_on_the_last_axis_like_linear() -> None:
    x = torch.randn(2, 7, 4, dtype=F64)
    model = nk.Dense(5).module((7, 4), dtype=F64)
    assert model(x).shape == (2, 7, 5)


def test_bad_input_names_the_layer() -> None:
    with pytest.raises(nk.NeuralKernelsError, match="Dense"):
        nk.Dense(0)
    with pytest.raises(nk.NeuralKernelsError, match="Dense"):
        nk.Dense(3, w_std=-1.0)
    with pytest.raises(nk.NeuralKernelsError, match="parametrization"):
        nk.Dense(3, parametrization="mean_field")
