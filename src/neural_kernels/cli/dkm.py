"""``neural-kernels dkm``: deep kernel machines against the NNGP on the digits.

The digits experiment (:mod:`neural_kernels.dkm.experiment`): on ``--splits``
stratified splits of scikit-learn's 8x8 digits (``--n-train`` 300 training points,
``--n-test`` 1000 test points, standardised pixels), the full DKM with two learned Gram
layers of the arc-cosine kernel (``w_std^2 = 2``, ``b_std^2 = 0.1``) and a Gaussian
likelihood on one-hot targets minus 0.1 (noise variance 0.1, fixed), trained by L-BFGS
from the NNGP for each ``--nu``, against the NNGP itself (``nu = inf``). Then a sparse
DKM with ``--inducing`` inducing points trained on every digit but ``--sparse-test``
held-out ones, timed. Writes ``index.html``, a plot and ``results.json`` (every number)
into ``--out`` and prints a summary. With ``--quick``: smaller sizes, a few seconds.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..report import Plot, Progress, Report, Section, write_report
from ._command import Command, UsageError
from ._config import flag, resolve_config
from ._data import load_dataset

__all__ = ["COMMAND", "DKMConfig", "run_dkm"]


@dataclass(frozen=True)
class DKMConfig:
    """Options of ``neural-kernels dkm`` (each one is also a flag and a TOML key).

    Attributes:
        out: output folder.
        data: a bundled data set or a ``.npz``/``.csv`` file (as for ``demo``).
        seed: seed of the first split (split ``i`` uses ``seed + i``).
        splits: number of stratified splits.
        n_train: training points per split.
        n_test: test points per split.
        nu: comma-separated ``nu`` values of the DKM (the NNGP, ``nu = inf``, is added).
        layers: learned Gram layers.
        noise_var: the fixed Gaussian noise variance.
        steps: L-BFGS steps of each full DKM.
        inducing: inducing points of the sparse DKM (``0``: no sparse run).
        sparse_test: test points held out of the sparse DKM's training set.
        sparse_steps: L-BFGS steps of the sparse DKM.
        quick: small sizes (a few seconds).
        quiet: no progress output.

    """

    out: str = "report_dkm"
    data: str = "digits"
    seed: int = 0
    splits: int = 3
    n_train: int = 300
    n_test: int = 1000
    nu: str = "10"
    layers: int = 2
    noise_var: float = 0.1
    steps: int = 200
    inducing: int = 200
    sparse_test: int = 300
    sparse_steps: int = 60
    quick: bool = False
    quiet: bool = False


#: What ``--quick`` changes.
QUICK: dict[str, Any] = {
    "splits": 2,
    "n_train": 60,
    "n_test": 200,
    "steps": 15,
    "inducing": 30,
    "sparse_steps": 5,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``neural-kernels dkm``."""
    d = DKMConfig()
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: ./{d.out})")
    p.add_argument("--data", metavar="NAME|PATH", help=f"data set (default: {d.data})")
    p.add_argument("--seed", type=int, metavar="N", help=f"seed of split 0 (default: {d.seed})")
    for name, kind, text in (
        ("splits", int, "stratified splits"),
        ("n_train", int, "training points per split"),
        ("n_test", int, "test points per split"),
        ("layers", int, "learned Gram layers"),
        ("noise_var", float, "fixed Gaussian noise variance"),
        ("steps", int, "L-BFGS steps of each full DKM"),
        ("inducing", int, "inducing points of the sparse DKM (0: no sparse run)"),
        ("sparse_test", int, "digits held out of the sparse DKM's training"),
        ("sparse_steps", int, "L-BFGS steps of the sparse DKM"),
    ):
        default = getattr(d, name)
        p.add_argument(flag(name), type=kind, metavar="N", help=f"{text} (default: {default})")
    p.add_argument("--nu", metavar="NU[,NU...]", help=f"nu of the DKM (default: {d.nu})")
    p.add_argument("--quick", action=argparse.BooleanOptionalAction, help="small sizes")
    p.add_argument("--quiet", action=argparse.BooleanOptionalAction, help="no progress output")
    p.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")


