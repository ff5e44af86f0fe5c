"""Spatial kernels (convolutions, pooling) against Neural Tangents' times and a floor.

Architectures of ``shared/reference/nt_timings.md`` (PyTorch layout, ``x2=None``,
NNGP + NTK):

``cnn_gap``
    ``3 x [Conv(256, 3x3, same, w_std=sqrt(2), b_std=0.1), ReLU] + GlobalAvgPool + Dense``
    on 3x8x8 inputs: the full spatial covariance.
``cnn_flatten``
    the same with ``Flatten``: only same-position covariances (diagonal layout).
``myrtle5``
    Myrtle-5 on 3x16x16 inputs (full layout, average pooling).
``digits_cnn_gap``
    the NTK of a 3-layer CNN with global average pooling on all 1797 digits (1x8x8),
    which Neural Tangents cannot do (it builds the whole covariance at once).

Each case runs in a fresh subprocess and prints one JSON line with ``seconds`` (median
of the timed runs after a warm-up), ``peak_mb`` (``ru_maxrss`` above the post-import
baseline), ``entries`` (covariance entries per layer summed over the example pairs
computed), the same run's ``floor_seconds`` and ``ratio_to_floor``, ``native`` (whether
the compiled kernels ran), ``compiled_chain`` (whether the whole layer chain ran as one
compiled call per chunk) and ``eager_seconds`` (one run of the same kernel on the eager
PyTorch path), and Neural Tangents' time and peak memory where measured. The floor is,
per layer and covariance entry, nine multiply-adds and one arc-cosine in eager PyTorch
on cache-sized buffers; ``dual_floor_seconds`` is the compiled arc-cosine dual alone
(NNGP and NTK), once per entry and layer, split over the threads;
``compiled_floor_seconds`` the compiled convolution and then the compiled dual of every
convolution of the network as separate calls (:func:`compiled_floor`), with
``ratio_to_compiled_floor``; ``target_fraction_of_nt`` the goal for ``fraction_of_nt``.

``python -m benchmarks.bench_spatial [--quick]`` (``--quick``: tiny sizes, smoke only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import neural_kernels as nk
from neural_kernels.core.plan import plan_network

from ._common import maxrss_mb, median_time
from ._common import run_case as run_case_process

ROOT = Path(__file__).resolve().parents[1]
CASES = (
    ("cnn_gap", 128, "float64"),
    ("cnn_gap", 128, "float32"),
    ("cnn_flatten", 64, "float64"),
    ("cnn_flatten", 64, "float32"),
    ("myrtle5", 32, "float64"),
    ("myrtle5", 32, "float32"),
    ("digits_cnn_gap", 1797, "float64"),
)
QUICK_CASES = (("cnn_gap", 8, "float64"), ("cnn_flatten", 8, "float32"), ("myrtle5", 2, "float64"))
#: Goals (float64): at most this fraction of Neural Tangents' time.
TARGET_FRACTION_OF_NT = {("cnn_gap", "float64"): 0.05, ("myrtle5", "float64"): 0.06}
#: Neural Tangents on this machine kind: (seconds, peak RSS MB).
NT = {
    ("cnn_gap", 128, "float64"): (4.9, 3821),
    ("cnn_gap", 128, "float32"): (21.2, 2297),
    ("cnn_flatten", 64, "float64"): (0.011, 773),
    ("cnn_flatten", 64, "float32"): (0.008, 749),
    ("myrtle5", 32, "float64"): (3.8, 3824),
    ("myrtle5", 32, "float32"): (13.7, 2302),
}


def network(name: str) -> tuple[nk.Sequential, tuple[int, ...], int]:
    """The network, its input feature shape, and its number of conv layers."""
    if name in ("cnn_gap", "cnn_flatten"):
        conv = nk.Conv(256, 3, padding="same", w_std=math.sqrt(2.0), b_std=0.1)
        pool = nk.GlobalAvgPool() if name == "cnn_gap" else nk.Flatten()
        net = nk.Sequential(*[conv, nk.ReLU()] * 3, pool, nk.Dense(1, w_std=1.0, b_std=0.1))
        return net, (3, 8, 8), 3
    if name == "myrtle5":
        conv = nk.Conv(128, 3, padding="same", w_std=math.sqrt(2.0), b_std=0.0)
        pool = nk.AvgPool(2, 2)
        net = nk.Sequential(
            conv,
            nk.ReLU(),
            conv,
            nk.ReLU(),
            pool,
            conv,
            nk.ReLU(),
            pool,
            conv,
            nk.ReLU(),
            pool,
            pool,
            nk.Flatten(),
            nk.Dense(10, w_std=math.sqrt(2.0), b_std=0.0),
        )
        return net, (3, 16, 16), 4
    if name == "digits_cnn_gap":
        conv = nk.Conv(128, 3, padding="same", w_std=math.sqrt(2.0), b_std=0.1)
        net = nk.Sequential(*[conv, nk.ReLU()] * 3, nk.GlobalAvgPool(), nk.Dense(10))
        return net, (1, 8, 8), 3
    raise KeyError(name)


def _inputs(name: str, n: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if name == "digits_cnn_gap":
        from sklearn.datasets import load_digits

        x = torch.as_tensor(load_digits().data[:n], dtype=dtype).reshape(-1, *shape)
        return (x - x.mean()) / x.std()
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _mixing(net: nk.Layer, shape: tuple[int, ...]) -> bool:
    """Whether the network needs the covariance between positions (the full layout)."""
    return plan_network(net, shape, lambda: "bench").mixing


def entries(net: nk.Sequential, shape: tuple[int, ...], n: int) -> int:
    """Covariance entries per layer: example pairs (upper triangle) times position pairs."""
    positions = math.prod(shape[1:])
    per_pair = positions * positions if _mixing(net, shape) else positions
    return n * (n + 1) // 2 * per_pair


def floor(total: int, layers: int, dtype: torch.dtype) -> Callable[[], None]:
    """Nine multiply-adds and one arc-cosine per entry and layer, on 2**16-entry buffers."""
    chunk = 1 << 16
    a = torch.rand(chunk, dtype=dtype) * 0.5
    b = torch.rand(chunk, dtype=dtype) * 0.5
    out = torch.empty(chunk, dtype=dtype)
    steps = max(1, total * layers // chunk)

    def run() -> None:
        for _ in range(steps):
            torch.acos(a, out=out)
            for _ in range(9):
                out.addcmul_(a, b)

    return run


def dual_floor(total: int, layers: int, dtype: torch.dtype) -> Callable[[], None] | None:
    """The compiled arc-cosine dual alone, once per entry and layer, split over the threads.

    ``None`` without the compiled kernels. Each thread runs its share on its own
    2**16-entry buffers, as the engine's workers do.
    """
    if not nk.native_status()["available"]:
        return None
    from concurrent.futures import ThreadPoolExecutor

    from neural_kernels import _native

    chunk = 1 << 16
    threads = torch.get_num_threads()
    steps = max(1, total * layers // (chunk * threads))
    gen = torch.Generator().manual_seed(0)
    bufs = [
        (torch.rand(chunk, generator=gen, dtype=dtype) - 0.5, torch.ones(chunk, dtype=dtype))
        for _ in range(threads)
    ]

    def work(i: int) -> None:
        k, norm = bufs[i]
        for _ in range(steps):
            _native.abrelu_dual(k, norm, k, 0.0, 1.0)

    def run() -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))

    return run


def _conv_ops(net: nk.Layer, shape: tuple[int, ...]) -> list[Any] | None:
    """The ``conv`` ops of the network's compiled chain (``None``: it does not compile)."""
    from neural_kernels.core.chain import chain_ops
    from neural_kernels.core.inputs import Geometry

    plan = plan_network(net, shape, lambda: "bench")
    ops = chain_ops(plan, Geometry(shape, 0, shape[1:], "full"))
    return None if ops is None else [op for op in ops if op.kind == "conv"]


