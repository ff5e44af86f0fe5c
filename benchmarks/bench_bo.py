"""Bayesian optimisation steps with infinite-width surrogates, against Matérn in the same run.

Work timed: :func:`neural_kernels.applications.bayesopt.run_bo` with ``n`` Sobol points and
``ITERATIONS`` BO steps (each step: fit ``SingleTaskGP`` by marginal likelihood, maximise
qLogEI with ``q = 1``, evaluate), for each surrogate on each problem. Each case runs in a
fresh subprocess and prints one JSON line:

``seconds`` / ``seconds_per_step``
    the whole loop / divided by ``ITERATIONS``.
``peak_mb``
    peak resident memory of the case's process (``VmHWM``) above the post-import baseline.
``baseline_seconds`` / ``ratio``
    the same loop with the Matérn-5/2 ARD surrogate (``"matern"``) in the same run, and
    ``seconds / baseline_seconds``.
``best``
    the best value found (for the quality comparison over seeds, run ``neural-kernels bo``).

``python -m benchmarks.bench_bo [--quick]`` (``--quick``: Branin, ``n = 6``, one step).
Needs the ``botorch`` extra (absent: one line saying so, exit status 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ._common import maxrss_mb
from ._common import run_case as run_case_process

NAME = "bo_loop"
ITERATIONS = 3
SURROGATES = ("matern", "ibnn", "ntk", "ibnn_tutorial")
#: (problem, initial points)
CASES = (("branin", 10), ("hartmann6", 20), ("mlp200", 50))
QUICK_CASES = (("branin", 6),)


def run_case(problem: str, n: int, surrogate: str, iterations: int) -> dict[str, Any]:
    """One loop in this process: its time, peak memory and best value."""
    import torch

    from neural_kernels.applications.bayesopt import make_problem, run_bo

    torch.set_num_threads(1)
    p = make_problem(problem)
    base = maxrss_mb()
    start = time.perf_counter()
    best = run_bo(p, surrogate, n_init=n, iterations=iterations, seed=0, raw_samples=32)
    seconds = time.perf_counter() - start
    return {
        "name": f"{NAME}_{problem}_{surrogate}",
        "n": n,
        "dim": p.dim,
        "iterations": iterations,
        "seconds": seconds,
        "seconds_per_step": seconds / max(1, iterations),
        "peak_mb": maxrss_mb() - base,
        "best": float(best[-1]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_bo")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--case", nargs=4, metavar=("PROBLEM", "N", "SURROGATE", "STEPS"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import botorch  # noqa: F401
    except ImportError:
        print(json.dumps({"name": NAME, "skipped": "needs the botorch extra"}))
        return 0
    if args.case:
        problem, n, surrogate, steps = args.case
        print(json.dumps(run_case(problem, int(n), surrogate, int(steps))))
        return 0
    iterations = 1 if args.quick else ITERATIONS
    status = 0
    for problem, n in QUICK_CASES if args.quick else CASES:
        records = {}
        for surrogate in SURROGATES:
            rec = run_case_process(
                "benchmarks.bench_bo",
                [problem, str(n), surrogate, str(iterations)],
                f"{NAME} {problem} {surrogate}",
            )
            if rec is None:
                status = 1
                continue
            records[surrogate] = rec
        base = records.get("matern", {}).get("seconds")
        for rec in records.values():
            rec["baseline_seconds"] = base
            rec["ratio"] = rec["seconds"] / base if base else None
            print(json.dumps(rec), flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
