"""NNGP + NTK of a deep fully connected ReLU network, against a hardware floor.

Network: ``3 x [Dense(512, w_std=sqrt(2), b_std=0.1), ReLU] + Dense(1, w_std=1, b_std=0.1)``
on ``n`` standard-normal inputs of dimension ``d = 784``, ``net.kernel(x)`` (``x2=None``,
both kernels). Each case runs in a fresh subprocess and prints one JSON line:

``seconds``
    median of 3 runs after one warm-up.
``peak_mb`` / ``peak_total_mb``
    ``ru_maxrss`` after those runs, above the post-import baseline / in total.
``floor_seconds``
    the same protocol, same process, for the floor: one ``x @ x.T`` and, for each of
    the 4 layers, three in-place elementwise passes over the ``n x n`` matrix.
``ratio_to_floor``
    ``seconds / floor_seconds``.
``nt_seconds``
    Neural Tangents' time for the case on this machine kind, where measured.

Also recorded: every run's seconds (``runs``, ``floor_runs``), the size of the two output
matrices (``output_mb``), torch's thread count and the 1-minute load average (timings
taken on a busy machine are not comparable).

``python -m benchmarks.bench_fc_kernel [--quick]`` (``--quick``: ``n = 500`` only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

import neural_kernels as nk

from ._common import maxrss_mb, median_time
from ._common import run_case as run_case_process

NAME = "fc_relu3_nngp_ntk"
D = 784
LAYERS = 4
CASES = ((2000, "float64"), (2000, "float32"), (5000, "float64"), (5000, "float32"))
QUICK_CASES = ((500, "float64"), (500, "float32"))
#: Neural Tangents on this machine kind (seconds), where measured.
NT_SECONDS = {(2000, "float64"): 0.25, (2000, "float32"): 0.17, (5000, "float64"): 1.6}
ROOT = Path(__file__).resolve().parents[1]


def network() -> nk.Sequential:
    hidden = [nk.Dense(512, w_std=math.sqrt(2.0), b_std=0.1), nk.ReLU()]
    return nk.Sequential(*hidden * (LAYERS - 1), nk.Dense(1, w_std=1.0, b_std=0.1))


def floor(x: torch.Tensor) -> torch.Tensor:
    """One Gram product and three elementwise passes over ``n x n`` per layer, in place."""
    k = x @ x.T
    for scale in (0.5 / x.shape[1], *(0.5,) * (LAYERS - 1)):
        k.mul_(scale).add_(1.0).sqrt_()  # stays >= 0.5: no NaN
    return k


def run_case(n: int, dtype: str, repeats: int = 3, d: int = D, seed: int = 0) -> dict[str, Any]:
    """Measure one case in this process; returns the JSON record."""
    baseline = maxrss_mb()
    x = torch.randn(
        n, d, generator=torch.Generator().manual_seed(seed), dtype=getattr(torch, dtype)
    )
    net = network()
    seconds, runs = median_time(lambda: net.kernel(x), repeats)
    peak = maxrss_mb()
    floor_seconds, floor_runs = median_time(lambda: floor(x), repeats)
    return {
        "name": NAME,
        "n": n,
        "d": d,
        "dtype": dtype,
        "seconds": seconds,
        "peak_mb": peak - baseline,
        "peak_total_mb": peak,
        "output_mb": 2 * n * n * x.element_size() / 2**20,
        "floor_seconds": floor_seconds,
        "ratio_to_floor": seconds / floor_seconds,
        "nt_seconds": NT_SECONDS.get((n, dtype)),
        "runs": runs,
        "floor_runs": floor_runs,
        "threads": torch.get_num_threads(),
        "loadavg_1min": os.getloadavg()[0],  # other work on the machine inflates timings
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_fc_kernel")
    parser.add_argument("--quick", action="store_true", help="n=500 only (smoke run)")
    parser.add_argument("--case", nargs=2, metavar=("N", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case is not None:  # one case, in this (fresh) process
        print(json.dumps(run_case(int(args.case[0]), args.case[1])), flush=True)
        return 0
    status = 0
    for n, dtype in QUICK_CASES if args.quick else CASES:
        record = run_case_process(
            "benchmarks.bench_fc_kernel", [str(n), dtype], f"{NAME} n={n} {dtype}"
        )
        if record is None:
            status = 1
            continue
        print(json.dumps(record), flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
