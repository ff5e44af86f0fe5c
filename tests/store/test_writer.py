"""The kernel store: equal to the in-memory kernel, resumable bit for bit, refusals."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

zarr = pytest.importorskip("zarr", reason="needs the scale extra")

import neural_kernels as nk  # noqa: E402
from neural_kernels.errors import StoreError, StoreMismatchError  # noqa: E402
from neural_kernels.store import open_kernel  # noqa: E402
from neural_kernels.store.stored import DONE_DIR  # noqa: E402

SRC = str(Path(nk.__file__).resolve().parents[1])


def _net() -> nk.Sequential:
    return nk.Sequential(nk.Dense(64, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(1))


def _x(n: int = 40, d: int = 5, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=dtype)


def test_symmetric_store_equals_in_memory_kernel(tmp_path: Path) -> None:
    net, x = _net(), _x()
    stored = net.kernel(x, store=tmp_path / "k.zarr", block_size=16)
    k = net.kernel(x)
    for name in ("nngp", "ntk"):
        torch.testing.assert_close(getattr(stored, name).to_tensor(), getattr(k, name))
    # only blocks on and above the block diagonal were computed: 3 + 2 + 1 of 9
    assert len(os.listdir(tmp_path / "k.zarr" / DONE_DIR)) == 6
    reopened = open_kernel(tmp_path / "k.zarr")
    assert torch.equal(reopened.ntk.to_tensor(), stored.ntk.to_tensor())
    assert reopened.manifest["versions"]["zarr"] == zarr.__version__
    loaded = reopened.load()
    assert isinstance(loaded, nk.Kernel) and torch.equal(loaded.cov1, k.cov1)


def test_cross_store_and_float32(tmp_path: Path) -> None:
    net, x1, x2 = _net(), _x(30, dtype=torch.float32), _x(17, dtype=torch.float32) + 1
    stored = net.kernel(x1, x2, "ntk", store=tmp_path / "c.zarr", block_size=(8, 6))
    k = net.kernel(x1, x2, "ntk")
    assert stored.ntk.dtype == torch.float32 and stored.ntk.shape == (30, 17)
    assert stored.nngp is None and not (tmp_path / "c.zarr" / "nngp").exists()
    with pytest.raises(StoreError, match="holds no NNGP"):
        stored.load()
    torch.testing.assert_close(stored.ntk.to_tensor(), k.ntk)


def test_spatial_full_layout_mirrors_axis_pairs(tmp_path: Path) -> None:
    net = nk.Sequential(nk.Conv(4, (3, 3)), nk.ReLU(), nk.Conv(4, (3, 3)))
    x = torch.randn(9, 2, 6, 6, dtype=torch.float64)
    stored = net.kernel(x, store=tmp_path / "s.zarr", block_size=4, layout="full")
    torch.testing.assert_close(stored.nngp.to_tensor(), net.kernel(x, layout="full").nngp)


def test_resume_recomputes_unmarked_and_half_written_chunks(tmp_path: Path) -> None:
    net, x, path = _net(), _x(), tmp_path / "k.zarr"
    first = net.kernel(x, store=path, block_size=16).ntk.to_tensor()
    # a chunk whose data is garbage but has no marker (a write cut short) ...
    chunk = next(p for p in (path / "ntk").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"\x00garbage")
    markers = sorted(os.listdir(path / DONE_DIR))
    for m in markers:
        os.remove(path / DONE_DIR / m)
    calls: list[tuple[int, int]] = []
    again = net.kernel(x, store=path, block_size=16, progress=lambda d, t: calls.append((d, t)))
    assert torch.equal(again.ntk.to_tensor(), first)
    # blocks 16 + 16 + 8: diagonal squares 256 + 256 + 64, above them 256 + 128 + 128
    assert calls[0] == (0, 1088) and calls[-1] == (1088, 1088)


def test_sigkill_then_resume_is_bit_identical(tmp_path: Path) -> None:
    x = _x(48)
    torch.save(x, tmp_path / "x.pt")
    whole = _net().kernel(x, store=tmp_path / "whole.zarr", block_size=8)
    script = textwrap.dedent(
        f"""
        import os, signal, sys, torch
        sys.path.insert(0, {SRC!r})
        import neural_kernels as nk
        net = nk.Sequential(nk.Dense(64, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(1))
        x = torch.load({str(tmp_path / "x.pt")!r})
        seen = []
        def progress(done, total):
            seen.append(done)
            if len(seen) == 5:  # four blocks written: die without any cleanup
                os.kill(os.getpid(), signal.SIGKILL)
        net.kernel(x, store={str(tmp_path / "cut.zarr")!r}, block_size=8, progress=progress)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert 4 <= len(os.listdir(tmp_path / "cut.zarr" / DONE_DIR)) < 21  # of 21 blocks
    with pytest.raises(StoreError, match="unfinished"):
        open_kernel(tmp_path / "cut.zarr")
    resumed = _net().kernel(x, store=tmp_path / "cut.zarr", block_size=8)
    for name in ("nngp", "ntk"):
        a, b = getattr(resumed, name).to_tensor(), getattr(whole, name).to_tensor()
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "change",
    [
        (
            "network",
            lambda net, x: (nk.Sequential(nk.Dense(64, w_std=2.0), nk.ReLU(), nk.Dense(1)), x),
        ),
        ("inputs", lambda net, x: (net, x + 1e-9)),
        ("dtype", lambda net, x: (net, x.float())),
    ],
    ids=lambda c: c[0],
)
def test_resume_with_other_network_inputs_or_dtype_is_refused(tmp_path: Path, change) -> None:
    net, x, path = _net(), _x(20), tmp_path / "k.zarr"
    before = net.kernel(x, store=path, block_size=8).ntk.to_tensor()
    what, alter = change
    other_net, other_x = alter(net, x)
    with pytest.raises(StoreMismatchError, match=what):
        other_net.kernel(other_x, store=path, block_size=8)
    assert torch.equal(open_kernel(path).ntk.to_tensor(), before)