def conv_entries(net: nk.Layer, shape: tuple[int, ...], n: int) -> int | None:
    """Covariance entries the network's convolutions read, summed over its layers."""
    ops = _conv_ops(net, shape)
    if ops is None:
        return None
    return n * (n + 1) // 2 * sum(math.prod(op.n) ** 2 for op in ops)


def compiled_floor(
    net: nk.Layer, shape: tuple[int, ...], n: int, dtype: torch.dtype
) -> Callable[[], None] | None:
    """The compiled convolution and then the compiled arc-cosine dual, as separate calls.

    For each convolution of the network, its geometry on as many example pairs as the
    kernel computes (``n (n + 1) / 2``), NNGP and NTK, in batches of about 2**18
    entries split over the threads (as the engine's workers do). ``None`` without the
    compiled kernels or when the network has no compiled chain.
    """
    ops = _conv_ops(net, shape)
    if not nk.native_status()["available"] or not ops:
        return None
    from concurrent.futures import ThreadPoolExecutor

    from neural_kernels import _native

    threads = torch.get_num_threads()
    pairs = n * (n + 1) // 2
    gen = torch.Generator().manual_seed(0)
    jobs = []
    for op in ops:
        in_pair = math.prod(op.n) ** 2
        batch = max(1, min(pairs, (1 << 18) // in_pair))
        axes = [s for size in op.n for s in (size, size)]
        k = (torch.rand(batch, *axes, generator=gen, dtype=dtype) - 0.5) * 0.1
        out_axes = [s for size in op.m for s in (size, size)]
        jobs.append((op, k, torch.ones(batch, *out_axes, dtype=dtype), -(-pairs // batch)))

    def work(i: int) -> None:
        for op, k, norm, steps in jobs:
            for _ in range(i, steps, threads):
                geometry = (op.taps, op.stride, op.dilation, op.before, op.m, op.coef)
                got = _native.conv_pairs(k, k, 1, *geometry)
                assert got is not None and got[1] is not None
                _native.abrelu_dual(got[0], norm, got[1], 0.0, 1.0)

    def run() -> None:
        if threads == 1:
            work(0)
            return
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(threads)))

    return run


def run_case(name: str, n: int, dtype_name: str) -> dict[str, Any]:
    """Measure one case in this process; returns the JSON record."""
    dtype = getattr(torch, dtype_name)
    nt_seconds, nt_mb = NT.get((name, n, dtype_name), (None, None))
    net, shape, layers = network(name)
    x = _inputs(name, n, shape, dtype)
    get = "ntk" if name == "digits_cnn_gap" else ("nngp", "ntk")
    repeats = 1 if name == "digits_cnn_gap" else 3
    if name == "digits_cnn_gap":
        net.kernel(x[:8], get=get)  # warm-up on a slice, the full run once
    baseline = maxrss_mb()
    start = time.perf_counter()
    if repeats == 1:
        net.kernel(x, get=get)
        seconds, runs = time.perf_counter() - start, [time.perf_counter() - start]
    else:
        seconds, runs = median_time(lambda: net.kernel(x, get=get), repeats)
    peak = maxrss_mb()
    native = nk.native_status()
    eager_seconds = None
    if name != "digits_cnn_gap" and native["available"]:  # the same run on the eager path
        nk.set_native(False)
        start = time.perf_counter()
        net.kernel(x, get=get)
        eager_seconds = time.perf_counter() - start
        nk.set_native(True)
    total = entries(net, shape, n)
    floor_seconds, _ = median_time(floor(total, layers, dtype), 1 if repeats == 1 else 3)
    compiled = dual_floor(total, layers, dtype)
    dual_seconds = None if compiled is None else median_time(compiled, 1)[0]
    mixing = _mixing(net, shape)
    full = name != "digits_cnn_gap" and mixing
    chained = bool(native["available"]) and mixing and _conv_ops(net, shape) is not None
    chain = compiled_floor(net, shape, n, dtype) if full else None
    chain_seconds = None if chain is None else median_time(chain, 1)[0]
    fraction = None if nt_seconds is None else seconds / nt_seconds
    return {
        "name": name,
        "n": n,
        "dtype": dtype_name,
        "layout": "full" if _mixing(net, shape) else "diagonal",
        "seconds": seconds,
        "peak_mb": peak - baseline,
        "peak_total_mb": peak,
        "entries": total,
        "floor_seconds": floor_seconds,
        "ratio_to_floor": seconds / floor_seconds,
        "dual_floor_seconds": dual_seconds,
        "ratio_to_dual_floor": None if dual_seconds is None else seconds / dual_seconds,
        "nt_seconds": nt_seconds,
        "nt_peak_mb": nt_mb,
        "compiled_floor_seconds": chain_seconds,
        "ratio_to_compiled_floor": None if chain_seconds is None else seconds / chain_seconds,
        "fraction_of_nt": fraction,
        "target_fraction_of_nt": TARGET_FRACTION_OF_NT.get((name, dtype_name)),
        "native": native["available"],
        "compiled_chain": chained,
        "eager_seconds": eager_seconds,
        "runs": runs,
        "threads": torch.get_num_threads(),
        "loadavg_1min": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_spatial")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--case", nargs=3, metavar=("NAME", "N", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case is not None:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.case[2])), flush=True)
        return 0
    status = 0
    for name, n, dtype in QUICK_CASES if args.quick else CASES:
        record = run_case_process(
            "benchmarks.bench_spatial", [name, str(n), dtype], f"{name} n={n} {dtype}"
        )
        if record is None:
            status = 1
            continue
        print(json.dumps(record), flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
