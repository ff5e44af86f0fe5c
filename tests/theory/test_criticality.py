"""Critical initialisations and universality classes against closed forms and the book."""

from __future__ import annotations

import math

import pytest

import neural_kernels as nk
from neural_kernels.theory import criticality, depth_profile, susceptibilities


@pytest.mark.parametrize("slope", [0.0, 0.1, 0.5])
def test_scale_invariant_class(slope: float) -> None:
    act = nk.ReLU() if slope == 0.0 else nk.LeakyReLU(slope)
    c = criticality(act)
    assert c.universality == "scale-invariant"
    assert c.w_std**2 == pytest.approx(2.0 / (1.0 + slope**2))
    assert c.b_std == 0.0
    assert c.fixed_point is None
    for k in (0.3, 1.0, 7.0):  # every K is a fixed point with both susceptibilities one
        k_next, chi_par, chi_perp = susceptibilities(act, k, c.w_std)
        assert k_next == pytest.approx(k, rel=1e-12)
        assert chi_par == pytest.approx(1.0, rel=1e-10)
        assert chi_perp == pytest.approx(1.0, rel=1e-10)


@pytest.mark.parametrize(
    ("act", "cw", "a1"),
    [(nk.Tanh(), 1.0, -2.0), (nk.Sin(), 1.0, -1.0), (nk.Erf(), math.pi / 4, -2.0)],
)
def test_k_star_zero_class(act: nk.Elementwise, cw: float, a1: float) -> None:
    c = criticality(act)
    assert c.universality == "K*=0"
    assert c.w_std**2 == pytest.approx(cw, rel=1e-10)
    assert c.a1 == pytest.approx(a1, rel=1e-8)
    assert c.fixed_point == 0.0
    # chi_perp -> 1 as K -> 0
    assert susceptibilities(act, 1e-6, c.w_std)[2] == pytest.approx(1.0, abs=1e-5)


def test_tanh_kernel_decays_like_one_over_minus_a1_l() -> None:
    k, depth = 1.0, 2000
    for _ in range(depth):
        k = susceptibilities(nk.Tanh(), k, 1.0)[0]
    assert 2.0 * depth * k == pytest.approx(1.0, abs=0.01)  # log(l)/l corrections


def test_half_stable_class() -> None:
    gelu = criticality(nk.GELU())
    assert gelu.universality == "half-stable"
    assert gelu.fixed_point == pytest.approx((3 + math.sqrt(17)) / 2, rel=1e-8)
    assert gelu.w_std**2 == pytest.approx(1.98305, abs=1e-5)
    assert gelu.b_std**2 == pytest.approx(0.17292, abs=1e-5)
    swish = criticality(nk.SiLU())
    assert swish.universality == "half-stable"
    assert swish.fixed_point == pytest.approx(14.32017, abs=1e-4)
    assert swish.w_std**2 == pytest.approx(1.98800, abs=1e-5)
    assert swish.b_std**2 == pytest.approx(0.55514, abs=1e-5)
    for c in (gelu, swish):
        assert c.chi_parallel == pytest.approx(1.0, abs=1e-9)
        assert c.chi_perp == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("act", [nk.Sigmoid(), nk.Softplus(), nk.Monomial(2)])
def test_no_criticality(act: nk.Elementwise) -> None:
    c = criticality(act)
    assert c.universality == "none"
    assert c.w_std is None


def test_tanh_corrections_grow_like_depth_over_width() -> None:
    n, depth = 1000, 200
    prof = depth_profile(nk.Tanh(), depth, n, 1.0)
    # the book's slow approach to (2/3) l/n and -(1/3) l/n: 0.656 and -0.321 at l = 200
    assert prof["vertex"][-1].item() * n / depth == pytest.approx(0.656, abs=1e-3)
    assert prof["mean_shift"][-1].item() * n / depth == pytest.approx(-0.321, abs=1e-3)


def test_relu_profile_collapses_on_depth_over_width() -> None:
    a = depth_profile(nk.ReLU(), 9, 50, math.sqrt(2.0))
    b = depth_profile(nk.ReLU(), 17, 100, math.sqrt(2.0))
    assert a["vertex"][-1].item() == pytest.approx(b["vertex"][-1].item(), rel=1e-10)
    assert a["vertex"][-1].item() == pytest.approx(5 * 8 / 50)


def test_refuses_a_non_activation() -> None:
    with pytest.raises(nk.LayerCompatibilityError, match="Dense"):
        criticality(nk.Dense(3))
