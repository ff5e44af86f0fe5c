"""Exact permutation learning: task, closed-form ensemble, models needed, finite ensembles."""

from __future__ import annotations

import math

import pytest
import torch

import neural_kernels as nk
from neural_kernels.applications import permutations as perm


def test_task_shapes_and_targets() -> None:
    task = perm.permutation_task(4, torch.tensor([2, 0, 3, 1]))
    assert task.x_test.shape == (2**4 - 1 - 4, 4) and task.ones.min() == 2
    torch.testing.assert_close(task.x_test.norm(dim=1), torch.ones(11, dtype=torch.float64))
    # P e_0 = e_2: coordinate perm[i] of the output is coordinate i of the input
    assert task.y_train[0].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert torch.equal(task.y_test.sum(1).long(), task.ones)
    assert perm.permutation_task(3, min_ones=1).x_test.shape == (7, 3)


@pytest.mark.parametrize("bad", [1, 0, 2.5, True])
def test_sizes_below_two_are_refused(bad: object) -> None:
    with pytest.raises(nk.HyperparameterError, match="k >= 2"):
        perm.permutation_task(bad)  # type: ignore[arg-type]
    with pytest.raises(nk.ShapeError, match="not a permutation"):
        perm.permutation_task(3, torch.tensor([0, 0, 1]))


@pytest.mark.parametrize("variant", perm.VARIANTS)
def test_mean_matches_closed_form_and_has_the_sign_features(variant: str) -> None:
    k = 6
    task = perm.permutation_task(k, generator=torch.Generator().manual_seed(0))
    mean, cov = perm.ensemble_gaussian(task, variant)
    assert cov.shape == (len(task.x_test),) * 2
    on_support = task.y_test > 0.5
    for c in range(2, k + 1):
        rows = task.ones == c
        mu_on, mu_off = perm.closed_form_mean(k, c, variant)
        assert mu_off < 0 < mu_on
        torch.testing.assert_close(
            mean[rows][on_support[rows]], torch.full_like(mean[rows][on_support[rows]], mu_on)
        )
        if c < k:
            off = mean[rows][~on_support[rows]]
            torch.testing.assert_close(off, torch.full_like(off, mu_off))


