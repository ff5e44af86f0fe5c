"""``neural-kernels feature-learning``: the linear muP limit, learning-rate transfer, forgetting.

On scikit-learn's digits, full sizes:

* :func:`neural_kernels.feature_learning.linear_limit_sweep` (1200 train / 597 test,
  batch 64, lr 0.5, ``--steps`` 300 SGD steps, ``--seeds`` 3, ``--widths`` 64 to 16384:
  finite muP networks against the exact limit, the NTK feature kernel's change);
* :func:`neural_kernels.feature_learning.transfer_study`, TP5's protocol
  (:data:`~neural_kernels.feature_learning.transfer.PROTOCOL`): final training loss after
  ``--transfer-steps`` 100 Adam steps (batch 64, all 1200 points), base rates
  ``2^-14 .. 2^-2``, SP against muP, an MLP (``--transfer-widths`` 64 to 4096, mean over
  ``--transfer-seeds`` 3) and a CNN (``--cnn-widths`` 32 to 256, ``--cnn-seeds`` 5); the
  best rate per width, its move in grid steps, the slope of log2 rate against log2
  width, and a sub-grid optimum (a parabola through the three best points);
* :func:`neural_kernels.feature_learning.forgetting_sweep`: five two-class split-digits
  tasks in turn, NTK parametrization, ``--forgetting-widths`` 64 to 4096, early-stopped
  (10 steps per task) against converged (300) training.

Writes ``index.html``, plots and ``results.json`` into ``--out``. ``--quick``: small sizes.
``--parts`` picks the experiments (``linear,transfer,forgetting``).

``--transfer-runs FILE.jsonl`` keeps every finished transfer run (one JSON line: network,
parametrization, sizes, width, rate, seed, final loss, seconds) and takes the runs already
there instead of training them, so the full sweep resumes after an interruption and its
report is rebuilt from the stored runs without training::

    neural-kernels feature-learning --parts transfer \
        --transfer-runs docs/results/transfer_runs.jsonl
"""

from __future__ import annotations

import argparse
import math
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
    transfer_widths: str = "64,128,256,512,1024,2048,4096"
    cnn_widths: str = "32,64,128,256"
    transfer_optimizer: str = "adam"
    transfer_steps: int = 100
    transfer_seeds: int = 3
    cnn_seeds: int = 5
    transfer_runs: str = ""
    parts: str = "linear,transfer,forgetting"
    forgetting_widths: str = "64,256,1024,4096"
    forgetting_seeds: int = 3
    forgetting_steps: int = 300
    quick: bool = False
    quiet: bool = False


