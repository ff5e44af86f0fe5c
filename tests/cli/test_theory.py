"""``neural-kernels theory``: every check at quick sizes, every number in results.json."""

from __future__ import annotations

import json

import pytest

from neural_kernels.cli import main

pytest.importorskip("sklearn", reason="needs the demo extra (the bundled digits)")
pytest.importorskip("matplotlib", reason="needs the demo extra (the report's plots)")


def test_theory_command_writes_every_check(tmp_path, capsys) -> None:
    out = tmp_path / "theory"
    assert main(["theory", "--out", str(out), "--quick", "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["command"] == "theory" and res["config"]["size"] == "quick"
    rows = res["theory_finite_width"]["rows"]
    relu = rows[0]
    assert relu["theory"] == pytest.approx((1 + 5 / 64) ** 7 - 1)
    assert relu["leading_order"] == pytest.approx(5 * 7 / 64)
    assert all(abs(r["z"]) < 5 for r in rows)
    assert res["theory_criticality"]["activations"]["relu"]["class"] == "scale-invariant"
    sphere = res["theory_infinite_depth"]
    assert sphere["rho_cubed_agrees_with_one_nn"] == 1.0
    assert sphere["bayes"] > sphere["one_nn"] > 0.5
    risk = res["theory_risk"]
    assert risk["peak_k_small_ridge"] == 200
    assert all(abs(r["relative_error"]) < 0.1 for r in risk["digits_ntk"])
    gaps = res["theory_dynamics"]["gap"]
    assert gaps["512"] < gaps["64"]
    assert (out / "index.html").exists()
    assert len(list(out.glob("*.png"))) >= 4
    assert "Bayes" in capsys.readouterr().out


def test_theory_command_refuses_a_file_as_out(tmp_path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["theory", "--out", str(target), "--quick", "--quiet"]) == 2
