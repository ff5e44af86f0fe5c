"""Input masking (``mask_constant``): Neural Tangents' values, unpadded inputs, twins."""

from __future__ import annotations

import math

import pytest
import torch

import neural_kernels as nk

from .._support.nt16 import assert_matches, channels_first, load


def _conv_gap() -> nk.Sequential:
    return nk.Sequential(
        nk.Conv(8, 3, padding="same", w_std=1.3, b_std=0.1),
        nk.ReLU(),
        nk.Conv(8, 3, padding="same", w_std=1.1, b_std=0.2),
        nk.Erf(),
        nk.GlobalAvgPool(),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )


def _pool_flatten() -> nk.Layer:
    return nk.Sequential(
        nk.Conv(6, 3, padding="same", w_std=1.4, b_std=0.1),
        nk.ReLU(),
        nk.AvgPool(2, stride=1, padding="same"),
        nk.Conv(6, 3, stride=2, padding="valid", w_std=1.2, b_std=0.05),
        nk.ReLU(),
        nk.Flatten(),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )


def _attention() -> nk.Layer:
    return nk.Sequential(
        nk.Dense(8, w_std=1.2, b_std=0.1),
        nk.ReLU(),
        nk.GlobalSelfAttention(
            8, 8, 8, n_heads=2, w_key_std=1.3, w_value_std=1.1, w_query_std=0.9, b_std=0.1
        ),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )


def _residual_attention() -> nk.Sequential:
    """Neural Tangents' IMDB shape: convolutions with a skip, then attention."""
    return nk.Sequential(
        nk.Conv(8, 3, padding="same", w_std=1.4, b_std=0.1),
        nk.Residual(nk.ReLU(), nk.Conv(8, 3, padding="same", w_std=1.2, b_std=0.05)),
        nk.ReLU(),
        nk.ChannelsLast(),
        nk.GlobalSelfAttention(8, 8, 8, n_heads=2, b_std=None),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1, w_std=1.0, b_std=0.1),
    )


