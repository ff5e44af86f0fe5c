"""The report model: a :class:`Report` is a header and a list of :class:`Section` s.

A command (``neural-kernels demo``, ...) returns a :class:`Report`; each section holds
its numbers (``data``, the section's key in ``results.json``), the lines of the printed
summary, its :class:`Plot` s and, for ``index.html``, a title and a paragraph. Writing
the folder is :func:`~neural_kernels.report.write_report`'s job.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Plot", "Report", "Section"]


@dataclass(frozen=True)
class Plot:
    """A figure of a report section, saved as ``<name>.png`` when matplotlib is installed.

    Attributes:
        name: file stem, e.g. ``"spectrum"`` (unique within a report).
        draw: draws the figure on a ``matplotlib.axes.Axes``.
        caption: one line saying what the plot shows (also its alt text in HTML).

    """

    name: str
    draw: Callable[[Any], None]
    caption: str = ""


@dataclass
class Section:
    """One part of a report.

    Attributes:
        name: key of the section in ``results.json``.
        data: JSON-serialisable numbers and facts (every number plotted is here).
        summary: lines for the printed summary.
        plots: figures of the section.
        title: heading in ``index.html`` (default: from ``name``).
        text: a paragraph under the heading.

    """

    name: str
    data: dict[str, Any]
    summary: list[str] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    title: str = ""
    text: str = ""


@dataclass
class Report:
    """What a command produces: a header and a list of sections, written to a folder."""

    command: str
    config: dict[str, Any]
    sections: list[Section] = field(default_factory=list)

    def add(self, section: Section) -> None:
        """Append ``section``; its name must be new."""
        if any(s.name == section.name for s in self.sections):
            raise ValueError(f"duplicate report section {section.name!r}")
        self.sections.append(section)

    def to_json(self) -> dict[str, Any]:
        """Every number of the report as one JSON-serialisable dict."""
        from .. import __version__

        out: dict[str, Any] = {
            "neural_kernels_version": __version__,
            "command": self.command,
            "config": self.config,
            "environment": _environment(),
        }
        for s in self.sections:
            out[s.name] = s.data
        return out

    def summary(self) -> str:
        """The human-readable summary: every section's lines."""
        return "\n".join(line for s in self.sections for line in s.summary)


def _environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }
