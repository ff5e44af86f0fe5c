"""``neural-kernels bo``: Bayesian optimisation with infinite-width surrogates against Matérn.

For each problem (Branin 2-d, Hartmann 6-d, Ackley 10-d, the 200-d random-MLP objective)
and each surrogate of :data:`~neural_kernels.applications.bayesopt.SURROGATES` (by default
the Matérn-5/2 ARD kernel with BoTorch's Gamma priors, the baseline of the I-BNN paper; the
I-BNN NNGP of a depth-3 ReLU network; the NTK of the same network; on request
``SingleTaskGP``'s current default, the tutorial's fixed I-BNN and a deeper Erf net), run
the BoTorch loop of :func:`neural_kernels.applications.bayesopt.run_bo` (``q = 1``,
qLogEI, hyperparameters fitted by marginal likelihood except for ``ibnn_tutorial``) for
``--seeds`` seeds from a shared Sobol design, and
report the best value found against the number of evaluations (mean and a band of one
standard error over seeds) in ``--out`` (``index.html``, one PNG per problem,
``results.json`` with every curve). Needs the ``botorch`` extra.

The defaults are sized to run in a few minutes (``--n-init 8 --iterations 10
--seeds 3``). The full-size comparison of the issue::

    neural-kernels bo --n-init 20 --iterations 50 --seeds 5 --raw-samples 256 --restarts 4

and the tutorial-sized 200-d problem alone (BoTorch's tutorial: 50 Sobol points, 100
steps, ``optimize_acqf`` with 10 restarts and 200 raw samples), resumable::

    neural-kernels bo --problems mlp200 --surrogates matern,ibnn,ibnn_tutorial \
        --n-init 50 --iterations 100 --seeds 3 --restarts 10 --raw-samples 200 \
        --curves mlp200.jsonl

``--curves FILE`` appends every finished (problem, surrogate, seed) curve to ``FILE`` (one
JSON line) and takes the curves already there (same sizes, read again before each run)
instead of rerunning them, so a long comparison can be resumed after an interruption or
split over processes (``--first-seed 2 --seeds 1`` runs seed 2 alone).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._jsonl import append_line
from ..report import Plot, Progress, Report, Section, write_report
from ._command import Command, UsageError
from ._config import flag, resolve_config

__all__ = ["COMMAND", "BoConfig", "run_bo_report"]

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


@dataclass(frozen=True)
class BoConfig:
    """Options of ``neural-kernels bo`` (each one is also a flag and a TOML key).

    Attributes:
        out: output folder.
        problems: comma-separated problems (``branin,hartmann6,ackley10,mlp200``).
        surrogates: comma-separated surrogates (``matern``, ``ibnn``, ``ntk``, ``erf``,
            ``default``, ``ibnn_tutorial``).
        seeds: repetitions (seed ``s`` draws the initial design of every surrogate).
        first_seed: the first seed (seeds ``first_seed .. first_seed + seeds - 1``).
        n_init: Sobol initial points.
        iterations: BO steps after the initial design (one evaluation each).
        raw_samples: raw samples of ``optimize_acqf``.
        restarts: restarts of ``optimize_acqf``.
        curves: JSON-lines file of finished curves, read and appended ("": none).
        quiet: no progress output.

    """

    out: str = "bo-report"
    problems: str = "branin,hartmann6,ackley10,mlp200"
    surrogates: str = "matern,ibnn,ntk"
    seeds: int = 3
    first_seed: int = 0
    n_init: int = 8
    iterations: int = 10
    raw_samples: int = 32
    restarts: int = 2
    curves: str = ""
    quiet: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``neural-kernels bo``."""
    d = BoConfig()
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: ./{d.out})")
    p.add_argument("--problems", metavar="LIST", help=f"problems (default: {d.problems})")
    p.add_argument("--surrogates", metavar="LIST", help=f"surrogates (default: {d.surrogates})")
    p.add_argument("--seeds", type=int, metavar="N", help=f"repetitions (default: {d.seeds})")
    p.add_argument(
        "--first-seed", type=int, metavar="N", help=f"first seed (default: {d.first_seed})"
    )
    p.add_argument("--n-init", type=int, metavar="N", help=f"Sobol points (default: {d.n_init})")
    p.add_argument(
        "--iterations", type=int, metavar="N", help=f"BO steps (default: {d.iterations})"
    )
    p.add_argument(
        "--raw-samples", type=int, metavar="N", help=f"optimize_acqf (default: {d.raw_samples})"
    )
    p.add_argument(
        "--restarts", type=int, metavar="N", help=f"optimize_acqf (default: {d.restarts})"
    )
    p.add_argument(
        "--curves", metavar="FILE.jsonl", help="finished curves: reused and appended (resumable)"
    )
    p.add_argument("--quiet", action=argparse.BooleanOptionalAction, help="no progress output")
    p.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")


def _run_key(cfg: BoConfig, problem: str, surrogate: str, seed: int) -> str:
    return json.dumps(
        [problem, surrogate, seed, cfg.n_init, cfg.iterations, cfg.raw_samples, cfg.restarts]
    )


