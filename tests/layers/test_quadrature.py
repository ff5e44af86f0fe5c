"""Activations by Gauss-Hermite quadrature (``nk.Activation``, ``nk.Tanh``, ...).

* every closed-form activation agrees with the quadrature of its own ``fn``: to rounding
  for smooth ones, and with an error that shrinks with the degree for kinks and jumps;
* the rule is symmetric in the two inputs (bit for bit) and converges;
* shared kernel properties, finite gradients at identical inputs and zero variance;
* bad arguments raise ``NeuralKernelsError`` subclasses that name the layer.
"""

from __future__ import annotations

import itertools
import math
import pickle
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from scipy import integrate

import neural_kernels as nk
from neural_kernels.layers import quadrature
from neural_kernels.layers.quadrature import DEFAULT_DEGREE, _MehlerSeries

from .._support.properties import assert_kernel_properties

# ----------------------------------------------------------------------------------------
# Quadrature versus every closed form
# ----------------------------------------------------------------------------------------

#: (id, constructor, kind). Constructed inside the tests, so that a missing class fails
#: one case instead of the collection. Kinds: "smooth" (agrees to rounding at degree
#: 256), "kink" (continuous with a kink at 0: algebraic convergence), "jump" (a step:
#: slower still; both derivative duals are 0, autograd's and the closed form's), and
#: "approx" (GELU with the tanh approximation keeps the exact GELU's closed form, as in
#: Neural Tangents, so it differs from the quadrature of its own fn by ~1e-3).
CLOSED_FORMS: list[tuple[str, Callable[[], nk.Elementwise], str]] = [
    ("relu", lambda: nk.ReLU(), "kink"),
    ("leaky_relu", lambda: nk.LeakyReLU(0.1), "kink"),
    ("abrelu", lambda: nk.ABReLU(-0.5, 1.5), "kink"),
    ("abs", lambda: nk.Abs(), "kink"),
    ("erf", lambda: nk.Erf(1.2, 0.8, 0.1), "smooth"),
    ("gelu", lambda: nk.GELU(), "smooth"),
    ("gelu_tanh", lambda: nk.GELU(approximate="tanh"), "approx"),
    ("sin", lambda: nk.Sin(1.0, 1.5, 0.3), "smooth"),
    ("cos", lambda: nk.Cos(0.8, 1.2, -0.4), "smooth"),
    ("rbf", lambda: nk.RBF(0.5), "smooth"),
    ("exp", lambda: nk.Exp(1.0, 0.3), "smooth"),
    ("gaussian", lambda: nk.Gaussian(1.0, -0.5), "smooth"),
    ("sign", lambda: nk.Sign(), "jump"),
    ("monomial2", lambda: nk.Monomial(2), "smooth"),
    ("monomial3", lambda: nk.Monomial(3), "smooth"),
    ("rectmonomial0", lambda: nk.RectifiedMonomial(0), "jump"),
    ("rectmonomial1", lambda: nk.RectifiedMonomial(1), "kink"),
    ("rectmonomial2", lambda: nk.RectifiedMonomial(2), "kink"),
    ("polynomial", lambda: nk.Polynomial((0.1, 1.0, 0.5)), "smooth"),
    ("hermite3", lambda: nk.Hermite(3), "smooth"),
]

#: Bounds on the errors of the (NNGP, derivative) duals at degree 256, relative to the
#: largest value on the grid (measured: kinks 2e-3 / 6e-3, jumps 6e-3, gelu_tanh 2e-4).
BOUND_256 = {
    "smooth": (1e-12, 1e-12),
    "kink": (3e-3, 1e-2),
    "jump": (1e-2, 0.0),
    "approx": (3e-4, 5e-4),
}


