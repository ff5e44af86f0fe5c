"""``neural-kernels theory``: the results of :mod:`neural_kernels.theory` against experiments.

At full sizes (:data:`~neural_kernels.report.sections.theory.SIZES`): the 1/width
corrections against 100,000 exact Gram chains; criticality and the normalised
correction against ``L/n``; infinitely deep classifiers on the Dirichlet sphere law
(``d = 2``, 1000 training and 2000 test points; ReLU's NTK up to depth 10^4); the
random-feature risk on the power-law task (2000 modes, ``n = 200``, 10 trials) and the
kernel ridge risk of a depth-3 ReLU NTK on the digits; the training residual along the
NTK's eigendirections for twins of width 64 to 4096. Writes ``index.html``, plots and
``results.json`` (every number) into ``--out`` and prints a summary (several minutes on
two idle cores: ReLU's NTK at depth 10^4 and the RF experiments dominate; 24 minutes on a
heavily loaded machine). With ``--quick``: small sizes, a few seconds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..report import Progress, Report, Section, write_report
from ._command import Command, UsageError
from ._config import resolve_config

__all__ = ["COMMAND", "TheoryConfig", "run_theory"]


@dataclass(frozen=True)
class TheoryConfig:
    """Options of ``neural-kernels theory`` (each one is also a flag and a TOML key).

    Attributes:
        out: output folder.
        quick: small sizes (a few seconds).
        quiet: no progress output.

    """

    out: str = "report_theory"
    quick: bool = False
    quiet: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``neural-kernels theory``."""
    d = TheoryConfig()
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: ./{d.out})")
    p.add_argument("--quick", action=argparse.BooleanOptionalAction, help="small sizes")
    p.add_argument("--quiet", action=argparse.BooleanOptionalAction, help="no progress output")
    p.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")


def run_theory(cfg: TheoryConfig) -> Report:
    """Run every check at the configured size and return the report."""
    from ..report.sections import theory

    start = time.perf_counter()
    size = "quick" if cfg.quick else "full"
    report = Report("theory", {**asdict(cfg), "size": size})
    with Progress("theory checks", enabled=not cfg.quiet) as progress:
        for section in theory.sections(size, progress):
            report.add(section)
    total = time.perf_counter() - start
    report.add(Section("timings", {"total_seconds": total}, [f"time     {total:.1f} s"]))
    return report


def run(args: argparse.Namespace) -> int:
    """``neural-kernels theory``: resolve the options, run, write, summarise."""
    cfg = resolve_config(args, TheoryConfig(), "theory")
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {cfg.out}: exists and is not a folder")
    report = run_theory(cfg)
    paths = write_report(report, out)
    print(report.summary())
    print(f"wrote    {paths[-1]}")
    return 0


COMMAND = Command(
    "theory",
    "finite-width corrections, criticality, infinite depth, random-feature risk and "
    "eigendirection dynamics against experiments",
    add_arguments,
    run,
)
