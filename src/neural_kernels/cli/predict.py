"""``neural-kernels predict``: kernel regression from stored kernels, solved by CG.

``neural-kernels predict --kernels k.zarr --targets y.npy`` solves the kernel regression
with the train-train store ``k.zarr`` (from ``neural-kernels kernel``) and targets
``(n,)`` or ``(n, k)`` by :func:`neural_kernels.predict.gp_inference` with
``--solver cg`` (default: conjugate gradients streaming the store) or ``cholesky``.
``--test-kernels kt.zarr`` (from ``kernel --data X_test.npy --against X_train.npy``)
(required) gives the test predictions, written to ``predictions.npy`` (``(m, k)``); with
``--test-targets`` also their mean squared error and, for integer labels one-hot
encoded, the accuracy. ``results.json`` in ``--out`` holds the iterations and residuals
of every solve. A progress bar per solve shows the iterations, the relative residual, and
the decimal digits gained towards the tolerance with the time left (conjugate gradients
gain digits at a roughly steady rate).
"""

from __future__ import annotations

import argparse
import io
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..report import Report, Section, write_report
from ..report.writer import write_atomic
from ._command import Command, UsageError
from ._config import resolve_config
from .kernel import load_array

__all__ = ["COMMAND", "PredictConfig"]


@dataclass(frozen=True)
class PredictConfig:
    """Options of ``neural-kernels predict`` (each also a flag and a TOML key).

    Attributes:
        kernels: the train-train store.
        targets: ``.npy`` targets ``(n,)`` / ``(n, k)``; integer labels are one-hot encoded.
        test_kernels: the test-train store (optional).
        test_targets: ``.npy`` test targets or labels (optional).
        get: ``nngp``, ``ntk`` or ``ntkgp``.
        solver: ``cg`` or ``cholesky``.
        diag_reg: ridge relative to the mean diagonal.
        preconditioner: ``nystrom``, ``pivoted_cholesky`` or ``none`` (CG).
        tol: relative residual at which CG stops.
        out: output folder.
        quiet: print nothing (no progress bar).

    """

    kernels: str = ""
    targets: str = ""
    test_kernels: str = ""
    test_targets: str = ""
    get: str = "ntk"
    solver: str = "cg"
    diag_reg: float = 1e-4
    preconditioner: str = "nystrom"
    tol: float = 1e-10
    out: str = "predict-report"
    quiet: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``neural-kernels predict``."""
    p.add_argument("--kernels", metavar="K.zarr", help="train-train kernel store")
    p.add_argument("--targets", metavar="Y.npy", help="training targets or integer labels")
    p.add_argument("--test-kernels", metavar="KT.zarr", help="test-train kernel store")
    p.add_argument("--test-targets", metavar="YT.npy", help="test targets or labels")
    p.add_argument("--get", choices=("nngp", "ntk", "ntkgp"), help="default ntk")
    p.add_argument("--solver", choices=("cg", "cholesky"), help="default cg")
    p.add_argument("--diag-reg", type=float, metavar="R", help="default 1e-4")
    p.add_argument(
        "--preconditioner",
        choices=("nystrom", "pivoted_cholesky", "none"),
        help="CG preconditioner (default nystrom)",
    )
    p.add_argument("--tol", type=float, metavar="T", help="CG relative residual (default 1e-10)")
    p.add_argument("--out", metavar="DIR", help="output folder (default ./predict-report)")
    p.add_argument("--quiet", action=argparse.BooleanOptionalAction, help="print nothing")
    p.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")


def _targets(y: torch.Tensor, classes: int | None = None) -> tuple[torch.Tensor, int | None]:
    if y.is_floating_point():
        return y.to(torch.float64), None
    k = int(y.max()) + 1 if classes is None else classes
    return torch.nn.functional.one_hot(y.long(), k).to(torch.float64) - 1.0 / k, k


def cg_progress_bar(quiet: bool, tol: float) -> tuple[Any, Any]:
    """A ``progress(kernel, iteration, residual)`` callback for CG drawing tqdm bars, a closer.

    One bar per solve counts the decimal digits of the relative residual gained, out of
    ``-log10(tol)`` (from a residual of 1 at the start), so that its rate and time left
    follow CG's roughly steady gain of digits; the iteration and residual are its postfix.
    """
    if quiet:
        return None, None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover (tqdm is in the demo extra)
        return None, None
    total = max(1.0, -math.log10(tol))
    bars: list[Any] = []

    def progress(kernel: str, iteration: int, residual: float) -> None:
        if iteration == 0:
            if bars:
                bars[-1].close()
            fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.0f} digits "
            fmt += "[{elapsed}<{remaining}{postfix}]"
            bars.append(tqdm(desc=f"CG {kernel}", total=total, bar_format=fmt))
        bar = bars[-1]
        gained = min(total, max(bar.n, -math.log10(max(residual, 1e-300))))
        bar.set_postfix_str(f"iteration {iteration}, residual {residual:.2e}", refresh=False)
        bar.update(gained - bar.n)

    def close() -> None:
        for bar in bars:
            bar.close()

    return progress, close


def run(args: argparse.Namespace) -> int:
    """Run ``neural-kernels predict``."""
    from ..predict import gp_inference
    from ..predict._results import Gaussian
    from ..store import open_kernel

    cfg = resolve_config(args, PredictConfig(), "predict")
    if not cfg.kernels or not cfg.test_kernels:
        raise UsageError(
            "--kernels and --test-kernels are required (stores from 'neural-kernels kernel')"
        )
    train = open_kernel(cfg.kernels)
    y, classes = _targets(load_array(cfg.targets, "--targets"))
    start = time.perf_counter()
    progress, close = cg_progress_bar(cfg.quiet or cfg.solver != "cg", cfg.tol)
    options = {
        "preconditioner": None if cfg.preconditioner == "none" else cfg.preconditioner,
        "tol": cfg.tol,
        "progress": progress,
    }
    post = gp_inference(
        train,
        y,
        diag_reg=cfg.diag_reg,
        solver=cfg.solver,
        solver_options=options if cfg.solver == "cg" else None,
    )
    data: dict[str, object] = {"n_train": int(y.shape[0]), "solver": cfg.solver}
    summary = []
    test = open_kernel(cfg.test_kernels)
    try:
        mean = cast(Gaussian, post(cfg.get, test)).mean  # one name: one Gaussian
    finally:
        if close is not None:
            close()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, mean.numpy())
    write_atomic(out / "predictions.npy", buffer.getvalue())
    data["n_test"] = int(mean.shape[0])
    if cfg.test_targets:
        raw = load_array(cfg.test_targets, "--test-targets")
        yt, _ = _targets(raw, classes)
        data["test_mse"] = float(((mean - yt) ** 2).mean())
        summary.append(f"test MSE {data['test_mse']:.4g}")
        if classes is not None:
            data["test_accuracy"] = float((mean.argmax(1) == raw.long()).double().mean())
            summary.append(f"test accuracy {data['test_accuracy']:.4f}")
    data["seconds"] = time.perf_counter() - start
    data["solves"] = [s._asdict() for s in getattr(post, "solves", [])]
    summary.insert(0, f"{cfg.get} regression with {cfg.solver} in {data['seconds']:.1f} s")
    report = Report("predict", asdict(cfg))
    report.add(Section("predict", data, summary=summary))
    write_report(report, Path(cfg.out), html=False)
    if not cfg.quiet:
        print("; ".join(summary))
    return 0


COMMAND = Command(
    "predict",
    "kernel regression from stored kernels (conjugate gradients streaming the store)",
    add_arguments,
    run,
)
