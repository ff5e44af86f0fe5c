"""Gaussian and categorical likelihoods of the DKM outputs, and their input checks."""

from __future__ import annotations

import math

import pytest
import torch

import neural_kernels as nk
from neural_kernels.dkm import Categorical, Gaussian

from .conftest import relu_net


def test_gaussian_expected_log_likelihood_matches_monte_carlo() -> None:
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    var = torch.rand(5, generator=gen, dtype=torch.float64)
    y = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    lik = Gaussian(0.3, False, 1e-4)
    f = mean + var.sqrt()[:, None] * torch.randn(200_000, 5, 2, generator=gen, dtype=torch.float64)
    mc = torch.distributions.Normal(f, math.sqrt(0.3)).log_prob(y).sum((1, 2)).mean()
    assert float(lik.expected_log_lik(mean, var, y, 0)) == pytest.approx(float(mc), rel=2e-3)


def test_gaussian_log_marginal_matches_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    k = a @ a.T
    y = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal(
        torch.zeros(6, dtype=torch.float64), k + 0.2 * torch.eye(6, dtype=torch.float64)
    )
    want = float(mvn.log_prob(y.T).sum())
    assert float(Gaussian(0.2, False, 1e-4).log_marginal(k, y)) == pytest.approx(want, rel=1e-12)


def test_categorical_expected_log_likelihood_is_exact_without_variance() -> None:
    mean = torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.3, 0.1]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    lik = Categorical(3, 4)
    want = torch.log_softmax(mean, -1)[torch.arange(2), y].sum()
    got = lik.expected_log_lik(mean, torch.zeros(2, dtype=torch.float64), y, 0)
    torch.testing.assert_close(got, want)
    # with variance: Jensen, E log softmax < log softmax of the mean for the top class
    noisy = lik.expected_log_lik(mean[:1], torch.ones(1, dtype=torch.float64), y[:1], 0)
    assert float(noisy) != float(want)


def test_learned_noise_starts_at_its_value_and_stays_above_the_bound() -> None:
    lik = Gaussian(0.5, True, 1e-3)
    assert float(lik.noise_var().detach()) == pytest.approx(0.5)
    with torch.no_grad():
        assert lik.raw_noise is not None
        lik.raw_noise.fill_(-100.0)
    assert float(lik.noise_var().detach()) >= 1e-3


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"noise_var": 0.0}, "noise_var=0.0"),
        ({"noise_var": -1.0}, "noise_var=-1.0"),
        ({"noise_var": math.nan}, "noise_var=nan"),
        ({"learn_noise": True, "min_noise_var": 0.0}, "min_noise_var=0.0"),
        ({"learn_noise": True, "noise_var": 1e-5, "min_noise_var": 1e-4}, "not above"),
        ({"likelihood": "poisson"}, "likelihood='poisson'"),
        ({"likelihood": "categorical", "mc_samples": 0}, "mc_samples=0"),
    ],
)
def test_bad_likelihood_options_are_refused(options: dict, match: str) -> None:
    with pytest.raises(nk.HyperparameterError, match=match):
        nk.dkm.DKM(relu_net(outputs=3), **options)


def test_a_categorical_dkm_needs_two_outputs() -> None:
    with pytest.raises(nk.HyperparameterError, match="one output per class"):
        nk.dkm.DKM(relu_net(outputs=1), likelihood="categorical")


def test_labels_that_do_not_match_the_likelihood_are_refused(data) -> None:
    x, y = data
    labels = (x[:, 0] > 0).long()
    gauss = nk.dkm.DKM(relu_net(outputs=2))
    with pytest.raises(nk.InputTypeError, match="likelihood='categorical'"):
        gauss.initialize(x, labels)
    with pytest.raises(nk.ShapeError, match="targets of shape"):
        gauss.initialize(x, y[:5])
    with pytest.raises(nk.NonFiniteError, match="NaN"):
        gauss.initialize(x, torch.full_like(y, math.nan))
    cat = nk.dkm.DKM(relu_net(outputs=2), likelihood="categorical")
    with pytest.raises(nk.InputTypeError, match="likelihood='gaussian'"):
        cat.initialize(x, y[:, 0])
    with pytest.raises(nk.HyperparameterError, match=r"labels range over \[0, 4\].*2 outputs"):
        cat.initialize(x, labels * 4)
    with pytest.raises(nk.ShapeError, match="one integer label per input"):
        cat.initialize(x, labels[:, None])
