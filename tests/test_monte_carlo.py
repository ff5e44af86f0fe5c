"""Monte Carlo: random finite twins converge to the closed-form kernels.

For every activation family, both parametrizations and the combinators, the twins'
empirical NNGP and NTK (``nk.monte_carlo_kernel``) agree with ``net.kernel`` within
5 standard errors (plus a small slack for the O(1/width) finite-width bias), and the
relative Frobenius error shrinks when ``width * samples`` grows (16 x 16 -> 256 x 96
for the NNGP, 16 x 8 -> 256 x 40 for the NTK).

The NNGP is estimated with a wide readout (128 i.i.d. outputs per twin: cheap, forward
passes only), the NTK with one output (its Jacobian costs one backward pass per output);
the closed forms do not depend on the readout width. The standard parametrization's NTK
depends on the finite widths, so every twin here keeps the declared widths
(``width=None``) and the small-width error is measured against the small network's own
closed form.

Activations are named as strings and resolved with ``getattr(nk, name)`` inside the test,
so that collection does not depend on which families exist.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

import neural_kernels as nk

WIDE, NARROW = 256, 16
NNGP_READOUT = 128
NNGP_SAMPLES = {WIDE: 96, NARROW: 16}
NTK_SAMPLES = {WIDE: 40, NARROW: 8}
#: Entries must be within Z standard errors plus SLACK x max|exact| (finite-width bias).
Z, SLACK = 5.0, 0.005
#: The error at WIDE must be at most this fraction of the error at NARROW. Pure Monte
#: Carlo noise would give sqrt(16 x 16 / (256 x 96)) ~ 0.1; measured: 0.05-0.51 for the NNGP
#: (the nearly linear sigmoid and exp are already accurate at width 16), 0.02-0.19 for the NTK.
DECREASE = 0.7

# (test id, class name, args, kwargs, w_std). Scales keep the moments of the heavier-tailed
# activations (exp, polynomials) moderate, so that 256 units average them well.
ACTIVATIONS: list[tuple[str, str, tuple[Any, ...], dict[str, Any], float]] = [
    ("relu", "ReLU", (), {}, 1.3),
    ("leaky_relu", "LeakyReLU", (0.2,), {}, 1.3),
    ("abrelu", "ABReLU", (-0.4, 1.2), {}, 1.3),
    ("abs", "Abs", (), {}, 1.3),
    ("erf", "Erf", (1.2, 0.8, 0.1), {}, 1.3),
    ("gelu", "GELU", (), {"approximate": "none"}, 1.3),
    ("gelu_tanh", "GELU", (), {"approximate": "tanh"}, 1.3),
    ("sin", "Sin", (1.0, 1.2, 0.3), {}, 1.3),
    ("cos", "Cos", (1.0, 1.2, 0.3), {}, 1.3),
    ("rbf", "RBF", (0.8,), {}, 1.3),
    ("exp", "Exp", (0.5, 0.5), {}, 1.0),
    ("gaussian", "Gaussian", (1.0, -0.6), {}, 1.3),
    # Sign and the step RectifiedMonomial(0): the NTK convention drops the delta of the
    # derivative (derivative dual 0). Autograd also differentiates sign/step to 0, so the
    # twins' empirical NTK follows the same convention and is compared too; it is not
    # the NTK of gradient flow through a step, which is undefined.
    ("sign", "Sign", (), {}, 1.3),
    ("monomial", "Monomial", (2,), {}, 1.0),
    ("step", "RectifiedMonomial", (0,), {}, 1.3),
    ("rectified_monomial", "RectifiedMonomial", (2,), {}, 1.0),
    ("polynomial", "Polynomial", ((0.1, 1.0, 0.3),), {}, 1.0),
    ("hermite", "Hermite", (2,), {}, 1.0),
    ("tanh", "Tanh", (), {}, 1.3),
    ("sigmoid", "Sigmoid", (), {}, 1.3),
    ("softplus", "Softplus", (), {}, 1.3),
    ("silu", "SiLU", (), {}, 1.3),
    ("elu", "ELU", (), {}, 1.3),
    ("activation_atan", "Activation", (torch.atan,), {}, 1.3),
]


def _layer(name: str, *args: Any, **kwargs: Any) -> nk.Layer:
    cls = getattr(nk, name, None)
    if cls is None:
        pytest.fail(f"neural_kernels has no {name}: the activation families are incomplete")
    return cls(*args, **kwargs)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(6, 4, generator=g, dtype=torch.float64)
    x2 = torch.randn(5, 4, generator=g, dtype=torch.float64)
    x2[0] = x1[0]  # a repeated input: correlation one between x1 and x2
    return x1, x2


def _rel(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    return float((estimate - exact).norm() / exact.norm())


def _assert_within_stderr(mc: nk.MonteCarloKernel, exact: torch.Tensor, name: str) -> None:
    estimate, stderr = getattr(mc, name), getattr(mc, f"{name}_stderr")
    assert estimate.shape == exact.shape == stderr.shape
    bound = Z * stderr + SLACK * exact.abs().max()
    excess = (estimate - exact).abs() - bound
    worst = int(excess.argmax())
    i, j = divmod(worst, exact.shape[1])
    assert float(excess.max()) <= 0.0, (
        f"{name}[{i}, {j}]: Monte Carlo {float(estimate[i, j]):.6g} +- "
        f"{float(stderr[i, j]):.3g} vs exact {float(exact[i, j]):.6g} "
        f"(allowed {float(bound[i, j]):.3g})"
    )


def _assert_converges(make: Callable[[int, int], nk.Layer], *, seed: int = 1) -> None:
    """``make(width, readout)`` builds the network; check both kernels at two sizes."""
    x1, x2 = _inputs()
    for name, readout, samples in (
        ("nngp", NNGP_READOUT, NNGP_SAMPLES),
        ("ntk", 1, NTK_SAMPLES),
    ):
        errors = {}
        for width in (WIDE, NARROW):
            exact = getattr(make(width, 1).kernel(x1, x2, get=name), name)
            mc = nk.monte_carlo_kernel(
                make(width, readout),
                x1,
                x2,
                n_samples=samples[width],
                get=name,
                generator=torch.Generator().manual_seed(seed),
            )
            if width == WIDE:
                _assert_within_stderr(mc, exact, name)
            errors[width] = _rel(getattr(mc, name), exact)
        assert errors[WIDE] <= DECREASE * errors[NARROW], (
            f"{name}: relative error {errors[WIDE]:.4f} at width {WIDE} is not below "
            f"{DECREASE} x {errors[NARROW]:.4f} at width {NARROW}"
        )


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
@pytest.mark.parametrize(
    ("name", "args", "kwargs", "w_std"),
    [pytest.param(*case[1:], id=case[0]) for case in ACTIVATIONS],
)
def test_activation_twins_converge(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], w_std: float, parametrization: str
) -> None:
    act = _layer(name, *args, **kwargs)

    def make(width: int, readout: int) -> nk.Layer:
        def dense(n: int) -> nk.Dense:
            return nk.Dense(n, w_std=w_std, b_std=0.2, parametrization=parametrization)

        return nk.Sequential(dense(width), act, dense(width), act, dense(readout))

    _assert_converges(make)


def _dense_factory(parametrization: str, **kwargs: Any) -> Callable[[int], nk.Dense]:
    opts = {"w_std": 1.3, "b_std": 0.2, **kwargs}
    return lambda n: nk.Dense(n, parametrization=parametrization, **opts)


STRUCTURES: dict[str, Callable[[Callable[[int], nk.Dense], int, int], nk.Layer]] = {
    "no_bias": lambda d, w, k: nk.Sequential(d(w), nk.ReLU(), d(w), nk.Erf(), d(k)),
    "layernorm": lambda d, w, k: nk.Sequential(
        d(w), nk.LayerNorm(), nk.ReLU(), d(w), nk.LayerNorm(), nk.ReLU(), d(k)
    ),
    "residual": lambda d, w, k: nk.Sequential(d(w), nk.Residual(nk.ReLU(), d(w)), nk.ReLU(), d(k)),
    "fanin_sum": lambda d, w, k: nk.Sequential(
        d(w),
        nk.FanOut(2),
        nk.Parallel(nk.Sequential(nk.ReLU(), d(w)), nk.Sequential(nk.Abs(), d(w))),
        nk.FanInSum(),
        nk.ReLU(),
        d(k),
    ),
    "fanin_product": lambda d, w, k: nk.Sequential(
        d(w),
        nk.FanOut(2),
        nk.Parallel(nk.Sequential(nk.ReLU(), d(w)), d(w)),
        nk.FanInProduct(),
        d(k),
    ),
    # unequal branch widths: the concatenation weights its branches by their widths (its
    # channels have two covariances, so a Dense, not an activation, follows it)
    "fanin_concat": lambda d, w, k: nk.Sequential(
        d(w),
        nk.FanOut(2),
        nk.Parallel(nk.Sequential(nk.ReLU(), d(w)), nk.Sequential(nk.Abs(), d(w // 2))),
        nk.FanInConcat(),
        d(w),
        nk.ReLU(),
        d(k),
    ),
}


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
@pytest.mark.parametrize("structure", sorted(STRUCTURES))
def test_structure_twins_converge(structure: str, parametrization: str) -> None:
    kwargs = {"b_std": None} if structure == "no_bias" else {}
    dense = _dense_factory(parametrization, **kwargs)
    _assert_converges(lambda width, readout: STRUCTURES[structure](dense, width, readout))


@pytest.mark.slow
def test_error_shrinks_with_width() -> None:
    """At fixed samples the NTK error of a ReLU network falls steadily with the width."""
    x1, x2 = _inputs()
    errors = []
    for width in (32, 128, 512):
        net = nk.Sequential(
            nk.Dense(width, w_std=1.5, b_std=0.1),
            nk.ReLU(),
            nk.Dense(width, w_std=1.5, b_std=0.1),
            nk.ReLU(),
            nk.Dense(1),
        )
        exact = net.kernel(x1, x2).ntk
        mc = nk.monte_carlo_kernel(
            net, x1, x2, n_samples=24, get="ntk", generator=torch.Generator().manual_seed(3)
        )
        errors.append(_rel(mc.ntk, exact))
    assert errors[0] > errors[1] > errors[2], errors
    # 1/sqrt(width) would give a factor 4 from 32 to 512
    assert errors[2] <= errors[0] / 2.5, errors


# ----------------------------------------------------------------------------------------
# The estimator itself
# ----------------------------------------------------------------------------------------

SMALL_NET = nk.Sequential(
    nk.Dense(7, w_std=1.2, b_std=0.3),
    nk.ReLU(),
    nk.Dense(5, w_std=0.9, b_std=0.1, parametrization="standard"),
    nk.Erf(),
    nk.Dense(3, b_std=None),
)


def test_estimates_match_brute_force() -> None:
    """Outputs and per-example gradients computed one example at a time, by autograd."""
    x1, x2 = _inputs()
    samples = 3
    mc = nk.monte_carlo_kernel(
        SMALL_NET, x1, x2, n_samples=samples, generator=torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)
    nngps, ntks = [], []
    for _ in range(samples):
        model = SMALL_NET.module(x1.shape[1:], generator=g, dtype=torch.float64)
        params = list(model.parameters())

        def grads(x: torch.Tensor, model: torch.nn.Module = model, params: list = params) -> list:
            out = []
            for xi in x:
                y = model(xi[None])[0]
                out.append(
                    [
                        torch.cat(
                            [
                                d.reshape(-1)
                                for d in torch.autograd.grad(y[o], params, retain_graph=True)
                            ]
                        )
                        for o in range(y.shape[0])
                    ]
                )
            return out

        with torch.no_grad():
            f1, f2 = model(x1), model(x2)
        nngps.append(f1 @ f2.T / f1.shape[1])
        j1, j2 = grads(x1), grads(x2)
        ntk = torch.tensor(
            [
                [sum(float(a @ b) for a, b in zip(j1[i], j2[j], strict=True)) / 3 for j in range(5)]
                for i in range(6)
            ],
            dtype=torch.float64,
        )
        ntks.append(ntk)
    for name, per_sample in (("nngp", nngps), ("ntk", ntks)):
        stack = torch.stack(per_sample)
        torch.testing.assert_close(getattr(mc, name), stack.mean(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            getattr(mc, f"{name}_stderr"),
            stack.std(0) / math.sqrt(samples),
            rtol=1e-9,
            atol=1e-12,
        )
    assert mc.n_samples == samples and mc.width is None


def test_parameter_free_network_is_exact() -> None:
    """An Identity network: the NNGP estimate is x x'^T / d exactly, the NTK zero."""
    x1, x2 = _inputs()
    mc = nk.monte_carlo_kernel(nk.Identity(), x1, x2, n_samples=2)
    exact = nk.Identity().kernel(x1, x2)
    torch.testing.assert_close(mc.nngp, exact.nngp, rtol=1e-13, atol=1e-14)
    assert torch.equal(mc.ntk, torch.zeros(6, 5, dtype=torch.float64))
    assert float(mc.nngp_stderr.max()) <= 1e-15