def test_unwritable_target_gives_a_clear_error_and_keeps_finished_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, x, path = _net(), _x(24), tmp_path / "k.zarr"
    real_open = os.open
    count = {"markers": 0}

    def full_disk(name, flags, mode=0o777, *args, **kwargs):  # type: ignore[no-untyped-def]
        if DONE_DIR in str(name):
            count["markers"] += 1
            if count["markers"] > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(name, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", full_disk)
    with pytest.raises(StoreError, match="disk is full"):
        net.kernel(x, store=path, block_size=8)
    monkeypatch.undo()
    assert len(os.listdir(path / DONE_DIR)) == 2  # the failed chunk is not marked
    resumed = net.kernel(x, store=path, block_size=8)
    assert torch.equal(
        resumed.ntk.to_tensor(),
        net.kernel(x, store=tmp_path / "b.zarr", block_size=8).ntk.to_tensor(),
    )


def test_target_that_cannot_be_a_store(tmp_path: Path) -> None:
    net, x = _net(), _x(10)
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    with pytest.raises(StoreError, match="is a file"):
        net.kernel(x, store=a_file)
    with pytest.raises(StoreError, match="cannot write"):
        net.kernel(x, store=a_file / "k.zarr")  # its parent is a file
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="holds other files"):
        net.kernel(x, store=other)
    assert a_file.read_text() == "keep me" and (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(StoreError, match="not a kernel store"):
        open_kernel(other)


def test_read_only_store_gives_a_clear_error_and_stays_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, x, path = _net(), _x(16), tmp_path / "k.zarr"
    before = net.kernel(x, store=path, block_size=8).ntk.to_tensor()
    for m in os.listdir(path / DONE_DIR)[:1]:  # one chunk left to redo
        os.remove(path / DONE_DIR / m)
    real = zarr.open_group

    def read_only(*args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("mode") != "r":
            raise PermissionError(13, "Read-only file system", str(path))
        return real(*args, **kwargs)

    monkeypatch.setattr(zarr, "open_group", read_only)
    with pytest.raises(StoreError, match=r"cannot write the store .*writable folder"):
        net.kernel(x, store=path, block_size=8)
    monkeypatch.undo()
    partial = open_kernel(path, allow_partial=True)
    assert partial.manifest["complete"] is True  # untouched: the manifest was never rewritten
    assert torch.equal(net.kernel(x, store=path, block_size=8).ntk.to_tensor(), before)
