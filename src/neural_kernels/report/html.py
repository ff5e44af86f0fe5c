"""Write a :class:`~neural_kernels.cli.Report` as a self-contained folder.

Plots first (``<name>.png``), then ``index.html``, then ``results.json`` last, each
written atomically, so that a folder with a ``results.json`` is complete.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..cli import Plot, Report

__all__ = ["render_html", "write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.5rem; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; font-size: 0.85rem; }
figure { display: inline-block; margin: 0.5rem 1rem 1rem 0; vertical-align: top; max-width: 30rem; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9rem; color: #444; }
p.note { color: #555; }
"""


def _figure_png(plot: Plot) -> bytes:
    """The plot as PNG bytes (matplotlib's object API: no global state, no pyplot)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.4, 3.8), layout="constrained")
    plot.draw(fig.add_subplot())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def render_html(report: Report, with_plots: bool = True) -> str:
    """The ``index.html`` of ``report``: one ``<h2>`` per section, its summary and plots."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>neural-kernels {esc(report.command)} report</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>neural-kernels {esc(report.command)}: report</h1>",
        '<p class="note">Every number of this page, and every number plotted, is in '
        '<a href="results.json">results.json</a>.</p>',
    ]
    cfg = ", ".join(f"{k}={v}" for k, v in report.config.items())
    parts.append(f"<pre>configuration: {esc(cfg)}</pre>")
    for s in report.sections:
        title = getattr(s, "title", "") or s.name.replace("_", " ").capitalize()
        parts.append(f'<h2 id="{esc(s.name)}">{esc(title)}</h2>')
        text = getattr(s, "text", "")
        if text:
            parts.append(f"<p>{esc(text)}</p>")
        if s.summary:
            parts.append("<pre>" + esc("\n".join(s.summary)) + "</pre>")
        if with_plots:
            for p in s.plots:
                caption = getattr(p, "caption", "") or p.name.replace("_", " ")
                parts.append(
                    f'<figure><img src="{esc(p.name)}.png" alt="{esc(caption)}">'
                    f"<figcaption>{esc(caption)}</figcaption></figure>"
                )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(report: Report, out_dir: Path) -> list[Path]:
    """Write the PNG plots (if matplotlib is installed), ``index.html``, then ``results.json``.

    Returns:
        The paths written, ``results.json`` last.

    """
    from ..cli import _have, _write_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    plots = _have("matplotlib")
    written: list[Path] = []
    if plots:
        for s in report.sections:
            for p in s.plots:
                path = out_dir / f"{p.name}.png"
                _write_atomic(path, _figure_png(p))
                written.append(path)
    index = out_dir / "index.html"
    _write_atomic(index, render_html(report, plots).encode())
    written.append(index)
    data: dict[str, Any] = report.to_json()
    results = out_dir / "results.json"
    _write_atomic(results, (json.dumps(data, indent=2, allow_nan=False) + "\n").encode())
    written.append(results)
    return written