def test_x2_none_is_symmetric_and_equals_x1_x1() -> None:
    x1, _ = _inputs()
    kw = {"n_samples": 4, "batch_size": 4}
    a = nk.monte_carlo_kernel(SMALL_NET, x1, generator=torch.Generator().manual_seed(2), **kw)
    b = nk.monte_carlo_kernel(SMALL_NET, x1, x1, generator=torch.Generator().manual_seed(2), **kw)
    for name in ("nngp", "ntk", "nngp_stderr", "ntk_stderr"):
        assert torch.equal(getattr(a, name), getattr(a, name).T), name
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("batch_size", [1, 2, 4, 100])
@pytest.mark.parametrize("symmetric", [False, True])
def test_batch_size_does_not_change_estimates(batch_size: int, symmetric: bool) -> None:
    x1, x2 = _inputs()
    x2 = None if symmetric else x2

    def run(bs: int | None) -> nk.MonteCarloKernel:
        return nk.monte_carlo_kernel(
            SMALL_NET,
            x1,
            x2,
            n_samples=2,
            batch_size=bs,
            generator=torch.Generator().manual_seed(4),
        )

    ref, got = run(None), run(batch_size)
    for name in ("nngp", "ntk"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=1e-12, atol=1e-13)


def test_generator_makes_estimates_reproducible() -> None:
    x1, x2 = _inputs()

    def run(seed: int) -> nk.MonteCarloKernel:
        return nk.monte_carlo_kernel(
            SMALL_NET, x1, x2, n_samples=2, generator=torch.Generator().manual_seed(seed)
        )

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.nngp, b.nngp) and torch.equal(a.ntk, b.ntk)
    assert not torch.equal(a.nngp, c.nngp)


