"""nk.gpytorch.NeuralKernel: equality with BoTorch's InfiniteWidthBNNKernel, fitting, BO loop."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("gpytorch", reason="needs the gpytorch extra")
pytest.importorskip("botorch", reason="needs the botorch extra")

import gpytorch
from botorch.models.kernels import InfiniteWidthBNNKernel

import neural_kernels as nk
from neural_kernels.gpytorch import NeuralKernel


def relu_net(depth: int, w_std: float = 1.0, b_std: float | None = 0.0) -> nk.Sequential:
    layers: list[nk.Layer] = [nk.Dense(1, w_std=w_std, b_std=b_std)]
    for _ in range(depth):
        layers += [nk.ReLU(), nk.Dense(1, w_std=w_std, b_std=b_std)]
    return nk.Sequential(*layers)


def botorch_kernel(depth: int, w2: float, b2: float, **kw: object) -> InfiniteWidthBNNKernel:
    bk = InfiniteWidthBNNKernel(depth=depth, acos_eps=0.0, **kw).double()
    bk.weight_var = torch.tensor(w2, dtype=torch.float64)  # a float would pass through float32
    bk.bias_var = torch.tensor(b2, dtype=torch.float64)
    return bk


@pytest.mark.parametrize(("depth", "w2", "b2"), [(1, 0.7, 0.3), (3, 10.0, 1.6), (2, 2.0, 0.05)])
def test_equals_botorch_infinite_width_bnn(depth: int, w2: float, b2: float) -> None:
    x1 = torch.rand(9, 4, dtype=torch.float64)
    x2 = torch.rand(5, 4, dtype=torch.float64) * 2 - 1
    bk = botorch_kernel(depth, w2, b2)
    k = NeuralKernel(relu_net(depth)).double()
    k.w_std, k.b_std = math.sqrt(w2), math.sqrt(b2)
    with torch.no_grad():
        for a, b in ((x1, x2), (x1, x1)):
            torch.testing.assert_close(k(a, b).to_dense(), bk(a, b).to_dense(), rtol=1e-9, atol=0)
        torch.testing.assert_close(k(x1, diag=True), bk(x1, diag=True), rtol=1e-9, atol=0)


def test_batch_inputs_and_kernel_batch_shape() -> None:
    x_train = torch.rand(6, 3, dtype=torch.float64)
    x_test = torch.rand(4, 2, 3, dtype=torch.float64)
    k = NeuralKernel(relu_net(2)).double()
    bk = botorch_kernel(2, float(k.w_std.detach()) ** 2, float(k.b_std.detach()) ** 2)
    with torch.no_grad():
        for a, b in ((x_test, x_train.expand(4, 6, 3)), (x_test, x_test), (x_train, x_test)):
            torch.testing.assert_close(k(a, b).to_dense(), bk(a, b).to_dense(), rtol=1e-9, atol=0)
    kb = NeuralKernel(relu_net(2), batch_shape=(2,)).double()
    kb.w_std = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    bkb = InfiniteWidthBNNKernel(depth=2, acos_eps=0.0, batch_shape=torch.Size([2])).double()
    bkb.weight_var = torch.tensor([1.0, 4.0], dtype=torch.float64).reshape(2, 1, 1)
    bkb.bias_var = kb.b_std[0, 0].detach() ** 2
    with torch.no_grad():
        torch.testing.assert_close(
            kb(x_train).to_dense(), bkb(x_train).to_dense(), rtol=1e-9, atol=0
        )
        assert kb(x_train).to_dense().shape == (2, 6, 6)


def test_per_layer_stds_and_ntk() -> None:
    net = relu_net(2, w_std=1.3, b_std=0.2)
    k = NeuralKernel(net, get="ntk", tie="per_layer").double()
    assert k.w_std.shape == (3,) and k.b_std.shape == (3,)
    torch.testing.assert_close(k.w_std.detach(), torch.full((3,), 1.3, dtype=torch.float64))
    x = torch.rand(5, 3, dtype=torch.float64)
    expected = net.kernel(x, None, "ntk").ntk
    with torch.no_grad():
        torch.testing.assert_close(k(x).to_dense(), expected, rtol=1e-12, atol=0)
    k.w_std = torch.tensor([1.3, 0.5, 2.0], dtype=torch.float64)
    other = nk.Sequential(
        nk.Dense(1, 1.3, 0.2), nk.ReLU(), nk.Dense(1, 0.5, 0.2), nk.ReLU(), nk.Dense(1, 2.0, 0.2)
    )
    with torch.no_grad():
        torch.testing.assert_close(k(x).to_dense(), other.kernel(x, None, "ntk").ntk)


def test_spatial_network_with_in_shape() -> None:
    net = nk.Sequential(
        nk.Conv(1, 3, padding="same", b_std=0.1), nk.ReLU(), nk.Flatten(), nk.Dense(1, b_std=0.1)
    )
    x = torch.rand(4, 16, dtype=torch.float64)
    k = NeuralKernel(net, in_shape=(1, 4, 4)).double()
    with torch.no_grad():
        torch.testing.assert_close(k(x).to_dense(), net.kernel(x.reshape(4, 1, 4, 4)).nngp)
    with pytest.raises(nk.ShapeError, match="in_shape"):
        k(torch.rand(4, 15, dtype=torch.float64)).to_dense()
    spatial = NeuralKernel(nk.Sequential(nk.Conv(1, 3), nk.ReLU()), in_shape=(1, 4, 4)).double()
    with pytest.raises(nk.ShapeError, match="readout"):
        spatial(x).to_dense()


def test_bad_arguments() -> None:
    with pytest.raises(nk.HyperparameterError, match="get="):
        NeuralKernel(relu_net(1), get="kernel")
    with pytest.raises(nk.HyperparameterError, match="tie="):
        NeuralKernel(relu_net(1), tie="each")
    with pytest.raises(nk.InputTypeError, match="neural_kernels layers"):
        NeuralKernel(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    zero_bias = NeuralKernel(relu_net(1, b_std=0.0))
    assert float(zero_bias.b_std.detach()) == pytest.approx(1e-3)  # softplus cannot reach 0
    with pytest.raises(nk.HyperparameterError, match="no bias"):
        NeuralKernel(relu_net(1, b_std=None)).b_std = 1.0
    # inputs of different feature sizes: our error before GPyTorch's own RuntimeError
    k = NeuralKernel(relu_net(1)).double()
    a, b = torch.rand(4, 3, dtype=torch.float64), torch.rand(5, 2, dtype=torch.float64)
    with pytest.raises(nk.ShapeError, match="3 features and x2 2"):
        k(a, b).to_dense()


def test_marginal_likelihood_fits_stds() -> None:
    x = torch.rand(20, 2, dtype=torch.float64)
    y = torch.sin(4 * x[:, 0]) + x[:, 1]
    lik = gpytorch.likelihoods.GaussianLikelihood().double()

    class GP(gpytorch.models.ExactGP):
        def __init__(self) -> None:
            super().__init__(x, y, lik)
            self.mean = gpytorch.means.ZeroMean()
            self.covar = NeuralKernel(relu_net(2), tie="per_layer").double()

        def forward(self, z: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
            return gpytorch.distributions.MultivariateNormal(self.mean(z), self.covar(z))

    gp = GP()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, gp)
    gp.train()
    opt = torch.optim.Adam(gp.parameters(), lr=0.05)
    before = None
    for _ in range(30):
        opt.zero_grad()
        loss = -mll(gp(x), y)
        before = float(loss.detach()) if before is None else before
        loss.backward()
        assert gp.covar.raw_w_std.grad is not None and gp.covar.raw_w_std.grad.abs().sum() > 0
        opt.step()
    assert float(-mll(gp(x), y).detach()) < before


def test_botorch_loop() -> None:
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.optim import optimize_acqf

    bounds = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    x = torch.rand(8, 2, dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return -((z - 0.3) ** 2).sum(-1, keepdim=True)

    y = f(x)
    for _ in range(2):
        gp = SingleTaskGP(x, y, covar_module=NeuralKernel(relu_net(2)).double())
        fit_gpytorch_mll(gpytorch.mlls.ExactMarginalLogLikelihood(gp.likelihood, gp))
        acq = qLogExpectedImprovement(gp, best_f=y.max())
        cand, _ = optimize_acqf(acq, bounds, q=1, num_restarts=2, raw_samples=16)
        assert cand.shape == (1, 2) and bool(((cand >= 0) & (cand <= 1)).all())
        x, y = torch.cat([x, cand]), torch.cat([y, f(cand)])
    assert y.shape == (10, 1) and torch.isfinite(y).all()
