"""``neural-kernels feature-learning``: the linear muP limit and learning-rate transfer, full sizes.

On scikit-learn's digits: :func:`neural_kernels.feature_learning.linear_limit_sweep`
(1200 train / 597 test, batch 64, lr 0.5, ``--steps`` 300 SGD steps, ``--seeds`` 3,
``--widths`` 64 to 16384: finite muP networks against the exact limit, the NTK feature
kernel's change) and :func:`neural_kernels.feature_learning.lr_transfer` (an MLP, SP
against muP, learning rates ``2^-6 .. 2^2``, ``--transfer-widths`` 64 to 4096). Writes
``index.html``, plots and ``results.json`` into ``--out``. ``--quick``: small sizes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..report import Plot, Report, Section, write_report
from ._command import Command, UsageError
from ._config import resolve_config

__all__ = ["COMMAND", "FeatureLearningConfig", "run_feature_learning"]


@dataclass(frozen=True)
class FeatureLearningConfig:
    """Options of ``neural-kernels feature-learning`` (flags and TOML keys)."""

    out: str = "report_feature_learning"
    steps: int = 300
    seeds: int = 3
    widths: str = "64,256,1024,4096,16384"
    transfer_widths: str = "64,256,1024,4096"
    transfer_steps: int = 60
    quick: bool = False
    quiet: bool = False


QUICK: dict[str, Any] = {"steps": 20, "seeds": 1, "widths": "16,64", "transfer_widths": "16,32",
                         "transfer_steps": 5}  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``neural-kernels feature-learning``."""
    d = FeatureLearningConfig()
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: ./{d.out})")
    p.add_argument("--steps", type=int, metavar="N", help=f"SGD steps (default: {d.steps})")
    p.add_argument("--seeds", type=int, metavar="N", help=f"seeds (default: {d.seeds})")
    p.add_argument("--widths", metavar="N,N,...", help=f"widths (default: {d.widths})")
    p.add_argument("--transfer-widths", metavar="N,N,...", help="widths of the transfer grid")
    p.add_argument("--transfer-steps", type=int, metavar="N", help="steps of each transfer run")
    p.add_argument("--quick", action=argparse.BooleanOptionalAction, help="small sizes")
    p.add_argument("--quiet", action=argparse.BooleanOptionalAction, help="no progress output")
    p.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")


def _widths(text: str, name: str) -> list[int]:
    try:
        ws = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--{name} must be comma-separated integers, got {text!r}") from None
    if len(ws) < 2 or min(ws) < 1:
        raise UsageError(f"--{name} needs two or more widths >= 1, got {text!r}")
    return ws


def run_feature_learning(cfg: FeatureLearningConfig) -> Report:
    """Run both experiments and return the report."""
    import neural_kernels as nk
    from neural_kernels.feature_learning._digits import digits
    from neural_kernels.feature_learning.transfer import plot_transfers

    _widths(cfg.widths, "widths")  # refused before --quick's sizes replace them
    _widths(cfg.transfer_widths, "transfer-widths")
    if cfg.quick:
        cfg = replace(cfg, **QUICK)  # type: ignore[arg-type]
    for name in ("steps", "seeds", "transfer_steps"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    widths = _widths(cfg.widths, "widths")
    twidths = _widths(cfg.transfer_widths, "transfer-widths")
    start = time.perf_counter()
    report = Report("feature_learning", asdict(cfg))
    xtr, ytr, xte, yte = digits(1200, 597)
    sweep = nk.feature_learning.linear_limit_sweep(
        xtr, ytr, xte, widths, y_test=yte, steps=cfg.steps, seeds=cfg.seeds
    )
    s = sweep.slopes

    def draw_limit(ax: Any) -> None:
        ax.loglog(sweep.widths, sweep.mup_logit_gap, "o-", label="muP: logits vs limit")
        ax.loglog(sweep.widths, sweep.mup_kernel_gap, "o-", label="muP: kernel vs limit")
        ax.loglog(sweep.widths, sweep.ntk_kernel_change, "s--", label="NTK: kernel change")
        ax.set_xlabel("width")
        ax.legend(fontsize=7)

    report.add(
        Section(
            "linear_limit",
            sweep.as_dict(),
            [
                f"muP limit kernel change {sweep.mup_limit_kernel_change:.3f}, f0 "
                f"{sweep.mup_limit_f0:g}; slopes: logits {s['mup_logit_gap']:.3f}, kernel "
                f"{s['mup_kernel_gap']:.3f}, NTK kernel change {s['ntk_kernel_change']:.3f}"
            ],
            [Plot("linear_limit", draw_limit, "Finite linear networks against the limits.")],
            title="The exact muP limit of the linear network",
        )
    )
    net = nk.Sequential(nk.Dense(64), nk.ReLU(), nk.Dense(64), nk.ReLU(), nk.Dense(10))
    lrs = [2.0**k for k in range(-6, 3)]
    res = {p: nk.feature_learning.lr_transfer(net, xtr[:600].float(), ytr[:600], twidths, lrs,
                                              p, steps=cfg.transfer_steps, batch_size=32)
           for p in ("standard", "mup")}  # fmt: skip

    def draw_transfer(ax: Any) -> None:
        plot_transfers(res, ax)

    report.add(
        Section(
            "transfer",
            {p: tr.as_dict() for p, tr in res.items()},
            [f"{p}: best lr per width {tr.best_lr} (moves {tr.shift})" for p, tr in res.items()],
            [Plot("transfer", draw_transfer, "Training loss against learning rate.")],
            title="Learning-rate transfer across width",
        )
    )
    total = time.perf_counter() - start
    report.add(Section("timings", {"total_seconds": total}, [f"time     {total:.1f} s"]))
    return report


def run(args: argparse.Namespace) -> int:
    """``neural-kernels feature-learning``: resolve the options, run, write, summarise."""
    cfg = resolve_config(args, FeatureLearningConfig(), "feature-learning")
    report = run_feature_learning(cfg)
    paths = write_report(report, Path(cfg.out).expanduser())
    print(report.summary())
    print(f"wrote    {paths[-1]}")
    return 0


COMMAND = Command(
    "feature-learning",
    "the exact linear muP limit and learning-rate transfer on the digits",
    add_arguments,
    run,
)
