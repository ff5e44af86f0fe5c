"""Blocks of a stored kernel as Dask tasks: ``net.kernel(..., store=, client=)``.

Each pending block is one task (:func:`~neural_kernels.store.writer.compute_block`) that
computes the block on a worker and writes its own chunk and completion marker, so the
store's folder must be reachable from every worker (a shared file system on a cluster).
The network and the inputs are sent to the workers once (``Client.scatter``). A worker
that dies mid-run loses its tasks in flight; the Dask scheduler runs them again on
another worker, and since a chunk is marked done only after it is written, and every
attempt writes the same values, the result does not change.




"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from torch import Tensor

from ..errors import HyperparameterError, describe
from .writer import Block, compute_block

__all__ = ["connect", "run_distributed"]


def connect(client: Any, scheduler: Any, stack: ExitStack, workers: int | None = None) -> Any:
    """The Dask client to use: ``client``, or one made from ``scheduler`` (closed by ``stack``)."""
    from dask.distributed import Client, LocalCluster

    if client is not None:
        if scheduler is not None:
            raise HyperparameterError(
                describe(
                    "kernel(store=...)",
                    "both client= and scheduler=",
                    "Pass one: a Client, or scheduler='local' / a scheduler address.",
                )
            )
        return client
    if scheduler == "local":
        cluster = stack.enter_context(
            LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
        )
        return stack.enter_context(Client(cluster))
    if isinstance(scheduler, str):
        return stack.enter_context(Client(scheduler))
    raise HyperparameterError(
        describe(
            "kernel(store=...)",
            f"scheduler={scheduler!r}",
            "Pass 'local' or a scheduler address such as 'tcp://host:8786'.",
        )
    )


def run_distributed(
    client: Any,
    scheduler: Any,
    layer: Any,
    x1: Tensor,
    x2: Tensor | None,
    names: tuple[str, ...],
    layout: str | None,
    path: str,
    blocks: list[Block],
    finished: Callable[[int], None],
    workers: int | None = None,
) -> None:
    """Run ``blocks`` as Dask tasks, each writing its chunk; ``finished(pairs)`` after each."""
    from dask.distributed import as_completed

    with ExitStack() as stack:
        dask_client = connect(client, scheduler, stack, workers)
        if not blocks:
            return
        shared = dask_client.scatter([layer, x1, x2], broadcast=True)
        futures = [
            dask_client.submit(
                compute_block, *shared[:2], shared[2], names, layout, path, block, pure=False
            )
            for block in blocks
        ]
        for future in as_completed(futures):
            finished(future.result())
