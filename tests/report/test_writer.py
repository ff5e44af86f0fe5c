"""The report's files (``neural_kernels.report.writer``): plots first, results.json last."""

from __future__ import annotations

import json

import pytest

from neural_kernels.report import Plot, Report, Section, write_report

pytest.importorskip("matplotlib", reason="needs the demo extra (matplotlib)")


def test_report_writes_plots_then_results(tmp_path):
    report = Report("demo", {"seed": 0})
    report.add(
        Section("curve", {"y": [1, 2]}, ["a line"], [Plot("curve", lambda ax: ax.plot([1, 2]))])
    )
    paths = write_report(report, tmp_path, html=False)
    assert [p.name for p in paths] == ["curve.png", "results.json"]
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(paths[-1].read_text())["curve"] == {"y": [1, 2]}
    assert report.summary() == "a line"
    with pytest.raises(ValueError, match="duplicate"):
        report.add(Section("curve", {}))
