"""Write a :class:`~neural_kernels.report.Report` as a self-contained folder.

Plots first (``<name>.png``), then ``index.html``, then ``results.json`` last, each
written atomically (a temporary file in the folder, then ``os.replace``), so that a
folder with a ``results.json`` is complete and no file is ever half written.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .html import render_html

if TYPE_CHECKING:
    from .model import Plot, Report

__all__ = ["have", "plot_png", "write_atomic", "write_report"]

#: Size of a saved figure, in inches, and its resolution.
FIGSIZE, DPI = (5.4, 3.8), 110


def have(module: str) -> bool:
    """Whether ``module`` (an optional extra such as matplotlib) can be imported."""
    return importlib.util.find_spec(module) is not None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot_png(plot: Plot) -> bytes:
    """The plot as PNG bytes (matplotlib's object API: no global state, no pyplot)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, layout="constrained")
    plot.draw(fig.add_subplot())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def write_report(report: Report, out_dir: Path, *, html: bool = True) -> list[Path]:
    """Write the PNG plots (if matplotlib is installed), ``index.html``, then ``results.json``.

    Args:
        report: the report.
        out_dir: the folder (created if needed).
        html: write ``index.html`` (``False``: plots and ``results.json`` only).

    Returns:
        The paths written, ``results.json`` last.

    """
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = have("matplotlib")
    written: list[Path] = []
    if plots:
        for s in report.sections:
            for p in s.plots:
                path = out_dir / f"{p.name}.png"
                write_atomic(path, plot_png(p))
                written.append(path)
    if html:
        index = out_dir / "index.html"
        write_atomic(index, render_html(report, plots).encode())
        written.append(index)
    text = json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n"
    results = out_dir / "results.json"
    write_atomic(results, text.encode())
    written.append(results)
    return written
