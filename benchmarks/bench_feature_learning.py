"""Feature learning: the exact linear muP limit (issue item 6) and learning-rate transfer (item 5).

JSON lines (``python -m benchmarks.bench_feature_learning [--quick] [--only linear|transfer]``),
float64 for the linear sweep, float32 for the transfer grids:

``feature_learning_linear``
    :func:`neural_kernels.feature_learning.linear_limit_sweep` on digits (1200 train /
    597 test, ``X/16`` centred plus a bias column, softmax cross entropy, batch 64,
    lr 0.5, 300 steps, sigma 1, 3 seeds), widths 64 to 16384. Acceptance: (a)
    ``ntk_limit_kernel_change == 0`` and the slope of ``ntk_kernel_change`` <= -0.5;
    (b) ``mup_limit_kernel_change >= 1`` and ``mup_limit_f0 == 0``; (c) the slopes of
    ``mup_logit_gap`` and ``mup_kernel_gap`` in [-0.7, -0.35]. ``baseline_seconds``:
    the limit alone (no finite networks) on the same batches.
``feature_learning_transfer``
    :func:`neural_kernels.feature_learning.transfer_study` under TP5's protocol (Adam,
    training loss on the 1200 digits after 100 steps of batch 64, base rates
    2^-14..2^-2): SP against muP, an MLP (widths 64 to 4096, 3 seeds) and a small CNN
    (32 to 256 channels, 5 seeds); per width the best rate (mean over seeds and per
    seed), its largest move in grid steps, the slope of log2 best rate against log2
    width and the parabola's sub-grid optimum (``--arch``: one of them; ``--runs
    FILE.jsonl``: reuse and append finished runs, as ``neural-kernels feature-learning
    --transfer-runs`` does).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any

import neural_kernels as nk
from neural_kernels.feature_learning._digits import digits

from ._common import maxrss_mb

WIDTHS = (64, 256, 1024, 4096, 16384)
QUICK_WIDTHS = (64, 256, 1024)


def linear(quick: bool) -> dict[str, Any]:
    """The linear limit sweep at the issue's sizes (``quick``: 1 seed, 100 steps)."""
    xtr, ytr, xte, yte = digits(1200, 597)
    widths = QUICK_WIDTHS if quick else WIDTHS
    steps, seeds = (100, 1) if quick else (300, 3)
    start = time.perf_counter()
    sweep = nk.feature_learning.linear_limit_sweep(
        xtr, ytr, xte, widths, y_test=yte, steps=steps, lr=0.5, batch_size=64, seeds=seeds
    )
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    nk.feature_learning.linear_limit_sweep(
        xtr, ytr, xte, widths[:2], steps=steps, lr=0.5, batch_size=64, seeds=1
    )
    baseline = time.perf_counter() - start
    d = sweep.as_dict()
    slopes = d["slopes"]
    d.pop("loss")
    return {
        "name": "feature_learning_linear",
        "n": 1200,
        "steps": steps,
        "seeds": seeds,
        **d,
        "acceptance": {
            "a_ntk_limit_constant": d["ntk_limit_kernel_change"] == 0.0,
            "a_ntk_slope_le_-0.5": slopes["ntk_kernel_change"] <= -0.5,
            "b_mup_limit_change_ge_1": d["mup_limit_kernel_change"] >= 1.0,
            "b_mup_f0_zero": d["mup_limit_f0"] == 0.0,
            "c_logit_slope_in_range": -0.7 <= slopes["mup_logit_gap"] <= -0.35,
            "c_kernel_slope_in_range": -0.7 <= slopes["mup_kernel_gap"] <= -0.35,
        },
        "seconds": seconds,
        "baseline": "two widths, one seed",
        "baseline_seconds": baseline,
        "peak_mb": maxrss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_feature_learning")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("linear", "transfer"))
    parser.add_argument("--arch", choices=("mlp", "cnn"), help="transfer: one architecture")
    parser.add_argument("--runs", metavar="FILE.jsonl", help="transfer: finished runs (resumable)")
    args = parser.parse_args(argv)
    if args.only in (None, "linear"):
        print(json.dumps(linear(args.quick)), flush=True)
    if args.only in (None, "transfer"):
        archs = (args.arch,) if args.arch else ("mlp", "cnn")
        for row in transfer(args.quick, archs, args.runs):
            print(json.dumps(row), flush=True)
    return 0


def transfer(
    quick: bool, archs: tuple[str, ...] = ("mlp", "cnn"), runs: str | None = None
) -> Iterator[dict[str, Any]]:
    """SP against muP under TP5's protocol (:data:`~neural_kernels.feature_learning.transfer
    .PROTOCOL`: Adam, 100 steps, 2^-14..2^-2), an MLP and a small CNN (float32).

    One row per architecture and parametrization, yielded as soon as it is done.
    ``baseline_seconds``: the same grid at the smallest width alone (where SP = muP).
    ``quick``: the three smallest widths, one seed, 20 steps. ``runs``: a store of
    finished runs (``seconds`` then counts only the runs trained here).
    """
    from neural_kernels.feature_learning.transfer import PROTOCOL, transfer_study

    kw: dict[str, Any] = {"steps": 20, "seeds": 1} if quick else {}
    for arch in archs:
        widths = PROTOCOL["widths"][arch][:3] if quick else PROTOCOL["widths"][arch]
        start = time.perf_counter()
        transfer_study((arch,), {arch: widths[:1] * 2}, parametrizations=("mup",), **kw)
        baseline = (time.perf_counter() - start) / 2
        for p in ("standard", "mup"):
            start = time.perf_counter()
            tr = transfer_study((arch,), {arch: widths}, parametrizations=(p,), store=runs, **kw)[
                arch
            ][p]
            yield {
                "name": "feature_learning_transfer",
                "arch": arch,
                "n": PROTOCOL["n_train"],
                "batch_size": PROTOCOL["batch_size"],
                "seeds": kw.get("seeds", PROTOCOL["seeds"][arch]),
                **tr.as_dict(),
                "seconds": time.perf_counter() - start,
                "baseline": "the grid at the smallest width",
                "baseline_seconds": baseline,
                "peak_mb": maxrss_mb(),
            }


if __name__ == "__main__":
    raise SystemExit(main())
