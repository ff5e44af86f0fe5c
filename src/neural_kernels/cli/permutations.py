"""``neural-kernels permutations``: exact permutation learning by ensembles of wide networks.

For each permutation size ``k`` of ``--ks`` (default ``4,5,8,10,12``) and both variants of
:mod:`neural_kernels.applications.permutations` (``nngp``: the last layer trained, as
standard parametrization at large width; ``ntk``: both layers), the report holds

* the infinite-ensemble mean on and off the support of ``Px`` for every number of ones
  ``c = 2..k`` in closed form, and its largest distance to the mean computed by
  :func:`~neural_kernels.predict.gradient_descent_mse_ensemble` (the signs must be
  positive on the support and negative off it),
* the number of models ``M(k, delta)`` whose rounded average recovers every nonzero
  binary input with ``c >= 2`` ones exactly with probability ``1 - delta``, from
  ``--samples`` joint Gaussian draws, and ``M / k^2``; beside it the union-bound count
  (closed form, sufficient whatever the correlations), the largest single-input count
  (exact), the research brief's reference count (a point of a ratio-1.25 grid, see
  :data:`~neural_kernels.applications.permutations.REFERENCE_GRID`) and the growth
  exponent of ``M`` in ``k`` between successive sizes,
* for each ``k`` of ``--finite-ks`` a pool of ``--pool`` finite networks of width
  ``--width`` trained by gradient descent in standard parametrization, the fraction of
  random ``M``-subsets that are exact, against ``M``, beside the kernel's curve.

Everything goes to ``--out`` (``index.html``, PNGs, ``results.json``).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..report import Plot, Progress, Report, Section, write_report
from ._command import Command, UsageError
from ._config import flag, resolve_config

__all__ = ["COMMAND", "PermutationsConfig", "run_permutations_report"]

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


@dataclass(frozen=True)
class PermutationsConfig:
    """Options of ``neural-kernels permutations`` (each one is also a flag and a TOML key).

    Attributes:
        out: output folder.
        ks: comma-separated permutation sizes (each >= 2).
        delta: allowed failure probability of ``M(k, delta)``.
        samples: joint Gaussian draws per ``(k, variant)``.
        finite_ks: comma-separated sizes for trained finite ensembles (empty: none).
        width: hidden width of the finite networks.
        pool: finite networks trained per size.
        steps: gradient-descent steps of each finite network.
        seed: seed of the permutations, draws and initialisations.
        quiet: no progress output.

    """

    out: str = "permutations-report"
    ks: str = "4,5,8,10,12"
    delta: float = 0.1
    samples: int = 2000
    finite_ks: str = "4,5,8"
    width: int = 4096
    pool: int = 400
    steps: int = 400
    seed: int = 0
    quiet: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``neural-kernels permutations``."""
    d = PermutationsConfig()
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: ./{d.out})")
    p.add_argument("--ks", metavar="LIST", help=f"permutation sizes (default: {d.ks})")
    p.add_argument("--delta", type=float, metavar="P", help=f"failure prob. (default: {d.delta})")
    p.add_argument("--samples", type=int, metavar="N", help=f"draws (default: {d.samples})")
    p.add_argument(
        "--finite-ks", metavar="LIST", help=f"sizes with finite nets (default: {d.finite_ks})"
    )
    p.add_argument("--width", type=int, metavar="N", help=f"finite width (default: {d.width})")
    p.add_argument("--pool", type=int, metavar="N", help=f"finite nets (default: {d.pool})")
    p.add_argument("--steps", type=int, metavar="N", help=f"GD steps (default: {d.steps})")
    p.add_argument("--seed", type=int, metavar="N", help=f"seed (default: {d.seed})")
    p.add_argument("--quiet", action=argparse.BooleanOptionalAction, help="no progress output")
    p.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")


def _sizes(cfg: PermutationsConfig, key: str) -> list[int]:
    text = str(getattr(cfg, key))
    try:
        ks = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        ks = [0]
    if any(k < 2 or k > 14 for k in ks):
        raise UsageError(f"{flag(key)} got {text!r}; use sizes 2 <= k <= 14, comma-separated")
    return ks


def check_config(cfg: PermutationsConfig) -> tuple[list[int], list[int]]:
    """The sizes and the finite sizes, or a :class:`UsageError` naming the flag."""
    ks = _sizes(cfg, "ks")
    if not ks:
        raise UsageError(f"{flag('ks')} is empty; give at least one size")
    for name in ("samples", "width", "pool", "steps"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"{flag(name)} must be an integer >= 1, got {getattr(cfg, name)}")
    if not 0 < cfg.delta < 1:
        raise UsageError(f"{flag('delta')} must lie in (0, 1), got {cfg.delta}")
    return ks, _sizes(cfg, "finite_ks")


def _grid(top: int) -> list[int]:
    return [int(m) for m in np.unique(np.geomspace(2, top, 24).astype(int))]