def test_get_nngp_only() -> None:
    x1, x2 = _inputs()
    mc = nk.monte_carlo_kernel(SMALL_NET, x1, x2, n_samples=2, get="nngp")
    assert mc.ntk is None and mc.ntk_stderr is None
    assert mc.nngp.shape == (6, 5)


def test_single_sample_has_infinite_stderr() -> None:
    x1, x2 = _inputs()
    mc = nk.monte_carlo_kernel(SMALL_NET, x1, x2, n_samples=1)
    assert torch.isinf(mc.nngp_stderr).all() and torch.isinf(mc.ntk_stderr).all()
    assert torch.isfinite(mc.nngp).all() and torch.isfinite(mc.ntk).all()


def test_dtypes() -> None:
    x1, x2 = _inputs()
    single = nk.monte_carlo_kernel(SMALL_NET, x1.float(), x2.float(), n_samples=2)
    assert single.nngp.dtype == single.ntk.dtype == single.ntk_stderr.dtype == torch.float32
    double = nk.monte_carlo_kernel(SMALL_NET, x1.float(), n_samples=2, dtype=torch.float64)
    assert double.nngp.dtype == double.ntk.dtype == torch.float64
    ints = nk.monte_carlo_kernel(SMALL_NET, [[1, 2, 3, 4], [0, 1, 0, 2]], n_samples=2)
    assert ints.nngp.dtype == torch.float64 and ints.nngp.shape == (2, 2)
    # dtype= casts the inputs: the same twins as from float32 inputs
    a = nk.monte_carlo_kernel(
        SMALL_NET,
        x1,
        x2,
        n_samples=2,
        dtype=torch.float32,
        generator=torch.Generator().manual_seed(0),
    )
    b = nk.monte_carlo_kernel(
        SMALL_NET, x1.float(), x2.float(), n_samples=2, generator=torch.Generator().manual_seed(0)
    )
    assert a.ntk.dtype == torch.float32
    torch.testing.assert_close(a.ntk, b.ntk, rtol=1e-6, atol=1e-6)


