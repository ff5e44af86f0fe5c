"""Append-only JSON-lines files: the resumable stores of long sweeps.

A sweep appends one JSON line per finished run, so that an interrupted sweep resumes
from what is there. A write cut short leaves a last line without its newline; the next
append starts on a line of its own, and readers skip the torn line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["append_line"]


def append_line(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line, after a newline if the file's last one is torn.

    Only the file's last byte is read, however long the store.
    """
    file = Path(path).expanduser()
    torn = False
    if file.exists() and file.stat().st_size > 0:
        with file.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
    with file.open("a") as fh:
        fh.write(("\n" if torn else "") + json.dumps(record) + "\n")
