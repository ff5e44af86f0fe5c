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

Full sizes: widths 2^4..2^12, depths 1-4 (memory: the Jacobian on ``n_probe`` points holds
``10 n_probe`` rows of all parameters, twice). ``--quick``: widths 2^4..2^10, depths 1-2.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

import neural_kernels as nk
from neural_kernels.feature_learning import _digits
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
    args = parser.parse_args(argv)
    if args.quick:
        widths, depths, n, steps = [2**k for k in range(4, 11, 2)], (1, 2), 32, 40
    else:
        widths, depths, n, steps = [2**k for k in range(4, 13)], (1, 2, 3, 4), 128, 200
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
    t0 = time.perf_counter()
    g = ntk_gp_vs_ensemble(512, 1, 8, n_train=n, n_test=2 * n, steps=2 * steps)
    _emit({"name": "ntk_gp_vs_ensemble", "n": n, **g.to_dict(),
           "seconds": time.perf_counter() - t0, "peak_mb": maxrss_mb()})  # fmt: skip
    for act in ("tanh", "relu"):
        t0 = time.perf_counter()
        s = nonlinear_sweep(act, widths[1:], n_train=n, n_test=n, steps=steps // 2, seeds=(0, 1))
        _emit({"name": "nonlinear", "n": n, **s.to_dict(), "seconds": time.perf_counter() - t0,
               "peak_mb": maxrss_mb()})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
