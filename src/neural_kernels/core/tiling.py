"""How the engine cuts an ``n1 x n2`` kernel into blocks and chunks, and runs them.

Blocks of example pairs are sized by a memory budget; each block is cut into chunks
on which the whole layer chain runs while it sits in cache. With ``x2=None`` only the
upper triangle is computed and then mirrored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor

from ..errors import HyperparameterError, describe

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "block_shape",
    "budget",
    "chunk_shape",
    "chunk_tasks",
    "map_ordered",
    "mirror_upper",
    "run_blocks",
    "single_threaded",
]

#: Entries of a chunk on which the layer chain runs at once (512 KiB in float64: the
#: chain's few live temporaries stay in a 2 MiB L2 cache).
CHUNK_ELEMENTS = 1 << 16
#: Entries of a chunk of spatial kernels (several example pairs of position pairs).
SPATIAL_CHUNK_ELEMENTS = 1 << 18
#: Largest default block side: square blocks this size let the symmetric path skip the
#: Gram products below the diagonal while keeping each product efficient.
MAX_BLOCK = 512
#: Pairs with at least this many entries are expensive enough to cut the chunks on the
#: diagonal of a symmetric kernel finer (fewer pairs below the diagonal are computed).
SPLIT_PAIR_ELEMENTS = 1024
#: Below this many input-kernel entries, chunks run in the calling thread (a pool of
#: workers costs more than it saves).
PARALLEL_ENTRIES = 1 << 20
#: Batches of a large self pass (the per-example network), run side by side.
SELF_BATCHES = 8
#: Input-kernel entries from which the self pass runs in batches side by side (its
#: per-entry work is a few times the chunks').
SELF_PARALLEL_ENTRIES = 1 << 18
#: Default working memory besides the output.
DEFAULT_MEMORY_BUDGET = 512 * 2**20

Task = tuple[int, int, int, int]
R = TypeVar("R")
Progress = Callable[[int, int], None]


def budget(memory_budget: int | None) -> int:
    """The working-memory budget in bytes (``None``: the default)."""
    value = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    if value <= 0:
        raise HyperparameterError(
            describe(
                "kernel", f"memory_budget={memory_budget!r}", "Give a positive number of bytes."
            )
        )
    return value


def block_shape(
    block_size: Any, memory_budget: int | None, n1: int, n2: int, pair_bytes: int
) -> tuple[int, int]:
    """Rows and columns of example pairs per block (``block_size`` wins over the budget)."""
    if block_size is not None:
        rows, cols = (block_size, block_size) if isinstance(block_size, int) else block_size
        if int(rows) < 1 or int(cols) < 1:
            raise HyperparameterError(
                describe(
                    "kernel",
                    f"block_size={block_size!r}",
                    "Use a positive number of rows (or (rows, cols)).",
                )
            )
        return min(int(rows), n1), min(int(cols), n2)
    # One block of the input kernel, four times over (Gram product, chunk temporaries).
    pairs = max(1, budget(memory_budget) // (4 * pair_bytes))
    cols = min(n2, MAX_BLOCK, max(1, math.isqrt(pairs)))
    rows = min(n1, MAX_BLOCK, max(1, pairs // cols))
    return rows, cols


def chunk_shape(rows: int, cols: int, pair_elements: int) -> tuple[int, int]:
    """Sub-block of a block on which the layer chain runs at once.

    Fully connected chunks stay in cache; spatial ones are larger, so that Python's
    per-operation overhead is spread over enough entries.
    """
    limit = CHUNK_ELEMENTS if pair_elements == 1 else SPATIAL_CHUNK_ELEMENTS
    pairs = max(1, limit // pair_elements)
    # square-ish: each chunk also carries its rows' and columns' own variances
    c = min(cols, pairs) if pair_elements == 1 else min(cols, max(1, math.isqrt(pairs)))
    r = min(rows, max(1, pairs // c))
    return r, c


def _diagonal_tasks(a: int, b: int, side: int) -> list[Task]:
    """Cover the upper triangle of the square ``[a, b)^2`` by rectangles.

    Halving the square (two diagonal halves and one off-diagonal quarter) until its side
    is at most ``side`` computes few pairs below the diagonal.
    """
    if b - a <= side:
        return [(a, b, a, b)]
    h = a + (b - a) // 2
    return [*_diagonal_tasks(a, h, side), (a, h, h, b), *_diagonal_tasks(h, b, side)]


def chunk_tasks(
    n1: int, n2: int, rows: int, cols: int, symmetric: bool, split: bool = True
) -> list[Task]:
    """Chunks ``(r0, r1, s0, s1)`` covering the kernel (its upper triangle if symmetric).

    Largest first, so that the last chunks to finish are small ones. ``split``: cut the
    squares on the diagonal further (worth it when a pair is expensive).
    """
    tasks: list[Task] = []
    if symmetric:
        side = min(rows, cols)
        for a in range(0, n1, side):
            b = min(n1, a + side)
            tasks += _diagonal_tasks(a, b, max(2, side // 4) if split else side)
            for s0 in range(b, n2, cols):
                tasks += [
                    (r0, min(b, r0 + rows), s0, min(n2, s0 + cols)) for r0 in range(a, b, rows)
                ]
    else:
        tasks = [
            (r0, min(n1, r0 + rows), s0, min(n2, s0 + cols))
            for r0 in range(0, n1, rows)
            for s0 in range(0, n2, cols)
        ]
    return sorted(tasks, key=lambda t: -(t[1] - t[0]) * (t[3] - t[2]))


def run_blocks(
    run_block: Callable[[int, int, int, int], int],
    blocks: list[Task],
    total: int,
    progress: Progress | None,
    parallel: bool = True,
) -> None:
    """Run the blocks, several at once when torch may use several threads.

    Each worker runs its block's operations on one thread: many small multi-threaded
    operations stall on their barriers whenever another process holds a core, while
    independent single-threaded blocks keep going. Blocks write disjoint output slices.
    ``run_block`` returns the number of example pairs it computed (for ``progress``).
    """
    threads = torch.get_num_threads()
    workers = min(threads, len(blocks)) if parallel else 1
    done = 0
    if workers <= 1:
        with single_threaded():
            for block in blocks:
                done += run_block(*block)
                if progress is not None:
                    progress(min(done, total), total)
        return
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            futures = [pool.submit(run_block, *block) for block in blocks]
            for future in as_completed(futures):
                done += future.result()
                if progress is not None:
                    progress(min(done, total), total)
    finally:
        torch.set_num_threads(threads)


def map_ordered(fn: Callable[[Any], R], items: Sequence[Any], workers: int) -> list[R]:
    """``[fn(item) for item in items]``, on up to ``workers`` threads of one torch thread each.

    Every call runs with torch single-threaded, however many workers, so the results do
    not depend on ``workers``, and in the caller's grad mode (new threads start with it on).
    """
    workers = min(workers, len(items))
    if workers <= 1:
        with single_threaded():
            return [fn(item) for item in items]
    grad = torch.is_grad_enabled()

    def call(item: Any) -> R:
        with torch.set_grad_enabled(grad):
            return fn(item)

    with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return list(pool.map(call, items))


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch's operations in the calling thread on one thread, then restore.

    Small operations gain nothing from several threads, and their OpenMP barriers stall
    for milliseconds whenever another process holds a core (a 6 x 128 by 128 x 128
    product took 0.1 s instead of 50 us on a loaded 2-core machine). The setting
    belongs to the calling thread, so concurrent callers do not disturb each other.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def output_swap(nngp: Tensor, layout: str, spatial_ndim: int) -> tuple[int, ...]:
    """Trailing-axis permutation that maps ``k(x, x')`` to ``k(x', x)``.

    Interleaved position pairs of the full layout swap; same-position entries stay.
    """
    trailing = nngp.ndim - 2
    if layout == "full" and spatial_ndim and trailing == 2 * spatial_ndim:
        return tuple(i ^ 1 for i in range(trailing))
    return tuple(range(trailing))


def mirror_upper(m: Tensor, block: int, swap: tuple[int, ...]) -> None:
    """Fill the strict lower triangle of ``m`` (``(n, n, ...)``) from its upper one, in place.

    ``k(x_j, x_i)`` is ``k(x_i, x_j)`` with its axis pairs swapped (``swap``). Runs on one
    torch thread: the copies are memory-bound, and small multi-threaded ones stall on a
    loaded machine (see :func:`single_threaded`).
    """
    with single_threaded():
        _mirror_upper(m, block, swap)


def _mirror_upper(m: Tensor, block: int, swap: tuple[int, ...]) -> None:
    n = m.shape[0]
    perm = (1, 0, *(2 + i for i in swap))
    block = max(block, 256)
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        diag = m[i0:i1, i0:i1]
        upper = torch.ones(i1 - i0, i1 - i0, dtype=torch.bool, device=m.device).triu()
        upper = upper.reshape(*upper.shape, *([1] * (m.ndim - 2)))
        diag.copy_(torch.where(upper, diag, diag.permute(perm)))
        if i1 < n:
            m[i1:, i0:i1] = m[i0:i1, i1:].permute(perm)
