"""Closed-form gradient-descent predictions at many times, against one eigendecomposition.

Kernel: the NTK of ``Dense(512, w_std=sqrt(2), b_std=0.1), ReLU, Dense(1)`` on ``n``
standard-normal training inputs of dimension 64 and ``m`` test inputs, float64 (computed
once and stored in a temporary file, outside the timings). Work timed:
``nk.predict.gradient_descent_mse(ntk_train_train, y)`` then the mean at 50 times on the
test set and on the training set (``get="ntk"``). Each case runs in a fresh subprocess
and prints one JSON line:

``seconds``
    the whole prediction (building the predictor, one ``eigh``, both calls); the
    fastest of ``REPEATS`` runs (``runs``), each with a fresh predictor.
``peak_mb`` / ``peak_total_mb``
    ``ru_maxrss`` after the first prediction, above the post-load baseline (the loaded kernels
    included in it) / in total.
``eigh_peak_mb``
    the same after one bare ``torch.linalg.eigh`` (run first): the floor for ``peak_mb``.
``eigh_seconds``
    one ``torch.linalg.eigh`` of the same matrix in the same process: the fastest of one
    run first and one after each prediction (``eigh_runs``; a shared machine is noisy).
``ratio``
    ``seconds / eigh_seconds`` (target: <= 2).

``python -m benchmarks.bench_predict [--quick]`` (``--quick``: ``n = 1000``).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import neural_kernels as nk

from ._common import maxrss_mb
from ._common import run_case as run_case_process

NAME = "gd_mse_ntk_mean_50_times"
D = 64
TIMES = 50
#: Predictions per case, each followed by a bare eigh (one more eigh runs first).
REPEATS = 2
#: (n train, m test, k outputs)
CASES = ((5000, 500, 1), (5000, 500, 10))
QUICK_CASES = ((1000, 100, 1),)
ROOT = Path(__file__).resolve().parents[1]


def _eigh_seconds(a: torch.Tensor) -> float:
    start = time.perf_counter()
    torch.linalg.eigh(a)
    return time.perf_counter() - start


def make_kernels(n: int, m: int, k: int, path: Path, seed: int = 0) -> None:
    """The NTK train-train and test-train blocks and targets, saved to ``path``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n + m, D, generator=gen, dtype=torch.float64)
    net = nk.Sequential(
        nk.Dense(512, w_std=math.sqrt(2.0), b_std=0.1), nk.ReLU(), nk.Dense(1, b_std=0.1)
    )
    k_dd = net.kernel(x[:n], get="ntk").ntk
    k_td = net.kernel(x[n:], x[:n], get="ntk").ntk
    y = torch.randn(n, k, generator=gen, dtype=torch.float64)
    torch.save({"k_dd": k_dd, "k_td": k_td, "y": y}, path)


def _predict(k_dd: torch.Tensor, k_td: torch.Tensor, y: torch.Tensor) -> float:
    """One prediction from scratch (fresh predictor: its eigh included); returns seconds."""
    times = torch.logspace(-1, 4, TIMES, dtype=torch.float64)
    start = time.perf_counter()
    predict_fn = nk.predict.gradient_descent_mse({"ntk": k_dd}, y, diag_reg=1e-4)
    test = predict_fn(times, k_test_train=k_td, get="ntk").mean
    train = predict_fn(times, get="ntk").mean
    seconds = time.perf_counter() - start
    assert test.shape == (TIMES, k_td.shape[0], y.shape[1]) and bool(torch.isfinite(test).all())
    assert train.shape == (TIMES, *y.shape) and bool(torch.isfinite(train).all())
    return seconds


def run_case(path: Path, repeats: int = REPEATS) -> dict[str, Any]:
    """Time predictions and bare eighs, interleaved, in this (fresh) process."""
    data = torch.load(path)
    k_dd, k_td, y = data["k_dd"], data["k_td"], data["y"]
    baseline = maxrss_mb()
    eigh_runs = [_eigh_seconds(k_dd)]
    eigh_peak = maxrss_mb()
    runs = []
    for _ in range(repeats):
        runs.append(_predict(k_dd, k_td, y))
        if len(runs) == 1:
            peak = maxrss_mb()
        eigh_runs.append(_eigh_seconds(k_dd))
    seconds, eigh_seconds = min(runs), min(eigh_runs)
    return {
        "name": NAME,
        "n": k_dd.shape[0],
        "m": k_td.shape[0],
        "k": y.shape[1],
        "times": TIMES,
        "dtype": "float64",
        "seconds": seconds,
        "peak_mb": peak - baseline,
        "peak_total_mb": peak,
        "matrix_mb": k_dd.numel() * k_dd.element_size() / 2**20,
        "eigh_peak_mb": eigh_peak - baseline,
        "eigh_seconds": eigh_seconds,
        "eigh_runs": eigh_runs,
        "runs": runs,
        "ratio": seconds / eigh_seconds,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_predict")
    parser.add_argument("--quick", action="store_true", help="n=1000 only (smoke run)")
    parser.add_argument("--case", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case is not None:  # one case, in this (fresh) process
        print(json.dumps(run_case(Path(args.case))), flush=True)
        return 0
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, m, k in QUICK_CASES if args.quick else CASES:
            path = Path(tmp) / f"kernels_{n}_{m}_{k}.pt"
            make_kernels(n, m, k, path)
            record = run_case_process(
                "benchmarks.bench_predict", [str(path)], f"{NAME} n={n} k={k}"
            )
            if record is None:
                status = 1
                continue
            print(json.dumps(record), flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