def _load_curves(path: str) -> dict[str, tuple[list[float], float]]:
    """(curve, seconds) of earlier runs in ``path`` by run key (torn lines are ignored)."""
    out: dict[str, tuple[list[float], float]] = {}
    if not path or not Path(path).expanduser().exists():
        return out
    for line in Path(path).expanduser().read_text().splitlines():
        try:
            rec = json.loads(line)
            out[rec["key"]] = ([float(v) for v in rec["best"]], float(rec["seconds"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def check_config(cfg: BoConfig) -> tuple[list[str], list[str]]:
    """The problem and surrogate lists, or a :class:`UsageError` naming the flag."""
    from ..applications.bayesopt import PROBLEMS, SURROGATES

    for name in ("seeds", "n_init", "raw_samples", "restarts"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"{flag(name)} must be an integer >= 1, got {getattr(cfg, name)}")
    if cfg.first_seed < 0:
        raise UsageError(f"{flag('first_seed')} must be an integer >= 0, got {cfg.first_seed}")
    if cfg.iterations < 0:
        raise UsageError(f"{flag('iterations')} must be an integer >= 0, got {cfg.iterations}")
    problems = [p.strip() for p in cfg.problems.split(",") if p.strip()]
    surrogates = [s.strip() for s in cfg.surrogates.split(",") if s.strip()]
    for names, known, key in (
        (problems, PROBLEMS, "problems"),
        (surrogates, SURROGATES, "surrogates"),
    ):
        bad = [n for n in names if n not in known]
        if bad or not names:
            raise UsageError(
                f"{flag(key)} got {getattr(cfg, key)!r}; use names from {', '.join(known)}"
            )
    return problems, surrogates


def run_bo_report(cfg: BoConfig) -> Report:
    """Run every (problem, surrogate, seed) and collect the curves into a report."""
    from ..applications.bayesopt import make_problem, run_bo

    problems, surrogates = check_config(cfg)
    report = Report("bo", asdict(cfg))
    total = len(problems) * len(surrogates) * cfg.seeds
    done = 0
    with Progress("bo: problems x surrogates x seeds", enabled=not cfg.quiet) as progress:
        for name in problems:
            problem = make_problem(name)
            curves: dict[str, list[list[float]]] = {}
            seconds: dict[str, float] = {}
            for surrogate in surrogates:
                curves[surrogate] = []
                seconds[surrogate] = 0.0
                for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
                    key = _run_key(cfg, name, surrogate, seed)
                    start = time.perf_counter()
                    done_before = _load_curves(cfg.curves)  # other processes may add runs
                    if key in done_before:
                        curves[surrogate].append(done_before[key][0])
                        seconds[surrogate] += done_before[key][1]
                    else:
                        best = run_bo(
                            problem,
                            surrogate,
                            n_init=cfg.n_init,
                            iterations=cfg.iterations,
                            seed=seed,
                            raw_samples=cfg.raw_samples,
                            restarts=cfg.restarts,
                        )
                        curves[surrogate].append([float(v) for v in best])
                        took = time.perf_counter() - start
                        seconds[surrogate] += took
                        if cfg.curves:
                            rec = {"key": key, "best": curves[surrogate][-1], "seconds": took}
                            append_line(cfg.curves, rec)
                    done += 1
                    progress(done, total)
            report.add(_section(name, problem.dim, problem.optimum, curves, seconds, cfg))
    return report


def _section(
    name: str,
    dim: int,
    optimum: float | None,
    curves: dict[str, list[list[float]]],
    seconds: dict[str, float],
    cfg: BoConfig,
) -> Section:
    final = {}
    for surrogate, runs in curves.items():
        last = np.array([r[-1] for r in runs])
        final[surrogate] = {
            "mean": float(last.mean()),
            "stderr": float(last.std(ddof=1) / math.sqrt(len(last))) if len(last) > 1 else 0.0,
            "per_seed": last.tolist(),
        }
    data = {
        "dim": dim,
        "optimum": optimum,
        "n_init": cfg.n_init,
        "iterations": cfg.iterations,
        "best_so_far": curves,
        "final_best": final,
        "seconds": seconds,
    }
    ranked = sorted(final, key=lambda s: -final[s]["mean"])
    lines = [f"bo {name} ({dim}-d, optimum {optimum}): best after {cfg.n_init + cfg.iterations}"]
    lines += [
        f"  {s:8} {final[s]['mean']:+.4f} +- {final[s]['stderr']:.4f}  ({seconds[s]:.1f} s)"
        for s in ranked
    ]

    def draw(ax: Any) -> None:
        for i, (surrogate, runs) in enumerate(curves.items()):
            arr = np.array(runs)
            mean = arr.mean(0)
            err = arr.std(0, ddof=1) / math.sqrt(len(arr)) if len(arr) > 1 else 0 * mean
            steps = np.arange(1, arr.shape[1] + 1)
            color = _COLORS[i % len(_COLORS)]
            ax.plot(steps, mean, color=color, label=surrogate)
            ax.fill_between(steps, mean - err, mean + err, color=color, alpha=0.2)
        if optimum is not None:
            ax.axhline(optimum, color="grey", lw=0.8, ls=":", label="optimum")
        ax.axvline(cfg.n_init, color="grey", lw=0.8)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("best value found")
        ax.set_title(f"{name} ({dim}-d), {len(next(iter(curves.values())))} seeds")
        ax.legend(fontsize=8)

    return Section(
        f"bo_{name}",
        data,
        lines,
        [
            Plot(
                f"bo_{name}",
                draw,
                f"Best value found on {name} against evaluations (mean and one standard "
                "error over seeds; the vertical line ends the Sobol design).",
            )
        ],
        title=f"Bayesian optimisation: {name} ({dim}-d)",
        text="SingleTaskGP with each surrogate kernel, q = 1, qLogEI, hyperparameters "
        "fitted by marginal likelihood at every step.",
    )


def run(args: argparse.Namespace) -> int:
    """``neural-kernels bo``: check the options, run, write, summarise."""
    cfg = resolve_config(args, BoConfig(), "bo")
    check_config(cfg)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    report = run_bo_report(cfg)
    paths = write_report(report, Path(cfg.out).expanduser())
    print(report.summary())
    print(f"wrote    {paths[-1]}")
    return 0


COMMAND = Command(
    "bo",
    "Bayesian optimisation with infinite-width surrogates against Matern (botorch extra)",
    add_arguments,
    run,
)
