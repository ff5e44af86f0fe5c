"""``neural-kernels kernel``: compute a kernel into a store, resuming an interrupted run.

``neural-kernels kernel --data X.npy --net net.toml --out k.zarr`` computes the NNGP and
NTK of the network of ``net.toml`` (see :mod:`._network`) on the inputs ``X.npy``
(``(n, *features)``) into the zarr store ``k.zarr`` (see :mod:`neural_kernels.store`);
``--against TRAIN.npy`` computes the kernel between ``X`` and ``TRAIN`` instead (a
test-train kernel). If the store exists it resumes: finished chunks are skipped.
``--local-workers N`` runs the blocks on a Dask ``LocalCluster`` of ``N`` processes,
``--scheduler ADDRESS`` on a running Dask scheduler (``dask scheduler`` /
``dask worker``; the store's folder must be shared with the workers). A progress bar
shows the chunks done and the time left; ``results.json`` (wall time, chunks,
disk use) goes into ``--report`` (default ``<out>.report``).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..report import Report, Section, write_report
from ._command import Command, UsageError
from ._config import resolve_config
from ._network import load_network

__all__ = ["COMMAND", "KernelConfig", "load_array", "progress_bar"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class KernelConfig:
    """Options of ``neural-kernels kernel`` (each one also a flag and a TOML key).

    Attributes:
        data: ``.npy`` file of inputs ``(n, *features)``.
        net: TOML file of the network (``[[layer]]`` tables).
        out: the store's folder.
        against: optional ``.npy`` of second inputs (the kernel ``k(data, against)``).
        get: ``nngp``, ``ntk`` or ``nngp,ntk``.
        block_size: rows of example pairs per block (default: the engine's choice).
        dtype: ``float64`` or ``float32``.
        scheduler: address of a Dask scheduler.
        local_workers: run on a local Dask cluster of this many worker processes.
        report: folder of ``results.json`` (default: ``<out>.report``).
        quiet: no progress bar.

    """

    data: str = ""
    net: str = ""
    out: str = ""
    against: str = ""
    get: str = "nngp,ntk"
    block_size: int | None = None
    dtype: str = "float64"
    scheduler: str = ""
    local_workers: int = 0
    report: str = ""
    quiet: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``neural-kernels kernel``."""
    p.add_argument("--data", metavar="X.npy", help="inputs (n, *features)")
    p.add_argument("--net", metavar="NET.toml", help="the network: [[layer]] tables")
    p.add_argument("--out", metavar="K.zarr", help="the store (resumed when it exists)")
    p.add_argument("--against", metavar="TRAIN.npy", help="second inputs: k(data, against)")
    p.add_argument("--get", metavar="NAMES", help="nngp, ntk or nngp,ntk (default)")
    p.add_argument("--block-size", type=int, metavar="N", help="rows per block")
    p.add_argument("--dtype", choices=tuple(_DTYPES), help="default float64")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler, tcp://host:8786")
    p.add_argument("--local-workers", type=int, metavar="N", help="a local Dask cluster")
    p.add_argument("--report", metavar="DIR", help="folder of results.json")
    p.add_argument("--quiet", action=argparse.BooleanOptionalAction, help="no progress bar")
    p.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")


def load_array(path: str, flag: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A ``.npy`` file as a tensor (a clear usage error otherwise)."""
    if not path:
        raise UsageError(f"{flag} is required")
    try:
        array = np.load(Path(path).expanduser(), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{flag} {path}: cannot read a .npy array: {exc}") from None
    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.to(dtype) if dtype is not None else t


def progress_bar(quiet: bool, what: str, unit: str = "pairs") -> tuple[Any, Any]:
    """A ``progress(done, total)`` callback drawing a tqdm bar, and a closer.

    The bar starts at the first call, counting what was already done (a resumed store's
    chunks) as its start, so that the rate and the time left count this run's work only.
    """
    if quiet:
        return None, None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover (tqdm is in the demo extra)
        return None, None
    bars: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc=what, unit=unit, total=total, initial=done, dynamic_ncols=True))
        bars[0].update(done - bars[0].n)

    def close() -> None:
        if bars:
            bars[0].close()

    return progress, close


def _disk_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def run(args: argparse.Namespace) -> int:
    """Run ``neural-kernels kernel``."""
    cfg = resolve_config(args, KernelConfig(), "kernel")
    if not cfg.out:
        raise UsageError("--out is required (the store's folder)")
    if cfg.scheduler and cfg.local_workers:
        raise UsageError("give --scheduler or --local-workers, not both")
    x = load_array(cfg.data, "--data", _DTYPES[cfg.dtype])
    x2 = load_array(cfg.against, "--against", _DTYPES[cfg.dtype]) if cfg.against else None
    net = load_network(cfg.net) if cfg.net else None
    if net is None:
        raise UsageError("--net is required (a TOML file of [[layer]] tables)")
    get = tuple(g.strip() for g in cfg.get.split(",") if g.strip())
    if cfg.local_workers < 0:
        raise UsageError(f"--local-workers must be >= 1, got {cfg.local_workers}")
    from .._optional import require_scale

    require_scale("neural-kernels kernel", cfg.out)
    from ..store import compute_stored

    progress, close = progress_bar(cfg.quiet, "kernel", unit="chunks")

    start = time.perf_counter()
    try:
        stored = compute_stored(
            net,
            x,
            x2,
            get,
            cfg.out,
            block_size=cfg.block_size,
            chunk_progress=progress,
            scheduler="local" if cfg.local_workers else (cfg.scheduler or None),
            local_workers=cfg.local_workers or None,
        )
    finally:
        if close is not None:
            close()
    seconds = time.perf_counter() - start
    rows, cols = stored.manifest["block"]
    data = {
        "store": os.path.abspath(cfg.out),
        "shape": [int(v) for v in stored.manifest["shape"]],
        "kernels": stored.manifest["get"],
        "block": [rows, cols],
        "symmetric": stored.manifest["symmetric"],
        "seconds": seconds,
        "disk_bytes": _disk_bytes(cfg.out),
        "network": stored.manifest["network"],
    }
    report = Report("kernel", asdict(cfg))
    report.add(
        Section(
            "kernel",
            data,
            summary=[
                f"kernel {tuple(data['shape'])} into {cfg.out} in {seconds:.1f} s "
                f"({data['disk_bytes'] / 2**20:.1f} MiB on disk)"
            ],
        )
    )
    write_report(report, Path(cfg.report or f"{cfg.out.rstrip('/')}.report"), html=False)
    if not cfg.quiet:
        print(report.sections[0].summary[0])
    return 0


COMMAND = Command(
    "kernel",
    "compute a kernel block by block into a zarr store (resumable; Dask for many workers)",
    add_arguments,
    run,
)
