import pytest
import torch

import neural_kernels as nk

from .._support.properties import assert_kernel_properties

NETWORKS = {
    "dense": nk.Sequential(nk.Dense(8, w_std=1.3, b_std=0.2)),
    "dense_standard": nk.Sequential(
        nk.Dense(8, w_std=1.3, b_std=0.2, parametrization="standard"),
        nk.ReLU(),
        nk.Dense(1, parametrization="standard"),
    ),
    "relu": nk.Sequential(nk.Dense(8, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(1)),
    "leaky": nk.Sequential(nk.Dense(8, b_std=0.1), nk.LeakyReLU(0.2), nk.Dense(1)),
    "abrelu": nk.Sequential(nk.Dense(8, b_std=0.1), nk.ABReLU(-0.3, 2.0), nk.Dense(1)),
    "abs": nk.Sequential(nk.Dense(8, b_std=0.1), nk.Abs(), nk.Dense(1)),
    "layernorm": nk.Sequential(nk.Dense(8, b_std=0.5), nk.LayerNorm(), nk.ReLU(), nk.Dense(1)),
    "identity": nk.Sequential(nk.Dense(8), nk.Identity(), nk.Dense(1)),
    "residual": nk.Sequential(
        nk.Dense(8, b_std=0.1), nk.Residual(nk.ReLU(), nk.Dense(8)), nk.ReLU(), nk.Dense(1)
    ),
    "fanin_sum": nk.Sequential(
        nk.FanOut(2), nk.Parallel(nk.Dense(4), nk.Dense(4, w_std=2.0)), nk.FanInSum()
    ),
    "fanin_product": nk.Sequential(
        nk.Dense(4, b_std=0.3),
        nk.FanOut(2),
        nk.Parallel(nk.Dense(4), nk.Sequential(nk.ReLU(), nk.Dense(4))),
        nk.FanInProduct(),
    ),
    "fanin_concat": nk.Sequential(
        nk.FanOut(2),
        nk.Parallel(nk.Dense(4), nk.Sequential(nk.Dense(12), nk.ReLU())),
        nk.FanInConcat(),
        nk.Dense(1, parametrization="standard"),
    ),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_core_layer_properties(name: str) -> None:
    x1 = torch.randn(7, 5, dtype=torch.float64)
    x2 = torch.randn(4, 5, dtype=torch.float64)
    x1[3] = x1[1]  # a repeated input: correlation one off the diagonal
    assert_kernel_properties(NETWORKS[name], x1, x2)


def test_zero_inputs_give_finite_kernels() -> None:
    net = nk.Sequential(nk.Dense(8, b_std=None), nk.ReLU(), nk.Dense(1, b_std=None))
    x = torch.zeros(3, 4, dtype=torch.float64)
    x[1, 0] = 1.0
    k = net.kernel(x)
    assert torch.isfinite(k.nngp).all() and torch.isfinite(k.ntk).all()
    assert float(k.nngp[0, 0]) == 0.0
