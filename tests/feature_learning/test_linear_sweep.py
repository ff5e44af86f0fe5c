"""The issue's acceptance (a)-(c) at small sizes, and the finite recursion to float64 precision."""

from __future__ import annotations

import functools

import pytest
import torch

import neural_kernels as nk

pytest.importorskip("sklearn", reason="needs the test extra (scikit-learn digits)")

from neural_kernels.feature_learning._digits import digits

WIDTHS = (64, 256, 1024)


@functools.cache
def _sweep() -> nk.feature_learning.LinearSweep:
    xtr, ytr, xte, yte = digits(400, 150)
    return nk.feature_learning.linear_limit_sweep(
        xtr, ytr, xte, WIDTHS, y_test=yte, steps=60, lr=0.5, batch_size=64, seeds=1
    )


def test_a_ntk_features_freeze() -> None:
    sweep = _sweep()
    assert sweep.ntk_limit_kernel_change == 0.0
    assert sweep.slopes["ntk_kernel_change"] <= -0.5
    assert sweep.slopes["ntk_logit_gap"] < -0.3


def test_b_mup_limit_learns_features_from_zero_output() -> None:
    sweep = _sweep()
    assert sweep.mup_limit_f0 == 0.0
    assert sweep.mup_limit_kernel_change >= 1.0
    # the finite muP networks' own features move by order one at every width
    assert min(sweep.mup_kernel_change) > 0.5


def test_c_finite_mup_networks_approach_the_limit_like_root_width() -> None:
    slopes = _sweep().slopes
    assert -0.7 <= slopes["mup_logit_gap"] <= -0.35, slopes
    assert -0.7 <= slopes["mup_kernel_gap"] <= -0.35, slopes


def test_sample_follows_the_limit_recursion_with_its_own_gram() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (40,), generator=g)
    limit = nk.feature_learning.LinearMuPLimit(6, 4, sigma_in=0.8, sigma_out=1.3, alpha=1.5)
    net = limit.sample(50, torch.Generator().manual_seed(4))
    twin = limit.with_gram(net.gram())
    for t in range(15):
        xb, yb = x[(t % 4) * 10 : (t % 4 + 1) * 10], y[(t % 4) * 10 : (t % 4 + 1) * 10]
        net.step(xb, yb, 0.3)
        twin.step(xb, yb, 0.3)
    with torch.no_grad():
        torch.testing.assert_close(net(x), twin(x), rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(net.feature_kernel(x), twin.feature_kernel(x),
                                   rtol=1e-11, atol=1e-12)  # fmt: skip
        # and the weights stay on the sample: W1 = Omega A_t / sqrt(n)
        omega = net.omega
        w1 = omega @ twin.A / 50**0.5
        torch.testing.assert_close(net.fc1.weight, w1[:, :6], rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(net.fc2.weight, twin.B @ omega.T / 50**0.5,
                                   rtol=1e-11, atol=1e-12)  # fmt: skip


def test_ntk_limit_feature_kernel_is_exactly_constant() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = torch.randn(20, 2, generator=g, dtype=torch.float64)
    lim = nk.feature_learning.LinearNTKLimit(3, 2)
    k0 = lim.feature_kernel(x).clone()
    for _ in range(5):
        lim.step(x, y, 0.5, loss="mse")
    assert torch.equal(lim.feature_kernel(x), k0)
    assert float(lim(x).abs().max()) > 0
