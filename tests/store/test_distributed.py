"""Blocks as Dask tasks: the same store with a LocalCluster, also when a worker dies."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
import torch

pytest.importorskip("zarr", reason="needs the scale extra")
distributed = pytest.importorskip("dask.distributed", reason="needs the scale extra")

import neural_kernels as nk  # noqa: E402
from neural_kernels.errors import HyperparameterError  # noqa: E402


def _net() -> nk.Sequential:
    return nk.Sequential(nk.Dense(64, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(1))


def test_threaded_local_cluster_writes_the_same_store(tmp_path: Path) -> None:
    x = torch.randn(40, 5, dtype=torch.float64)
    serial = _net().kernel(x, store=tmp_path / "serial.zarr", block_size=8)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        done: list[int] = []
        dask = _net().kernel(
            x,
            store=tmp_path / "dask.zarr",
            block_size=8,
            client=client,
            progress=lambda d, t: done.append(d),
        )
    # blocks of 8: five diagonal squares and ten above them, 64 pairs each
    assert done[0] == 0 and done[-1] == 15 * 64
    for name in ("nngp", "ntk"):
        assert torch.equal(getattr(dask, name).to_tensor(), getattr(serial, name).to_tensor())
    with pytest.raises(HyperparameterError, match="without store"):
        _net().kernel(x, client=object())


def test_a_worker_killed_mid_run_does_not_change_the_result(tmp_path: Path) -> None:
    x = torch.randn(64, 5, dtype=torch.float64)
    serial = _net().kernel(x, store=tmp_path / "serial.zarr", block_size=4)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = list(client.run(os.getpid).values())
        for nanny in cluster.workers.values():
            nanny.auto_restart = False  # the other worker finishes; closing stays quick
        killed = threading.Event()

        def progress(done: int, total: int) -> None:
            if not killed.is_set() and done > total // 4:
                killed.set()
                os.kill(pids[0], signal.SIGKILL)  # a worker dies with tasks in flight

        stored = _net().kernel(
            x, store=tmp_path / "dask.zarr", block_size=4, client=client, progress=progress
        )
    assert killed.is_set()
    for name in ("nngp", "ntk"):
        assert torch.equal(getattr(stored, name).to_tensor(), getattr(serial, name).to_tensor())


def test_bad_scheduler_arguments(tmp_path: Path) -> None:
    x = torch.randn(6, 3, dtype=torch.float64)
    with pytest.raises(HyperparameterError, match="scheduler=42"):
        _net().kernel(x, store=tmp_path / "a.zarr", scheduler=42)
    with pytest.raises(HyperparameterError, match="both client= and scheduler="):
        _net().kernel(x, store=tmp_path / "b.zarr", client=object(), scheduler="local")