QUICK: dict[str, Any] = {"steps": 20, "seeds": 1, "widths": "16,64", "transfer_widths": "16,32",
                         "cnn_widths": "4,8", "transfer_steps": 5, "transfer_seeds": 1,
                         "cnn_seeds": 1, "forgetting_widths": "16,32", "forgetting_seeds": 1,
                         "forgetting_steps": 20}  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``neural-kernels feature-learning``."""
    d = FeatureLearningConfig()
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: ./{d.out})")
    p.add_argument("--steps", type=int, metavar="N", help=f"SGD steps (default: {d.steps})")
    p.add_argument("--seeds", type=int, metavar="N", help=f"seeds (default: {d.seeds})")
    p.add_argument("--widths", metavar="N,N,...", help=f"widths (default: {d.widths})")
    p.add_argument("--transfer-widths", metavar="N,N,...", help="MLP widths of the transfer grid")
    p.add_argument("--cnn-widths", metavar="N,N,...", help="CNN widths of the transfer grid")
    p.add_argument("--transfer-optimizer", choices=("adam", "sgd"), help="(default: adam)")
    p.add_argument("--transfer-steps", type=int, metavar="N", help="steps of each transfer run")
    p.add_argument("--transfer-seeds", type=int, metavar="N", help="seeds per MLP transfer point")
    p.add_argument("--cnn-seeds", type=int, metavar="N", help="seeds per CNN transfer point")
    p.add_argument(
        "--transfer-runs",
        metavar="FILE.jsonl",
        help="finished transfer runs: reused and appended (resumable)",
    )
    p.add_argument("--parts", metavar="LIST", help=f"experiments to run (default: {d.parts})")
    p.add_argument("--forgetting-widths", metavar="N,N,...", help="widths of the forgetting runs")
    p.add_argument("--forgetting-seeds", type=int, metavar="N", help="seeds per forgetting width")
    p.add_argument("--forgetting-steps", type=int, metavar="N", help="converged steps per task")
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


PARTS = ("linear", "transfer", "forgetting")


def run_feature_learning(cfg: FeatureLearningConfig) -> Report:
    """Run the experiments of ``--parts`` and return the report."""
    lists = ("widths", "transfer_widths", "cnn_widths", "forgetting_widths")
    for name in lists:  # refused before --quick's sizes replace them
        _widths(getattr(cfg, name), name.replace("_", "-"))
    if cfg.quick:
        cfg = replace(cfg, **QUICK)  # type: ignore[arg-type]
    counts = ("steps", "seeds", "transfer_steps", "transfer_seeds", "cnn_seeds", "forgetting_seeds")
    for name in counts:
        if getattr(cfg, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.forgetting_steps < 11:
        raise UsageError(f"--forgetting-steps must be > 10, got {cfg.forgetting_steps}")
    if cfg.transfer_optimizer not in ("adam", "sgd"):
        raise UsageError(
            f"--transfer-optimizer must be adam or sgd, got {cfg.transfer_optimizer!r}"
        )
    widths, twidths, cwidths, fwidths = (
        _widths(getattr(cfg, n), n.replace("_", "-")) for n in lists
    )
    parts = [v.strip() for v in cfg.parts.split(",") if v.strip()]
    if not parts or any(v not in PARTS for v in parts):
        raise UsageError(f"--parts takes names from {','.join(PARTS)}, got {cfg.parts!r}")
    start = time.perf_counter()
    report = Report("feature_learning", asdict(cfg))
    if "linear" in parts:
        report.add(_linear_section(cfg, widths))
    if "transfer" in parts:
        report.add(_transfer_section(cfg, twidths, cwidths))
    if "forgetting" in parts:
        report.add(_forgetting_section(cfg, fwidths))
    total = time.perf_counter() - start
    report.add(Section("timings", {"total_seconds": total}, [f"time     {total:.1f} s"]))
    return report


def _linear_section(cfg: FeatureLearningConfig, widths: list[int]) -> Section:
    """Finite linear networks against the exact muP limit and the NTK limit."""
    import neural_kernels as nk
    from neural_kernels.feature_learning._digits import digits

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

    return Section(
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


def _transfer_section(cfg: FeatureLearningConfig, mlp: list[int], cnn: list[int]) -> Section:
    """TP5's learning-rate transfer protocol: SP against muP, MLP and CNN."""
    from neural_kernels.feature_learning.transfer import transfer_study

    seeds = {"mlp": cfg.transfer_seeds, "cnn": cfg.cnn_seeds}
    res = transfer_study(("mlp", "cnn"), {"mlp": mlp, "cnn": cnn},
                         optimizer=cfg.transfer_optimizer, steps=cfg.transfer_steps,
                         seeds=seeds, store=cfg.transfer_runs or None)  # fmt: skip
    lines = [f"{cfg.transfer_optimizer}, {cfg.transfer_steps} steps, batch 64, 1200 digits, "
             f"seeds: mlp {seeds['mlp']}, cnn {seeds['cnn']}; best base rate per width (log2), "
             "its move in grid steps, the slope of log2 rate against log2 width; the "
             "parabola's sub-grid optimum (log2), its move and slope"]  # fmt: skip
    for arch, d in res.items():
        for p, tr in d.items():
            best = [round(math.log2(v)) for v in tr.best_lr]
            fit = ["edge" if v is None else f"{v:.2f}" for v in tr.best_log2_lr_fit]
            move = "-" if tr.fit_move is None else f"{tr.fit_move:.2f}"
            slope = "-" if tr.fit_slope is None else f"{tr.fit_slope:.2f}"
            lines.append(f"  {arch} {p:>8}: widths {list(tr.widths)} best 2^{best} "
                         f"(moves {tr.shift}, slope {tr.slope:.2f}); fit [{', '.join(fit)}] "
                         f"(moves {move}, slope {slope})")  # fmt: skip
    return Section(
        "transfer",
        {arch: {p: tr.as_dict() for p, tr in d.items()} for arch, d in res.items()},
        lines,
        [
            Plot(
                f"transfer_{a}",
                _transfer_drawer(res[a], f"{a}, {cfg.transfer_optimizer}"),
                f"{a}: training loss against base learning rate, one line per width, "
                "SP (left) and muP (right); stars: the best rate of each width.",
            )
            for a in res
        ],
        title="Learning-rate transfer across width",
    )


