"""The ``index.html`` of a report: one heading per section, its summary, text and plots."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Report

__all__ = ["render_html"]

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
        title = s.title or s.name.replace("_", " ").capitalize()
        parts.append(f'<h2 id="{esc(s.name)}">{esc(title)}</h2>')
        text = s.text
        if text:
            parts.append(f"<p>{esc(text)}</p>")
        if s.summary:
            parts.append("<pre>" + esc("\n".join(s.summary)) + "</pre>")
        if with_plots:
            for p in s.plots:
                caption = p.caption or p.name.replace("_", " ")
                parts.append(
                    f'<figure><img src="{esc(p.name)}.png" alt="{esc(caption)}">'
                    f"<figcaption>{esc(caption)}</figcaption></figure>"
                )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def __getattr__(name: str) -> object:
    """``write_report``'s former home: still importable from here, with a warning."""
    if name == "write_report":
        import warnings

        from .writer import write_report

        warnings.warn(
            "neural_kernels.report.html.write_report is deprecated: import it from "
            "neural_kernels.report.",
            DeprecationWarning,
            stacklevel=2,
        )
        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
