"""The exact muP limit of the linear network: finite networks approach it as width grows."""

import pytest
import torch

import neural_kernels as nk
from neural_kernels.errors import NeuralKernelsError


def _train(model, x, y, steps, lr):
    for _ in range(steps):
        model.step(x, y, lr)


def test_finite_mup_networks_approach_the_limit_and_learn_features() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=g)
    limit = nk.feature_learning.LinearMuPLimit(5, 3)
    nets = {n: limit.sample(n, generator=torch.Generator().manual_seed(1)) for n in (64, 4096)}
    k0 = limit.feature_kernel(x).clone()
    _train(limit, x, y, 20, 0.5)
    gaps = {}
    for n, net in nets.items():
        _train(net, x, y, 20, 0.5)
        with torch.no_grad():
            gaps[n] = float((net(x) - limit(x)).pow(2).mean().sqrt())
    assert gaps[4096] < gaps[64] / 3
    # features move by order one in the limit (not the kernel regime)
    assert nk.feature_learning.relative_change(limit.feature_kernel(x), k0) > 1e-2


def test_bad_input_is_refused() -> None:
    with pytest.raises(NeuralKernelsError):
        nk.feature_learning.LinearMuPLimit(0, 3)
    limit = nk.feature_learning.LinearMuPLimit(5, 3)
    with pytest.raises(NeuralKernelsError):
        limit(torch.randn(4, 6, dtype=torch.float64))
