"""nk.abc.ABC: exact exponents, presets, the symmetry to one global c, bad input."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

import neural_kernels as nk
from neural_kernels.abc import ABC


def test_exponents_are_exact_fractions() -> None:
    spec = ABC(a=("-1/2", 0, 0.5), b=Fraction(1, 2), c=0)
    assert spec.a == (Fraction(-1, 2), Fraction(0), Fraction(1, 2))
    assert all(isinstance(x, Fraction) for x in spec.a + spec.b + spec.c)
    assert spec == ABC.mup().__class__(a=spec.a, b=spec.b, c=spec.c)


def test_mup_preset_matches_tp4_definition() -> None:
    mup = ABC.mup()
    half = Fraction(1, 2)
    assert mup.a == (-half, 0, half) and mup.b == (half, half, half) and mup.c == (0, 0, 0)
    # weight space: Var n^{-2(a+b)} and SGD rate n^{-(c+2a)}
    assert [mup.variance_exponent(g) for g in ("input", "hidden", "output")] == [0, half, 1]
    assert [mup.sgd_exponent(g) for g in ("input", "hidden", "output")] == [-1, 0, 1]


def test_global_c_symmetry_keeps_weight_space() -> None:
    spec = ABC(a=(0, 0, 0), b=(0, "1/2", 1), c=(-1, 0, 1))
    glob = spec.with_global_c(0)
    assert glob.c == (0, 0, 0)
    for g in ("input", "hidden", "output"):
        assert glob.variance_exponent(g) == spec.variance_exponent(g)
        assert glob.sgd_exponent(g) == spec.sgd_exponent(g)


def test_as_abc_names() -> None:
    for name in nk.abc.NAMES:
        assert nk.abc.as_abc(name).name == name
    with pytest.raises(nk.ParametrizationError, match="'mu_p'"):
        nk.abc.as_abc("mu_p")


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), math.pi, "x/2", True, object(), (0, 1)]
)
def test_exponents_must_be_finite_rationals(bad: object) -> None:
    with pytest.raises(nk.ParametrizationError, match="ABC"):
        ABC(a=bad, b=0, c=0)


def test_floats_are_read_as_their_simplest_fraction() -> None:
    assert ABC(a=1 / 3, b=0.25, c=-0.5).a[0] == Fraction(1, 3)
    assert ABC(a=1 / 3, b=0.25, c=-0.5).c[2] == Fraction(-1, 2)


def test_hidden_none_must_be_consistent() -> None:
    with pytest.raises(nk.ParametrizationError, match="hidden"):
        ABC(a=(0, None, 1), b=(0, 0, 0), c=-1)
    mf = ABC.mean_field()
    with pytest.raises(nk.ParametrizationError, match="one hidden layer"):
        mf.group("hidden")
