"""``neural-kernels theory``: the theory of wide networks against experiment.

Runs the checks of :mod:`neural_kernels.theory.checks` at the sizes of issue 13 and
writes their report (``index.html``, plots, ``results.json`` with every number) into
``--out``:

- finite-width corrections against exact Monte Carlo of the Gram chain
  (``--mc-samples`` chains per row);
- criticality: ``Var(G)/K^2`` against depth over width (``--depth`` layers of width
  ``--width``) for ReLU and tanh at and away from criticality;
- infinite depth on the ``d = 2`` Dirichlet sphere (``--sphere-n`` training points,
  ``--sphere-test`` test points; the ReLU NTK on ``--relu-n`` points and
  ``--relu-test`` test points at depths 10, 100, ... up to ``--relu-depth``). The deep
  kernels cost ``depth x n x (n + test)`` dual evaluations: the issue's sizes (the
  defaults) take tens of minutes on a loaded CPU;
- random-feature risk on the power-law task (``--n`` samples, ``--trials`` draws) and
  kernel ridge / finite-twin random-feature risk on the digits (``--digits``);
- training residuals along the NTK's eigendirections for twins of growing width.

With ``--quick``: small sizes, a few seconds.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..report import Progress, Report, Section, write_report
from ._command import Command, UsageError
from ._config import flag, resolve_config

__all__ = ["COMMAND", "TheoryConfig", "run_theory"]


@dataclass(frozen=True)
class TheoryConfig:
    """Options of ``neural-kernels theory`` (each one is also a flag and a TOML key).

    Attributes:
        out: output folder.
        seed: seed of every experiment.
        mc_samples: Gram-chain samples per row of the finite-width table.
        depth: depth of the criticality profiles.
        width: width of the criticality profiles.
        sphere_n: training points on the sphere.
        sphere_test: test points on the sphere.
        sphere_depth: depth of the optimal activation's deep kernel.
        relu_n: training points of the deep ReLU NTK.
        relu_depth: the deepest ReLU NTK (depths 10, 100, ... up to it).
        relu_test: test points of the deep ReLU NTK.
        n: training points of the power-law task.
        modes: eigenmodes of the power-law task.
        trials: draws per point of the risk experiments.
        digits: also run the digits risk checks (needs scikit-learn).
        widths: comma-separated widths of the eigendirection dynamics.
        quick: small sizes (a few seconds).
        quiet: no progress output.

    """

    out: str = "report_theory"
    seed: int = 0
    mc_samples: int = 100_000
    depth: int = 64
    width: int = 32
    sphere_n: int = 1000
    sphere_test: int = 2000
    sphere_depth: int = 100
    relu_n: int = 100
    relu_depth: int = 1000
    relu_test: int = 200
    n: int = 200
    modes: int = 2000
    trials: int = 10
    digits: bool = True
    widths: str = "32,128,512,2048"
    quick: bool = False
    quiet: bool = False


#: What ``--quick`` changes.
QUICK: dict[str, Any] = {
    "mc_samples": 4000,
    "depth": 12,
    "width": 12,
    "sphere_n": 80,
    "sphere_test": 200,
    "sphere_depth": 20,
    "relu_n": 30,
    "relu_depth": 100,
    "relu_test": 60,
    "n": 40,
    "modes": 200,
    "trials": 2,
    "widths": "32,256",
}

_INTS = (
    ("mc_samples", "Gram-chain samples per finite-width row"),
    ("depth", "depth of the criticality profiles"),
    ("width", "width of the criticality profiles"),
    ("sphere_n", "training points on the sphere"),
    ("sphere_test", "test points on the sphere"),
    ("sphere_depth", "depth of the optimal activation's kernel"),
    ("relu_n", "training points of the deep ReLU NTK"),
    ("relu_depth", "deepest ReLU NTK"),
    ("relu_test", "test points of the deep ReLU NTK"),
    ("n", "training points of the power-law task"),
    ("modes", "eigenmodes of the power-law task"),
    ("trials", "draws per risk point"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``neural-kernels theory``."""
    d = TheoryConfig()
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: ./{d.out})")
    p.add_argument("--seed", type=int, metavar="N", help=f"seed (default: {d.seed})")
    for name, text in _INTS:
        default = getattr(d, name)
        p.add_argument(flag(name), type=int, metavar="N", help=f"{text} (default: {default})")
    p.add_argument("--widths", metavar="W[,W...]", help=f"dynamics widths (default: {d.widths})")
    p.add_argument("--digits", action=argparse.BooleanOptionalAction,
                   help="run the digits risk checks (default: on)")  # fmt: skip
    p.add_argument("--quick", action=argparse.BooleanOptionalAction, help="small sizes")
    p.add_argument("--quiet", action=argparse.BooleanOptionalAction, help="no progress output")
    p.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")


def parse_widths(cfg: TheoryConfig) -> tuple[int, ...]:
    """``--widths`` as positive integers, increasing."""
    try:
        values = tuple(sorted({int(v) for v in cfg.widths.split(",") if v.strip()}))
    except ValueError:
        raise UsageError(f"--widths must be comma-separated integers, got {cfg.widths!r}") from None
    if not values or values[0] < 1:
        raise UsageError(f"--widths must be integers >= 1, got {cfg.widths!r}")
    return values


