"""The compiled kernels agree with the eager PyTorch path they replace.

Every compiled function (``neural_kernels._native``) has an eager twin; these tests run
both on the same inputs: the arc-cosine duals, the full-layout convolution for every
geometry the compiled path takes, the fused convolution + activation, whole networks,
and the fallbacks (disabled, no compiler).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import neural_kernels as nk
from neural_kernels import _native
from neural_kernels.core import KernelBlock
from neural_kernels.core.plan import plan_network

ROOT = Path(__file__).resolve().parents[2]
HAS_CC = any(shutil.which(c) for c in (os.environ.get("CC") or "cc", "gcc", "clang"))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def test_status_reports_the_compiled_kernels() -> None:
    status = nk.native_status()
    assert set(status) == {"enabled", "available", "reason", "path"}
    if HAS_CC:  # a machine with a C compiler must build them (no silent fallback)
        assert status["available"], status["reason"]
        assert Path(str(status["path"])).exists()


def test_set_native_toggles_and_returns_previous() -> None:
    before = nk.set_native(False)
    try:
        assert nk.native_status()["available"] is False
        assert nk.set_native(True) is False
    finally:
        nk.set_native(before)


ACTIVATIONS = [nk.ReLU(), nk.LeakyReLU(0.2), nk.ABReLU(-0.5, 1.5), nk.Abs()]


@pytest.mark.parametrize("layer", ACTIVATIONS, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_arccos_dual_matches_eager(layer: nk.Layer, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    q1 = torch.rand(7, 1, generator=g, dtype=dtype) * 3 + 0.1
    q2 = torch.rand(1, 9, generator=g, dtype=dtype) * 3 + 0.1
    c = torch.rand(7, 9, generator=g, dtype=dtype) * 2 - 1
    c[0, :3] = torch.tensor([1.0, -1.0, 0.0], dtype=dtype)  # the edges of the domain
    k = c * (q1 * q2).sqrt()
    q1[3] = 0.0  # a zero variance (then k = 0 too)
    k[3] = 0.0
    ntk = torch.rand(7, 9, generator=g, dtype=dtype)
    for t in (ntk, None):
        fast = layer.dual_kernels(k, q1, q2, t)
        with _native.disabled():
            slow = layer.dual_kernels(k, q1, q2, t)
        tol = 1e-13 if dtype == torch.float64 else 2e-6
        assert _rel(fast[0], slow[0]) <= tol
        assert torch.isfinite(fast[0]).all()
        if t is not None:
            assert _rel(fast[1], slow[1]) <= tol
        else:
            assert fast[1] is None


def test_arccos_dual_with_grad_uses_the_differentiable_path() -> None:
    k = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
    q = torch.ones(1, 1, dtype=torch.float64)
    out, _ = nk.ReLU().dual_kernels(k, q, q, None)
    out.sum().backward()
    assert k.grad is not None and torch.isfinite(k.grad).all()


GEOMETRIES = [
    # spatial, kernel_size, stride, padding, dilation
    ((8, 8), 3, 1, "same", 1),
    ((7, 5), (3, 2), 1, "same", 1),
    ((9,), 3, 2, "same", 1),
    ((9, 6), 3, (2, 1), "valid", (1, 2)),
    ((5, 4, 6), (3, 1, 2), (1, 2, 1), "same", 1),
    ((10,), 4, 1, "same", 2),
    ((6, 6), 2, 1, "same", 1),
    ((6, 7), 5, 1, "same", (2, 1)),
    ((11,), 3, 3, "valid", 1),
]


def _pair_kernel(spatial: tuple[int, ...], n1: int, n2: int, dtype: torch.dtype) -> KernelBlock:
    """A random full-layout kernel (from feature Gram matrices, so it is a covariance)."""
    g = torch.Generator().manual_seed(1)
    p = math.prod(spatial)
    f1 = torch.randn(n1, p, 5, generator=g, dtype=dtype)
    f2 = torch.randn(n2, p, 5, generator=g, dtype=dtype)

    def interleave(t: torch.Tensor, lead: int) -> torch.Tensor:
        s = len(spatial)
        t = t.reshape(*t.shape[:lead], *spatial, *spatial)
        perm = list(range(lead)) + [lead + i + j * s for i in range(s) for j in (0, 1)]
        return t.permute(perm).contiguous()

    gram = torch.einsum("apc,bqc->abpq", f1, f2) / 5
    c1 = interleave(torch.einsum("apc,aqc->apq", f1, f1) / 5, 1)
    c2 = interleave(torch.einsum("apc,aqc->apq", f2, f2) / 5, 1)
    return KernelBlock(
        nngp=interleave(gram, 2),
        ntk=interleave(gram, 2) * 1.7,
        cov1=c1,
        cov2=c2,
        shape1=(5, *spatial),
        shape2=(5, *spatial),
        layout="full",
        channel_axis=0,
    )


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
@pytest.mark.parametrize("b_std", [0.3, None])
def test_full_layout_convolution_matches_eager(
    geometry: tuple, parametrization: str, b_std: float | None
) -> None:
    spatial, size, stride, padding, dilation = geometry
    conv = nk.Conv(4, size, stride, padding, dilation, 1.3, b_std, parametrization)
    for dtype, tol in ((torch.float64, 1e-13), (torch.float32, 1e-5)):
        k = _pair_kernel(spatial, 3, 4, dtype)
        fast = conv.transform(k)
        with _native.disabled():
            slow = conv.transform(k)
        for name in ("nngp", "ntk", "cov1", "cov2"):
            a, b = getattr(fast, name), getattr(slow, name)
            assert a.shape == b.shape, name
            assert _rel(a, b) <= tol, name
        assert fast.shape1 == slow.shape1


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
def test_fused_convolution_and_activation_matches_eager(geometry: tuple, act: nk.Layer) -> None:
    spatial, size, stride, padding, dilation = geometry
    conv = nk.Conv(4, size, stride, padding, dilation, 1.3, 0.2)
    k = _pair_kernel(spatial, 3, 4, torch.float64)
    with _native.disabled():
        mid = conv.transform(k)
        want = act.transform(mid)
    variances = (mid.variances(mid.cov1), mid.variances(mid.cov2))
    got = conv.fuse_next(k, act, variances)
    assert got is not None
    assert _rel(got.nngp, want.nngp) <= 1e-13
    assert _rel(got.ntk, want.ntk) <= 1e-13
    assert got.is_gaussian is False and got.shape1 == want.shape1


def test_fusion_declines_what_it_does_not_cover() -> None:
    k = _pair_kernel((6, 6), 2, 2, torch.float64)
    v = (torch.ones(2, 6, 6, dtype=torch.float64),) * 2
    assert nk.Conv(3, padding="circular").fuse_next(k, nk.ReLU(), v) is None
    assert nk.Conv(3, padding="same").fuse_next(k, nk.Erf(), v) is None  # not an arc-cosine dual
    with _native.disabled():
        assert nk.Conv(3, padding="same").fuse_next(k, nk.ReLU(), v) is None


NETWORKS = {
    "cnn_gap": lambda: nk.Sequential(
        *[nk.Conv(8, 3, w_std=1.4, b_std=0.1, padding="same"), nk.ReLU()] * 3,
        nk.GlobalAvgPool(),
        nk.Dense(1),
    ),
    "cnn_flatten": lambda: nk.Sequential(
        nk.Conv(8, 3, w_std=1.4, b_std=0.1, padding="same"),
        nk.LeakyReLU(0.1),
        nk.Flatten(),
        nk.Dense(1),
    ),
    "myrtle_like": lambda: nk.Sequential(
        nk.Conv(8, 3, w_std=1.4, padding="same"),
        nk.ReLU(),
        nk.AvgPool(2, 2),
        nk.Conv(8, 3, w_std=1.4, parametrization="standard", padding="same"),
        nk.Abs(),
        nk.AvgPool(2, 2),
        nk.Flatten(),
        nk.Dense(3),
    ),
    "strided_dilated": lambda: nk.Sequential(
        nk.Conv(8, 3, stride=2, dilation=1, padding="same"),
        nk.ReLU(),
        nk.Conv(8, 2, dilation=2, padding="valid"),
        nk.ABReLU(-0.3, 1.0),
        nk.GlobalSumPool(),
        nk.Dense(1),
    ),
    "residual": lambda: nk.Sequential(
        nk.Conv(8, 3, padding="same"),
        nk.Residual(nk.ReLU(), nk.Conv(8, 3, padding="same"), nk.LayerNorm(axis=(1, 2, 3))),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1),
    ),
    "branches": lambda: nk.Sequential(  # steps whose outputs are tuples of branches
        nk.Conv(8, 3, padding="same"),
        nk.FanOut(2),
        nk.Parallel(nk.ReLU(), nk.Identity()),
        nk.FanInSum(),
        nk.Conv(8, 3, padding="same"),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1),
    ),
    "dropout": lambda: nk.Sequential(  # no replayed variances: whole self-covariances
        nk.Conv(8, 3, padding="same"),
        nk.ReLU(),
        nk.Dropout(0.2),
        nk.Conv(8, 3, padding="same"),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(2),
    ),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_networks_agree_with_and_without_compiled_kernels(name: str, dtype: torch.dtype) -> None:
    net = NETWORKS[name]()
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(6, 2, 8, 8, generator=g, dtype=dtype)
    x2 = torch.randn(5, 2, 8, 8, generator=g, dtype=dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for args in ((x1, None), (x1, x2)):
        fast = net.kernel(*args, block_size=3)
        with _native.disabled():
            slow = net.kernel(*args)
        for field in ("nngp", "ntk", "cov1", "cov2"):
            assert _rel(getattr(fast, field), getattr(slow, field)) <= tol, field


def _replays(net: nk.Layer, shape: tuple[int, ...] = (2, 8, 8)) -> bool:
    return plan_network(net, shape, lambda: "test").replays


@pytest.mark.parametrize("name", sorted(set(NETWORKS) - {"dropout"}))
def test_replayed_variances_equal_carried_self_covariances(name: str) -> None:
    net = NETWORKS[name]()
    assert _replays(net)
    # Dropout(0) changes nothing but makes the engine carry whole self-covariances
    carried = nk.Sequential(*net.layers[:-1], nk.Dropout(0.0), net.layers[-1])
    assert not _replays(carried)
    x = torch.randn(6, 2, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for args in ((x, None), (x, y)):
        a, b = net.kernel(*args, block_size=4), carried.kernel(*args)
        for field in ("nngp", "ntk", "cov1", "cov2"):
            assert _rel(getattr(a, field), getattr(b, field)) <= 1e-12, field


def test_replayed_variances_only_where_exact() -> None:
    assert _replays(NETWORKS["cnn_gap"]())
    assert _replays(NETWORKS["residual"]())
    pooled_inside = nk.Sequential(
        nk.Conv(4, padding="same"), nk.Residual(nk.AvgPool(1, 1)), nk.GlobalAvgPool()
    )
    assert not _replays(pooled_inside)
    # nested serial layers are flattened into steps: pooling inside them still replays
    nested = nk.Sequential(
        nk.Sequential(nk.Conv(4, padding="same"), nk.AvgPool(2)), nk.GlobalAvgPool()
    )
    assert _replays(nested)
    assert not _replays(
        nk.Sequential(nk.Conv(4, padding="same"), nk.Dropout(0.1), nk.GlobalAvgPool())
    )
    attention = nk.Sequential(nk.Dense(4), nk.GlobalSelfAttention(4, 4, 4, 2), nk.GlobalAvgPool())
    assert not _replays(attention, (6, 4))


def _run_python(code: str, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


_PROBE = """
import json, torch, neural_kernels as nk
net = nk.Sequential(nk.Conv(4, 3, padding="same"), nk.ReLU(), nk.GlobalAvgPool(), nk.Dense(1))
x = torch.randn(4, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
k = net.kernel(x)
print(json.dumps({**nk.native_status(), "sum": float(k.ntk.sum())}))
"""


def test_environment_switch_and_missing_compiler_fall_back(tmp_path: Path) -> None:
    off = _run_python(_PROBE, {"NEURAL_KERNELS_NATIVE": "0"})
    assert off["enabled"] is False and off["available"] is False
    broken = _run_python(
        _PROBE, {"CC": str(tmp_path / "no-such-compiler"), "NEURAL_KERNELS_CACHE": str(tmp_path)}
    )
    on = _run_python(_PROBE, {"NEURAL_KERNELS_CACHE": str(tmp_path / "cache")})
    assert broken["available"] is False and "no C compiler" in broken["reason"]
    assert math.isclose(off["sum"], on["sum"], rel_tol=1e-12)
    assert math.isclose(off["sum"], broken["sum"], rel_tol=1e-12)
    if HAS_CC:
        assert on["available"] is True
        assert Path(on["path"]).parent == tmp_path / "cache"


def test_failing_compiler_falls_back(tmp_path: Path) -> None:
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'error: no' >&2\nexit 1\n")
    fake.chmod(0o755)
    got = _run_python(_PROBE, {"CC": str(fake), "NEURAL_KERNELS_CACHE": str(tmp_path / "c")})
    assert got["available"] is False
    assert "could not build" in got["reason"]
    assert not list((tmp_path / "c").glob("*.so"))  # nothing half-written left behind


def test_long_sequences_keep_their_planes_off_the_stack() -> None:
    # a plane of a length-L sequence has L^2 entries (here 5.8 MB per buffer in float64)
    net = nk.Sequential(
        nk.Conv(4, 3, padding="same"), nk.ReLU(), nk.Conv(4, 5, stride=2, padding="same"), nk.ReLU()
    )
    net = nk.Sequential(*net.layers, nk.GlobalAvgPool(), nk.Dense(1))
    x = torch.randn(2, 1, 850, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    fast = net.kernel(x)
    with _native.disabled():
        slow = net.kernel(x)
    assert _rel(fast.ntk, slow.ntk) <= 1e-12