def run_permutations_report(cfg: PermutationsConfig) -> Report:
    """Compute every section of the report (kernel sizes, then finite ensembles)."""
    from ..applications import permutations as perm

    ks, finite_ks = check_config(cfg)
    report = Report("permutations", asdict(cfg))
    rows: dict[str, Any] = {}
    curves: dict[str, list[float]] = {}
    grid = _grid(2000)
    with Progress("permutations: sizes", enabled=not cfg.quiet) as progress:
        for i, k in enumerate(ks):
            start = time.perf_counter()
            task = perm.permutation_task(k, generator=torch.Generator().manual_seed(cfg.seed))
            row: dict[str, Any] = {"test_inputs": len(task.x_test)}
            for variant in perm.VARIANTS:
                mean, cov = perm.ensemble_gaussian(task, variant)
                on_support = task.y_test > 0.5
                closed = {}
                gap = 0.0
                for c in range(2, k + 1):
                    on, off = perm.closed_form_mean(k, c, variant)
                    closed[str(c)] = {"mu_on": on, "mu_off": off}
                    rows_c = task.ones == c
                    want = torch.where(on_support[rows_c], on, off)
                    gap = max(gap, float((mean[rows_c] - want).abs().max()))
                gen = torch.Generator().manual_seed(cfg.seed + 1000 * k)
                m_k = perm.models_needed(
                    mean, cov, task.y_test, cfg.delta, samples=cfg.samples, generator=gen
                )
                var = cov.diagonal()
                single = perm.models_needed_per_input(mean, var, task.y_test, cfg.delta)
                key = f"{k}_{variant}"
                curves[key] = perm.recovery_curve(
                    mean, cov, task.y_test, grid, samples=cfg.samples, generator=gen
                )
                row[variant] = {
                    "models_needed": m_k,
                    "models_over_k2": m_k / k**2,
                    "models_needed_union_bound": perm.models_needed_bound(
                        mean, var, task.y_test, cfg.delta
                    ),
                    "models_needed_single_input_max": float(single.max()),
                    "models_needed_single_input_by_ones": {
                        str(c): float(single[task.ones == c].max()) for c in range(2, k + 1)
                    },
                    "mean_closed_form": closed,
                    "mean_max_abs_diff_closed_form": gap,
                    "signs_ok": all(v["mu_on"] > 0 > v["mu_off"] for v in closed.values()),
                    "recovery_vs_models": curves[key],
                }
            ref = perm.REFERENCE_GRID.get(k) if cfg.delta == 0.1 else None
            row["reference_grid_count"] = ref
            row["reference_interval_holds"] = (
                None if ref is None else ref / 1.25 < row["nngp"]["models_needed"] <= ref
            )
            row["seconds"] = time.perf_counter() - start
            rows[str(k)] = row
            progress(i + 1, len(ks))
    _growth(rows)
    report.add(_kernel_section(rows, grid, cfg))
    if finite_ks:
        report.add(_finite_section(finite_ks, rows, cfg))
    return report


def _growth(rows: dict[str, Any]) -> None:
    """``growth_exponent``: ``log(M_k / M_prev) / log(k / k_prev)`` per variant (2: ``k^2``)."""
    prev: tuple[int, dict[str, Any]] | None = None
    for key in sorted(rows, key=int):
        row = rows[key]
        for variant in ("nngp", "ntk"):
            slope = None
            if prev is not None:
                a, b = prev[1][variant]["models_needed"], row[variant]["models_needed"]
                if 0 < a < math.inf and 0 < b < math.inf:
                    slope = math.log(b / a) / math.log(int(key) / prev[0])
            row[variant]["growth_exponent"] = slope
        prev = (int(key), row)


