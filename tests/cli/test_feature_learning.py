"""``neural-kernels feature-learning`` at tiny sizes: the report and every number in JSON."""

from __future__ import annotations

import json

import pytest

from neural_kernels.cli import main

pytest.importorskip("sklearn", reason="needs the demo extra (the bundled digits)")


def test_tiny_run_writes_the_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "fl"
    assert main(["feature-learning", "--out", str(out), "--quick", "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    text = json.dumps(results)
    assert "mup_limit_kernel_change" in text and "best_lr" in text
    transfer = results["transfer"]
    assert set(transfer) == {"mlp", "cnn"} and transfer["cnn"]["mup"]["widths"] == [4, 8]
    assert transfer["mlp"]["standard"]["optimizer"] == "adam"
    forgetting = results["forgetting"]
    assert forgetting["widths"] == [16, 32] and set(forgetting["forgetting"]) == {
        "early",
        "converged",
    }
    assert (out / "index.html").exists()


def test_bad_widths_are_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bad"
    assert main(["feature-learning", "--out", str(out), "--quick", "--widths", "64"]) == 2
    assert main(["feature-learning", "--out", str(out), "--quick", "--cnn-widths", "8"]) == 2
    assert not out.exists()