def _grid(qs: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(k, q1, q2)`` on all pairs of variances (equal and unequal) and correlations."""
    q = torch.tensor(qs, dtype=torch.float64)
    c = torch.tensor([-1.0, -0.7, 0.0, 0.4, 0.95, 1.0], dtype=torch.float64)
    q1, q2, cc = torch.meshgrid(q, q, c, indexing="ij")
    return cc * torch.sqrt(q1 * q2), q1, q2


def _errors(
    layer: nk.Elementwise, degree: int, k: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor
) -> tuple[float, float]:
    """Largest errors of the NNGP and derivative duals, relative to the largest value."""
    got = nk.Activation(layer.fn, degree=degree).dual(k, q1, q2, True)
    want = layer.dual(k, q1, q2, True)
    out = []
    for g, w in zip(got, want, strict=True):
        assert g is not None and w is not None
        assert g.shape == w.shape
        assert torch.isfinite(g).all()
        scale = max(float(w.abs().max()), 1e-300)
        out.append(float((g - w).abs().max()) / scale if float(w.abs().max()) > 0 else 0.0)
        if float(w.abs().max()) == 0:  # derivative dual of a step: 0 on both sides
            assert float(g.abs().max()) == 0.0
    return out[0], out[1]


@pytest.mark.parametrize(("name", "make", "kind"), CLOSED_FORMS, ids=[c[0] for c in CLOSED_FORMS])
def test_quadrature_matches_closed_form(name: str, make: Callable, kind: str) -> None:
    layer = make()
    k, q1, q2 = _grid([0.3, 1.0, 2.5])
    err256 = _errors(layer, 256, k, q1, q2)
    for err, bound in zip(err256, BOUND_256[kind], strict=True):
        assert err <= bound, f"{layer!r}: errors {err256} at degree 256"
    if kind in ("kink", "jump"):
        # Algebraic convergence: four times the nodes, at least twice smaller errors.
        err64 = _errors(layer, 64, k, q1, q2)
        err16 = _errors(layer, 16, k, q1, q2)
        for e16, e64, e256 in zip(err16, err64, err256, strict=True):
            if e16 > 1e-14:
                assert e256 < 0.5 * e64 < 0.25 * e16, (err16, err64, err256)


@pytest.mark.parametrize(("name", "make", "kind"), CLOSED_FORMS, ids=[c[0] for c in CLOSED_FORMS])
def test_network_matches_closed_form(name: str, make: Callable, kind: str) -> None:
    layer = make()
    x1 = torch.randn(5, 4, dtype=torch.float64)
    x2 = torch.randn(3, 4, dtype=torch.float64)
    x1[3] = x1[1]
    head, tail = nk.Dense(8, w_std=1.3, b_std=0.2), nk.Dense(1, w_std=0.9, b_std=0.1)
    exact = nk.Sequential(head, layer, tail)
    numerical = nk.Sequential(head, nk.Activation(layer.fn, degree=256), tail)
    rtol = 2 * max(BOUND_256[kind])
    for a, b in ((x1, x2), (x1, None)):
        want = exact.kernel(a, b)
        got = numerical.kernel(a, b)
        for key in ("nngp", "ntk"):
            w, g = getattr(want, key), getattr(got, key)
            assert float((g - w).abs().max()) <= rtol * float(w.abs().max()), key


def test_smooth_closed_forms_at_zero_variance() -> None:
    """``q = 0`` (a zero input without bias) gives ``phi(0) E[phi(v)]``; nothing singular."""
    q1 = torch.tensor([0.0, 0.0, 1.3], dtype=torch.float64)
    q2 = torch.tensor([0.0, 0.7, 0.0], dtype=torch.float64)
    k = torch.zeros(3, dtype=torch.float64)
    for layer in (nk.Erf(1.2, 0.8, 0.1), nk.GELU(), nk.Cos(0.8, 1.2, -0.4), nk.Exp(1.0, 0.3)):
        got = nk.Activation(layer.fn, degree=256).dual(k, q1, q2, True)
        want = layer.dual(k, q1, q2, True)
        for g, w in zip(got, want, strict=True):
            assert g is not None and w is not None
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------------
# Symmetry and convergence
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "act",
    [nk.Tanh(), nk.ELU(0.7), nk.Activation(torch.relu, degree=33)],
    ids=["tanh", "elu", "relu_odd_degree"],
)
def test_dual_is_symmetric_bit_for_bit(act: nk.Elementwise) -> None:
    g = torch.Generator().manual_seed(1)
    q1 = torch.rand(7, 1, generator=g, dtype=torch.float64) * 3
    q2 = torch.rand(1, 5, generator=g, dtype=torch.float64) * 3
    q2[0, 0] = 0.0
    c = torch.rand(7, 5, generator=g, dtype=torch.float64) * 2 - 1
    c[0, 1] = 1.0
    c[1, 2] = -1.0
    k = c * torch.sqrt(q1 * q2)
    a, da = act.dual(k, q1, q2, True)
    b, db = act.dual(k, q2, q1, True)
    assert torch.equal(a, b)
    assert da is not None and db is not None
    assert torch.equal(da, db)
    # full-shaped variances too
    q1f, q2f = q1.expand(7, 5).clone(), q2.expand(7, 5).clone()
    a2, _ = act.dual(k, q1f, q2f, False)
    b2, _ = act.dual(k, q2f, q1f, False)
    assert torch.equal(a2, b2)
    torch.testing.assert_close(a2, a, rtol=1e-14, atol=1e-15)


def test_variances_of_fewer_dimensions_broadcast() -> None:
    act = nk.Tanh(degree=32)
    k = torch.tensor([[0.2, -0.3, 0.5], [0.1, 0.0, 0.4]], dtype=torch.float64)
    q1 = torch.tensor(1.2, dtype=torch.float64)
    q2 = torch.tensor([0.9, 1.5, 0.8], dtype=torch.float64)
    nngp, dot = act.dual(k, q1, q2, True)
    full1, full2 = q1.expand(2, 3), q2.expand(2, 3)
    want, want_dot = act.dual(k, full1, full2, True)
    assert nngp.shape == dot.shape == (2, 3)
    torch.testing.assert_close(nngp, want, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(dot, want_dot, rtol=1e-14, atol=1e-15)


def test_kernel_is_symmetric_in_its_arguments() -> None:
    net = nk.Sequential(nk.Dense(16, w_std=1.4, b_std=0.1), nk.Tanh(), nk.Dense(1))
    x1 = torch.randn(6, 3, dtype=torch.float64)
    x2 = torch.randn(4, 3, dtype=torch.float64)
    x2[0] = x1[2]
    k12 = net.kernel(x1, x2)
    k21 = net.kernel(x2, x1)
    for key in ("nngp", "ntk"):
        a, b = getattr(k12, key), getattr(k21, key).T
        assert float((a - b).abs().max()) <= 1e-15 * float(a.abs().max())


def _erf_errors(degree: int) -> float:
    """Largest relative error of ``Activation(erf)`` against ``Erf``'s closed form."""
    k, q1, q2 = _grid([0.5, 2.0, 4.0])
    return max(_errors(nk.Erf(), degree, k, q1, q2))


def test_converges_to_the_closed_form() -> None:
    errors = [_erf_errors(d) for d in (8, 16, 32, 64, 128, 256)]
    for coarse, fine in itertools.pairwise(errors):
        assert fine < 0.5 * coarse or fine < 1e-14, errors
    assert errors[-1] < 1e-13, errors


def test_tanh_against_adaptive_quadrature() -> None:
    """An independent check of the rule for tanh (scipy's adaptive ``dblquad``)."""
    q1, q2, c = 1.7, 0.6, 0.35
    s = math.sqrt(1 - c * c)

    def expect(f: Callable[[float], float]) -> float:
        def integrand(z2: float, z1: float) -> float:
            u = math.sqrt(q1) * z1
            v = math.sqrt(q2) * (c * z1 + s * z2)
            return f(u) * f(v) * math.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2 * math.pi)

        return integrate.dblquad(integrand, -9, 9, -9, 9, epsabs=1e-13, epsrel=1e-12)[0]

    f64 = torch.float64
    k = torch.tensor(c * math.sqrt(q1 * q2), dtype=f64)
    nngp, dot = nk.Tanh(degree=256).dual(
        k, torch.tensor(q1, dtype=f64), torch.tensor(q2, dtype=f64), True
    )
    assert dot is not None
    assert abs(float(nngp) - expect(math.tanh)) < 1e-12
    assert abs(float(dot) - expect(lambda x: 1 - math.tanh(x) ** 2)) < 1e-12
    var = nk.Tanh(degree=256).dual_var(torch.tensor([q1], dtype=torch.float64))
    exact = integrate.quad(
        lambda z: math.tanh(math.sqrt(q1) * z) ** 2 * math.exp(-0.5 * z * z), -12, 12, epsabs=1e-14
    )[0] / math.sqrt(2 * math.pi)
    assert abs(float(var[0]) - exact) < 1e-12