def test_width_and_parametrization_overrides() -> None:
    """``width`` and ``parametrization`` reach the twins; the readout keeps its width."""
    x1, x2 = _inputs()
    declared = nk.Sequential(nk.Dense(8, w_std=1.3, b_std=0.2), nk.ReLU(), nk.Dense(2))
    mc = nk.monte_carlo_kernel(
        declared,
        x1,
        x2,
        n_samples=24,
        width=256,
        parametrization="standard",
        generator=torch.Generator().manual_seed(0),
    )
    assert mc.width == 256
    # what the twins are: the standard-parametrization network of width 256
    exact = nk.Sequential(
        nk.Dense(256, w_std=1.3, b_std=0.2, parametrization="standard"),
        nk.ReLU(),
        nk.Dense(2, parametrization="standard"),
    ).kernel(x1, x2)
    _assert_within_stderr(mc, exact.nngp, "nngp")
    _assert_within_stderr(mc, exact.ntk, "ntk")


def test_result_is_frozen_and_readable() -> None:
    x1, _ = _inputs()
    mc = nk.monte_carlo_kernel(SMALL_NET, x1, n_samples=2, get="nngp")
    with pytest.raises(dataclasses.FrozenInstanceError):
        mc.nngp = mc.nngp  # type: ignore[misc]
    assert "n_samples=2" in repr(mc) and "(6, 6)" in repr(mc)


