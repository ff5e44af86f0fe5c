"""GlobalSelfAttention: Neural Tangents' values, shared properties, Monte Carlo, bad input.

The two reference cases of ``tests/data/reference`` run in ``tests/test_reference_spatial.py``;
``NT_VALUES`` below adds the variants they do not cover (square-root scaling, concatenated
and value-side positional embeddings, a decaying embedding covariance, an image input),
computed with Neural Tangents 0.6.5 in float64 on the inputs of ``_inputs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import neural_kernels as nk

from .._support.properties import assert_kernel_properties


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tests run many tiny ops: intra-op threads only add waiting on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _decay(d: torch.Tensor) -> torch.Tensor:
    return (1.0 + d) ** -1.5


NT_CONFIGS: dict[str, tuple[tuple[int, ...], dict[str, Any]]] = {
    "identity_sqrt": (
        (4, 3),
        {"attention_mechanism": "identity", "linear_scaling": False, "b_std": 0.1},
    ),
    "identity_sqrt_sum": (
        (4, 3),
        {
            "attention_mechanism": "identity",
            "linear_scaling": False,
            "pos_emb_type": "sum",
            "b_std": 0.1,
            "w_pos_emb_std": 0.7,
        },
    ),
    "identity_sqrt_concat_val": (
        (4, 3),
        {
            "attention_mechanism": "identity",
            "linear_scaling": False,
            "pos_emb_type": "concat",
            "val_pos_emb": True,
            "n_chan_pos_emb": 24,
            "b_std": None,
        },
    ),
    "abs_concat_val_decay": (
        (4, 3),
        {
            "attention_mechanism": "abs",
            "pos_emb_type": "concat",
            "val_pos_emb": True,
            "pos_emb_decay_fn": _decay,
            "w_pos_emb_std": 0.8,
            "b_std": None,
        },
    ),
    "relu_sum_val_decay_p1": (
        (4, 3),
        {
            "attention_mechanism": "relu",
            "pos_emb_type": "sum",
            "val_pos_emb": True,
            "pos_emb_decay_fn": _decay,
            "pos_emb_p_norm": 1,
            "b_std": 0.1,
        },
    ),
    "softmax_image_sum_decay": (
        (2, 3, 2),
        {
            "attention_mechanism": "softmax",
            "pos_emb_type": "sum",
            "pos_emb_decay_fn": _decay,
            "w_query_std": 1.5,
            "w_value_std": 1.2,
            "b_std": 0.1,
        },
    ),
}

# fmt: off
#: (nngp(x1, x2), ntk(x1, x2)) from Neural Tangents 0.6.5 for ``_nt_network``.
NT_VALUES = {
    "identity_sqrt": (
        [[0.7369429574153016, 0.4539247845634839], [1.1663950110208774, 0.5858930486605215],
         [0.5788707000018869, 0.14348808967330143]],
        [[4.049645850163335, 2.600131747520286], [7.114636456009394, 3.2487687845621256],
         [3.1236921442406933, 0.25239730377063974]],
    ),
    "identity_sqrt_sum": (
        [[1.556253721471009, 1.050712052507734], [1.9720475490938043, 1.2950658280432383],
         [1.2699357237608513, 0.5611585649044126]],
        [[5.2631898354121995, 4.348839576231338], [4.394035823136671, 4.331212759072879],
         [3.877249200712291, 0.586183788552398]],
    ),
    "identity_sqrt_concat_val": (
        [[0.6201729174304876, 0.46305419429755057], [0.7248801966832439, 0.5335230882383042],
         [0.5202253832826291, 0.26212292164038903]],
        [[1.9691419309470777, 1.8584919207723083], [1.2961650680040437, 1.6490680924024608],
         [1.4377151918207527, 0.26144445130711547]],
    ),
    "abs_concat_val_decay": (
        [[0.15633210480240028, 0.19041678011028054], [0.18462577597237836, 0.16133440719938422],
         [0.15570969235749682, 0.06903371314483106]],
        [[0.4219692095189666, 0.6326918119710958], [0.5440785321005398, 0.46443356538233227],
         [0.43309632252093744, 0.0611615191549271]],
    ),
    "relu_sum_val_decay_p1": (
        [[2.452700320507454, 2.820224189154654], [2.527681416482242, 2.526482957819591],
         [2.4485800504993693, 1.3436560072274353]],
        [[6.688319773916712, 9.341544911949443], [5.886530901798195, 7.319706919445096],
         [6.817107288170655, 2.2957735123647325]],
    ),
    "softmax_image_sum_decay": (
        [[0.1528063976807445, 0.1993739683144568], [0.18605362912040116, 0.16840685608142789],
         [0.1620558010683786, 0.019329588878708157]],
        [[0.4841770583709837, 0.7044242373807479], [0.6092417177978918, 0.560154477996426],
         [0.5320000575118254, -0.051690973142583]],
    ),
}
# fmt: on


def _inputs(n: int, shape: tuple[int, ...], phase: float) -> torch.Tensor:
    size = n * int(np.prod(shape))
    return torch.sin(0.37 * torch.arange(size, dtype=torch.float64) + phase).reshape(n, *shape)


def _nt_network(attention: nk.GlobalSelfAttention) -> nk.Sequential:
    return nk.Sequential(
        nk.Dense(48, w_std=1.1, b_std=0.1),
        attention,
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1, b_std=0.1),
    )


@pytest.mark.parametrize("name", list(NT_CONFIGS))
def test_matches_neural_tangents(name: str) -> None:
    shape, kw = NT_CONFIGS[name]
    net = _nt_network(nk.GlobalSelfAttention(32, 24, 20, 3, **kw))
    k = net.kernel(_inputs(3, shape, 0.1), _inputs(2, shape, 1.3))
    nngp, ntk = (torch.tensor(v, dtype=torch.float64) for v in NT_VALUES[name])
    for ours, ref, what in ((k.nngp, nngp, "nngp"), (k.ntk, ntk, "ntk")):
        err = ((ours - ref).abs() / ref.abs().clamp_min(1e-3 * float(ref.abs().max()))).max()
        assert float(err) < 1e-9, f"{name} {what}: relative error {float(err):.2e}"


# ----------------------------------------------------------------------------------------
# Shared properties
# ----------------------------------------------------------------------------------------

PROPERTY_CONFIGS: dict[str, dict[str, Any]] = {
    "softmax": {"attention_mechanism": "softmax", "b_std": 0.1, "w_value_std": 1.2},
    "softmax_concat": {"attention_mechanism": "softmax", "pos_emb_type": "concat"},
    "relu": {"attention_mechanism": "relu", "b_std": None},
    "relu_sum_val": {
        "attention_mechanism": "relu",
        "pos_emb_type": "sum",
        "val_pos_emb": True,
        "pos_emb_decay_fn": _decay,
    },
    "identity_sqrt": {"attention_mechanism": "identity", "linear_scaling": False},
}


def _property_net(kw: dict[str, Any]) -> nk.Sequential:
    return nk.Sequential(
        nk.Dense(16, b_std=0.1),
        nk.GlobalSelfAttention(16, 16, 16, 2, **kw),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1, b_std=0.1),
    )


@pytest.mark.parametrize("name", list(PROPERTY_CONFIGS))
def test_properties(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    x2 = torch.randn(4, 4, 3, generator=g, dtype=torch.float64)
    assert_kernel_properties(_property_net(PROPERTY_CONFIGS[name]), x1, x2)


def test_output_facts_and_twin_shapes() -> None:
    att = nk.GlobalSelfAttention(8, 4, 5, 3, pos_emb_type="concat", n_chan_pos_emb=2)
    assert att.out_shape((6, 3)) == (6, 8)
    assert att.out_shape((2, 3, 7)) == (2, 3, 8)
    twin = att.module((6, 3), dtype=torch.float64)
    assert twin.w_key.shape == (3, 5, 4)  # 3 input + 2 embedding channels
    assert twin.w_value.shape == (3, 3, 5)  # values do not see the embeddings
    assert twin.w_out.shape == (15, 8)
    assert twin(torch.randn(2, 6, 3, dtype=torch.float64)).shape == (2, 6, 8)
    net = nk.Sequential(nk.Dense(16), att, nk.ReLU(), nk.Flatten(), nk.Dense(2))
    model = net.module((6, 3), width=12, dtype=torch.float64)
    assert model[1].w_key.shape == (3, 14, 12)
    assert model[1].w_out.shape == (36, 12)
    assert model(torch.randn(3, 6, 3, dtype=torch.float64)).shape == (3, 2)
    k = nk.Sequential(nk.Dense(16), att).kernel(torch.randn(3, 6, 3, dtype=torch.float64))
    assert k.is_gaussian
    assert k.nngp.shape == (3, 3, 6, 6)


def test_differentiable_hyperparameters() -> None:
    w = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    net = _property_net({"w_query_std": w, "pos_emb_type": "sum", "w_pos_emb_std": w})
    x = torch.randn(3, 4, 3, dtype=torch.float64)
    k = net.kernel(x, get="nngp")
    (grad,) = torch.autograd.grad(k.nngp.sum(), w)
    assert torch.isfinite(grad) and float(grad.abs()) > 0


# ----------------------------------------------------------------------------------------
# Monte Carlo: random finite twins converge to the kernels
# ----------------------------------------------------------------------------------------

MC_CONFIGS: dict[str, dict[str, Any]] = {
    "softmax": {"attention_mechanism": "softmax"},
    "identity": {"attention_mechanism": "identity"},
    "relu_sum": {"attention_mechanism": "relu", "pos_emb_type": "sum"},
    "softmax_concat_val_decay": {
        "attention_mechanism": "softmax",
        "pos_emb_type": "concat",
        "val_pos_emb": True,
        "pos_emb_decay_fn": _decay,
    },
}


def _mc_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x1 = torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, 3, 3, generator=g, dtype=torch.float64)
    return x1, x2


@pytest.mark.parametrize("name", list(MC_CONFIGS))
def test_monte_carlo_nngp(name: str) -> None:
    """NNGP of wide twins: within a few standard errors, and better than narrow twins.

    The network ends in ``Flatten`` so that every channel of every position is an
    output of the twin: the estimate averages ``L * width`` products per twin.
    """
    x1, x2 = _mc_inputs()

    def net(width: int) -> nk.Sequential:
        att = nk.GlobalSelfAttention(
            width, width, width, 2, b_std=0.1, w_value_std=1.2, **MC_CONFIGS[name]
        )
        return nk.Sequential(nk.Dense(width, b_std=0.1), att, nk.ReLU(), nk.Flatten())

    exact = net(8).kernel(x1, x2, get="nngp").nngp
    errors = {}
    for width in (16, 256):
        g = torch.Generator().manual_seed(11)
        mc = nk.monte_carlo_kernel(net(width), x1, x2, n_samples=32, generator=g, get="nngp")
        errors[width] = float((mc.nngp - exact).norm() / exact.norm())
    z = ((mc.nngp - exact) / mc.nngp_stderr).abs().max()
    assert float(z) < 5.0, f"{name}: {float(z):.2f} standard errors off at width 256"
    assert errors[256] < 0.15, f"{name}: relative error {errors[256]:.3f} at width 256"
    # the noise shrinks like 1/sqrt(width): a factor 4 from 16 to 256
    assert errors[256] < 0.6 * errors[16], f"{name}: no convergence with width: {errors}"


@pytest.mark.parametrize(
    ("kw", "pool"),
    [
        ({"attention_mechanism": "softmax"}, nk.GlobalAvgPool()),
        ({"attention_mechanism": "relu", "pos_emb_type": "sum", "val_pos_emb": True}, nk.Flatten()),
    ],
    ids=["softmax_gap", "relu_sum_val_flatten"],
)
def test_monte_carlo_ntk(kw: dict[str, Any], pool: nk.Layer) -> None:
    """Empirical NTK of twins of width 256 (the embeddings are trained parameters)."""
    x1, x2 = _mc_inputs()
    net = nk.Sequential(
        nk.Dense(16, b_std=0.1),
        nk.GlobalSelfAttention(16, 16, 16, 2, b_std=0.1, w_value_std=1.2, **kw),
        nk.ReLU(),
        pool,
        nk.Dense(1, b_std=0.1),
    )
    exact = net.kernel(x1, x2).ntk
    g = torch.Generator().manual_seed(5)
    mc = nk.monte_carlo_kernel(net, x1, x2, n_samples=32, width=256, generator=g, get="ntk")
    assert mc.ntk is not None and mc.ntk_stderr is not None
    err = float((mc.ntk - exact).norm() / exact.norm())
    z = float(((mc.ntk - exact) / mc.ntk_stderr).abs().max())
    assert err < 0.15, f"NTK relative error {err:.3f}"
    assert z < 5.0, f"NTK {z:.2f} standard errors off"


def test_twin_standard_parametrization_refused() -> None:
    net = _property_net({})
    with pytest.raises(nk.ParametrizationError, match="NTK parametrization only"):
        net.module((4, 3), parametrization="standard")


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------

BAD: dict[str, tuple[Any, type[Exception], tuple[str, ...]]] = {
    "flat input": (
        lambda: nk.Sequential(nk.Dense(8), nk.GlobalSelfAttention(8, 8, 8, 2)).kernel(
            torch.randn(3, 5)
        ),
        nk.ShapeError,
        ("GlobalSelfAttention", "attention on a flat input", "(n, L, C)"),
    ),
    "channels first": (
        lambda: nk.Sequential(
            nk.Conv(4, 3, padding="same"), nk.GlobalSelfAttention(8, 8, 8, 2)
        ).out_shape((3, 6)),
        nk.LayerCompatibilityError,
        ("GlobalSelfAttention", "channels first", "channels-last"),
    ),
    "zero heads": (
        lambda: nk.GlobalSelfAttention(8, 8, 8, 0),
        nk.HyperparameterError,
        ("GlobalSelfAttention", "n_heads", ">= 1"),
    ),
    "fractional heads": (
        lambda: nk.GlobalSelfAttention(8, 8, 8, 2.5),
        nk.HyperparameterError,
        ("n_heads", ">= 1"),
    ),
    "negative std": (
        lambda: nk.GlobalSelfAttention(8, 8, 8, 2, w_key_std=-1.0),
        nk.HyperparameterError,
        ("GlobalSelfAttention", "w_key_std", ">= 0"),
    ),
    "nan bias std": (
        lambda: nk.GlobalSelfAttention(8, 8, 8, 2, b_std=float("nan")),
        nk.HyperparameterError,
        ("b_std",),
    ),
    "unknown mechanism": (
        lambda: nk.GlobalSelfAttention(8, 8, 8, 2, attention_mechanism="sigmoid"),
        nk.HyperparameterError,
        ("attention_mechanism='sigmoid'", "'softmax'", "'relu'"),
    ),
    "unknown embedding": (
        lambda: nk.GlobalSelfAttention(8, 8, 8, 2, pos_emb_type="rotary"),
        nk.HyperparameterError,
        ("pos_emb_type='rotary'", "'concat'"),
    ),
    "bad p-norm": (
        lambda: nk.GlobalSelfAttention(8, 8, 8, 2, pos_emb_p_norm=0),
        nk.HyperparameterError,
        ("pos_emb_p_norm",),
    ),
    "decay not callable": (
        lambda: nk.GlobalSelfAttention(8, 8, 8, 2, pos_emb_decay_fn=2.0),
        nk.HyperparameterError,
        ("pos_emb_decay_fn", "function"),
    ),
    "summed embeddings of another width": (
        lambda: nk.GlobalSelfAttention(8, 8, 8, 2, pos_emb_type="sum", n_chan_pos_emb=3).out_shape(
            (5, 4)
        ),
        nk.ShapeError,
        ("n_chan_pos_emb=3", "concat"),
    ),
    "standard parametrization": (
        lambda: nk.GlobalSelfAttention(8, 8, 8, 2, parametrization="standard"),
        nk.ParametrizationError,
        ("GlobalSelfAttention", "'ntk'"),
    ),
    "no closed form": (
        lambda: nk.Sequential(
            nk.Dense(8), nk.GlobalSelfAttention(8, 8, 8, 2, linear_scaling=False)
        ).kernel(torch.randn(2, 3, 4)),
        nk.HyperparameterError,
        ("linear_scaling=False", "no closed form", "identity"),
    ),
    "non-finite decay": (
        lambda: nk.Sequential(
            nk.Dense(8),
            nk.GlobalSelfAttention(8, 8, 8, 2, pos_emb_type="sum", pos_emb_decay_fn=torch.log),
        ).kernel(torch.randn(2, 3, 4)),
        nk.HyperparameterError,
        ("pos_emb_decay_fn", "non-finite", "torch.exp"),
    ),
    "not positive definite decay": (
        lambda: nk.GlobalSelfAttention(
            8, 8, 8, 2, pos_emb_type="sum", pos_emb_decay_fn=lambda d: torch.ones_like(d)
        ).module((4, 3)),
        nk.HyperparameterError,
        ("positive definite",),
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case: str) -> None:
    fn, cls, words = BAD[case]
    with pytest.raises(cls) as info:
        fn()
    assert isinstance(info.value, nk.NeuralKernelsError)
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"


def test_sqrt_scaling_twin_runs_for_every_mechanism() -> None:
    """Only the kernel lacks a closed form; the finite module works."""
    att = nk.GlobalSelfAttention(8, 8, 8, 2, linear_scaling=False)
    y = att.module((4, 3), dtype=torch.float64)(torch.randn(2, 4, 3, dtype=torch.float64))
    assert y.shape == (2, 4, 8) and torch.isfinite(y).all()
