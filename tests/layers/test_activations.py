"""Closed-form activations: shared properties, exact duals against quadrature, gradients.

The duals are checked against brute-force two-dimensional quadrature of the torch
function itself (and of its autograd derivative), with no closed form on the test side:

* smooth activations: a tensor-product Gauss-Hermite rule (100 x 100 nodes);
* positively homogeneous ones (Sign, RectifiedMonomial): polar coordinates, where the
  radial integral is exact and the angular one is Gauss-Legendre on each arc between
  the kinks of the integrand.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch

import neural_kernels as nk

from .._support.properties import assert_kernel_properties

ACTIVATIONS: dict[str, nk.Elementwise] = {
    "erf": nk.Erf(),
    "erf_abc": nk.Erf(-1.3, 0.7, 0.2),
    "sigmoid_like": nk.Erf(0.5, 1.0 / 2.4020563531719796, 0.5),
    "gelu": nk.GELU(),
    "gelu_tanh": nk.GELU(approximate="tanh"),
    "sin": nk.Sin(1.0, 1.5, 0.2),
    "cos": nk.Cos(0.8, 1.2, 0.1),
    "rbf": nk.RBF(0.5),
    "exp": nk.Exp(1.0, 0.5),
    "exp_neg": nk.Exp(-0.7, -0.4),
    "gaussian": nk.Gaussian(1.0, -0.5),
    "gaussian_pos": nk.Gaussian(0.7, 0.02),
    "sign": nk.Sign(),
    "monomial0": nk.Monomial(0),
    "monomial1": nk.Monomial(1),
    "monomial2": nk.Monomial(2),
    "monomial3": nk.Monomial(3),
    "monomial5": nk.Monomial(5),
    "rectmonomial0": nk.RectifiedMonomial(0),
    "rectmonomial1": nk.RectifiedMonomial(1),
    "rectmonomial2": nk.RectifiedMonomial(2),
    "rectmonomial3": nk.RectifiedMonomial(3),
    "polynomial": nk.Polynomial((0.1, 1.0, 0.5)),
    "polynomial_odd": nk.Polynomial((0.3, -0.2, 0.0, 0.4)),
    "hermite0": nk.Hermite(0),
    "hermite1": nk.Hermite(1),
    "hermite3": nk.Hermite(3),
    "hermite4": nk.Hermite(4),
}

#: Positively homogeneous activations: name -> degree of homogeneity of phi.
HOMOGENEOUS = {
    "sign": 0,
    "rectmonomial0": 0,
    "rectmonomial1": 1,
    "rectmonomial2": 2,
    "rectmonomial3": 3,
}

#: (q1, q2, k): generic, correlation +1 and -1, tiny and zero variances.
POINTS = [
    (1.0, 1.0, 0.3),
    (2.0, 0.5, 0.9),
    (0.3, 2.0, -0.7),
    (1.5, 1.5, 1.5),
    (0.7, 1.3, -math.sqrt(0.7 * 1.3)),
    (0.8, 1.1, math.sqrt(0.8 * 1.1)),
    (1e-6, 1.0, 3e-4),
    (1e-8, 1e-8, 5e-9),
    (0.0, 1.2, 0.0),
    (0.0, 0.0, 0.0),
]


def _net(act: nk.Layer, w_std: float | torch.Tensor = 1.2, b_std: float | None = 0.2):
    return nk.Sequential(nk.Dense(8, w_std=w_std, b_std=b_std), act, nk.Dense(1))


def _inputs(n: int = 7, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    x1 = torch.randn(n, d, dtype=torch.float64)
    x2 = torch.randn(4, d, dtype=torch.float64)
    x1[3] = x1[1]  # a repeated input: correlation one off the diagonal
    return x1, x2


# ----------------------------------------------------------------------------------------
# (1) shared kernel properties
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_kernel_properties(name: str) -> None:
    x1, x2 = _inputs()
    assert_kernel_properties(_net(ACTIVATIONS[name]), x1, x2)


# ----------------------------------------------------------------------------------------
# (2) duals against quadrature of fn and of its autograd derivative
# ----------------------------------------------------------------------------------------


def _values_and_derivative(act: nk.Elementwise, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = act.fn(t)
    if not y.requires_grad:  # a constant (degree 0)
        return y.detach().numpy(), np.zeros_like(x)
    (dy,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), dy.numpy()


def _cholesky(q1: float, q2: float, k: float) -> np.ndarray:
    """``L`` with ``L L^T = [[q1, k], [k, q2]]``, also for singular covariances."""
    if q1 == 0.0:
        return np.array([[0.0, 0.0], [0.0, math.sqrt(q2)]])
    r1 = math.sqrt(q1)
    return np.array([[r1, 0.0], [k / r1, math.sqrt(max(q2 - k * k / q1, 0.0))]])


@functools.cache
def _gauss_hermite_grid(n: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2.0 * math.pi)
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    return z1, z2, np.outer(w, w)


def _gauss_hermite(act: nk.Elementwise, q1: float, q2: float, k: float) -> tuple[float, float]:
    z1, z2, ww = _gauss_hermite_grid()
    lo = _cholesky(q1, q2, k)
    f1, d1 = _values_and_derivative(act, lo[0, 0] * z1)
    f2, d2 = _values_and_derivative(act, lo[1, 0] * z1 + lo[1, 1] * z2)
    return float((ww * f1 * f2).sum()), float((ww * d1 * d2).sum())


def _polar(act: nk.Elementwise, degree: int, q1: float, q2: float, k: float) -> tuple[float, float]:
    """``E[f(u) f(v)]`` for ``f`` positively homogeneous of ``degree`` (and ``f'``)."""
    lo = _cholesky(q1, q2, k)
    # kinks where u = 0 or v = 0 on the unit circle
    cuts = [0.0, 2.0 * math.pi]
    for a, b in lo:
        if a != 0.0 or b != 0.0:
            phi = math.atan2(-a, b) % math.pi
            cuts += [phi, phi + math.pi]
    cuts = sorted(cuts)
    nodes, weights = np.polynomial.legendre.leggauss(60)
    phis, ws = [], []
    for lo_cut, hi_cut in itertools.pairwise(cuts):
        if hi_cut - lo_cut < 1e-15:
            continue
        half = 0.5 * (hi_cut - lo_cut)
        phis.append(lo_cut + half * (nodes + 1.0))
        ws.append(half * weights)
    phi = np.concatenate(phis)
    w = np.concatenate(ws) / (2.0 * math.pi)
    e = np.stack([np.cos(phi), np.sin(phi)])
    f1, d1 = _values_and_derivative(act, lo[0] @ e)
    f2, d2 = _values_and_derivative(act, lo[1] @ e)

    def radial(p: int) -> float:  # int_0^inf r^(p+1) exp(-r^2/2) dr
        return 2.0 ** (p / 2) * math.gamma(p / 2 + 1)

    nngp = float((w * f1 * f2).sum()) * radial(2 * degree)
    dot = float((w * d1 * d2).sum()) * radial(2 * degree - 2) if degree > 0 else 0.0
    return nngp, dot


@functools.cache
def _quadrature(name: str, q1: float, q2: float, k: float) -> tuple[float, float]:
    act = ACTIVATIONS[name]
    if name == "gelu_tanh":  # its kernel is the exact GELU's (see test_gelu_tanh_kernel)
        act = nk.GELU()
    if name in HOMOGENEOUS:
        return _polar(act, HOMOGENEOUS[name], q1, q2, k)
    return _gauss_hermite(act, q1, q2, k)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_dual_matches_quadrature(name: str) -> None:
    act = ACTIVATIONS[name]
    for q1, q2, k in POINTS:
        want_nngp, want_dot = _quadrature(name, q1, q2, k)
        # the Cauchy-Schwarz bound sets the absolute scale of each expectation
        scale_nngp = math.sqrt(_quadrature(name, q1, q1, q1)[0] * _quadrature(name, q2, q2, q2)[0])
        scale_dot = math.sqrt(
            abs(_quadrature(name, q1, q1, q1)[1] * _quadrature(name, q2, q2, q2)[1])
        )
        t = torch.tensor
        nngp, dot = act.dual(
            t([k], dtype=torch.float64),
            t([q1], dtype=torch.float64),
            t([q2], dtype=torch.float64),
            True,
        )
        assert dot is not None
        where = f"{name} at (q1, q2, k) = ({q1}, {q2}, {k})"
        for got, want, scale, what in (
            (float(nngp), want_nngp, scale_nngp, "nngp"),
            (float(dot), want_dot, scale_dot, "dot"),
        ):
            assert math.isfinite(got), f"{where}: {what} not finite"
            tol = 1e-8 * abs(want) + 1e-10 * scale + 1e-300
            assert abs(got - want) <= tol, f"{where}: {what} {got!r} != quadrature {want!r}"
        # the variance shortcut equals the dual at k = q
        for q in (q1, q2):
            var = act.dual_var(t([q], dtype=torch.float64))
            full = act.dual(*(t([q], dtype=torch.float64),) * 3, False)[0]
            assert torch.allclose(var, full, rtol=1e-12, atol=1e-300), where


def test_gelu_tanh_kernel() -> None:
    """GELU(tanh) keeps the exact GELU kernel (NT's convention): within 1e-3 of its own."""
    tanh = nk.GELU(approximate="tanh")
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    assert torch.equal(tanh.fn(x), torch.nn.functional.gelu(x, approximate="tanh"))
    for q1, q2, k in POINTS[:6]:
        exact = _gauss_hermite(nk.GELU(), q1, q2, k)
        own = _gauss_hermite(tanh, q1, q2, k)
        got = tanh.dual(*(torch.tensor([v], dtype=torch.float64) for v in (k, q1, q2)), True)
        assert abs(float(got[0]) - exact[0]) <= 1e-10 * max(1.0, abs(exact[0]))
        assert abs(float(got[0]) - own[0]) <= 1e-3 * max(abs(own[0]), 0.1)


def test_special_cases() -> None:
    k = torch.tensor([0.3, -0.8, 1.0], dtype=torch.float64)
    ones = torch.ones(3, dtype=torch.float64)
    # Hermite on unit variances is Neural Tangents' K^n, exactly
    for n in range(6):
        nngp, dot = nk.Hermite(n).dual(k, ones, ones, True)
        assert torch.allclose(nngp, k**n, rtol=1e-14, atol=1e-15)
        assert torch.allclose(dot, n * k ** max(n - 1, 0), rtol=1e-14, atol=1e-15)
    # RectifiedMonomial(1) is ReLU
    x1, x2 = _inputs()
    a = _net(nk.RectifiedMonomial(1)).kernel(x1, x2)
    b = _net(nk.ReLU()).kernel(x1, x2)
    torch.testing.assert_close(a.nngp, b.nngp, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(a.ntk, b.ntk, rtol=1e-13, atol=1e-15)
    # RectifiedMonomial: finite diagonal (2n-1)!! q^n / 2 (NaN in Neural Tangents)
    q = torch.tensor([0.5, 2.0], dtype=torch.float64)
    for n, dfact in ((0, 1), (1, 1), (2, 3), (3, 15)):
        nngp, _ = nk.RectifiedMonomial(n).dual(q, q, q, True)
        torch.testing.assert_close(nngp, dfact * q**n / 2, rtol=1e-13, atol=0.0)
    # Polynomial accepts any sequence and stays hashable
    assert nk.Polynomial([1, 2]) == nk.Polynomial((1.0, 2.0))
    assert hash(nk.Polynomial(np.array([1.0, 2.0]))) == hash(nk.Polynomial((1.0, 2.0)))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_zero_inputs_finite(name: str) -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    x[0] = 0.0
    x[2] = x[1]
    net = _net(ACTIVATIONS[name], b_std=None)
    k = net.kernel(x)
    d = net.kernel_diag(x)
    for t in (k.nngp, k.ntk, d.nngp, d.ntk):
        assert torch.isfinite(t).all()
    torch.testing.assert_close(d.nngp, k.nngp.diagonal(), rtol=1e-7, atol=1e-300)


# ----------------------------------------------------------------------------------------
# (3) gradients
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_gradients_finite(name: str) -> None:
    act = ACTIVATIONS[name]
    for b_std in (0.2, None):
        x1, _ = _inputs(6, 4)
        x1[5] = 0.0  # a zero input (zero variance when there is no bias)
        x1.requires_grad_(True)
        w = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
        k = _net(act, w_std=w, b_std=b_std).kernel(x1)
        gx, gw = torch.autograd.grad(k.nngp.sum() + k.ntk.sum(), (x1, w))
        assert torch.isfinite(gx).all(), f"{name}: non-finite input gradient (b_std={b_std})"
        assert torch.isfinite(gw).all(), f"{name}: non-finite w_std gradient (b_std={b_std})"


@pytest.mark.parametrize(
    "name", ["erf_abc", "gelu", "sin", "gaussian", "rectmonomial2", "hermite3"]
)
def test_gradcheck_w_std(name: str) -> None:
    act = ACTIVATIONS[name]
    x1, _ = _inputs(5, 3)

    def kernels(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = _net(act, w_std=w).kernel(x1)
        return k.nngp, k.ntk

    w = torch.tensor(1.1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(kernels, (w,))


# ----------------------------------------------------------------------------------------
# (4) hyperparameter validation
# ----------------------------------------------------------------------------------------

BAD = [
    lambda: nk.Erf(a=float("nan")),
    lambda: nk.Erf(b="1"),
    lambda: nk.Erf(c=True),
    lambda: nk.GELU("exact"),
    lambda: nk.GELU(True),
    lambda: nk.Sin(c=float("inf")),
    lambda: nk.Cos(a=None),
    lambda: nk.RBF(-1.0),
    lambda: nk.Exp(b=float("nan")),
    lambda: nk.Gaussian(a="x"),
    lambda: nk.Monomial(-1),
    lambda: nk.Monomial(2.0),
    lambda: nk.Monomial(True),
    lambda: nk.Monomial(1000),
    lambda: nk.RectifiedMonomial(-1),
    lambda: nk.Hermite(-2),
    lambda: nk.Polynomial(()),
    lambda: nk.Polynomial(("a",)),
    lambda: nk.Polynomial((1.0, float("inf"))),
    lambda: nk.Polynomial(3.0),
]


@pytest.mark.parametrize("make", BAD)
def test_bad_hyperparameters(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(nk.HyperparameterError) as info:
        make()
    assert isinstance(info.value, nk.NeuralKernelsError)


def test_gaussian_divergent_expectation() -> None:
    x = torch.randn(3, 4, dtype=torch.float64)
    net = _net(nk.Gaussian(1.0, 0.5))  # 4 b q >= 1 as soon as q >= 0.5
    with pytest.raises(nk.HyperparameterError, match=r"Gaussian\(a=1.0, b=0.5\).*infinite"):
        net.kernel(x)
    with pytest.raises(nk.HyperparameterError):
        net.kernel_diag(x)