BAD_CALLS: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "zero samples": ({"n_samples": 0}, nk.HyperparameterError, "n_samples"),
    "float samples": ({"n_samples": 2.5}, nk.HyperparameterError, "n_samples"),
    "zero width": ({"width": 0}, nk.HyperparameterError, "width"),
    "zero batch": ({"batch_size": 0}, nk.HyperparameterError, "batch_size"),
    "unknown kernel": ({"get": "ntkgp"}, nk.HyperparameterError, "get"),
    "unknown parametrization": ({"parametrization": "foo"}, nk.ParametrizationError, "foo"),
    "bad generator": ({"generator": "x"}, nk.InputTypeError, "generator"),
    "integer dtype": ({"dtype": torch.int64}, nk.InputTypeError, "dtype"),
    "feature shapes differ": ({"x2": torch.ones(3, 5)}, nk.ShapeError, "feature shape"),
    "no batch axis": ({"x1": torch.ones(4)}, nk.ShapeError, "x1"),
    "nan input": ({"x1": torch.full((2, 4), math.nan)}, nk.NonFiniteError, "NaN"),
    "string input": ({"x1": "abc"}, nk.InputTypeError, "x1"),
    "not a network": ({"net": torch.nn.Linear(4, 1)}, nk.InputTypeError, "net"),
    "ends with branches": ({"net": nk.FanOut(2)}, nk.LayerCompatibilityError, "branches"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_arguments_raise_clear_errors(case: str) -> None:
    changes, error, words = BAD_CALLS[case]
    kwargs: dict[str, Any] = {"net": SMALL_NET, "x1": torch.ones(3, 4), "n_samples": 2}
    kwargs.update(changes)
    with pytest.raises(error, match=words) as info:
        nk.monte_carlo_kernel(**kwargs)
    assert isinstance(info.value, nk.NeuralKernelsError)
    assert "monte_carlo_kernel" in str(info.value) or "FanOut" in str(info.value)


def test_no_activation_directly_after_a_channel_concatenation() -> None:
    """Concatenated channels have one covariance per branch: the mean of an activation's
    duals is not the dual of the mean kernel, so the network is refused (the Monte Carlo
    twins disagreed with the dual of the mean by several standard errors)."""
    dense = _dense_factory("ntk")
    net = nk.Sequential(
        dense(8),
        nk.FanOut(2),
        nk.Parallel(nk.Sequential(nk.ReLU(), dense(8)), nk.Sequential(nk.Abs(), dense(4))),
        nk.FanInConcat(),
        nk.ReLU(),
        dense(1),
    )
    with pytest.raises(nk.LayerCompatibilityError, match="ReLU"):
        net.kernel(torch.ones(2, 4))
