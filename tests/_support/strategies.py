"""Hypothesis strategies: random architectures with inputs they accept.

``networks()`` draws a :class:`Case`: a network of ``Dense`` or ``Conv`` layers,
activations, pooling and combinators (``Residual``, ``FanOut`` + ``Parallel`` + a fan-in),
ending in a readout ``Dense``, with float64 inputs ``x1`` ``(n1, *in_shape)`` and ``x2``
``(n2, *in_shape)``. Inputs come from a drawn seed (cheap to shrink) and may hold exact
duplicate rows. Depths and standard deviations are modest, so kernels stay finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

import neural_kernels as nk

F64 = torch.float64

STDS = st.floats(0.5, 1.6)
BIAS_STDS = st.one_of(st.none(), st.just(0.0), st.floats(0.05, 0.8))
PARAMETRIZATIONS = st.sampled_from(["ntk", "standard"])
WIDTHS = st.integers(2, 6)


@dataclass(frozen=True)
class Case:
    """A drawn network and inputs it accepts."""

    net: nk.Sequential
    in_shape: tuple[int, ...]
    x1: torch.Tensor
    x2: torch.Tensor

    def __repr__(self) -> str:
        n1, n2 = len(self.x1), len(self.x2)
        return f"Case(net={self.net!r}, in_shape={self.in_shape}, n1={n1}, n2={n2})"


def activations() -> st.SearchStrategy[nk.Layer]:
    """Closed-form activations (and one by quadrature), with their hyperparameters."""
    return st.one_of(
        st.just(nk.ReLU()),
        st.builds(nk.LeakyReLU, st.floats(0.0, 0.5)),
        st.builds(nk.ABReLU, st.floats(-1.0, 0.0), st.floats(0.5, 1.5)),
        st.just(nk.Abs()),
        st.builds(nk.Erf, st.floats(0.5, 1.5), st.floats(0.5, 1.5), st.floats(-0.5, 0.5)),
        st.sampled_from([nk.GELU(), nk.GELU(approximate="tanh")]),
        st.builds(nk.Sin, st.floats(0.5, 1.5), st.floats(0.5, 1.5), st.floats(-1.0, 1.0)),
        st.builds(nk.Cos, st.floats(0.5, 1.5), st.floats(0.5, 1.5), st.floats(-1.0, 1.0)),
        st.builds(nk.RBF, st.floats(0.2, 1.5)),
        st.just(nk.Identity()),
        st.builds(nk.Monomial, st.integers(1, 2)),
        st.just(nk.Tanh()),
    )


def _dense(width: int, draw: st.DrawFn) -> nk.Layer:
    return nk.Dense(
        width, w_std=draw(STDS), b_std=draw(BIAS_STDS), parametrization=draw(PARAMETRIZATIONS)
    )


def _conv(channels: int, draw: st.DrawFn, padding: str, k: int, size: int) -> nk.Layer:
    """A ``Conv`` whose dilated window fits ``size`` positions under ``valid`` padding."""
    dilation = draw(st.sampled_from([1, 2])) if 2 * (k - 1) + 1 <= size else 1
    return nk.Conv(
        channels,
        k,
        stride=draw(st.sampled_from([1, 1, 2])),
        padding=padding,
        dilation=dilation,
        w_std=draw(STDS),
        b_std=draw(BIAS_STDS),
        parametrization=draw(PARAMETRIZATIONS),
    )


@st.composite
def _fc_block(draw: st.DrawFn, width: int) -> list[nk.Layer]:
    """One hidden block of a fully connected network (keeps the width)."""
    kind = draw(st.sampled_from(["plain", "plain", "layernorm", "residual", "branches"]))
    act = draw(activations())
    if kind == "plain":
        return [_dense(width, draw), act]
    if kind == "layernorm":
        return [_dense(width, draw), nk.LayerNorm(), act]
    if kind == "residual":
        return [nk.Residual(_dense(width, draw), act)]
    fan_in = draw(st.sampled_from(["sum", "product", "concat"]))
    merge = {"sum": nk.FanInSum(), "product": nk.FanInProduct(), "concat": nk.FanInConcat()}
    branches = [
        nk.FanOut(2),
        nk.Parallel(_dense(width, draw), nk.Sequential(_dense(width, draw), act)),
        merge[fan_in],
    ]
    if fan_in == "concat":  # back to the block width, so that a residual may follow
        branches.append(_dense(width, draw))
    return branches


@st.composite
def _conv_block(draw: st.DrawFn, channels: int, size: int, first: bool) -> list[nk.Layer]:
    """One hidden block of a convolutional network on ``size`` positions per axis (no
    pooling)."""
    kinds = ["plain", "plain", "layernorm"] + ([] if first else ["residual"])
    kind = draw(st.sampled_from(kinds))
    act = draw(activations())
    if kind == "residual":  # same padding and stride 1 keep the shape (channels too)
        conv = nk.Conv(channels, draw(st.sampled_from([1, 3])), padding="same")
        return [nk.Residual(conv, act)]
    padding = draw(st.sampled_from(["same", "circular", "valid"] if size >= 3 else ["same"]))
    k = draw(st.sampled_from([1, 2, 3]))
    layers = [_conv(channels, draw, padding, k, size)]
    if kind == "layernorm":
        layers.append(nk.LayerNorm(axis=1))
    layers.append(act)
    return layers


def _pooling(draw: st.DrawFn) -> nk.Layer:
    pool = draw(st.sampled_from([nk.AvgPool, nk.SumPool]))
    pad = draw(st.sampled_from(["valid", "same"]))
    return pool(2, padding=pad, normalize_edges=pad == "same" and draw(st.booleans()))


def _inputs(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    n1, n2 = draw(st.integers(2, 5)), draw(st.integers(1, 4))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x1 = torch.randn(n1, *shape, generator=g, dtype=F64)
    x2 = torch.randn(n2, *shape, generator=g, dtype=F64)
    if draw(st.booleans()):  # an exact duplicate inside x1 and across x1, x2
        x1[-1] = x1[0]
        x2[0] = x1[0]
    return x1, x2


@st.composite
def fc_networks(draw: st.DrawFn, max_depth: int = 3) -> Case:
    """Fully connected networks on ``(n, d)`` inputs."""
    d, width = draw(st.integers(1, 4)), draw(WIDTHS)
    layers: list[nk.Layer] = [_dense(width, draw)]  # blocks keep the width
    for _ in range(draw(st.integers(1, max_depth))):
        layers += draw(_fc_block(width))
    layers.append(_dense(1, draw))
    x1, x2 = _inputs(draw, (d,))
    return Case(nk.Sequential(*layers), (d,), x1, x2)


@st.composite
def conv_networks(draw: st.DrawFn, max_depth: int = 2) -> Case:
    """Convolutional networks on ``(n, C, H)`` or ``(n, C, H, W)`` inputs (channels first)."""
    ndim = draw(st.sampled_from([1, 2]))
    chans, size0 = draw(st.integers(1, 2)), draw(st.integers(3, 5))
    width, shape = draw(WIDTHS), (chans, *([size0] * ndim))
    layers: list[nk.Layer] = []
    for _ in range(draw(st.integers(1, max_depth))):
        layers += draw(_conv_block(width, _size(layers, shape), not layers))
        if _size(layers, shape) >= 2 and draw(st.booleans()):
            layers.append(_pooling(draw))
    layers.append(draw(st.sampled_from([nk.Flatten(), nk.GlobalAvgPool()])))
    layers.append(_dense(1, draw))
    x1, x2 = _inputs(draw, shape)
    return Case(nk.Sequential(*layers), shape, x1, x2)


def _size(layers: list[nk.Layer], shape: tuple[int, ...]) -> int:
    """The smallest spatial size after ``layers`` on inputs of feature shape ``shape``."""
    return min(nk.Sequential(*layers).out_shape(shape)[1:]) if layers else min(shape[1:])


def networks() -> st.SearchStrategy[Case]:
    """Fully connected or convolutional networks with inputs."""
    return st.one_of(fc_networks(), conv_networks())
