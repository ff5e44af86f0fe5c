"""Numerical safety at the edges: deep networks, duplicates, zeros, overflow.

Every kernel the engine returns is finite, symmetric and positive semi-definite, with
its self-pairs equal to ``kernel_diag``, or the call raises a clear error naming the
layer. Deep networks in the chaotic phase (layer maps of slope above one) must not let
rounding grow into the self-pairs.
"""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk

ACTIVATIONS = {
    "relu": nk.ReLU(),
    "leaky_relu": nk.LeakyReLU(0.1),
    "abrelu": nk.ABReLU(-0.5, 1.0),
    "abs": nk.Abs(),
    "erf": nk.Erf(),
    "gelu": nk.GELU(),
    "gelu_tanh": nk.GELU(approximate="tanh"),
    "sin": nk.Sin(),
    "cos": nk.Cos(),
    "rbf": nk.RBF(1.0),
    "exp": nk.Exp(),
    "gaussian": nk.Gaussian(),
    "sign": nk.Sign(),
    "monomial": nk.Monomial(2),
    "rectified_monomial": nk.RectifiedMonomial(2),
    "polynomial": nk.Polynomial((0.1, 1.0, 0.5)),
    "hermite": nk.Hermite(3),
    "tanh": nk.Tanh(),
    "sigmoid": nk.Sigmoid(),
    "softplus": nk.Softplus(),
    "silu": nk.SiLU(),
    "elu": nk.ELU(),
    "activation": nk.Activation(torch.tanh),
}


def _inputs() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    x[1] = x[0]  # an exact duplicate
    x[2] = 0.0  # a zero row
    x[3] = x[0] * (1.0 + 1e-9) + 1e-12  # nearly collinear with the first
    return x


def _deep(act: nk.Layer, depth: int, parametrization: str) -> nk.Sequential:
    body = []
    for _ in range(depth):
        body += [nk.Dense(64, w_std=1.2, b_std=0.1, parametrization=parametrization), act]
    return nk.Sequential(*body, nk.Dense(1, parametrization=parametrization))


def _check(k: torch.Tensor, diag: torch.Tensor, what: str) -> None:
    assert bool(torch.isfinite(k).all()), what
    torch.testing.assert_close(k, k.T, rtol=0, atol=0, msg=what)
    assert torch.equal(k.diagonal(), diag), what
    eig = torch.linalg.eigvalsh(k)
    assert float(eig.min()) >= -1e-8 * max(float(eig.abs().max()), 1e-300), what


@pytest.mark.parametrize("depth", [1, 10, 100])
@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_deep_networks_are_finite_symmetric_psd_or_refused(
    name: str, parametrization: str, depth: int
) -> None:
    net = _deep(ACTIVATIONS[name], depth, parametrization)
    x = _inputs()
    try:
        k = net.kernel(x)
        d = net.kernel_diag(x)
    except (nk.NonFiniteError, nk.HyperparameterError) as err:
        # a clear refusal: it names the layer where the kernel left its domain
        assert repr(ACTIVATIONS[name]) in str(err) or "Dense" in str(err)
        return
    assert k.ntk is not None and d.ntk is not None
    _check(k.nngp, d.nngp, f"{name} NNGP")
    _check(k.ntk, d.ntk, f"{name} NTK")


def test_deep_rbf_stays_bounded_by_one() -> None:
    # The NNGP after an RBF activation is at most one; depth 60 in the chaotic phase
    # used to drift to infinity through the self-pairs.
    x = _inputs()
    for depth in (10, 30, 60):
        k = _deep(nk.RBF(1.0), depth, "ntk").kernel(x, get="nngp").nngp
        d = _deep(nk.RBF(1.0), depth, "ntk").kernel_diag(x, get="nngp").nngp
        # a final Dense(w_std=1, b_std=0) maps the bound 1 to 1
        assert float(k.abs().max()) <= 1.0 + 1e-12
        assert torch.equal(k.diagonal(), d)


def test_cauchy_schwarz_holds_for_every_pair() -> None:
    x = _inputs()
    k = _deep(nk.Sin(), 30, "ntk").kernel(x).nngp
    q = k.diagonal()
    assert bool((k.abs() <= (q[:, None] * q[None, :]).sqrt() * (1 + 1e-12)).all())


@pytest.mark.parametrize(
    ("act", "depth", "w_std"),
    [
        (nk.Exp(), 12, 1.5),
        (nk.Monomial(2), 12, 1.5),
        (nk.RectifiedMonomial(3), 10, 1.2),
        (nk.Hermite(4), 10, 1.2),
    ],
    ids=repr,
)
def test_overflow_raises_naming_the_layer(act: nk.Layer, depth: int, w_std: float) -> None:
    body = [layer for _ in range(depth) for layer in (nk.Dense(64, w_std=w_std), act)]
    net = nk.Sequential(*body, nk.Dense(1))
    x = torch.randn(4, 5, dtype=torch.float64) * 3.0
    for call in (lambda: net.kernel(x), lambda: net.kernel(x, x[:2]), lambda: net.kernel_diag(x)):
        with pytest.raises(nk.NonFiniteError) as info:
            call()
        message = str(info.value)
        assert "overflowed" in message and repr(act) in message
        assert "step " in message and "w_std" in message


def test_float32_overflow_suggests_float64() -> None:
    net = nk.Sequential(*[lay for _ in range(6) for lay in (nk.Dense(8, w_std=2.0), nk.Exp())])
    x = torch.randn(3, 4)
    with pytest.raises(nk.NonFiniteError, match="float64"):
        net.kernel(x)


def test_self_pairs_come_from_the_variance_path_in_every_layout() -> None:
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    x[1] = x[0]
    nets = {
        "diagonal": nk.Sequential(nk.Conv(3, padding="same"), nk.Erf(), nk.Flatten(), nk.Dense(1)),
        "full": nk.Sequential(
            nk.Conv(3, padding="same"), nk.RBF(0.5), nk.GlobalAvgPool(), nk.Dense(1)
        ),
        "spatial_output": nk.Sequential(nk.Conv(3, padding="same"), nk.Sin()),
    }
    for name, net in nets.items():
        for layout in (None, "full", "diagonal"):
            k = net.kernel(x, layout=layout)
            d = net.kernel_diag(x, layout=layout)
            idx = torch.arange(5)
            assert torch.equal(k.nngp[idx, idx], d.nngp), name
            assert torch.equal(k.ntk[idx, idx], d.ntk), name
