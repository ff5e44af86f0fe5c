"""``neural-kernels demo``: infinite-width kernel regression on a small data set.

scikit-learn's bundled 8x8 handwritten digits by default (no download): standardise the
features, split train and test by ``--seed``, compute the NNGP and NTK of a deep fully
connected ReLU network, solve the kernel regression for each (the posterior mean of
:func:`neural_kernels.predict.gp_inference`), then add the sections of
:mod:`neural_kernels.report` (a CNN's kernels, predictions against training time, finite
networks against their kernels, the Gaussian picture, kernel movement) and write
``index.html``, PNG plots and ``results.json`` (every number, with the resolved
configuration) into ``--out``, printing a short summary. ``--kernels-only`` stops after
the kernel regression and writes ``results.json`` alone.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from ..report import Context, Progress, Report, Section, add_sections, write_report
from ._command import Command, RunError, UsageError
from ._config import flag, resolve_config
from ._data import BUNDLED, load_dataset, split, standardise

__all__ = ["COMMAND", "DemoConfig", "run_demo"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_KERNELS = ("nngp", "ntk")
#: Width of the hidden layers; it names the finite twin and does not change the kernels.
_HIDDEN_WIDTH = 512


@dataclass(frozen=True)
class DemoConfig:
    """Options of ``neural-kernels demo`` (each one is also a flag and a TOML key).

    Attributes:
        data: a bundled data set (``digits``, ``iris``, ``wine``, ``breast_cancer``) or a
            path to a ``.npz`` (arrays ``x`` and integer labels ``y``) or ``.csv`` file
            (last column the label, an optional header row).
        out: output folder.
        seed: seed of the train/test split.
        quick: use a small subset (a few seconds).
        depth: number of hidden ``[Dense, ReLU]`` blocks.
        w_std: weight standard deviation of the hidden layers.
        b_std: bias standard deviation of every layer.
        n_train: training examples (default: all but the test set).
        n_test: test examples (default: 20% of the data).
        dtype: ``float64`` (recommended) or ``float32``.
        diag_reg: ridge added to the kernel, relative to its mean diagonal.
        quiet: no progress output.
        kernels_only: only the kernel regression (no report sections, plots or finite
            networks): a few seconds.

    """

    data: str = "digits"
    out: str = "report"
    seed: int = 0
    quick: bool = False
    depth: int = 3
    w_std: float = math.sqrt(2.0)
    b_std: float = 0.1
    n_train: int | None = None
    n_test: int | None = None
    dtype: str = "float64"
    diag_reg: float = 1e-4
    quiet: bool = False
    kernels_only: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``neural-kernels demo``."""
    d = DemoConfig()
    p.add_argument(
        "--data",
        metavar="NAME|PATH",
        help=f"{', '.join(BUNDLED)}, or a .npz (x, y) or .csv (label last) file "
        f"(default: {d.data})",
    )
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: ./{d.out})")
    p.add_argument("--seed", type=int, metavar="N", help=f"seed of the split (default: {d.seed})")
    p.add_argument(
        "--quick",
        action=argparse.BooleanOptionalAction,
        help="small subsets and fewer widths: about a minute",
    )
    p.add_argument(
        "--depth", type=int, metavar="L", help=f"hidden [Dense, ReLU] blocks (default: {d.depth})"
    )
    p.add_argument(
        "--w-std", type=float, metavar="S", help="weight std of hidden layers (default: sqrt(2))"
    )
    p.add_argument("--b-std", type=float, metavar="S", help=f"bias std (default: {d.b_std})")
    p.add_argument("--n-train", type=int, metavar="N", help="training examples (default: all)")
    p.add_argument("--n-test", type=int, metavar="N", help="test examples (default: 20%%)")
    p.add_argument(
        "--dtype", choices=tuple(_DTYPES), help=f"dtype of the kernels (default: {d.dtype})"
    )
    p.add_argument(
        "--diag-reg",
        type=float,
        metavar="R",
        help=f"ridge relative to the kernel's mean diagonal (default: {d.diag_reg:g})",
    )
    p.add_argument("--quiet", action=argparse.BooleanOptionalAction, help="no progress output")
    p.add_argument(
        "--kernels-only",
        action=argparse.BooleanOptionalAction,
        help="only the kernel regression: no plots, finite networks or HTML sections",
    )
    p.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")


