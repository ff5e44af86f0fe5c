r"""``net.kernel(x1, x2, store=path)``: compute a kernel block by block into a zarr store.

The kernel is cut into blocks of example pairs of the engine's size
(:func:`~neural_kernels.core.tiling.block_shape`); each block is one chunk of one zarr
(version 3) array per kernel, computed by ``net.kernel`` on its slice of the inputs.
With ``x2=None`` only the blocks on and above the block diagonal are computed (the
diagonal ones as ``net.kernel(x[i0:i1])``, so that an example with itself gets its exact
self-covariance) and the rest is mirrored on read.

**Completion.** A chunk counts as done only once a marker file ``_nk_done/<i0>_<j0>``
exists, and the marker is created after the chunk's data has been written. A run killed
at any moment therefore loses at most its chunks in flight; a chunk whose data was
half-written has no marker and is recomputed. (Markers protect against a killed
process; against power loss, which may drop unsynced pages, they are not a guarantee.)

**Resuming.** Rerunning the same call skips the chunks with markers. Each chunk is
computed by the same call on the same slices, so the result is bit-identical to an
uninterrupted run. A different network, different inputs or a different dtype is
refused (:class:`~neural_kernels.errors.StoreMismatchError`).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import torch
from torch import Tensor

from .._validation import parse_get
from ..core import tiling
from ..errors import HyperparameterError, InputTypeError, StoreError, describe
from .manifest import FORMAT, check_same, input_hash, versions
from .stored import DONE_DIR, StoredKernel, manifest_of, open_kernel

__all__ = ["compute_block", "compute_stored", "pending_blocks"]

Block = tuple[int, int, int, int]
WHERE = "kernel(store=...)"


def _as_input(x: Any, name: str) -> Tensor:
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputTypeError(
            describe(WHERE, f"{name} of type {type(x).__name__}", "Pass a tensor or an array.")
        ) from exc
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t.detach().cpu().contiguous()


def _write_error(path: str, exc: OSError) -> StoreError:
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return StoreError(
        describe(
            WHERE,
            f"cannot write the store {path!r} ({'the disk is full' if full else exc})",
            "Free space and rerun the same call (finished chunks are kept)"
            if full
            else "Give a writable folder (check its permissions), or a path that does not "
            "exist yet.",
        )
    )


def _marker(path: str, block: Block) -> str:
    return os.path.join(path, DONE_DIR, f"{block[0]}_{block[2]}")


def pending_blocks(path: str, blocks: list[Block]) -> list[Block]:
    """The blocks without a completion marker."""
    done = set(os.listdir(os.path.join(path, DONE_DIR)))
    return [b for b in blocks if f"{b[0]}_{b[2]}" not in done]


def compute_block(
    layer: Any,
    x1: Tensor,
    x2: Tensor | None,
    names: tuple[str, ...],
    layout: str | None,
    path: str,
    block: Block,
) -> int:
    """Compute one block, write its chunks, then mark it done; returns its example pairs.

    Runs in the caller's process or on a Dask worker (each block writes its own chunk).
    """
    import zarr

    i0, i1, j0, j1 = block
    get = names if len(names) > 1 else names[0]
    # fresh (aligned) copies of the slices and one thread: BLAS results depend on the
    # alignment of the data and on threads, and must not depend on the process
    # (a Dask worker, a resumed run)
    a = x1[i0:i1].clone()
    with torch.no_grad(), tiling.single_threaded():
        if x2 is None and i0 == j0:
            k = layer.kernel(a, None, get, layout=layout)
        else:
            b = (x1 if x2 is None else x2)[j0:j1].clone()
            k = layer.kernel(a, b, get, layout=layout)
    try:
        group = zarr.open_group(path, mode="r+", zarr_format=3)
        for name in names:
            value = getattr(k, name)
            array: Any = group[name]
            array[i0:i1, j0:j1] = value.detach().cpu().numpy()
        # the marker last: a chunk without one is recomputed on resume
        fd = os.open(_marker(path, block), os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    return (i1 - i0) * (j1 - j0)


def _blocks(n1: int, n2: int, rows: int, cols: int, symmetric: bool) -> list[Block]:
    return [
        (i0, min(n1, i0 + rows), j0, min(n2, j0 + cols))
        for i0 in range(0, n1, rows)
        for j0 in range(0, n2, cols)
        if not (symmetric and j0 < i0)
    ]


def _create(path: str, manifest: dict[str, Any], cov1: Tensor, cov2: Tensor | None) -> None:
    """Create the group, its arrays and marker folder; the manifest is written last."""
    import zarr

    n1, n2 = manifest["shape"]
    trailing = tuple(manifest["trailing"])
    rows, cols = manifest["block"]
    try:
        group = zarr.open_group(path, mode="w", zarr_format=3)
        for name in manifest["get"]:
            group.create_array(
                name,
                shape=(n1, n2, *trailing),
                chunks=(rows, cols, *trailing),
                dtype=manifest["dtype"],
                fill_value=0,
                compressors=None,  # kernels' float bits barely compress; reads stay cheap
            )
        for name, cov in (("cov1", cov1), ("cov2", cov2)):
            if cov is not None:
                arr = group.create_array(name, shape=tuple(cov.shape), dtype=manifest["dtype"])
                arr[...] = cov.numpy()
        os.makedirs(os.path.join(path, DONE_DIR), exist_ok=True)
        group.attrs["neural_kernels"] = manifest
    except OSError as exc:
        raise _write_error(path, exc) from exc


def compute_stored(
    layer: Any,
    x1: Any,
    x2: Any,
    get: Any,
    store: str | os.PathLike[str],
    *,
    memory_budget: int | None = None,
    block_size: Any = None,
    progress: Callable[[int, int], None] | None = None,
    layout: str | None = None,
    client: Any = None,
    scheduler: Any = None,
    local_workers: int | None = None,
    chunk_progress: Callable[[int, int], None] | None = None,
) -> StoredKernel:
    """Compute (or resume computing) ``layer.kernel(x1, x2, get)`` into ``store``.

    Args:
        layer: the network.
        x1: inputs ``(n1, *features)``.
        x2: inputs ``(n2, *features)``, or ``None`` (the symmetric kernel, stored once).
        get: ``"nngp"``, ``"ntk"`` or both (only those are stored).
        memory_budget: sets the block size as in ``net.kernel``.
        block_size: rows (or ``(rows, cols)``) of a block, overriding ``memory_budget``.
        layout: as in ``net.kernel``.
        store: the store's folder (created if missing, resumed if it holds this kernel).
        progress: called as ``progress(done, total)`` in example pairs (resumed chunks
            count as done from the start).
        client: a ``dask.distributed.Client``: blocks run as Dask tasks on its workers.
        scheduler: ``"local"`` starts a ``LocalCluster`` for this call; an address
            (``"tcp://host:8786"``) connects to a running scheduler.
        local_workers: worker processes of ``scheduler="local"`` (default: one per core).
        chunk_progress: called as ``chunk_progress(done, total)`` in chunks (blocks),
            like ``progress`` (the CLI's progress bar).

    Returns:
        A :class:`~neural_kernels.store.StoredKernel` reading the finished store.

    Raises:
        StoreMismatchError: the store holds a kernel of another network, other inputs or
            another dtype.
        StoreError: the path cannot be written (read-only, disk full) or is not a store.

    """
    path = os.fspath(store)
    if local_workers is not None and (int(local_workers) < 1 or scheduler != "local"):
        raise HyperparameterError(
            describe(
                WHERE,
                f"local_workers={local_workers!r} with scheduler={scheduler!r}",
                "Pass local_workers >= 1 together with scheduler='local'.",
            )
        )
    names = tuple(n for n in ("nngp", "ntk") if n in parse_get(get, WHERE))
    a = _as_input(x1, "x1")
    symmetric = x2 is None
    b = None if symmetric else _as_input(x2, "x2")
    if b is not None and b.dtype != a.dtype:
        b = b.to(torch.promote_types(a.dtype, b.dtype))
        a = a.to(b.dtype)
    n1 = a.shape[0]
    n2 = n1 if b is None else b.shape[0]
    # facts of the output from one example (cheap), the variances from the self pass
    d1 = layer.kernel_diag(a, "nngp", layout=layout)
    d2 = d1 if b is None else layer.kernel_diag(b, "nngp", layout=layout)
    trailing = tuple(d1.nngp.shape[1:])
    pair_bytes = max(1, int(torch.Size(trailing).numel())) * a.element_size()
    rows, cols = tiling.block_shape(block_size, memory_budget, n1, n2, pair_bytes)
    if symmetric:
        rows = cols = min(rows, cols)
    spatial = len(trailing) // 2 if d1.layout == "full" else len(trailing)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "network": repr(layer),
        "inputs": input_hash(a, b),
        "dtype": str(a.dtype).removeprefix("torch."),
        "get": list(names),
        "shape": [n1, n2],
        "trailing": list(trailing),
        "block": [rows, cols],
        "symmetric": symmetric,
        "layout": d1.layout,
        "swap": list(tiling.output_swap(d1.nngp[:, None], d1.layout, spatial)),
        "facts": {
            "shape1": list(d1.shape1),
            "shape2": list(d2.shape1),
            "is_gaussian": d1.is_gaussian,
            "layout": d1.layout,
            "channel_axis": d1.channel_axis,
        },
        "versions": versions(),
        "complete": False,
    }
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreError(
            describe(WHERE, f"store={path!r} is a file", "Give a folder path for the store.")
        )
    old = manifest_of(path)
    if old is None:
        if (
            os.path.isdir(path)
            and os.listdir(path)
            and not os.path.isfile(os.path.join(path, "zarr.json"))
        ):
            raise StoreError(
                describe(
                    WHERE,
                    f"store={path!r} is a folder that holds other files",
                    "Give a new or empty folder for the store.",
                )
            )
        _create(path, manifest, d1.nngp.detach(), None if b is None else d2.nngp.detach())
    else:
        check_same(old, manifest, path)
        manifest = old
        rows, cols = (int(v) for v in old["block"])
    blocks = _blocks(n1, n2, rows, cols, symmetric)
    total = sum((i1 - i0) * (j1 - j0) for i0, i1, j0, j1 in blocks)
    todo = pending_blocks(path, blocks)
    state = {
        "pairs": total - sum((i1 - i0) * (j1 - j0) for i0, i1, j0, j1 in todo),
        "chunks": len(blocks) - len(todo),
    }

    def tell() -> None:
        if progress is not None:
            progress(state["pairs"], total)
        if chunk_progress is not None:
            chunk_progress(state["chunks"], len(blocks))

    def finished(pairs: int) -> None:
        state["pairs"] += pairs
        state["chunks"] += 1
        tell()

    tell()
    if client is not None or scheduler is not None:
        from .distributed import run_distributed

        run_distributed(
            client, scheduler, layer, a, b, names, layout, path, todo, finished, local_workers
        )
    else:
        # blocks run one thread each, as many at once as torch has threads
        workers = max(1, min(torch.get_num_threads(), len(todo)))
        with ThreadPoolExecutor(workers) as pool:
            futures = [
                pool.submit(compute_block, layer, a, b, names, layout, path, block)
                for block in todo
            ]
            try:
                for future in as_completed(futures):
                    finished(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    missing = pending_blocks(path, blocks)
    if missing:  # pragma: no cover (a worker that lost its writes)
        raise StoreError(
            describe(WHERE, f"{len(missing)} chunks were not written", "Rerun the same call.")
        )
    if not manifest.get("complete"):
        import zarr

        manifest = {**manifest, "complete": True}
        try:
            zarr.open_group(path, mode="r+", zarr_format=3).attrs["neural_kernels"] = manifest
        except OSError as exc:
            raise _write_error(path, exc) from exc
    return open_kernel(path)


def remove_store(path: str) -> None:
    """Delete a store folder (only one holding a manifest)."""
    if manifest_of(path) is None:
        raise StoreError(describe("remove_store", f"{path!r}", "Pass a kernel store folder."))
    shutil.rmtree(path)
