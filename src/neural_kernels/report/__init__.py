"""The report of ``neural-kernels demo``: sections (:mod:`.sections`), HTML (:mod:`.html`).

The report folder holds ``index.html`` (titles, captions, PNG plots referenced
relatively), one PNG per plot and ``results.json`` with every number plotted.
"""

from __future__ import annotations

from .html import write_report
from .sections import Context, Sizes, add_sections, sizes_for

__all__ = ["Context", "Sizes", "add_sections", "sizes_for", "write_report"]
