"""Convolutions, pooling and flattening: properties, Monte Carlo, geometry, errors."""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk
from neural_kernels.core.plan import plan_network

from .._support.properties import assert_kernel_properties


def _cnn(*middle: nk.Layer, readout: nk.Layer | None = None) -> nk.Sequential:
    return nk.Sequential(*middle, readout or nk.Dense(1, w_std=1.0, b_std=0.1))


NETWORKS = {
    "conv2d_same_flatten": (
        _cnn(nk.Conv(4, 3, w_std=1.5, b_std=0.1, padding="same"), nk.ReLU(), nk.Flatten()),
        (2, 5, 5),
    ),
    "conv2d_valid_strided_gap": (
        _cnn(
            nk.Conv(4, (3, 2), stride=(2, 1), padding="valid", w_std=1.4),
            nk.Erf(),
            nk.GlobalAvgPool(),
        ),
        (2, 7, 6),
    ),
    "conv2d_circular_dilated_gsp": (
        _cnn(
            nk.Conv(4, 3, padding="circular", dilation=2, b_std=0.2), nk.ReLU(), nk.GlobalSumPool()
        ),
        (1, 6, 6),
    ),
    "conv1d_standard": (
        _cnn(
            nk.Conv(4, 3, parametrization="standard", b_std=0.1, padding="same"),
            nk.Abs(),
            nk.Conv(3, 2, padding="valid", parametrization="standard"),
            nk.Flatten(),
            readout=nk.Dense(1, parametrization="standard"),
        ),
        (3, 7),
    ),
    "conv3d": (
        _cnn(
            nk.Conv(3, (2, 3, 3), w_std=1.3, b_std=0.1, padding="same"),
            nk.ReLU(),
            nk.GlobalAvgPool(),
        ),
        (2, 2, 3, 3),
    ),
    "avgpool_same_edges": (
        _cnn(
            nk.Conv(4, 3, w_std=1.5, padding="same"),
            nk.ReLU(),
            nk.AvgPool(3, 1, padding="same", normalize_edges=True),
            nk.Flatten(),
        ),
        (2, 5, 5),
    ),
    "sumpool_valid": (
        _cnn(
            nk.Conv(4, 3, padding="same"),
            nk.ReLU(),
            nk.SumPool(2),
            nk.Conv(4, 2, padding="same"),
            nk.ReLU(),
            nk.GlobalAvgPool(),
        ),
        (1, 6, 6),
    ),
    "layernorm_spatial": (
        _cnn(
            nk.Conv(4, 3, b_std=0.3, padding="same"),
            nk.LayerNorm(axis=(1, 2, 3)),
            nk.ReLU(),
            nk.Conv(4, 3, padding="same"),
            nk.LayerNorm(axis=1),
            nk.ReLU(),
            nk.GlobalAvgPool(),
        ),
        (2, 4, 4),
    ),
    "residual_cnn": (
        _cnn(
            nk.Conv(4, 3, b_std=0.1, padding="same"),
            nk.Residual(nk.ReLU(), nk.Conv(4, 3, w_std=1.2, padding="same")),
            nk.ReLU(),
            nk.GlobalAvgPool(),
        ),
        (2, 5, 5),
    ),
    "sequence_dense_flatten": (
        _cnn(nk.Dense(6, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Flatten()),
        (4, 3),
    ),
    "sequence_dense_gap": (
        _cnn(nk.Dense(6, w_std=1.5, b_std=0.1), nk.GELU(), nk.GlobalAvgPool()),
        (4, 3),
    ),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_spatial_layer_properties(name: str) -> None:
    net, shape = NETWORKS[name]
    x1 = torch.randn(5, *shape, dtype=torch.float64)
    x1[3] = x1[0]
    x2 = torch.randn(3, *shape, dtype=torch.float64)
    assert_kernel_properties(net, x1, x2)


def _mixing(net: nk.Layer) -> bool:
    return plan_network(net, (2, 5, 5), lambda: "test").mixing


def test_full_and_diagonal_layouts_agree_before_flatten() -> None:
    # Forcing the full layout (by pooling with a window of one) changes nothing.
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    body = (
        nk.Conv(4, 3, w_std=1.5, b_std=0.1, padding="same"),
        nk.ReLU(),
        nk.Conv(4, 3, padding="same"),
        nk.ReLU(),
    )
    diagonal = nk.Sequential(*body, nk.Flatten(), nk.Dense(1))
    full = nk.Sequential(*body, nk.AvgPool(1), nk.Flatten(), nk.Dense(1))
    assert not _mixing(diagonal) and _mixing(full)
    a, b = diagonal.kernel(x), full.kernel(x)
    torch.testing.assert_close(a.nngp, b.nngp, rtol=1e-12, atol=0)
    torch.testing.assert_close(a.ntk, b.ntk, rtol=1e-12, atol=0)


def test_layout_switches_to_diagonal_after_the_last_pooling() -> None:
    # Conv, pool, conv, flatten: the second conv runs on same-position entries only.
    net = nk.Sequential(
        nk.Conv(4, 3, b_std=0.1, padding="same"),
        nk.ReLU(),
        nk.AvgPool(2),
        nk.Conv(4, 3, padding="same"),
        nk.ReLU(),
        nk.Flatten(),
        nk.Dense(1),
    )
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    calls: list[str] = []

    class Spy(nk.Identity):
        def transform(self, k):  # type: ignore[no-untyped-def]
            calls.append(k.layout)
            return k

    spied = nk.Sequential(*net.layers[:4], Spy(), *net.layers[4:])
    torch.testing.assert_close(spied.kernel(x).ntk, net.kernel(x).ntk, rtol=0, atol=0)
    assert set(calls) == {"diagonal"}
    # the same network forced to stay full (a pooling window of one at the end) agrees
    full = nk.Sequential(*net.layers[:5], nk.AvgPool(1), *net.layers[5:])
    torch.testing.assert_close(full.kernel(x).ntk, net.kernel(x).ntk, rtol=1e-12, atol=0)


def test_spatial_output_kernel_layout() -> None:
    # Without a readout the kernel keeps its position pairs, interleaved (n1, n2, H, H', W, W').
    net = nk.Sequential(nk.Conv(3, 3, padding="same"), nk.ReLU(), nk.AvgPool(2))
    x1 = torch.randn(3, 2, 4, 6, dtype=torch.float64)
    x2 = torch.randn(2, 2, 4, 6, dtype=torch.float64)
    k12 = net.kernel(x1, x2)
    assert k12.nngp.shape == (3, 2, 2, 2, 3, 3)
    k11 = net.kernel(torch.cat([x1, x2]))
    torch.testing.assert_close(k11.nngp[:3, 3:], k12.nngp, rtol=1e-12, atol=1e-15)
    # k(x_j, x_i) is k(x_i, x_j) with each position pair swapped
    torch.testing.assert_close(
        k11.nngp[3:, :3], k12.nngp.permute(1, 0, 3, 2, 5, 4), rtol=1e-12, atol=1e-15
    )


def test_spatial_output_in_diagonal_layout_is_mirrored_correctly() -> None:
    # No pooling: same-position covariances (n1, n2, H, W) on a non-square input.
    net = nk.Sequential(nk.Conv(3, 3, padding="same"), nk.ReLU(), nk.Conv(2, 3, padding="same"))
    x = torch.randn(4, 2, 3, 5, dtype=torch.float64)
    k = net.kernel(x)
    assert k.nngp.shape == (4, 4, 3, 5)
    torch.testing.assert_close(k.nngp, net.kernel(x, x).nngp, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(k.ntk, k.ntk.transpose(0, 1), rtol=0, atol=0)


def test_layout_option_for_spatial_outputs() -> None:
    net = nk.Sequential(
        nk.Conv(4, 3, w_std=1.5, b_std=0.1, padding="same"),
        nk.ReLU(),
        nk.Conv(4, 3, padding="same"),
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, 4, 5, generator=g, dtype=torch.float64)
    y = torch.randn(3, 2, 4, 5, generator=g, dtype=torch.float64)
    default = net.kernel(x, y)
    full = net.kernel(x, y, layout="full")
    assert full.layout == "full" and full.nngp.shape == (5, 3, 4, 4, 5, 5)
    assert full.cov1.shape == (5, 4, 4, 5, 5)
    for name in ("nngp", "ntk"):  # the same-position entries are the default layout's
        same = torch.einsum("ijaabb->ijab", getattr(full, name))
        torch.testing.assert_close(same, getattr(default, name), rtol=1e-12, atol=1e-15)
    # averaging every position pair is global average pooling
    gap = nk.Sequential(*net.layers, nk.GlobalAvgPool()).kernel(x, y)
    torch.testing.assert_close(full.ntk.mean(dim=(2, 3, 4, 5)), gap.ntk, rtol=1e-12, atol=0)
    # the symmetric path mirrors the position pairs; kernel_diag is the matrix's diagonal
    sym = net.kernel(x, layout="full")
    torch.testing.assert_close(sym.nngp, net.kernel(x, x, layout="full").nngp, rtol=1e-12, atol=0)
    diag = net.kernel_diag(x, layout="full")
    torch.testing.assert_close(diag.ntk, torch.stack([sym.ntk[i, i] for i in range(5)]))
    # a pooled output asked for in the diagonal layout
    pooled = nk.Sequential(nk.Conv(3, 3, padding="same"), nk.ReLU(), nk.AvgPool(2))
    got = pooled.kernel(x, layout="diagonal")
    assert got.layout == "diagonal" and got.nngp.shape == (5, 5, 2, 2)
    want = torch.einsum("ijaabb->ijab", pooled.kernel(x).nngp)
    torch.testing.assert_close(got.nngp, want, rtol=0, atol=0)
    with pytest.raises(nk.HyperparameterError, match="layout='both'"):
        net.kernel(x, layout="both")


def test_full_layout_output_matches_finite_networks() -> None:
    # covariance between every two output positions of wide finite twins
    net = nk.Sequential(
        nk.Conv(8, 3, w_std=1.4, b_std=0.2, padding="same"),
        nk.ReLU(),
        nk.Conv(8, (2, 3), padding="same"),
    )
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = net.kernel(x, layout="full", get="nngp").nngp
    total = torch.zeros_like(want)
    seeds = 400  # relative error falls like 1/sqrt(seeds): 0.11, 0.051, 0.030 at 100, 400, 1600
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        model = net.module(x.shape[1:], width=256, generator=g, dtype=torch.float64)
        with torch.no_grad():
            f = model(x)  # (3, 8, 4, 4): the readout keeps its 8 channels
        total += torch.einsum("icab,jcde->ijadbe", f, f) / f.shape[1]
    got = total / seeds
    err = float((got - want).norm() / want.norm())
    assert err < 0.08, err


MC_NETWORKS = {
    "conv_dilated_flatten": (
        nk.Sequential(
            nk.Conv(8, 3, dilation=2, w_std=1.5, b_std=0.1, padding="same"),
            nk.ReLU(),
            nk.Flatten(),
            nk.Dense(1, w_std=1.0, b_std=0.1),
        ),
        (2, 6, 6),
    ),
    "conv_strided_circular_gap": (
        nk.Sequential(
            nk.Conv(8, (3, 2), stride=2, padding="circular", w_std=1.4, b_std=0.1),
            nk.Erf(),
            nk.GlobalAvgPool(),
            nk.Dense(1),
        ),
        (2, 6, 5),
    ),
    "conv1d_avgpool": (
        nk.Sequential(
            nk.Conv(8, 3, b_std=0.1, padding="same"),
            nk.ReLU(),
            nk.AvgPool(2, padding="same", normalize_edges=True),
            nk.Conv(8, 2, padding="valid"),
            nk.ReLU(),
            nk.GlobalSumPool(),
            nk.Dense(1),
        ),
        (2, 7),
    ),
    "conv3d_layernorm": (
        nk.Sequential(
            nk.Conv(8, (1, 2, 2), b_std=0.2, padding="same"),
            nk.LayerNorm(axis=1),
            nk.ReLU(),
            nk.Flatten(),
            nk.Dense(1),
        ),
        (1, 3, 3, 3),
    ),
}


@pytest.mark.parametrize("name", sorted(MC_NETWORKS))
def test_finite_twins_converge(name: str) -> None:
    net, shape = MC_NETWORKS[name]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, *shape, dtype=torch.float64, generator=gen)
    exact = net.kernel(x)
    errors = []
    for width, samples in ((8, 16), (128, 32)):
        mc = nk.monte_carlo_kernel(
            net, x, n_samples=samples, width=width, generator=torch.Generator().manual_seed(width)
        )
        for which in ("nngp", "ntk"):
            est, err, ref = (
                getattr(mc, which),
                getattr(mc, which + "_stderr"),
                getattr(exact, which),
            )
            if width == 128:
                assert ((est - ref).abs() <= 5 * err + 0.02 * ref.abs().max()).all(), which
        errors.append(float((mc.ntk - exact.ntk).norm() / exact.ntk.norm()))
    assert errors[1] < errors[0]


def test_standard_parametrization_twins_converge_at_declared_widths() -> None:
    # The standard NTK depends on the finite widths: the twin keeps the declared ones.
    net = nk.Sequential(
        nk.Conv(96, 3, parametrization="standard", b_std=0.1, padding="same"),
        nk.ReLU(),
        nk.AvgPool(2, padding="same", normalize_edges=True),
        nk.Conv(96, 2, padding="valid", parametrization="standard"),
        nk.ReLU(),
        nk.GlobalSumPool(),
        nk.Dense(1, parametrization="standard"),
    )
    x = torch.randn(3, 2, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    exact = net.kernel(x)
    mc = nk.monte_carlo_kernel(net, x, n_samples=32, generator=torch.Generator().manual_seed(4))
    for which in ("nngp", "ntk"):
        est, err, ref = getattr(mc, which), getattr(mc, which + "_stderr"), getattr(exact, which)
        assert ((est - ref).abs() <= 5 * err + 0.02 * ref.abs().max()).all(), which


def test_module_shapes_match_out_shape() -> None:
    for net, shape in NETWORKS.values():
        model = net.module(shape, dtype=torch.float64)
        y = model(torch.randn(2, *shape, dtype=torch.float64))
        assert tuple(y.shape[1:]) == net.out_shape(shape)


def test_conv_geometry() -> None:
    conv = nk.Conv(5, (3, 2), stride=(2, 1), padding="valid", dilation=(1, 2))
    assert conv.out_shape((2, 9, 8)) == (5, 4, 6)
    assert nk.Conv(5, 3, stride=2, padding="same").out_shape((2, 9, 8)) == (5, 5, 4)
    assert nk.AvgPool(2).out_shape((3, 9, 8)) == (3, 4, 4)
    assert nk.AvgPool(3, 2, padding="same").out_shape((3, 9, 8)) == (3, 5, 4)
    assert nk.Sequential(nk.Conv(5, 3, padding="same"), nk.Flatten()).out_shape((2, 4, 4)) == (80,)
    assert nk.Sequential(nk.Conv(5, 3, padding="same"), nk.GlobalAvgPool()).out_shape(
        (2, 4, 4)
    ) == (5,)


def test_finite_conv_matches_torch_same_padding() -> None:
    # stride-1 'same' with an odd filter is torch's padding='same'
    layer = nk.Conv(3, 3, w_std=1.0, b_std=None, parametrization="standard", padding="same")
    model = layer.module((2, 5, 5), dtype=torch.float64)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    expected = torch.nn.functional.conv2d(x, model.weight, padding="same")
    torch.testing.assert_close(model(x), expected)


BAD = {
    "gap after flatten": (
        lambda: nk.Sequential(
            nk.Conv(2, 3, padding="same"), nk.Flatten(), nk.GlobalAvgPool()
        ).out_shape((1, 4, 4)),
        nk.ShapeError,
        ("GlobalAvgPool", "before Flatten"),
    ),
    "kernel larger than valid input": (
        lambda: nk.Conv(2, 5, padding="valid").out_shape((1, 3, 3)),
        nk.ShapeError,
        ("Conv", "padding='same'"),
    ),
    "conv on flat input": (
        lambda: nk.Sequential(nk.Dense(3), nk.Conv(2, 3, padding="same")).out_shape((4,)),
        nk.ShapeError,
        ("Conv", "spatial"),
    ),
    "conv after dense on a sequence": (
        lambda: nk.Sequential(nk.Dense(3), nk.Conv(2, 3, padding="same")).out_shape((5, 4)),
        nk.LayerCompatibilityError,
        ("Conv", "channels last"),
    ),
    "dense after conv": (
        lambda: nk.Sequential(nk.Conv(2, 3, padding="same"), nk.Dense(3)).out_shape((1, 4, 4)),
        nk.LayerCompatibilityError,
        ("Dense", "Flatten()"),
    ),
    "four spatial axes": (
        lambda: nk.Conv(2, 3, padding="same").out_shape((1, 3, 3, 3, 3)),
        nk.ShapeError,
        ("Conv", "(N, C, H, W)"),
    ),
    "bad padding": (lambda: nk.Conv(2, 3, padding="full"), nk.HyperparameterError, ("'valid'",)),
    "zero stride": (
        lambda: nk.Conv(2, 3, stride=0, padding="same"),
        nk.HyperparameterError,
        ("stride",),
    ),
    "filter rank mismatch": (
        lambda: nk.Conv(2, (3, 3), padding="same").out_shape((1, 5)),
        nk.HyperparameterError,
        ("kernel_size", "1 spatial axes"),
    ),
    "pool window too large": (
        lambda: nk.AvgPool(4).out_shape((1, 3, 3)),
        nk.ShapeError,
        ("AvgPool", "window"),
    ),
    "layernorm without channel axis": (
        lambda: nk.Sequential(nk.Conv(2, 3, padding="same"), nk.LayerNorm(axis=2)).out_shape(
            (1, 4, 4)
        ),
        nk.ShapeError,
        ("LayerNorm", "channel axis (1)"),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spatial_networks(case: str) -> None:
    call, kind, fragments = BAD[case]
    with pytest.raises(kind) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