def _arccos_kernels(a: torch.Tensor, b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NNGP ``kappa_1(rho)/k`` and NTK ``(kappa_1 + rho kappa_0)/k`` of unit inputs."""
    rho = (a @ b.T).clamp(-1, 1)
    theta = torch.acos(rho)
    k1 = (torch.sin(theta) + (math.pi - theta) * torch.cos(theta)) / (2 * math.pi)
    k0 = (math.pi - theta) / (2 * math.pi)
    return k1 / k, (k1 + rho * k0) / k


@pytest.mark.parametrize("variant", perm.VARIANTS)
def test_covariance_is_the_trained_ensemble_formula(variant: str) -> None:
    # Sigma = K_xx - T_xX T^-1 K_Xx - K_xX T^-1 T_Xx + T_xX T^-1 K_XX T^-1 T_Xx, T = Theta
    # (ntk) or K (nngp), from the arc-cosine formulas written out here
    k = 5
    task = perm.permutation_task(k, generator=torch.Generator().manual_seed(3))
    x, xt = task.x_test, task.x_train
    k_xx, _ = _arccos_kernels(x, x, k)
    k_xt, t_xt = _arccos_kernels(x, xt, k)
    k_tt, t_tt = _arccos_kernels(xt, xt, k)
    if variant == "nngp":
        t_xt, t_tt = k_xt, k_tt
    a = t_xt @ torch.linalg.inv(t_tt)
    expected = k_xx - a @ k_xt.T - k_xt @ a.T + a @ k_tt @ a.T
    mean, cov = perm.ensemble_gaussian(task, variant)
    torch.testing.assert_close(cov, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(mean, a @ task.y_train, rtol=1e-9, atol=1e-12)


def test_models_needed_agrees_with_direct_ensemble_sampling() -> None:
    k = 4
    task = perm.permutation_task(k, generator=torch.Generator().manual_seed(1))
    mean, cov = perm.ensemble_gaussian(task, "nngp")
    m_90 = perm.models_needed(
        mean, cov, task.y_test, 0.1, generator=torch.Generator().manual_seed(2)
    )
    assert 20 < m_90 < 200
    # average M explicit draws of one network's outputs and round, M at the estimate
    root = torch.linalg.cholesky(cov + 1e-12 * torch.eye(len(cov), dtype=cov.dtype))
    g = torch.Generator().manual_seed(3)
    draws = 1500
    z = root @ torch.randn(len(cov), draws * k, generator=g, dtype=cov.dtype)
    outputs = mean + z.reshape(len(cov), draws, k).transpose(0, 1) / math.sqrt(m_90)
    direct = ((outputs > 0) == (task.y_test > 0.5)).flatten(1).all(1).double().mean()
    assert abs(float(direct) - 0.9) < 0.04
    fewer = perm.recovery_probability(mean, cov, task.y_test, int(m_90 / 4))
    assert fewer < 0.75
    with pytest.raises(nk.HyperparameterError, match="delta"):
        perm.models_needed(mean, cov, task.y_test, 1.5)


def test_models_needed_grows_at_most_like_k_squared() -> None:
    needed = {}
    for k in (3, 4, 5):
        task = perm.permutation_task(k, generator=torch.Generator().manual_seed(k))
        mean, cov = perm.ensemble_gaussian(task, "nngp")
        needed[k] = perm.models_needed(
            mean, cov, task.y_test, 0.1, generator=torch.Generator().manual_seed(0)
        )
    assert needed[3] < needed[4] < needed[5] < needed[3] * (5 / 3) ** 2


def test_finite_ensembles_approach_the_kernel_of_their_parametrization() -> None:
    k, n = 4, 48
    task = perm.permutation_task(k, generator=torch.Generator().manual_seed(0))
    for par, variant in (("ntk", "ntk"), ("standard", "nngp")):
        mean, cov = perm.ensemble_gaussian(task, variant)
        out = perm.train_ensemble(
            task, n, 256, parametrization=par, steps=60, generator=torch.Generator().manual_seed(4)
        )
        assert out.shape == (n, len(task.x_test), k)
        # ensemble mean within Monte Carlo error of the kernel mean, variance near the kernel's
        sd = (cov.diagonal() / n).sqrt()[:, None]
        assert float(((out.mean(0) - mean) / sd).abs().max()) < 6
        ratio = float((out.var(0).mean(1) / cov.diagonal()).mean())
        assert 0.6 < ratio < 1.5
    rate = perm.finite_recovery_rate(
        out, task.y_test, 32, generator=torch.Generator().manual_seed(0)
    )
    assert rate > 0.5  # nngp-like ensembles of 32 (the kernel needs about 45 for 90%)
    assert perm.exact_fraction(out.mean(0), task.y_test) > 0.9


def test_single_input_counts_are_exact_and_the_union_bound_covers_the_joint_count() -> None:
    from scipy.stats import norm

    k = 5
    task = perm.permutation_task(k, generator=torch.Generator().manual_seed(2))
    mean, cov = perm.ensemble_gaussian(task, "nngp")
    var = cov.diagonal()
    single = perm.models_needed_per_input(mean, var, task.y_test, 0.1)
    assert single.shape == (len(task.x_test),) and bool((single >= 1).all())
    # the worst input: the product of the k independent columns' probabilities (scipy)
    i = int(single.argmax())
    r = (mean[i].abs() / var[i].sqrt()).numpy()

    def exact_prob(m: float) -> float:
        return float(norm.cdf(r * math.sqrt(m)).prod())

    m_i = float(single[i])
    assert exact_prob(m_i) >= 0.9 > exact_prob(m_i - 1)
    bound = perm.models_needed_bound(mean, var, task.y_test, 0.1)
    joint = perm.models_needed(
        mean, cov, task.y_test, 0.1, samples=4000, generator=torch.Generator().manual_seed(5)
    )
    # the union bound is sufficient: at least the joint count (up to its Monte Carlo error)
    # and, failures being dominated by a few entries, not much more
    assert m_i < bound and 0.96 * joint <= bound <= 1.1 * joint
    assert perm.recovery_probability(mean, cov, task.y_test, int(bound)) >= 0.88
    with pytest.raises(nk.HyperparameterError, match="delta"):
        perm.models_needed_bound(mean, var, task.y_test, 0.0)
    # a mean of the wrong sign is never rounded right, whatever the ensemble size
    flipped = mean.clone()
    flipped[0, 0] = -flipped[0, 0] if task.y_test[0, 0] > 0.5 else 1.0
    assert perm.models_needed_bound(flipped, var, task.y_test) == math.inf
    assert perm.models_needed_per_input(flipped, var, task.y_test)[0] == math.inf


def test_training_inputs_count_as_exact() -> None:
    # c = 1 inputs are the training pairs: zero variance and the target as mean (up to
    # round-off, which must not be read as a sign), so adding them changes nothing
    counts = []
    for min_ones in (1, 2):
        task = perm.permutation_task(4, min_ones=min_ones, generator=torch.Generator())
        mean, cov = perm.ensemble_gaussian(task, "nngp")
        m = perm.models_needed(
            mean, cov, task.y_test, samples=2000, generator=torch.Generator().manual_seed(0)
        )
        bound = perm.models_needed_bound(mean, cov.diagonal(), task.y_test)
        counts.append((m, bound))
    assert math.isfinite(counts[0][0]) and counts[0][1] == counts[1][1]
    assert abs(counts[0][0] - counts[1][0]) <= 0.1 * counts[1][0]


@pytest.mark.parametrize("k", [4, 5, 8])
def test_reference_counts_are_the_grid_point_above_the_count(k: int) -> None:
    # the research brief's counts (48, 75, 118, 148, 185 at k = 4, 5, 8, 10, 12) are
    # consecutive points of a ratio-1.25 grid: each is the first grid size >= the count
    ref = perm.REFERENCE_GRID[k]
    assert {k: perm.REFERENCE_GRID[k] for k in (4, 5, 8, 10, 12)} == {
        4: 48,
        5: 75,
        8: 118,
        10: 148,
        12: 185,
    }
    task = perm.permutation_task(k, generator=torch.Generator().manual_seed(k))
    mean, cov = perm.ensemble_gaussian(task, "nngp")
    bound = perm.models_needed_bound(mean, cov.diagonal(), task.y_test, 0.1)
    assert ref / 1.25 < bound <= ref
