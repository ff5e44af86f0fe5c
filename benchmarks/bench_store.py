"""Kernels in a store: compute, solve by CG, kill and resume, Dask throughput, preconditioners.

Four cases, one JSON line each (``python -m benchmarks.bench_store [--quick] [--full]
[--only fc|cnn|dask|precond] [--n N] [--dtype float32]``):

``store_fc_ntk_cg``
    The NTK of ``Dense(512, w_std=sqrt(2), b_std=0.1), ReLU, Dense(1)`` on ``n``
    standard-normal inputs of 784 features (float64) computed into a store
    (``kernel_seconds``), then ``gp_inference(..., solver="cg")`` on 10 targets
    (``cg_seconds``, ``iterations``, ``residual``), in a fresh subprocess: ``peak_mb``
    (its peak RSS) and ``disk_bytes``. Floors measured in the same run: the Gram
    product's ``n (n + 1) / 2 * 784`` multiply-adds at the measured float64 GEMM rate
    (``kernel_floor_seconds``; the network's few operations per entry are not counted),
    and one read of the store per CG iteration at the measured read rate of its chunk
    files (``cg_floor_seconds``); ``floor_seconds`` is their sum. Default ``n = 4000``
    (``--quick`` 1000, ``--full`` the issue's 50,000: about 10 GB of disk (the upper
    block triangle of the NTK), target <= 30 min and <= 16 GB RSS; ``--n N`` any size,
    ``--block`` its block rows, ``--preconditioner`` nystrom (default),
    pivoted_cholesky or none, ``--dtype float32`` a float32 kernel: half the disk and
    the reads, the CG still in float64). The machine may be shared: ``kernel_cpu_seconds``
    and ``cg_cpu_seconds`` (this process, all threads) and the load averages
    (``os.getloadavg``) at the start and after each phase tell how far the wall times
    are inflated.
``store_cnn_gap_resume``
    The NTK of a CNN with global average pooling on ``n`` 8x8 digits into a store,
    killed with SIGKILL after a third of its blocks and resumed; ``bit_identical``
    against an uninterrupted run, ``seconds`` of the resumed part and
    ``baseline_seconds`` of the uninterrupted run. Default ``n = 300`` (``--quick`` 100,
    ``--full`` all 1797).
``store_dask_chunks_per_second``
    Chunks per second of the fully connected store with 1 and 2 local Dask worker
    processes (cluster start-up excluded); ``baseline`` is the in-process rate.
``store_preconditioners``
    Iterations, seconds and CPU seconds of CG (rank 100, relative residual ``1e-10``)
    with the pivoted-Cholesky, the Nystrom and no preconditioner, on stored NTKs of the
    fully connected network on all 1797 digits and of the CNN with global average
    pooling on ``n_cnn`` digits (default 300, ``--quick`` 100 (300 FC), ``--full``
    1797), ``diag_reg`` 1e-4 and 1e-6; ``baseline`` is CG without a preconditioner.
    The ``store_cnn_gap_resume`` line carries the same comparison on its own store.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

import neural_kernels as nk

from ._common import ROOT, maxrss_mb
from ._common import run_case as run_case_process

D = 784


def _fc() -> Any:
    return nk.Sequential(nk.Dense(512, w_std=math.sqrt(2), b_std=0.1), nk.ReLU(), nk.Dense(1))


def _cnn() -> Any:
    return nk.Sequential(
        nk.Conv(16, (3, 3), padding="same"),
        nk.ReLU(),
        nk.Conv(16, (3, 3), padding="same"),
        nk.ReLU(),
        nk.GlobalAvgPool(),
        nk.Dense(1),
    )


def gemm_rate(dtype: torch.dtype = torch.float64) -> float:
    """Measured multiply-adds per second of a 2048 x 784 x 2048 product in ``dtype``."""
    a = torch.randn(2048, D, dtype=dtype)
    a @ a.T
    start = time.perf_counter()
    for _ in range(3):
        a @ a.T
    return 3 * 2048 * 2048 * D / (time.perf_counter() - start)


def read_rate(path: Path) -> float:
    """Bytes per second reading every chunk file of a store (the page cache helps)."""
    files = [f for f in path.rglob("*") if f.is_file()]
    start = time.perf_counter()
    total = sum(len(f.read_bytes()) for f in files)
    return total / max(time.perf_counter() - start, 1e-9)


def cpu_seconds() -> float:
    """User plus system CPU seconds of this process (all its threads) so far."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def fc_case(
    n: int, block: int, preconditioner: str = "nystrom", dtype: str = "float64"
) -> dict[str, Any]:
    """The fully connected NTK into a store, then CG (run in its own process).

    ``dtype="float32"`` computes and stores the kernel in float32 (half the disk and the
    reads); the targets and the CG stay float64.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, D, generator=g, dtype=torch.float64).to(getattr(torch, dtype))
    y = torch.randn(n, 10, generator=g, dtype=torch.float64)
    folder = Path(tempfile.mkdtemp(prefix="nk-bench-store-", dir=os.environ.get("NK_BENCH_DIR")))
    load_before = os.getloadavg()
    try:
        cpu0, start = cpu_seconds(), time.perf_counter()
        stored = _fc().kernel(x, None, "ntk", store=folder / "k.zarr", block_size=block)
        kernel_seconds = time.perf_counter() - start
        kernel_cpu = cpu_seconds() - cpu0
        load_kernel = os.getloadavg()
        disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        cpu0, start = cpu_seconds(), time.perf_counter()
        options = {"preconditioner": None if preconditioner == "none" else preconditioner}
        post = nk.predict.gp_inference(
            stored, y, diag_reg=1e-3, solver="cg", solver_options=options
        )
        post("ntk", stored.ntk.read(0, 10, 0, n))  # one solve for all 10 targets
        cg_seconds = time.perf_counter() - start
        cg_cpu = cpu_seconds() - cpu0
        load_cg = os.getloadavg()
        solve = post.solves[0]
        rate, disk_rate = gemm_rate(x.dtype), read_rate(folder / "k.zarr" / "ntk")
        kernel_floor = n * (n + 1) / 2 * D / rate
        cg_floor = solve.iterations * disk / disk_rate  # the store holds the NTK alone
        return {
            "name": "store_fc_ntk_cg",
            "n": n,
            "block": block,
            "dtype": dtype,
            "inputs": "standard normal, 784 features (synthetic)",
            "seconds": kernel_seconds + cg_seconds,
            "kernel_seconds": kernel_seconds,
            "cg_seconds": cg_seconds,
            "kernel_cpu_seconds": kernel_cpu,
            "cg_cpu_seconds": cg_cpu,
            "cores": os.cpu_count(),
            "load_average_1_5_15": {
                "start": load_before,
                "after_kernel": load_kernel,
                "after_cg": load_cg,
            },
            "iterations": solve.iterations,
            "residual": solve.residual,
            "peak_mb": maxrss_mb(),
            "disk_bytes": disk,
            "gemm_multiply_adds_per_second": rate,
            "read_bytes_per_second": disk_rate,
            "kernel_floor_seconds": kernel_floor,
            "cg_floor_seconds": cg_floor,
            "preconditioner": preconditioner,
            "floor_seconds": kernel_floor + cg_floor,
            "ratio_to_floor": (kernel_seconds + cg_seconds) / (kernel_floor + cg_floor),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _digits(n: int) -> torch.Tensor:
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().images[:n]).to(torch.float64)
    return ((x - x.mean()) / x.std())[:, None]  # (n, 1, 8, 8)


def _labels(n: int) -> torch.Tensor:
    """One-hot digit labels minus their mean, ``(n, 10)``."""
    from sklearn.datasets import load_digits

    y = torch.from_numpy(load_digits().target[:n])
    return torch.nn.functional.one_hot(y, 10).to(torch.float64) - 0.1


def solve_with(stored: Any, y: torch.Tensor, diag_reg: float) -> dict[str, Any]:
    """CG on a stored kernel with each preconditioner (rank 100): iterations and seconds."""
    out: dict[str, Any] = {}
    for pre in ("pivoted_cholesky", "nystrom", None):
        options = {"preconditioner": pre, "rank": 100, "max_iter": 20000}
        cpu0, start = cpu_seconds(), time.perf_counter()
        post = nk.predict.gp_inference(
            stored, y, diag_reg=diag_reg, solver="cg", solver_options=options
        )
        post("ntk", stored.ntk.read(0, 10, 0, stored.ntk.shape[1]))
        out[str(pre).lower()] = {
            "iterations": post.solves[0].iterations,
            "residual": post.solves[0].residual,
            "seconds": time.perf_counter() - start,
            "cpu_seconds": cpu_seconds() - cpu0,
        }
    return out


def preconditioner_case(n_fc: int, n_cnn: int) -> dict[str, Any]:
    """Pivoted Cholesky against Nystrom (and none) on stored NTKs of digits."""
    folder = Path(tempfile.mkdtemp(prefix="nk-bench-pre-"))
    result: dict[str, Any] = {"name": "store_preconditioners", "n": n_fc, "n_cnn": n_cnn}
    try:
        x = _digits(n_fc).flatten(1)
        fc = _fc().kernel(x, None, "ntk", store=folder / "fc.zarr", block_size=256)
        start = time.perf_counter()
        cnn = _cnn().kernel(_digits(n_cnn), None, "ntk", store=folder / "cnn.zarr", block_size=64)
        result["cnn_kernel_seconds"] = time.perf_counter() - start
        for reg in (1e-4, 1e-6):
            result[f"fc_ntk_digits_diag_reg_{reg:g}"] = solve_with(fc, _labels(n_fc), reg)
            result[f"cnn_gap_ntk_digits_diag_reg_{reg:g}"] = solve_with(cnn, _labels(n_cnn), reg)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    first = result["fc_ntk_digits_diag_reg_0.0001"]
    result["seconds"] = first["pivoted_cholesky"]["seconds"]
    result["baseline"] = first["none"]["seconds"]  # CG without a preconditioner
    result["peak_mb"] = maxrss_mb()
    return result


def cnn_resume_case(n: int, block: int) -> dict[str, Any]:
    """The CNN's NTK into a store, killed part-way, resumed; against an uninterrupted run."""
    x = _digits(n)
    folder = Path(tempfile.mkdtemp(prefix="nk-bench-resume-"))
    try:
        torch.save(x, folder / "x.pt")
        start = time.perf_counter()
        whole = _cnn().kernel(x, None, "ntk", store=folder / "whole.zarr", block_size=block)
        baseline = time.perf_counter() - start
        blocks = math.ceil(n / block) * (math.ceil(n / block) + 1) // 2
        script = textwrap.dedent(
            f"""
            import os, signal, torch
            from benchmarks.bench_store import _cnn
            x = torch.load({str(folder / "x.pt")!r})
            calls = []
            def progress(done, total):
                calls.append(done)
                if len(calls) > {max(1, blocks // 3)}:
                    os.kill(os.getpid(), signal.SIGKILL)
            _cnn().kernel(x, None, "ntk", store={str(folder / "cut.zarr")!r},
                          block_size={block}, progress=progress)
            """
        )
        proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
        start = time.perf_counter()
        resumed = _cnn().kernel(x, None, "ntk", store=folder / "cut.zarr", block_size=block)
        seconds = time.perf_counter() - start
        same = torch.equal(resumed.ntk.to_tensor(), whole.ntk.to_tensor())
        solves = solve_with(whole, _labels(n), 1e-4)
        return {
            "name": "store_cnn_gap_resume",
            "n": n,
            "blocks": blocks,
            "killed": proc.returncode == -signal.SIGKILL,
            "bit_identical": same,
            "seconds": seconds,
            "baseline_seconds": baseline,
            "preconditioners_diag_reg_1e-4": solves,
            "peak_mb": maxrss_mb(),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def dask_case(n: int, block: int) -> dict[str, Any]:
    """Chunks per second with 1 and 2 local Dask worker processes, and in process."""
    from dask.distributed import Client, LocalCluster

    x = torch.randn(n, D, dtype=torch.float64)
    blocks = math.ceil(n / block) * (math.ceil(n / block) + 1) // 2
    folder = Path(tempfile.mkdtemp(prefix="nk-bench-dask-"))
    rates: dict[str, float] = {}
    try:
        start = time.perf_counter()
        _fc().kernel(x, store=folder / "local.zarr", block_size=block)
        rates["in_process"] = blocks / (time.perf_counter() - start)
        for workers in (1, 2):
            with (
                LocalCluster(
                    n_workers=workers, threads_per_worker=1, dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                client.run(lambda: __import__("neural_kernels"))  # warm the workers
                start = time.perf_counter()
                _fc().kernel(x, store=folder / f"d{workers}.zarr", block_size=block, client=client)
                rates[f"workers_{workers}"] = blocks / (time.perf_counter() - start)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "name": "store_dask_chunks_per_second",
        "n": n,
        "blocks": blocks,
        "chunks_per_second_1_worker": rates["workers_1"],
        "chunks_per_second_2_workers": rates["workers_2"],
        "baseline": rates["in_process"],
        "seconds": blocks / rates["workers_2"],
        "peak_mb": maxrss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_store")
    parser.add_argument("--quick", action="store_true", help="small cases (seconds)")
    parser.add_argument("--full", action="store_true", help="the issue's sizes (hours)")
    parser.add_argument("--n", type=int, help="examples of the FC case (e.g. 50000)")
    parser.add_argument("--block", type=int, default=512, help="block rows of the FC case")
    parser.add_argument(
        "--preconditioner",
        choices=("nystrom", "pivoted_cholesky", "none"),
        default="nystrom",
        help="CG preconditioner of the FC case",
    )
    parser.add_argument(
        "--only",
        choices=("fc", "cnn", "dask", "precond"),
        action="append",
        help="run these cases only",
    )
    parser.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="kernel dtype of the FC case (float32 halves disk and reads; CG stays float64)",
    )
    parser.add_argument("--case", nargs=4, metavar=("N", "BLOCK", "P", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.case:
        n, block, precond, dtype = args.case
        print(json.dumps(fc_case(int(n), int(block), precond, dtype)))
        return 0
    try:
        import dask.distributed  # noqa: F401
        import zarr  # noqa: F401
    except ImportError:
        print("bench_store needs the scale extra (zarr, dask)", file=sys.stderr)
        return 0
    fc_n, cnn_n, dask_n = (
        (50_000, 1797, 4096) if args.full else (1000, 100, 512) if args.quick else (4000, 300, 1024)
    )
    only = set(args.only or ("fc", "cnn", "dask", "precond"))
    status = 0
    if "fc" in only:
        fc_n = args.n or fc_n
        fc = run_case_process(
            "benchmarks.bench_store",
            [str(fc_n), str(args.block), args.preconditioner, args.dtype],
            "store_fc_ntk_cg",
        )
        status = 0 if fc is not None else 1
        if fc is not None:
            print(json.dumps(fc), flush=True)
    if "cnn" in only:
        print(json.dumps(cnn_resume_case(cnn_n, 50 if cnn_n < 500 else 128)), flush=True)
    if "dask" in only:
        print(json.dumps(dask_case(dask_n, 128)), flush=True)
    if "precond" in only:
        pre_n = (1797, 1797) if args.full else (300, 100) if args.quick else (1797, 300)
        print(json.dumps(preconditioner_case(*pre_n)), flush=True)
    return status


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    raise SystemExit(main())
