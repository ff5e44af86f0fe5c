"""The sparse DKM: inducing blocks, layer-wise conditionals, the variational output.

* with the inducing points equal to the training points it is the full DKM (objective,
  Grams, predictions), at the NNGP and after the full DKM has learned its Grams;
* the conditional of the inducing points onto themselves returns the learned Gram;
* minibatch objectives are unbiased: over a partition of the data they average to the
  full-batch objective; Adam on minibatches raises the objective;
* the Titsias output is the optimum over ``q(f)``: perturbing it lowers the objective.
"""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk
from neural_kernels.dkm.sparse import Blocks, conditional

from .conftest import relu_net

NOISE = 0.1


def _copy_grams(source: nk.dkm.DKM, target: nk.dkm.DKM) -> None:
    with torch.no_grad():
        for key, layer in source.gram_layers.items():
            target.gram_layers[key].raw.copy_(layer.raw)
    target.reset_output()


def test_inducing_points_at_the_training_points_give_the_full_dkm(data, x_test) -> None:
    x, y = data
    full = nk.dkm.DKM(relu_net(), nu=2.0, noise_var=NOISE).initialize(x, y)
    sparse = nk.dkm.DKM(relu_net(), nu=2.0, noise_var=NOISE, inducing=x.clone()).initialize(x, y)
    assert sparse.sparse and not full.sparse
    # at the NNGP
    obj_full = float(full.objective().detach())
    assert float(sparse.objective().detach()) == pytest.approx(obj_full, rel=1e-9)
    # after the full DKM learned its Grams
    full.fit(x, y, steps=15, optimizer="lbfgs")
    _copy_grams(full, sparse)
    assert float(sparse.objective().detach()) == pytest.approx(full.history[-1], rel=1e-8)
    for gf, gs in zip(full.grams(), sparse.grams(), strict=True):
        torch.testing.assert_close(gs, gf, rtol=1e-10, atol=1e-12)
    pf, ps = full.predict(x_test), sparse.predict(x_test)
    torch.testing.assert_close(ps.mean, pf.mean, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(ps.variance, pf.variance, rtol=1e-7, atol=1e-9)


def test_the_conditional_of_the_inducing_points_is_their_gram() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    k = a @ a.T + 6 * torch.eye(6, dtype=torch.float64)
    v = torch.tril(torch.randn(6, 6, generator=gen, dtype=torch.float64), -1) + 2 * torch.eye(
        6, dtype=torch.float64
    )
    g = v @ v.T / 6
    blocks = conditional(torch.linalg.cholesky(k), Blocks(k, torch.diagonal(k)), v, 6.0)
    torch.testing.assert_close(blocks.ti, g)
    torch.testing.assert_close(blocks.t, torch.diagonal(g))


def test_the_conditional_matches_the_joint_gaussian_formula() -> None:
    """G_ti = K_ti K_ii^-1 G_ii, g_t = k_t - q_t + diag(K_ti K_ii^-1 G K_ii^-1 K_it)."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(9, 9, generator=gen, dtype=torch.float64)
    k = a @ a.T + torch.eye(9, dtype=torch.float64)
    ki, kti, kt = k[:5, :5], k[5:, :5], torch.diagonal(k)[5:]
    v = torch.linalg.cholesky(ki) * 1.3 + 0.1 * torch.tril(torch.ones(5, 5, dtype=torch.float64))
    g = v @ v.T
    blocks = conditional(torch.linalg.cholesky(ki), Blocks(kti, kt), v, 1.0)
    proj = kti @ torch.linalg.inv(ki)
    torch.testing.assert_close(blocks.ti, proj @ g)
    want = kt - torch.diagonal(proj @ kti.T) + torch.diagonal(proj @ g @ proj.T)
    torch.testing.assert_close(blocks.t, want)


def test_minibatch_objectives_average_to_the_full_objective(data) -> None:
    x, y = data
    dkm = nk.dkm.DKM(relu_net(), nu=1.0, noise_var=NOISE, inducing=8).initialize(x, y)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    batches = perm.reshape(4, -1)
    estimates = torch.stack([dkm.objective(b).detach() for b in batches])
    torch.testing.assert_close(estimates.mean(), dkm.objective().detach(), rtol=1e-10, atol=0)


def test_adam_on_minibatches_raises_the_objective(data) -> None:
    x, y = data
    dkm = nk.dkm.DKM(relu_net(), nu=1.0, noise_var=NOISE, inducing=10)
    start = float(dkm.initialize(x, y).objective().detach())
    dkm.fit(x, y, steps=30, lr=3e-2, batch_size=8)
    assert dkm.history[-1] > start
    assert len(dkm.history) == 31


def test_the_titsias_output_is_optimal(data) -> None:
    x, y = data
    dkm = nk.dkm.DKM(relu_net(), nu=1.0, noise_var=NOISE, inducing=10).initialize(x, y)
    best = float(dkm.objective().detach())
    output = dkm.output
    assert output is not None
    gen = torch.Generator().manual_seed(2)
    for param in (output.mean, output.raw):
        with torch.no_grad():
            step = 1e-2 * torch.randn(param.shape, generator=gen, dtype=param.dtype)
            param.add_(step)
            assert float(dkm.objective().detach()) < best
            param.sub_(step)


def test_sparse_categorical_dkm_learns(data, x_test) -> None:
    x, _ = data
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    dkm = nk.dkm.DKM(
        relu_net(outputs=3), nu=1.0, likelihood="categorical", inducing=12, mc_samples=8
    )
    dkm.fit(x, labels, steps=15, optimizer="lbfgs")
    assert dkm.history[-1] > dkm.history[0]
    proba = dkm.predict_proba(x)
    torch.testing.assert_close(proba.sum(1), torch.ones(x.shape[0], dtype=x.dtype))
    assert float((proba.argmax(1) == labels).double().mean()) > 0.7