def check_config(cfg: DemoConfig) -> None:
    """Refuse bad values with a :class:`UsageError` naming the flag (nothing is written)."""

    def bad(name: str, what: str) -> UsageError:
        return UsageError(f"{flag(name)} {what}, got {getattr(cfg, name)!r}")

    if cfg.seed < 0:
        raise bad("seed", "must be an integer >= 0")
    if cfg.depth < 0:
        raise bad("depth", "must be an integer >= 0")
    for name in ("n_train", "n_test"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise bad(name, "must be an integer >= 1")
    for name in ("w_std", "b_std", "diag_reg"):
        value = getattr(cfg, name)
        if not math.isfinite(value) or value < 0:
            raise bad(name, "must be a finite number >= 0")
    if cfg.dtype not in _DTYPES:
        raise bad("dtype", f"must be one of {', '.join(_DTYPES)}")
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {cfg.out}: exists and is not a folder")


# ----------------------------------------------------------------------------------------
# The demo: data
# ----------------------------------------------------------------------------------------


def _network(cfg: DemoConfig, n_out: int) -> Any:
    import neural_kernels as nk

    hidden = [nk.Dense(_HIDDEN_WIDTH, w_std=cfg.w_std, b_std=cfg.b_std), nk.ReLU()]
    return nk.Sequential(*hidden * cfg.depth, nk.Dense(n_out, w_std=1.0, b_std=cfg.b_std))


def _timed_kernel(
    net: Any, x1: Tensor, x2: Tensor | None, label: str, quiet: bool
) -> tuple[Any, float]:
    """The NNGP and NTK, and the seconds taken, with progress over the engine's blocks."""
    with Progress(label, enabled=not quiet) as progress:
        start = time.perf_counter()
        k = net.kernel(x1, x2, get=_KERNELS, progress=progress)
        return k, time.perf_counter() - start


def _ridge(k_train_train: Tensor, y_train: Tensor, k_test_train: Tensor, diag_reg: float) -> Tensor:
    r"""Kernel ridge regression: the posterior mean of :func:`nk.predict.gp_inference`.

    .. math::
        \hat y = K_{*}\,(K + \lambda\, \tfrac{\operatorname{tr} K}{n} I)^{-1} Y

    ``k_train_train`` is ``(n, n)``, ``y_train`` ``(n, c)``, ``k_test_train`` ``(m, n)``;
    returns ``(m, c)`` in their dtype. The solve runs in float64 whatever the kernels'
    dtype: a thousand float32 kernel rows regularised by ``diag_reg = 1e-4`` are
    numerically singular at float32 precision (``predict`` refuses them).

    Raises:
        RunError: the regularised kernel is singular or not positive definite.

    """
    import neural_kernels as nk

    n = k_train_train.shape[0]
    f64 = torch.float64
    try:
        post = nk.predict.gp_inference(k_train_train.to(f64), y_train.to(f64), diag_reg=diag_reg)
        # one bare kernel: a single Gaussian
        mean = cast("nk.predict.Gaussian", post(k_test_train=k_test_train.to(f64))).mean
    except nk.SingularKernelError:
        raise RunError(
            f"the {n} x {n} kernel plus diag_reg={diag_reg:g} is singular or not positive "
            "definite: raise --diag-reg"
        ) from None
    return mean.to(k_test_train.dtype)


def run_demo(cfg: DemoConfig) -> Report:
    """Run the demo for a checked configuration and return its report (nothing written)."""
    start = time.perf_counter()
    data = load_dataset(cfg.data)
    train, test = split(
        len(data.y),
        data.name,
        n_train=cfg.n_train,
        n_test=cfg.n_test,
        quick=cfg.quick,
        seed=cfg.seed,
    )
    x_train, x_test = standardise(data.x[train], data.x[test])
    dtype = _DTYPES[cfg.dtype]
    a = torch.as_tensor(x_train, dtype=dtype)
    b = torch.as_tensor(x_test, dtype=dtype)
    n_classes = len(data.classes)
    y_train = torch.as_tensor(data.y[train])
    y_test = torch.as_tensor(data.y[test])
    # One-hot targets shifted to mean zero over the classes (minus 0.1 for ten digits).
    targets = torch.nn.functional.one_hot(y_train, n_classes).to(dtype) - 1.0 / n_classes
    targets_test = torch.nn.functional.one_hot(y_test, n_classes).to(dtype) - 1.0 / n_classes

    net = _network(cfg, n_classes)
    k_train, t_train = _timed_kernel(net, a, None, "kernel train x train", cfg.quiet)
    k_test, t_test = _timed_kernel(net, b, a, "kernel test x train", cfg.quiet)

    scores: dict[str, dict[str, float]] = {}
    solve_seconds: dict[str, float] = {}
    for name in _KERNELS:
        t0 = time.perf_counter()
        pred = _ridge(getattr(k_train, name), targets, getattr(k_test, name), cfg.diag_reg)
        solve_seconds[name] = time.perf_counter() - t0
        scores[name] = {
            "test_accuracy": float((pred.argmax(1) == y_test).double().mean()),
            "test_mse": float(((pred - targets_test) ** 2).mean()),
        }
    chance = float(np.bincount(data.y[test], minlength=n_classes).max() / len(test))

    config = asdict(cfg)
    config.update(n_train=len(train), n_test=len(test))
    report = Report("demo", config)
    report.add(
        Section(
            "data",
            {
                "name": data.name,
                "n_train": len(train),
                "n_test": len(test),
                "n_features": int(a.shape[1]),
                "n_classes": n_classes,
                "classes": data.classes,
                "majority_class_test_accuracy": chance,
            },
            [
                f"data     {data.name}: {len(train)} train, {len(test)} test, "
                f"{a.shape[1]} features, {n_classes} classes; {cfg.dtype}"
            ],
        )
    )
    report.add(
        Section(
            "network",
            {"repr": repr(net), "depth": cfg.depth, "w_std": cfg.w_std, "b_std": cfg.b_std},
            [
                f"network  {cfg.depth} x [Dense(w_std={cfg.w_std:.4g}, b_std={cfg.b_std:g}), "
                f"ReLU] + Dense({n_classes}, w_std=1, b_std={cfg.b_std:g}), infinite width"
            ],
        )
    )
    lines = [f"{'':8} {'test accuracy':>14} {'test MSE':>10}"]
    lines += [
        f"  {name.upper():6} {s['test_accuracy']:>14.4f} {s['test_mse']:>10.5f}"
        for name, s in scores.items()
    ]
    lines.append(f"  {'chance':6} {chance:>14.4f}   (majority class)")
    report.add(Section("results", scores, lines))
    if not cfg.kernels_only:
        add_sections(
            report,
            Context(
                a,
                b,
                targets,
                targets_test,
                y_test,
                n_classes,
                net,
                k_train,
                k_test,
                cfg.diag_reg,
                cfg.seed,
                cfg.quick,
                cfg.quiet,
                chance,
            ),
        )
    timings = {
        "kernel_train_train": t_train,
        "kernel_test_train": t_test,
        **{f"regression_{name}": s for name, s in solve_seconds.items()},
        "total": time.perf_counter() - start,
    }
    report.add(
        Section(
            "timings",
            {"seconds": timings},
            [
                f"time     kernels {t_train:.2f} s (train x train) + {t_test:.2f} s "
                f"(test x train); total {timings['total']:.2f} s"
            ],
        )
    )
    return report


def run(args: argparse.Namespace) -> int:
    """``neural-kernels demo``: resolve and check the options, run, write, summarise."""
    cfg = resolve_config(args, DemoConfig(), "demo")
    check_config(cfg)
    report = run_demo(cfg)
    paths = write_report(report, Path(cfg.out).expanduser(), html=not cfg.kernels_only)
    print(report.summary())
    print(f"wrote    {paths[-1]}")
    return 0


# ----------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------


COMMAND = Command(
    "demo",
    "infinite-width kernel regression on a small data set (digits by default)",
    add_arguments,
    run,
)
