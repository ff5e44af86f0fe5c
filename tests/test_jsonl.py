"""Appending to a JSON-lines store starts a new line after a torn write."""

from __future__ import annotations

import json
from pathlib import Path

from neural_kernels._jsonl import append_line


def test_append_after_a_torn_line_and_to_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    append_line(path, {"a": 1})  # a new file
    assert path.read_text() == '{"a": 1}\n'
    with path.open("a") as fh:
        fh.write('{"b": 2')  # a write cut short
    append_line(path, {"c": 3})
    lines = path.read_text().splitlines()
    assert lines == ['{"a": 1}', '{"b": 2', '{"c": 3}']
    assert json.loads(lines[-1]) == {"c": 3}
    append_line(path, {"d": 4})  # a whole last line: no blank line between
    assert path.read_text().endswith('{"c": 3}\n{"d": 4}\n')
