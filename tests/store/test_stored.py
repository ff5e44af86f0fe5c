"""Stored kernels: block reads, streamed products, and CG solves from the store."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("zarr", reason="needs the scale extra")

import neural_kernels as nk


def _net() -> nk.Sequential:
    return nk.Sequential(nk.Dense(64, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(1))


def test_reads_and_products_match_the_matrix(tmp_path: Path) -> None:
    x = torch.randn(45, 4, dtype=torch.float64)
    stored = _net().kernel(x, store=tmp_path / "k.zarr", block_size=10)
    full = stored.ntk.to_tensor()
    assert torch.equal(full, full.mT)  # the mirrored lower triangle
    assert torch.equal(stored.ntk.read(13, 31, 2, 44), full[13:31, 2:44])
    # chunk files read directly (uncompressed, local) give what zarr gives
    assert stored.ntk.folder is not None
    raw = stored.ntk._raw(3, 45, 7, 45)
    assert torch.equal(raw, torch.from_numpy(stored.ntk.array[3:45, 7:45]))
    assert torch.equal(stored.ntk.diagonal(), torch.diagonal(full))
    v = torch.randn(45, 3, dtype=torch.float64)
    torch.testing.assert_close(stored.ntk.matmul(v), full @ v, atol=1e-12, rtol=1e-12)


def test_cg_on_a_stored_kernel_equals_cholesky(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(90, 4, generator=g, dtype=torch.float64)
    xt = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.randn(90, 2, generator=g, dtype=torch.float64)
    net = _net()
    stored = net.kernel(x, store=tmp_path / "k.zarr", block_size=32)
    ktd, ktt = net.kernel(xt, x), net.kernel(xt)
    exact = nk.predict.gp_inference(net.kernel(x), y, diag_reg=1e-4)(None, ktd, ktt)
    post = nk.predict.gp_inference(stored, y, diag_reg=1e-4, solver="cg")
    got = post(None, ktd, ktt)
    for name in exact._fields:
        torch.testing.assert_close(
            getattr(got, name).mean, getattr(exact, name).mean, atol=1e-6, rtol=0
        )
        torch.testing.assert_close(
            getattr(got, name).covariance, getattr(exact, name).covariance, atol=1e-6, rtol=0
        )
    assert {s.kernel for s in post.solves} == {"NNGP", "NTK"}
    # the Cholesky solver reads a stored kernel whole
    chol = nk.predict.gp_inference(stored, y, diag_reg=1e-4)("nngp", ktd)
    torch.testing.assert_close(chol.mean, exact.nngp.mean)


def test_nystrom_cg_from_a_store_equals_the_in_memory_solve(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.randn(70, 4, generator=g, dtype=torch.float64)
    y = torch.randn(70, 2, generator=g, dtype=torch.float64)
    net = _net()
    stored = net.kernel(x, get="ntk", store=tmp_path / "k.zarr", block_size=16)
    options = {"preconditioner": "nystrom", "rank": 20}
    got = nk.predict.gp_inference(stored, y, diag_reg=1e-4, solver="cg", solver_options=options)
    want = nk.predict.gp_inference(net.kernel(x, get="ntk"), y, diag_reg=1e-4)
    xt = torch.randn(9, 4, generator=g, dtype=torch.float64)
    ktd = net.kernel(xt, x, get="ntk")
    torch.testing.assert_close(got("ntk", ktd).mean, want("ntk", ktd).mean, atol=1e-6, rtol=0)


def test_gradient_descent_at_infinity_from_a_store(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(60, 4, generator=g, dtype=torch.float64)
    xt = torch.randn(8, 4, generator=g, dtype=torch.float64)
    y = torch.randn(60, 2, generator=g, dtype=torch.float64)
    net = _net()
    stored = net.kernel(x, store=tmp_path / "k.zarr", block_size=16)
    ktd = net.kernel(xt, x)
    want = nk.predict.gradient_descent_mse(net.kernel(x), y, diag_reg=1e-4)(
        float("inf"), k_test_train=ktd
    )
    got = nk.predict.gradient_descent_mse(stored, y, diag_reg=1e-4, solver="cg")(
        float("inf"), k_test_train=ktd
    )
    for name in ("nngp", "ntk"):
        torch.testing.assert_close(
            getattr(got, name).mean, getattr(want, name).mean, atol=1e-6, rtol=0
        )


def test_float32_store_is_solved_in_float64(tmp_path: Path) -> None:
    # a float32 store halves the disk and the reads; with float64 targets CG runs in
    # float64 on the rounded kernel, to the same residual, within float32 rounding of
    # the float64 solution
    g = torch.Generator().manual_seed(8)
    x = torch.randn(80, 5, generator=g, dtype=torch.float64)
    y = torch.randn(80, 3, generator=g, dtype=torch.float64)
    net = _net()
    s32 = net.kernel(x.float(), get="ntk", store=tmp_path / "k32.zarr", block_size=32)
    s64 = net.kernel(x, get="ntk", store=tmp_path / "k64.zarr", block_size=32)
    assert s32.ntk.dtype == torch.float32
    b32, b64 = (
        sum(f.stat().st_size for f in (p / "ntk" / "c").rglob("*") if f.is_file())
        for p in (tmp_path / "k32.zarr", tmp_path / "k64.zarr")
    )
    assert 2 * b32 == b64
    ktd = s64.ntk.read(0, 10, 0, 80)
    posts = [nk.predict.gp_inference(s, y, diag_reg=1e-3, solver="cg") for s in (s32, s64)]
    got, want = (p("ntk", ktd).mean for p in posts)
    assert got.dtype == torch.float64 and posts[0].solves[0].residual <= 1e-10
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.equal(got, want)  # float32 rounding, not the same kernel


def test_products_from_several_threads_are_identical(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    x = torch.randn(70, 4, dtype=torch.float64)
    ntk = _net().kernel(x, store=tmp_path / "k.zarr", block_size=16).ntk
    vs = [torch.randn(70, 2, dtype=torch.float64) for _ in range(8)]
    alone = [ntk.matmul(v) for v in vs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(ntk.matmul, vs * 4))
    for i, got in enumerate(together):
        assert torch.equal(got, alone[i % len(vs)])