def check_config(cfg: TheoryConfig) -> None:
    """Refuse bad values with a :class:`UsageError` naming the flag (nothing is written)."""
    for name, _ in _INTS:
        if getattr(cfg, name) < (2 if name in ("mc_samples", "trials", "depth") else 1):
            low = 2 if name in ("mc_samples", "trials", "depth") else 1
            raise UsageError(f"{flag(name)} must be an integer >= {low}, got {getattr(cfg, name)}")
    if cfg.relu_depth < 10:
        raise UsageError(f"--relu-depth must be at least 10, got {cfg.relu_depth}")
    if cfg.relu_n > cfg.sphere_n:
        raise UsageError(f"--relu-n {cfg.relu_n} must not exceed --sphere-n {cfg.sphere_n}")
    parse_widths(cfg)
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {cfg.out}: exists and is not a folder")


def _sizes(cfg: TheoryConfig) -> dict[str, Any]:
    """The risk experiments' grids for ``n`` samples and ``modes`` eigenmodes."""
    n = cfg.n
    ks = sorted({max(1, round(n * f)) for f in (0.1, 0.25, 0.5, 0.75, 0.95, 1.05, 1.25, 1.5,
                                                2.0, 4.0)} | {cfg.modes})  # fmt: skip
    ks = [k for k in ks if k != n]
    return {
        "ks": (*ks, math.inf),
        "optimal_ks": (max(1, n // 4), max(1, n // 2), n, 2 * n, math.inf),
        "optimal_ns": (max(1, n // 4), max(1, n // 2), n, 2 * n),
    }


def run_theory(cfg: TheoryConfig) -> Report:
    """Run every check for a checked configuration and return the report."""
    from ..report.sections.theory import (
        criticality_section,
        dynamics_section,
        finite_width_section,
        risk_section,
        sphere_section,
    )
    from ..theory import checks

    if cfg.quick:
        cfg = replace(cfg, **QUICK)  # type: ignore[arg-type]
    start = time.perf_counter()
    report = Report("theory", asdict(cfg))
    timings: dict[str, float] = {}
    relu_depths = tuple(10**i for i in range(1, int(math.log10(cfg.relu_depth)) + 1))
    grids = _sizes(cfg)
    steps = 5 + int(cfg.digits)
    with Progress("theory checks", enabled=not cfg.quiet) as progress:
        t = time.perf_counter()
        report.add(finite_width_section(checks.finite_width_table(cfg.mc_samples, cfg.seed)))
        timings["finite_width"] = time.perf_counter() - t
        progress(1, steps)
        t = time.perf_counter()
        report.add(criticality_section(checks.criticality_profiles(cfg.depth, cfg.width)))
        timings["criticality"] = time.perf_counter() - t
        progress(2, steps)
        t = time.perf_counter()
        sphere = checks.sphere_classifiers(
            cfg.sphere_n,
            cfg.sphere_test,
            cfg.sphere_depth,
            cfg.relu_n,
            relu_depths,
            cfg.seed,
            cfg.relu_test,
        )
        report.add(sphere_section(sphere))
        timings["infinite_depth"] = time.perf_counter() - t
        progress(3, steps)
        t = time.perf_counter()
        power = checks.power_law_risk(
            n=cfg.n, n_modes=cfg.modes, trials=cfg.trials, seed=cfg.seed,
            optimal_trials=max(2, cfg.trials // 2), **grids,
        )  # fmt: skip
        progress(4, steps)
        digits = None
        if cfg.digits:
            small = cfg.quick
            digits = checks.digits_risk(
                ns=(100, 200) if small else (100, 200, 400, 1000),
                rf_ks=(50, 200) if small else (50, 100, 300, 1000),
                trials=max(2, cfg.trials // 2),
                seed=cfg.seed,
            )
            progress(5, steps)
        report.add(risk_section(power, digits))
        timings["risk"] = time.perf_counter() - t
        t = time.perf_counter()
        report.add(dynamics_section(checks.dynamics(widths=parse_widths(cfg))))
        timings["eigen_dynamics"] = time.perf_counter() - t
        progress(steps, steps)
    total = time.perf_counter() - start
    report.add(Section("timings", {**timings, "total_seconds": total}, [f"time     {total:.1f} s"]))
    return report


def run(args: argparse.Namespace) -> int:
    """``neural-kernels theory``: resolve and check the options, run, write, summarise."""
    cfg = resolve_config(args, TheoryConfig(), "theory")
    check_config(cfg)
    if cfg.digits:
        try:
            import sklearn  # type: ignore[import-untyped]  # noqa: F401  (the digits)
        except ImportError:
            raise UsageError(
                "--digits needs scikit-learn (the demo extra); pass --no-digits"
            ) from None
    report = run_theory(cfg)
    paths = write_report(report, Path(cfg.out).expanduser())
    print(report.summary())
    print(f"wrote    {paths[-1]}")
    return 0


COMMAND = Command(
    "theory",
    "the theory of wide networks against experiment (finite width, depth, risk, dynamics)",
    add_arguments,
    run,
)
