"""Reports: the model, the demo's sections, HTML and the folder they are written to.

A :class:`Report` is a list of :class:`Section` s with their :class:`Plot` s. The report
folder holds ``index.html`` (titles, captions, PNG plots referenced relatively), one PNG
per plot and ``results.json`` with every number plotted, each file written atomically
and ``results.json`` last. The report does not depend on the command line: commands
build a :class:`Report` and call :func:`write_report`. The demo's sections live in
:mod:`.sections` (one module each; see there how to add one).
"""

from __future__ import annotations

from .html import render_html
from .model import Plot, Report, Section
from .progress import Progress
from .sections import SECTIONS, Context, Sizes, add_sections, sizes_for
from .writer import write_report

__all__ = [
    "SECTIONS",
    "Context",
    "Plot",
    "Progress",
    "Report",
    "Section",
    "Sizes",
    "add_sections",
    "render_html",
    "sizes_for",
    "write_report",
]
