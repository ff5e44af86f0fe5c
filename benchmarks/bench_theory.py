"""Random-feature risk on the power-law task: the eigenframework against the experiment.

JSON lines (``python -m benchmarks.bench_theory [--quick]``), float64, in this process:

``rf_risk_power_law``
    for each number of features ``k`` (ridge ``0.1``, ``n = 200`` samples, 2000 modes,
    eigenvalues ``i^-1.5``, squared target coefficients ``i^-1.3``; ``--quick``: 50
    samples, 400 modes): ``seconds``, the median time of one
    :func:`neural_kernels.theory.rf_risk` solve; ``baseline_seconds``, the time of the
    ridge-regression experiment it predicts (``trials`` draws,
    :func:`~neural_kernels.theory.risk_experiments.rf_experiment`, measured in the same
    run); ``theory``, ``measured``, ``standard_error`` and ``relative_deviation`` (the
    issue asks for <= 7% at ``k >= 100``), ``peak_memory_mb``.
"""

from __future__ import annotations

import argparse
import json
import math
import time

from neural_kernels.theory import rf_risk
from neural_kernels.theory.risk_experiments import power_law_task, rf_experiment

from ._common import maxrss_mb, median_time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_theory")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args(argv)
    n, modes, trials = (50, 400, 3) if args.quick else (200, 2000, 10)
    ks = (25, 100, 400, math.inf) if args.quick else (100, 150, 250, 400, 800, 2000, math.inf)
    lam, v = power_law_task(modes, 1.5, 1.3)
    for k in ks:
        seconds, _ = median_time(lambda k=k: rf_risk(lam, v, n, k, 0.1), 5)
        theory = rf_risk(lam, v, n, k, 0.1).test_risk
        start = time.perf_counter()
        measured, err = rf_experiment(lam, v, n, k, 0.1, trials=trials, seed=0)
        baseline = time.perf_counter() - start
        print(
            json.dumps(
                {
                    "name": "rf_risk_power_law",
                    "n": n,
                    "k": "inf" if math.isinf(k) else int(k),
                    "modes": modes,
                    "trials": trials,
                    "seconds": seconds,
                    "baseline_seconds": baseline,
                    "theory": theory,
                    "measured": measured,
                    "standard_error": err,
                    "relative_deviation": abs(measured - theory) / theory,
                    "peak_memory_mb": maxrss_mb(),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
