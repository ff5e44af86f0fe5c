"""The migration guide's layer table names what exists, and every public layer is in it."""

from __future__ import annotations

import re
from pathlib import Path

import neural_kernels as nk

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "migrating_from_neural_tangents.md"


def _layer_rows() -> list[tuple[str, str]]:
    text = GUIDE.read_text()
    table = text.split("## Layers (`neural_tangents.stax`)")[1].split("\n## ")[0]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            rows.append((cells[0], cells[1]))
    return rows


def test_every_name_in_the_nk_column_exists() -> None:
    rows = _layer_rows()
    assert len(rows) > 40
    missing = []
    for _, ours in rows:
        for name in re.findall(r"`([A-Za-z_]+)\(", ours):
            if not hasattr(nk, name):
                missing.append(name)
    assert not missing, f"the guide names layers that do not exist: {missing}"


def test_every_public_layer_is_in_the_guide() -> None:
    text = GUIDE.read_text()
    internal = {"Layer", "Elementwise", "Facts", "ModuleContext", "Requirements", "Repeat"}
    absent = [
        name
        for name in nk.layers.__all__
        if name not in internal
        and isinstance(getattr(nk, name), type)
        and issubclass(getattr(nk, name), nk.Layer)
        and f"`{name}(" not in text
    ]
    assert not absent, f"public layers missing from the migration guide: {absent}"
