"""The benchmark workloads on a CUDA device, beside the same calls on the CPU.

Workloads (``x2 = None``; inputs made on the CPU, then moved): ``fc_relu3`` (NNGP + NTK
of :mod:`benchmarks.bench_fc_kernel`'s network, float64, ``n = 2000`` and ``8000``),
``cnn_gap`` / ``myrtle5`` (NNGP + NTK of :mod:`benchmarks.bench_spatial`'s networks,
float64, ``n = 128`` / ``32``, and ``512`` / ``128``), ``empirical_ntk_traced`` (the
structured empirical NTK of :mod:`benchmarks.bench_empirical`'s MLP, float32,
``n = 256`` and ``2048``). One JSON line each:

``seconds``
    the median of ``REPEATS`` device runs after a warm-up (``torch.cuda.synchronize``
    before and after each).
``peak_mb``
    ``torch.cuda.max_memory_allocated`` during the runs, above what was allocated before.
``cpu_seconds`` / ``speedup_over_cpu``
    the same call on the CPU in this process (all its cores; the compiled path where it
    applies), measured in the same run, and its ratio to ``seconds`` (the baseline).
``gemm_seconds`` / ``ratio_to_gemm``
    a float64 (float32 for the empirical NTK) ``n x 1024`` by ``1024 x n`` product on the
    device, and ``seconds`` over it: the size of the work against the device's plainest
    kernel.
``max_rel_diff``
    the largest difference from the CPU's result over its largest entry.

``python -m benchmarks.bench_cuda [--quick]`` (prints one line saying so and exits 0
without a CUDA device).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import torch

import neural_kernels as nk

from . import bench_empirical, bench_fc_kernel, bench_spatial
from ._common import median_time

REPEATS = 3
SIZES = {
    "fc_relu3": (2000, 8000),
    "cnn_gap": (128, 512),
    "myrtle5": (32, 128),
    "empirical_ntk_traced": (256, 2048),
}
QUICK = {"fc_relu3": (200,), "cnn_gap": (16,), "myrtle5": (4,), "empirical_ntk_traced": (32,)}


def _timed(fn: Callable[[], Any], device: str, repeats: int) -> tuple[float, Any]:
    """:func:`median_time` of ``fn`` (synchronised on the device), and its last output."""
    last: list[Any] = []

    def run() -> None:
        last[:] = [fn()]
        if device == "cuda":
            torch.cuda.synchronize()

    seconds, _ = median_time(run, repeats)
    return seconds, last[0]


def _workload(name: str, n: int) -> tuple[Callable[[str], torch.Tensor], torch.dtype]:
    """A call on a device giving the NTK, and the dtype."""
    if name == "empirical_ntk_traced":
        model, x = bench_empirical.model_and_inputs(n)

        def emp(device: str) -> torch.Tensor:
            return nk.empirical_ntk(model.to(device), x.to(device), strategy="structured",
                                    trace_outputs=True)  # fmt: skip

        return emp, torch.float32
    if name == "fc_relu3":
        net = bench_fc_kernel.network()
        x = torch.randn(n, bench_fc_kernel.D, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)  # fmt: skip
    else:
        net, shape, _ = bench_spatial.network(name)
        x = bench_spatial._inputs(name, n, shape, torch.float64)

    def closed(device: str) -> torch.Tensor:
        return net.kernel(x.to(device), get=("nngp", "ntk")).ntk

    return closed, torch.float64


def measure(name: str, n: int, repeats: int = REPEATS) -> dict[str, Any]:
    """One workload on the device and on the CPU; the JSON record."""
    call, dtype = _workload(name, n)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    seconds, on_device = _timed(lambda: call("cuda"), "cuda", repeats)
    peak = torch.cuda.max_memory_allocated() - base
    cpu_seconds, on_cpu = _timed(lambda: call("cpu"), "cpu", 1)
    a = torch.randn(n, 1024, device="cuda", dtype=dtype)
    gemm_seconds, _ = _timed(lambda: a @ a.T, "cuda", repeats)
    diff = (on_device.cpu().double() - on_cpu.double()).abs().max() / on_cpu.double().abs().max()
    return {
        "name": name,
        "n": n,
        "device": torch.cuda.get_device_name(),
        "dtype": str(dtype).removeprefix("torch."),
        "seconds": seconds,
        "peak_mb": peak / 2**20,
        "cpu_seconds": cpu_seconds,
        "speedup_over_cpu": cpu_seconds / seconds,
        "cpu_threads": torch.get_num_threads(),
        "gemm_seconds": gemm_seconds,
        "ratio_to_gemm": seconds / gemm_seconds,
        "max_rel_diff": float(diff),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help="default: all")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not torch.cuda.is_available():
        print(json.dumps({"name": "bench_cuda", "skipped": "no CUDA device"}), flush=True)
        return 0
    sizes = QUICK if args.quick else SIZES
    for name in args.workloads or list(sizes):
        for n in sizes[name]:
            print(json.dumps(measure(name, n, 1 if args.quick else REPEATS)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