def _transfer_drawer(res: dict[str, Any], title: str) -> Any:
    """Side by side, one panel per parametrization: loss against rate, per width."""
    import numpy as np

    def draw(ax: Any) -> None:
        fig = ax.figure
        fig.set_size_inches(9.0, 3.6)
        ax.remove()
        axes = fig.subplots(1, len(res), sharey=True, squeeze=False)[0]
        for panel, (p, tr) in zip(axes, res.items(), strict=True):
            colors = [_cmap(k / max(1, len(tr.widths) - 1)) for k in range(len(tr.widths))]
            for w, row, i, color in zip(tr.widths, tr.loss, tr.best_index, colors, strict=True):
                ok = np.isfinite(row)
                panel.plot(np.asarray(tr.lrs)[ok], row[ok], "o-", ms=2.5, lw=1, color=color,
                           label=f"n={w}")  # fmt: skip
                panel.plot([tr.lrs[i]], [row[i]], "*", ms=9, color=color)
            panel.set_xscale("log", base=2)
            panel.set_yscale("log")
            panel.set_xlabel("base learning rate")
            panel.set_title(f"{title}: {p} (moves {tr.shift})", fontsize=9)
        axes[0].set_ylabel("training loss")
        axes[-1].legend(fontsize=6)

    return draw


def _cmap(t: float) -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"](0.9 * t)


def _forgetting_section(cfg: FeatureLearningConfig, widths: list[int]) -> Section:
    """Split digits: forgetting against width, early-stopped and converged."""
    from neural_kernels.feature_learning.forgetting import forgetting_sweep

    res = forgetting_sweep(tuple(widths), 1, "ntk", seeds=cfg.forgetting_seeds,
                           converged_steps=cfg.forgetting_steps)  # fmt: skip
    lines = [f"5 two-class tasks in turn, NTK-parametrized ReLU MLP, {res.seeds} seed(s); "
             f"per task {res.early_steps} (early) or {res.converged_steps} (converged) GD steps",
             f"{'width':>8} {'forget early':>13} {'forget conv.':>13} {'acc early':>10} "
             f"{'acc conv.':>10}"]  # fmt: skip
    for i, w in enumerate(res.widths):
        vals = [res.forgetting["early"][i], res.forgetting["converged"][i],
                res.final_accuracy["early"][i], res.final_accuracy["converged"][i]]  # fmt: skip
        lines.append(f"{w:>8} " + " ".join("diverged" if v is None else f"{v:>13.4f}"
                                           for v in vals))  # fmt: skip

    def draw(ax: Any) -> None:
        for regime, style in (("early", "o-"), ("converged", "s--")):
            pts = [(w, v) for w, v in zip(res.widths, res.forgetting[regime], strict=True)
                   if v is not None]  # fmt: skip
            if pts:
                ax.semilogx(*zip(*pts, strict=True), style, label=regime)
        ax.set_xlabel("width")
        ax.set_ylabel("average forgetting")
        ax.legend(fontsize=7)

    return Section(
        "forgetting",
        res.to_dict(),
        lines,
        [Plot("forgetting", draw, "Forgetting on split digits against width.")],
        title="Forgetting on split digits: early-stopped against converged",
    )


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
    "the exact linear muP limit, learning-rate transfer and forgetting on the digits",
    add_arguments,
    run,
)