def parse_nus(cfg: DKMConfig) -> list[float]:
    """``--nu`` as floats, the NNGP (``inf``) first."""
    try:
        values = [float(v) for v in cfg.nu.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--nu must be comma-separated numbers, got {cfg.nu!r}") from None
    if not values or any(math.isnan(v) or v <= 0 for v in values):
        raise UsageError(f"--nu must be positive numbers, got {cfg.nu!r}")
    return [math.inf, *[v for v in values if math.isfinite(v)]]


def check_config(cfg: DKMConfig) -> None:
    """Refuse bad values with a :class:`UsageError` naming the flag (nothing is written)."""
    for name in ("splits", "n_train", "n_test", "layers", "sparse_test"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"{flag(name)} must be an integer >= 1, got {getattr(cfg, name)}")
    for name in ("steps", "inducing", "sparse_steps", "seed"):
        if getattr(cfg, name) < 0:
            raise UsageError(f"{flag(name)} must be an integer >= 0, got {getattr(cfg, name)}")
    if not math.isfinite(cfg.noise_var) or cfg.noise_var <= 0:
        raise UsageError(f"--noise-var must be a positive number, got {cfg.noise_var}")
    parse_nus(cfg)
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {cfg.out}: exists and is not a folder")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def run_dkm(cfg: DKMConfig) -> Report:
    """Run the experiment for a checked configuration and return its report."""
    from ..dkm import experiment as ex

    if cfg.quick:
        cfg = replace(cfg, **QUICK)  # type: ignore[arg-type]
    start = time.perf_counter()
    data = load_dataset(cfg.data)
    x_all = torch.as_tensor(data.x, dtype=torch.float64)
    y_all = torch.as_tensor(data.y).long()
    n = x_all.shape[0]
    if cfg.n_train + cfg.n_test > n:
        raise UsageError(f"--n-train {cfg.n_train} + --n-test {cfg.n_test}: {data.name} has {n}")
    if cfg.inducing and (cfg.sparse_test >= n or cfg.inducing > n - cfg.sparse_test):
        raise UsageError(
            f"--inducing {cfg.inducing} / --sparse-test {cfg.sparse_test}: {data.name} has {n}"
        )
    nus = parse_nus(cfg)
    report = Report("dkm", {**asdict(cfg), "nus": [str(v) for v in nus]})
    splits: list[dict[str, Any]] = []
    with Progress("DKM splits", enabled=not cfg.quiet) as progress:
        for i in range(cfg.splits):
            train, test = ex.stratified_split(y_all, cfg.n_train, cfg.n_test, cfg.seed + i)
            a, b = ex.standardise(x_all[train], x_all[test])
            res = ex.compare(
                a,
                y_all[train],
                b,
                y_all[test],
                nus=nus,
                layers=cfg.layers,
                noise_var=cfg.noise_var,
                steps=cfg.steps,
            )
            splits.append(res)
            progress(i + 1, cfg.splits)
    keys = [str(v) for v in nus]
    nngp = keys[0]
    summary: dict[str, Any] = {}
    for key in keys:
        accs = [s[key]["test_accuracy"] for s in splits]
        summary[key] = {
            "mean_test_accuracy": _mean(accs),
            "test_accuracy": accs,
            "mean_objective_rise": _mean([s[key]["objective_rise"] for s in splits]),
            "splits_beating_nngp": sum(
                s[key]["test_accuracy"] > s[nngp]["test_accuracy"] for s in splits
            ),
            "splits_tied_with_nngp": sum(
                s[key]["test_accuracy"] == s[nngp]["test_accuracy"] for s in splits
            ),
            "mean_fit_seconds": _mean([s[key]["fit_seconds"] for s in splits]),
        }
    lines = [
        f"DKM on {data.name}: {cfg.splits} stratified splits of {cfg.n_train} train / "
        f"{cfg.n_test} test, {cfg.layers} learned arc-cosine Gram layers, {cfg.steps} L-BFGS steps"
    ]
    for key in keys:
        row = summary[key]
        label = "NNGP (nu=inf)" if key == nngp else f"DKM nu={float(key):g}"
        acc_text = " ".join(f"{v:.3f}" for v in row["test_accuracy"])
        extra = (
            ""
            if key == nngp
            else (
                f"; beats NNGP on {row['splits_beating_nngp']}/{cfg.splits}, objective "
                f"+{row['mean_objective_rise']:.1f} nats"
            )
        )
        lines.append(f"  {label:15} accuracy {row['mean_test_accuracy']:.4f} ({acc_text}){extra}")

    def draw(ax: Any) -> None:
        width = 0.8 / len(keys)
        for j, key in enumerate(keys):
            label = "NNGP" if key == nngp else f"DKM nu={float(key):g}"
            xs = [i + j * width for i in range(cfg.splits)]
            ax.bar(xs, summary[key]["test_accuracy"], width=width, label=label)
        low = min(min(summary[k]["test_accuracy"]) for k in keys)
        ax.set_ylim(max(0.0, low - 0.02), 1.0)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(cfg.splits)])
        ax.set_xticklabels([f"split {i}" for i in range(cfg.splits)])
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)

    report.add(
        Section(
            "full_dkm",
            {"summary": summary, "splits": splits, "n_points": n},
            lines,
            [Plot("dkm_accuracy", draw, "Test accuracy per split: NNGP against the DKM")],
            title="Full DKM against the NNGP",
            text="Every Gram matrix starts at the NNGP (the objective's start, "
            "objective_nngp); the DKM's objective rise is its representation learning.",
        )
    )
    if cfg.inducing:
        gen = torch.Generator().manual_seed(cfg.seed)
        perm = torch.randperm(n, generator=gen)
        test, train = perm[: cfg.sparse_test], perm[cfg.sparse_test :]
        a, b = ex.standardise(x_all[train], x_all[test])
        with Progress("sparse DKM", enabled=not cfg.quiet) as progress:
            sparse = ex.sparse_run(
                a,
                y_all[train],
                b,
                y_all[test],
                nu=nus[-1] if len(nus) > 1 else 10.0,
                inducing=cfg.inducing,
                layers=cfg.layers,
                noise_var=cfg.noise_var,
                steps=cfg.sparse_steps,
                seed=cfg.seed,
            )
            progress(1, 1)
        report.add(
            Section(
                "sparse_dkm",
                sparse,
                [
                    f"sparse DKM: {sparse['inducing']} inducing points, {sparse['n_train']} "
                    f"train / {sparse['n_test']} test, {sparse['steps']} L-BFGS steps in "
                    f"{sparse['fit_seconds']:.1f} s: accuracy {sparse['test_accuracy']:.4f} "
                    f"(NNGP on all training points {sparse['nngp_test_accuracy']:.4f})"
                ],
                title="Sparse DKM on the digits",
            )
        )
    total = time.perf_counter() - start
    report.add(Section("timings", {"total_seconds": total}, [f"time     {total:.1f} s"]))
    return report


def run(args: argparse.Namespace) -> int:
    """``neural-kernels dkm``: resolve and check the options, run, write, summarise."""
    cfg = resolve_config(args, DKMConfig(), "dkm")
    check_config(cfg)
    report = run_dkm(cfg)
    paths = write_report(report, Path(cfg.out).expanduser())
    print(report.summary())
    print(f"wrote    {paths[-1]}")
    return 0


COMMAND = Command(
    "dkm",
    "deep kernel machines against the NNGP on the digits",
    add_arguments,
    run,
)