def _kernel_section(rows: dict[str, Any], grid: list[int], cfg: PermutationsConfig) -> Section:
    lines = [f"permutations: models for {1 - cfg.delta:.0%} exact recovery of all inputs"]
    lines += [
        f"  k={k:>2}: NNGP {r['nngp']['models_needed']:5.0f} ({r['nngp']['models_over_k2']:.2f} "
        f"k^2, union bound {r['nngp']['models_needed_union_bound']:.0f}, one input "
        f"{r['nngp']['models_needed_single_input_max']:.0f}, reference grid "
        f"{r['reference_grid_count'] or '-'}), NTK {r['ntk']['models_needed']:5.0f}, signs ok "
        f"{r['nngp']['signs_ok'] and r['ntk']['signs_ok']}, |mean - closed form| "
        f"{max(r[v]['mean_max_abs_diff_closed_form'] for v in ('nngp', 'ntk')):.1e}"
        for k, r in rows.items()
    ]
    slopes = [
        f"{r['nngp']['growth_exponent']:.2f}"
        for r in rows.values()
        if r["nngp"]["growth_exponent"] is not None
    ]
    if slopes:
        lines.append(f"  growth exponent of the NNGP count between sizes: {', '.join(slopes)}")

    def draw(ax: Any) -> None:
        for i, (k, r) in enumerate(rows.items()):
            for variant, style in (("nngp", "-"), ("ntk", "--")):
                color = _COLORS[i % len(_COLORS)]
                ax.plot(
                    grid,
                    r[variant]["recovery_vs_models"],
                    style,
                    color=color,
                    label=f"k={k}, {variant}",
                )
        ax.axhline(1 - cfg.delta, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("models M in the ensemble")
        ax.set_ylabel("P(every input recovered exactly)")
        ax.legend(fontsize=7, ncol=2)

    return Section(
        "permutations_kernel",
        {"delta": cfg.delta, "samples": cfg.samples, "models_grid": grid, "sizes": rows},
        lines,
        [
            Plot(
                "permutations_kernel",
                draw,
                "Probability that the rounded average of M converged infinitely wide "
                "two-layer ReLU networks maps every binary input with >= 2 ones to Px "
                "(solid: last layer trained, NNGP; dashed: both layers, NTK).",
            )
        ],
        title="Permutations: infinite ensembles",
        text="Closed-form Gaussian of one converged infinitely wide network, joint draws "
        "over every test input. The union bound needs only the variances and is sufficient "
        "whatever the correlations; 'one input' is the largest count over single inputs "
        "(exact). The reference counts are points of a ratio-1.25 grid, so the joint count "
        "should lie in (reference / 1.25, reference].",
    )


def _finite_section(finite_ks: list[int], rows: dict[str, Any], cfg: PermutationsConfig) -> Section:
    from ..applications import permutations as perm

    out: dict[str, Any] = {}
    grid = _grid(max(2, cfg.pool // 2))
    for k in finite_ks:
        start = time.perf_counter()
        task = perm.permutation_task(k, generator=torch.Generator().manual_seed(cfg.seed))
        gen = torch.Generator().manual_seed(cfg.seed + k)
        outputs = perm.train_ensemble(
            task, cfg.pool, cfg.width, parametrization="standard", steps=cfg.steps, generator=gen
        )
        rates = [perm.finite_recovery_rate(outputs, task.y_test, m, generator=gen) for m in grid]
        hit = [m for m, r in zip(grid, rates, strict=True) if r >= 1 - cfg.delta]
        kernel = rows.get(str(k), {}).get("nngp", {}).get("models_needed")
        if kernel is None:
            mean, cov = perm.ensemble_gaussian(task, "nngp")
            kernel = perm.models_needed(mean, cov, task.y_test, cfg.delta, samples=cfg.samples)
        at_kernel = (
            perm.finite_recovery_rate(outputs, task.y_test, int(kernel), generator=gen)
            if math.isfinite(kernel) and kernel <= cfg.pool
            else None
        )
        out[str(k)] = {
            "recovery_vs_models": rates,
            "models_needed_grid": hit[0] if hit else None,
            "kernel_models_needed": kernel,
            "recovery_at_kernel_models": at_kernel,
            "seconds": time.perf_counter() - start,
        }
    lines = [f"permutations: finite width {cfg.width}, pool {cfg.pool}, standard parametrization"]
    lines += [
        f"  k={k}: first grid M with >= {1 - cfg.delta:.0%} exact {r['models_needed_grid']}, "
        f"kernel (NNGP) M {r['kernel_models_needed']:.0f}, finite rate at that M "
        f"{r['recovery_at_kernel_models']}"
        for k, r in out.items()
    ]

    def draw(ax: Any) -> None:
        for i, (k, r) in enumerate(out.items()):
            ax.plot(
                grid,
                r["recovery_vs_models"],
                color=_COLORS[i % len(_COLORS)],
                marker="o",
                ms=3,
                label=f"k={k}, width {cfg.width}",
            )
            ax.axvline(r["kernel_models_needed"], color=_COLORS[i % len(_COLORS)], ls=":")
        ax.axhline(1 - cfg.delta, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("models M in the ensemble")
        ax.set_ylabel("fraction of exact M-subsets")
        ax.legend(fontsize=8)

    return Section(
        "permutations_finite",
        {
            "width": cfg.width,
            "pool": cfg.pool,
            "steps": cfg.steps,
            "models_grid": grid,
            "sizes": out,
        },
        lines,
        [
            Plot(
                "permutations_finite",
                draw,
                "Trained finite ensembles (standard parametrization): fraction of random "
                "M-subsets of the pool whose rounded average is exact on every input; "
                "dotted: the NNGP kernel's M.",
            )
        ],
        title="Permutations: finite ensembles",
        text="Two-layer ReLU networks trained by full-batch gradient descent on the k basis pairs.",
    )


def run(args: argparse.Namespace) -> int:
    """``neural-kernels permutations``: check the options, run, write, summarise."""
    cfg = resolve_config(args, PermutationsConfig(), "permutations")
    check_config(cfg)
    report = run_permutations_report(cfg)
    paths = write_report(report, Path(cfg.out).expanduser())
    print(report.summary())
    print(f"wrote    {paths[-1]}")
    return 0


COMMAND = Command(
    "permutations",
    "Exact permutation learning by ensembles of wide networks (kernel and finite)",
    add_arguments,
    run,
)
