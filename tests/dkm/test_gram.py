"""Cholesky-form Grams and the Gaussian KL divergence against ``torch.distributions``."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk
from neural_kernels.dkm.gram import GramLayer, cholesky, gaussian_kl


def _spd(n: int, seed: int) -> torch.Tensor:
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / n + 0.5 * torch.eye(n, dtype=torch.float64)


@pytest.mark.parametrize("with_mean", [False, True])
def test_kl_matches_torch_distributions(with_mean: bool) -> None:
    k, g = _spd(7, 0), _spd(7, 1)
    scale = 7.0
    v = torch.linalg.cholesky(g) * scale**0.5
    mean = torch.randn(7, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    zero = torch.zeros(7, dtype=torch.float64)
    prior = torch.distributions.MultivariateNormal(zero, k)
    columns = mean.T if with_mean else [zero]
    want = sum(
        float(
            torch.distributions.kl_divergence(torch.distributions.MultivariateNormal(m, g), prior)
        )
        for m in columns
    )
    got = gaussian_kl(v, torch.linalg.cholesky(k), scale, mean if with_mean else None)
    assert float(got) == pytest.approx(want, rel=1e-10)


def test_kl_is_zero_at_the_prior_and_quadratic_near_it() -> None:
    k = _spd(6, 3)
    layer = GramLayer(6, torch.float64)
    layer.initialize(torch.linalg.cholesky(k))
    torch.testing.assert_close(layer.gram().detach(), k)
    chol = torch.linalg.cholesky(k)
    assert abs(float(gaussian_kl(layer.factor().detach(), chol, 6.0))) < 1e-25
    direction = torch.randn(6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    small = [
        float(
            gaussian_kl(
                torch.linalg.cholesky(k + e * (direction @ direction.T)) * 6**0.5, chol, 6.0
            )
        )
        for e in (1e-3, 2e-3)
    ]
    assert small[1] / small[0] == pytest.approx(4.0, rel=1e-2)


def test_cholesky_of_a_singular_prior_names_the_fix() -> None:
    k = torch.ones(3, 3, dtype=torch.float64)
    with pytest.raises(nk.SingularKernelError, match=r"not positive definite.*jitter"):
        cholesky(k, 0.0, "the prior")
    factor = cholesky(k, 1e-6, "the prior")
    assert bool(torch.isfinite(factor).all())
