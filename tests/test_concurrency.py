"""Public functions called from several threads at once give the single-threaded results."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import neural_kernels as nk


def _x(n: int, *shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64)


def _fc() -> torch.Tensor:
    net = nk.Sequential(nk.Dense(8, w_std=1.3, b_std=0.1), nk.ReLU(), nk.Dense(1))
    return net.kernel(_x(40, 6), _x(30, 6, seed=1)).ntk


def _cnn_gap() -> torch.Tensor:
    net = nk.Sequential(
        nk.Conv(4, 3, padding="same"), nk.ReLU(), nk.Conv(4, 3, padding="same"), nk.ReLU(),
        nk.GlobalAvgPool(), nk.Dense(1),
    )  # fmt: skip
    return net.kernel(_x(6, 2, 5, 5), block_size=2).ntk


def _erf_quadrature() -> torch.Tensor:
    net = nk.Sequential(nk.Dense(4), nk.Activation(torch.tanh, degree=16), nk.Dense(1))
    return net.kernel(_x(12, 3)).nngp


def _predict() -> torch.Tensor:
    net = nk.Sequential(nk.Dense(8), nk.Erf(), nk.Dense(1))
    x, y = _x(20, 4), _x(20, 1, seed=2)
    fn = nk.predict.gradient_descent_mse_ensemble(net, x, y, diag_reg=1e-3)
    return fn(t=3.0, x_test=_x(5, 4, seed=3), get="ntk").mean


def _empirical() -> torch.Tensor:
    torch.manual_seed(0)  # the module is built before the threads start: see below
    return nk.empirical_ntk(_MODEL, _x(10, 5), _x(7, 5, seed=1))


_MODEL = (
    nk.Sequential(nk.Dense(16), nk.ReLU(), nk.Dense(3))
    .module(in_shape=(5,), generator=torch.Generator().manual_seed(0))
    .double()
)


@pytest.mark.parametrize(
    "fn", [_fc, _cnn_gap, _erf_quadrature, _predict, _empirical], ids=lambda f: f.__name__
)
def test_threads_give_the_serial_result(fn: Callable[[], torch.Tensor]) -> None:
    serial = fn()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: fn(), range(8)))
    for r in results:
        assert torch.equal(r, serial)
