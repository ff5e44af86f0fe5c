"""Blocks of example pairs (``core/tiling.py``): run on several threads, the same kernel.

The test session runs single-threaded (``tests/conftest.py``); here torch gets two
threads, so the engine runs its blocks and chunks in a thread pool, and the kernels must
equal the single-threaded ones to the last bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

import neural_kernels as nk
from neural_kernels import _native
from neural_kernels.core import engine, tiling


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Two torch threads; records the worker count of every thread pool the engine opens."""
    opened: list[int] = []
    real = tiling.ThreadPoolExecutor

    def counting(workers: int, *args: Any, **kwargs: Any) -> Any:
        opened.append(workers)
        return real(workers, *args, **kwargs)

    monkeypatch.setattr(tiling, "ThreadPoolExecutor", counting)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield opened
    finally:
        torch.set_num_threads(threads)


def _both(fn: Any) -> tuple[nk.Kernel, nk.Kernel]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = fn()
    finally:
        torch.set_num_threads(threads)
    return serial, fn()


def test_dense_blocks_on_two_threads_equal_one_thread(pools: list[int]) -> None:
    net = nk.Sequential(nk.Dense(8, w_std=1.3, b_std=0.1), nk.Erf(), nk.Dense(1))
    x = torch.randn(23, 5, dtype=torch.float64)
    for args in ((x,), (x, x[:17] + 0.1)):
        serial, threaded = _both(lambda args=args: net.kernel(*args, block_size=4))
        assert torch.equal(serial.nngp, threaded.nngp) and torch.equal(serial.ntk, threaded.ntk)
    assert pools and all(w == 2 for w in pools)
    assert torch.get_num_threads() == 2  # the pool's workers did not change the caller's


def test_spatial_chunks_on_two_threads_equal_one_thread(
    pools: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiling, "PARALLEL_ENTRIES", 0)  # a small kernel still runs in a pool
    net = nk.Sequential(nk.Conv(3, 3, padding="same"), nk.ReLU(), nk.GlobalAvgPool(), nk.Dense(1))
    x = torch.randn(7, 2, 4, 4, dtype=torch.float64)
    serial, threaded = _both(lambda: net.kernel(x, block_size=2))
    assert torch.equal(serial.nngp, threaded.nngp) and torch.equal(serial.ntk, threaded.ntk)
    assert pools and all(w == 2 for w in pools)


def test_large_self_pass_runs_in_batches_side_by_side(
    pools: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiling, "PARALLEL_ENTRIES", 0)
    monkeypatch.setattr(tiling, "SELF_PARALLEL_ENTRIES", 0)
    calls: list[int] = []
    real = engine.self_cov

    def counting(f: torch.Tensor, geo: Any) -> Any:
        calls.append(f.shape[0])
        return real(f, geo)

    monkeypatch.setattr(engine, "self_cov", counting)
    pool = nk.Sequential(nk.Conv(3, 3, padding="same"), nk.ReLU(), nk.AvgPool(2), nk.Flatten())
    x = torch.randn(11, 2, 4, 4, dtype=torch.float64)
    one, two = _both(lambda: pool.kernel(x, x[:5] * 0.5))  # the compiled self pass
    assert torch.equal(one.nngp, two.nngp) and torch.equal(one.ntk, two.ntk)
    monkeypatch.setattr(_native, "library_for", lambda *args: None)  # the per-layer pass
    calls.clear()
    serial, threaded = _both(lambda: pool.kernel(x, x[:5] * 0.5))
    assert torch.equal(serial.nngp, threaded.nngp) and torch.equal(serial.ntk, threaded.ntk)
    # the same batches (of at most ceil(11 / SELF_BATCHES) examples) on one and two threads
    assert max(calls) == -(-11 // tiling.SELF_BATCHES) and sum(calls) == 2 * (11 + 5)
    assert 2 in pools
    with _native.disabled():
        eager = pool.kernel(x, x[:5] * 0.5)
    assert torch.allclose(threaded.nngp, eager.nngp, rtol=1e-12, atol=0)


def test_map_ordered_keeps_the_order_on_several_workers() -> None:
    items = list(range(20))
    assert tiling.map_ordered(lambda i: i * i, items, 3) == [i * i for i in items]
    assert tiling.map_ordered(lambda i: i + 1, items, 1) == [i + 1 for i in items]


def test_map_ordered_workers_keep_the_callers_grad_mode() -> None:
    items = list(range(6))
    with torch.no_grad():
        assert tiling.map_ordered(lambda _: torch.is_grad_enabled(), items, 3) == [False] * 6
    assert tiling.map_ordered(lambda _: torch.is_grad_enabled(), items, 3) == [True] * 6