CASES = {  # network, channels first, reference arrays
    "conv_gap": (_conv_gap, True, lambda: load("mask_conv_gap")),
    "pool_flatten": (_pool_flatten, True, lambda: load("mask_pool_flatten")),
    "attention": (_attention, False, lambda: load("mask_attention")),
    "residual_attention": (_residual_attention, True, lambda: load("mask_residual_attention")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_neural_tangents(case: str) -> None:
    build, first, arrays = CASES[case]
    ref = arrays()
    c = float(ref["mask_constant"])
    x1, x2 = ref["x1"], ref["x2"]
    if first:
        x1, x2 = channels_first(x1), channels_first(x2)
    net = build()
    assert_matches(net, ref, x1, x2, rtol=1e-9, diag_rtol=1e-9, mask_constant=c)
    diag = net.kernel_diag(x1, mask_constant=c)
    for name in ("nngp", "ntk"):
        want = ref[f"{name}_11"].diagonal()
        torch.testing.assert_close(getattr(diag, name), want, rtol=1e-9, atol=0.0)


def test_blocks_give_the_same_kernel() -> None:
    ref = load("mask_conv_gap")
    x1, x2 = channels_first(ref["x1"]), channels_first(ref["x2"])
    net = _conv_gap()
    calls: list[tuple[int, int]] = []
    whole = net.kernel(x1, x2, mask_constant=-5.0)
    tiled = net.kernel(
        x1, x2, mask_constant=-5.0, block_size=(3, 2), progress=lambda d, t: calls.append((d, t))
    )
    torch.testing.assert_close(tiled.ntk, whole.ntk, rtol=1e-13, atol=0.0)
    assert calls[-1] == (12, 12) and len(calls) == 4
    sym = net.kernel(x1, mask_constant=-5.0, block_size=3)
    torch.testing.assert_close(sym.nngp, sym.nngp.T, rtol=1e-13, atol=0.0)
    torch.testing.assert_close(sym.nngp, ref["nngp_11"], rtol=1e-9, atol=0.0)
    diag = net.kernel_diag(x1, mask_constant=-5.0)
    assert torch.equal(sym.nngp.diagonal(), diag.nngp) and torch.equal(sym.ntk.diagonal(), diag.ntk)


def _padded(seqs: list[torch.Tensor], length: int, c: float) -> torch.Tensor:
    """Channels-first sequences ``(C, L_i)`` padded with ``c`` to ``(n, C, length)``."""
    out = torch.full((len(seqs), seqs[0].shape[0], length), c, dtype=torch.float64)
    for i, s in enumerate(seqs):
        out[i, :, : s.shape[1]] = s
    return out


def test_padding_trailing_sequences_equals_the_unpadded_kernel() -> None:
    # zero-padding convolutions see the masked tail as their own zero padding
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 2, 5, generator=g, dtype=torch.float64)
    b = torch.randn(2, 2, 5, generator=g, dtype=torch.float64)
    net = _conv_gap()
    plain = net.kernel(a, b)
    masked = net.kernel(_padded(list(a), 9, -7.0), _padded(list(b), 9, -7.0), mask_constant=-7.0)
    torch.testing.assert_close(masked.nngp, plain.nngp, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(masked.ntk, plain.ntk, rtol=1e-12, atol=0.0)
    # attention (channels last): masked keys are never attended to
    att = _attention()
    xs = torch.randn(3, 4, 3, generator=g, dtype=torch.float64)
    padded = torch.cat([xs, torch.full((3, 2, 3), math.nan, dtype=torch.float64)], dim=1)
    got, want = att.kernel(padded, mask_constant=math.nan), att.kernel(xs)
    torch.testing.assert_close(got.nngp, want.nngp, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(got.ntk, want.ntk, rtol=1e-12, atol=0.0)


def _readout(net: nk.Sequential, width: int) -> nk.Layer:
    """``net`` with a readout of ``width`` units (the same kernel per unit)."""
    return nk.Sequential(*net.layers[:-1], nk.Dense(width, w_std=1.0, b_std=0.1))


@pytest.mark.parametrize("case", ["conv_gap", "residual_attention"])
def test_twins_on_unpadded_sequences_agree_with_the_masked_kernel(case: str) -> None:
    """Monte Carlo: finite twins run on each sequence without its padding."""
    g = torch.Generator().manual_seed(1)
    lengths = [8, 5, 3, 6]
    seqs = [torch.randn(2, n, generator=g, dtype=torch.float64) for n in lengths]
    net = _readout(CASES[case][0](), 64)
    exact = net.kernel(_padded(seqs, 8, -7.0), mask_constant=-7.0).nngp
    samples, width = 40, 192
    draws = []
    for _ in range(samples):
        model = net.module((2, 8), width=width, generator=g, dtype=torch.float64)
        with torch.no_grad():
            f = torch.cat([model(s[None]) for s in seqs])  # (n, 64), each at its own length
        draws.append(f @ f.T / f.shape[1])
    stack = torch.stack(draws)
    est, err = stack.mean(0), stack.std(0) / math.sqrt(samples)
    bad = (est - exact).abs() > 5 * err + 0.03 * exact.abs().max()
    assert not bool(bad.any()), f"{est} vs {exact} (stderr {err})"
    # the different lengths matter: the unmasked kernel of the padded inputs differs
    assert float((exact - net.kernel(_padded(seqs, 8, 0.0)).nngp).abs().max()) > 0.05


def test_unsupported_layers_and_options_are_refused() -> None:
    x = torch.randn(3, 2, 5, dtype=torch.float64)
    x[0, :, 3:] = 0.0
    net = nk.Sequential(nk.Conv(4, 3), nk.Flatten(), nk.Dense(4), nk.LayerNorm(), nk.Dense(1))
    with pytest.raises(nk.LayerCompatibilityError, match=r"LayerNorm.*does not support"):
        net.kernel(x, mask_constant=0.0)
    with pytest.raises(nk.LayerCompatibilityError, match="circular"):
        nk.Sequential(nk.Conv(4, 3, padding="circular"), nk.Flatten()).kernel(x, mask_constant=0.0)
    ok = nk.Sequential(nk.Conv(4, 3), nk.ReLU(), nk.GlobalAvgPool(), nk.Dense(1))
    with pytest.raises(nk.HyperparameterError, match="mask_constant of type str"):
        ok.kernel(x, mask_constant="pad")
    with pytest.raises(nk.LayerCompatibilityError, match="store"):
        ok.kernel(x, mask_constant=0.0, store="somewhere")
    x[1] = 0.0  # every position of example 1 masked: its average is undefined
    with pytest.raises(nk.ShapeError, match="example 1 has every position masked"):
        ok.kernel_diag(x, mask_constant=0.0)
    # None (the default) is no masking
    torch.testing.assert_close(ok.kernel(x, mask_constant=None).nngp, ok.kernel(x).nngp)