def test_exact_for_polynomials_below_the_degree() -> None:
    """``D`` nodes integrate ``phi(u) phi(v)`` exactly for polynomials of degree ``< D``."""
    k, q1, q2 = _grid([0.3, 1.0, 2.5])
    exact = nk.Polynomial((0.2, -1.0, 0.5, 0.3, -0.1))
    for degree in (5, 6):
        got = nk.Activation(exact.fn, degree=degree).dual(k, q1, q2, True)
        want = exact.dual(k, q1, q2, True)
        for g, w in zip(got, want, strict=True):
            assert g is not None and w is not None
            torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_correlation_one_equals_the_variance_rule() -> None:
    q = torch.tensor([0.0, 0.4, 1.0, 3.0], dtype=torch.float64)
    for act in (nk.Tanh(), nk.Softplus(), nk.ELU()):
        diag, _ = act.dual(q, q, q, False)
        torch.testing.assert_close(diag, act.dual_var(q), rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------------------
# Kernel properties and gradients
# ----------------------------------------------------------------------------------------

CUSTOM = nk.Activation(lambda x: torch.sin(x) + 0.5 * x, degree=32)

#: The properties hold at any degree (the rule is exactly symmetric and PSD); a small
#: degree keeps the many kernel evaluations of the checks fast.
READY_MADE = {
    "tanh": nk.Tanh(degree=32),
    "sigmoid": nk.Sigmoid(degree=32),
    "softplus": nk.Softplus(degree=32),
    "silu": nk.SiLU(degree=32),
    "elu": nk.ELU(degree=32),
    "elu_alpha": nk.ELU(0.5, degree=31),
    "custom": CUSTOM,
    "torch_fn": nk.Activation(F.gelu, degree=32),
}


@pytest.mark.parametrize("act", list(READY_MADE.values()), ids=list(READY_MADE))
def test_kernel_properties(act: nk.Elementwise) -> None:
    net = nk.Sequential(nk.Dense(8, w_std=1.2, b_std=0.2), act, nk.Dense(1))
    x1 = torch.randn(6, 4, dtype=torch.float64)
    x1[4] = x1[1]
    x2 = torch.randn(3, 4, dtype=torch.float64)
    assert_kernel_properties(net, x1, x2)


@pytest.mark.parametrize("act", [nk.Tanh(), nk.ELU(), CUSTOM], ids=["tanh", "elu", "custom"])
def test_finite_gradients_at_identical_inputs(act: nk.Elementwise) -> None:
    w_std = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    net = nk.Sequential(nk.Dense(8, w_std=w_std, b_std=0.0), act, nk.Dense(1, w_std=w_std))
    x = torch.randn(4, 3, dtype=torch.float64)
    x[2] = x[0]
    x[3] = 0.0  # zero variance: no bias
    x.requires_grad_(True)
    k = net.kernel(x)
    (k.nngp.sum() + k.ntk.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert w_std.grad is not None and torch.isfinite(w_std.grad)


def test_gradients_match_the_closed_form() -> None:
    """Gradients through the quadrature (``phi''`` by double autograd) are the exact ones."""
    erf = nk.Erf(1.1, 0.9, 0.2)
    grads = []
    for act in (erf, nk.Activation(erf.fn, degree=256)):
        w_std = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
        net = nk.Sequential(nk.Dense(8, w_std=w_std, b_std=0.1), act, nk.Dense(1, w_std=w_std))
        x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        x[2] = x[0]
        x.requires_grad_(True)
        k = net.kernel(x)
        (k.nngp.sum() + 0.5 * k.ntk.sum()).backward()
        assert x.grad is not None and w_std.grad is not None
        grads.append((x.grad, w_std.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", ["vectorised", "horner"])
def test_gradients_match_finite_differences(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if path == "horner":  # the in-place path of large chunks, forced on small inputs
        monkeypatch.setattr(quadrature, "_VECTOR_LIMIT", 0)
    act = nk.Tanh(degree=48)
    q1 = torch.tensor([[0.7], [1.9]], dtype=torch.float64, requires_grad=True)
    q2 = torch.tensor([[1.1, 0.4, 2.2]], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([[0.3, -0.8, 0.99], [0.0, 0.5, -0.2]], dtype=torch.float64)
    k = (c * torch.sqrt(q1 * q2)).detach().requires_grad_(True)

    def both(k: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        nngp, dot = act.dual(k, q1, q2, True)
        assert dot is not None
        return nngp, dot

    assert torch.autograd.gradcheck(both, (k, q1, q2))
    a1 = torch.randn(5, 2, 1, dtype=torch.float64, requires_grad=True)
    a2 = torch.randn(5, 1, 3, dtype=torch.float64, requires_grad=True)
    cc = c.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(_MehlerSeries.apply, (a1, a2, cc))
    assert torch.autograd.gradgradcheck(_MehlerSeries.apply, (a1, a2, cc))


def test_series_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    a1 = torch.randn(40, 6, 1, dtype=torch.float64)
    a2 = torch.randn(40, 1, 5, dtype=torch.float64)
    c = torch.rand(6, 5, dtype=torch.float64) * 2 - 1
    c[0, 0], c[1, 1] = 1.0, -1.0
    vectorised = _MehlerSeries.apply(a1, a2, c)
    monkeypatch.setattr(quadrature, "_VECTOR_LIMIT", 0)
    horner = _MehlerSeries.apply(a1, a2, c)
    want = sum(a1[n] * a2[n] * c**n for n in range(40))
    torch.testing.assert_close(vectorised, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(horner, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_MehlerSeries.apply(a2, a1, c), horner, rtol=0, atol=0)


@pytest.mark.parametrize("act", [nk.Tanh(), nk.SiLU(), nk.Activation(torch.cos)], ids=str)
def test_skipping_noise_orders_keeps_the_value(
    act: nk.Elementwise, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-place path skips orders at rounding level (odd/even functions, far tails)."""
    k, q1, q2 = _grid([0.0, 0.3, 1.0, 2.5])
    want = act.dual(k, q1, q2, True)
    monkeypatch.setattr(quadrature, "_VECTOR_LIMIT", 0)
    got = act.dual(k, q1, q2, True)
    for g, w in zip(got, want, strict=True):
        assert g is not None and w is not None
        torch.testing.assert_close(g, w, rtol=1e-13, atol=1e-15)
    swapped = act.dual(k, q2, q1, True)
    assert torch.equal(swapped[0], got[0])


def test_no_grad_and_inference_mode_keep_the_derivative_dual() -> None:
    net = nk.Sequential(nk.Dense(4, b_std=0.1), nk.Tanh(degree=16), nk.Dense(1))
    x = torch.randn(3, 2, dtype=torch.float64)
    want = net.kernel(x).ntk
    with torch.no_grad():
        assert torch.equal(net.kernel(x).ntk, want)
    with torch.inference_mode():
        assert torch.equal(net.kernel(x).ntk, want)


def test_float32() -> None:
    net = nk.Sequential(nk.Dense(8, w_std=1.2, b_std=0.2), nk.SiLU(), nk.Dense(1))
    x = torch.randn(5, 3)
    k32 = net.kernel(x)
    k64 = net.kernel(x.double())
    assert k32.nngp.dtype == torch.float32
    torch.testing.assert_close(k32.ntk.double(), k64.ntk, rtol=1e-5, atol=1e-6)


def test_finite_twin_applies_fn() -> None:
    net = nk.Sequential(nk.Dense(8), nk.Activation(torch.tanh), nk.Dense(1))
    module = net.module(in_shape=(3,), width=16)
    x = torch.randn(4, 3)
    assert module(x).shape == (4, 1)
    assert nk.ELU(0.5).fn(torch.tensor([-1.0])).item() == pytest.approx(0.5 * (math.exp(-1) - 1))


# ----------------------------------------------------------------------------------------
# The closed-form option, repr, equality, pickling
# ----------------------------------------------------------------------------------------


def test_given_closed_form_is_used() -> None:
    erf = nk.Erf(1.2, 0.8, 0.1)
    k, q1, q2 = _grid([0.3, 1.0])
    act = nk.Activation(erf.fn, dual=erf.dual)
    got, want = act.dual(k, q1, q2, True), erf.dual(k, q1, q2, True)
    assert torch.equal(got[0], want[0])
    assert got[1] is not None and want[1] is not None
    assert torch.equal(got[1], want[1])
    q = torch.tensor([0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(act.dual_var(q), erf.dual_var(q))

    def nngp_only(
        k: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor, want_dot: bool
    ) -> tuple[torch.Tensor, None]:
        return erf.dual(k, q1, q2, False)[0], None

    half = nk.Activation(erf.fn, dual=nngp_only, degree=256)
    _, dot = half.dual(k, q1, q2, True)
    assert dot is not None and want[1] is not None
    torch.testing.assert_close(dot, want[1], rtol=1e-12, atol=1e-14)


def test_repr_equality_hash_pickle() -> None:
    assert repr(nk.Activation(torch.tanh, degree=64)) == "Activation(fn=tanh, degree=64)"
    assert repr(nk.Tanh()) == f"Tanh(degree={DEFAULT_DEGREE})"
    assert repr(nk.ELU(0.5, degree=32)) == "ELU(alpha=0.5, degree=32)"
    assert "dual=" in repr(nk.Activation(torch.erf, dual=nk.Erf().dual))
    assert "Erf(" in repr(nk.Activation(nk.Erf().fn))
    assert DEFAULT_DEGREE % 2 == 0  # no node at the kink of ReLU-like functions
    for layer in (
        nk.Activation(torch.tanh, degree=64),
        nk.Activation(F.softplus),
        nk.Tanh(),
        nk.Sigmoid(degree=40),
        nk.Softplus(),
        nk.SiLU(),
        nk.ELU(0.3),
    ):
        clone = pickle.loads(pickle.dumps(layer))
        assert clone == layer
        assert hash(clone) == hash(layer)
    assert nk.Activation(torch.tanh) != nk.Activation(torch.tanh, degree=64)
    assert nk.Tanh() != nk.Activation(torch.tanh)
    assert len({nk.Tanh(), nk.Tanh(), nk.Tanh(degree=64)}) == 2


# ----------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: nk.Activation(torch.tanh, degree=1), nk.HyperparameterError),
        (lambda: nk.Activation(torch.tanh, degree=2.5), nk.HyperparameterError),
        (lambda: nk.Activation(torch.tanh, degree=True), nk.HyperparameterError),
        (lambda: nk.Activation(torch.tanh, degree=10**6), nk.HyperparameterError),
        (lambda: nk.Tanh(degree=1), nk.HyperparameterError),
        (lambda: nk.ELU(alpha="big"), nk.HyperparameterError),
        (lambda: nk.Activation("tanh"), nk.InputTypeError),
        (lambda: nk.Activation(torch.tanh, dual="erf"), nk.InputTypeError),
    ],
)
def test_bad_arguments(build: Callable, error: type) -> None:
    with pytest.raises(error) as info:
        build()
    assert isinstance(info.value, nk.NeuralKernelsError)
    assert (
        "degree" in str(info.value) or "callable" in str(info.value) or "alpha" in str(info.value)
    )


@pytest.mark.parametrize(
    ("fn", "error"),
    [
        (lambda x: x.sum(-1), nk.LayerCompatibilityError),
        (lambda x: x[..., :1], nk.LayerCompatibilityError),
        (lambda x: 1.0, nk.InputTypeError),
        (lambda x: np.tanh(x.numpy()), nk.InputTypeError),
        (torch.log, nk.NonFiniteError),
        (
            lambda x: torch.heaviside(x, torch.tensor(0.5, dtype=x.dtype)),
            nk.LayerCompatibilityError,
        ),
    ],
    ids=["reduces", "slices", "float", "numpy", "log", "heaviside"],
)
def test_bad_fn_is_reported_at_first_use(fn: Callable, error: type) -> None:
    act = nk.Activation(fn, degree=8)  # accepted: checked lazily
    net = nk.Sequential(nk.Dense(4), act, nk.Dense(1))
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(error) as info:
        net.kernel(x)
    assert isinstance(info.value, nk.NeuralKernelsError)
    assert "Activation(" in str(info.value)


def test_step_without_autograd_derivative_has_zero_derivative_dual() -> None:
    step = nk.Activation(lambda x: (x > 0).to(x.dtype), degree=64)
    k, q1, q2 = _grid([0.5, 1.5])
    nngp, dot = step.dual(k, q1, q2, True)
    assert dot is not None and float(dot.abs().max()) == 0.0
    want, _ = nk.RectifiedMonomial(0).dual(k, q1, q2, False)
    assert float((nngp - want).abs().max()) < 0.05
