"""Limits of the NTK perspective and nonlinear width sweeps at full size (JSON lines).

``python -m benchmarks.bench_ntk_limits [--quick]``, float64, digits (``X/16`` centred):

``ntk_limits``
    one line per set-up, depth and width (:func:`neural_kernels.feature_learning.ntk_limits
    .ntk_limits_sweep`): ``lambda_min``, ``lambda_max``, ``condition`` of the empirical NTK
    Gram, ``jacobian_constant``, ``kernel_movement``, ``linearisation_gap``, test numbers,
    ``seconds`` for the run and ``baseline_seconds``: the empirical NTK Gram alone at init.
``ntk_gp_vs_ensemble``
    NTK-GP against an ensemble of trained nets: log-likelihood, 50/90 % coverage.
``nonlinear``
    per activation: muP successive-width gaps, NTK gaps to the kernel prediction.
``split_digits_forgetting``
    five two-class tasks in turn, NTK-parametrized ReLU MLP (depth 1), widths 64 to 4096,
    3 seeds: mean forgetting and final accuracy, early-stopped (10 steps per task) against
    converged (300), every run's accuracy matrix.

Full sizes: widths 2^4..2^12, depths 1-4 (memory: the Jacobian on ``n_probe`` points holds
``10 n_probe`` rows of all parameters, twice). ``--quick``: widths 2^4..2^10, depths 1-2.
``--only``, ``--depths``, ``--widths``: one part, some depths or widths.
``docs/results/ntk_limits_depth4_width4096.jsonl`` holds the sweep's lines at depth 4 for
widths 16 and 4096 (``n_probe = 1``: 13.4 GB peak, 20 minutes on one core).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

import neural_kernels as nk
from neural_kernels.feature_learning import _digits
from neural_kernels.feature_learning.forgetting import forgetting_sweep, split_digits_forgetting
from neural_kernels.feature_learning.nonlinear import mlp, nonlinear_sweep
from neural_kernels.feature_learning.ntk_limits import ntk_gp_vs_ensemble, ntk_limits_sweep

from ._common import maxrss_mb


def _emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def _baseline(width: int, depth: int, n: int) -> float:
    """Seconds of one empirical NTK Gram at initialisation (NTK parametrization)."""
    x = _digits.digits(n, 1)[0]
    model = mlp("relu", depth).module((64,), width=width, dtype=torch.float64)
    t0 = time.perf_counter()
    nk.empirical_ntk(model, x)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ntk_limits")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--depths", help="comma-separated depths (default: all)")
    parser.add_argument("--widths", help="comma-separated widths (default: all; first: base)")
    parser.add_argument("--only", choices=("sweep", "gp", "nonlinear", "forgetting"))
    args = parser.parse_args(argv)
    if args.quick:
        widths, depths, n, steps = [2**k for k in range(4, 11, 2)], (1, 2), 32, 40
    else:
        widths, depths, n, steps = [2**k for k in range(4, 13)], (1, 2, 3, 4), 128, 200
    if args.depths:
        depths = tuple(int(d) for d in args.depths.split(","))
    if args.widths:
        widths = [int(w) for w in args.widths.split(",")]
    if args.only in (None, "sweep"):
        _sweep(widths, depths, n, steps)
    if args.only in (None, "gp"):
        _gp(n, steps)
    if args.only in (None, "nonlinear"):
        _nonlinear(widths, n, steps)
    if args.only in (None, "forgetting"):
        _forgetting(args.quick)
    return 0


def _sweep(widths: list[int], depths: tuple[int, ...], n: int, steps: int) -> None:
    """One ``ntk_limits`` line per set-up, depth and width."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for d in depths:
        for w in widths:
            t0 = time.perf_counter()
            res = ntk_limits_sweep((widths[0], w) if w != widths[0] else (w,), (d,),
                                   n_train=n, n_test=n, n_probe=1 if w > 1024 else 2,
                                   steps=steps)  # fmt: skip
            secs = time.perf_counter() - t0
            base = _baseline(w, d, n)
            for name in res.setups:
                _emit({"name": "ntk_limits", "setup": name, "depth": d, "width": w, "n": n,
                       "steps": steps, **res.runs[name][str(d)][str(w)], "seconds": secs,
                       "baseline_seconds": base, "peak_mb": maxrss_mb()})  # fmt: skip


def _gp(n: int, steps: int) -> None:
    t0 = time.perf_counter()
    g = ntk_gp_vs_ensemble(512, 1, 8, n_train=n, n_test=2 * n, steps=2 * steps)
    _emit({"name": "ntk_gp_vs_ensemble", "n": n, **g.to_dict(),
           "seconds": time.perf_counter() - t0, "peak_mb": maxrss_mb()})  # fmt: skip


def _nonlinear(widths: list[int], n: int, steps: int) -> None:
    for act in ("tanh", "relu"):
        t0 = time.perf_counter()
        s = nonlinear_sweep(act, widths[1:], n_train=n, n_test=n, steps=steps // 2, seeds=(0, 1))
        _emit({"name": "nonlinear", "n": n, **s.to_dict(), "seconds": time.perf_counter() - t0,
               "peak_mb": maxrss_mb()})  # fmt: skip


def _forgetting(quick: bool) -> None:
    """Split digits, NTK parametrization: forgetting against width, early-stopped/converged.

    ``baseline_seconds``: one run at the smallest width (seed 0).
    """
    widths, seeds = ((64, 256), 1) if quick else ((64, 256, 1024, 4096), 3)
    t0 = time.perf_counter()
    res = forgetting_sweep(widths, 1, "ntk", seeds=seeds)
    secs = time.perf_counter() - t0
    t0 = time.perf_counter()
    split_digits_forgetting(widths[0], 1, "ntk")
    _emit({"name": "split_digits_forgetting", "n": 1200, **res.to_dict(), "seconds": secs,
           "baseline": "one run at the smallest width",
           "baseline_seconds": time.perf_counter() - t0, "peak_mb": maxrss_mb()})  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
