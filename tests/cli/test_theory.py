"""``neural-kernels theory``: every check of the theory against experiment, tiny sizes."""

from __future__ import annotations

import json
import math

import pytest

from neural_kernels.cli import main

TINY = ["--quick", "--no-digits", "--quiet"]


def test_theory_command_writes_every_number(tmp_path, capsys) -> None:
    out = tmp_path / "theory"
    assert main(["theory", "--out", str(out), *TINY]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["command"] == "theory"
    rows = res["finite_width"]["rows"]
    assert len(rows) == 4
    relu = rows[0]
    assert relu["theory"] == pytest.approx((1 + 5 / 64) ** 7 - 1)
    assert relu["leading_order"] == pytest.approx(5 * 7 / 64)
    for r in rows:  # a few thousand chains: agreement within Monte Carlo error
        assert abs(r["monte_carlo"] - r["theory"]) < 5 * r["standard_error"] + 0.02 * abs(
            r["theory"]
        ), r
    crit = res["criticality"]
    relu_curve = crit["curves"]["relu critical"]
    assert relu_curve["vertex"][-1] == pytest.approx(5 * (crit["depth"] - 1) / crit["width"])
    slope = crit["curves"]["tanh critical"]["vertex"][-1] * crit["width"] / crit["depth"]
    assert 0.3 < slope < 2 / 3  # approaching the book's (2/3) L/n from below
    saturating = crit["curves"]["tanh w_std 1.3"]["vertex"]
    assert saturating[-1] - saturating[-2] < 0.5 * (saturating[2] - saturating[1])
    sphere = res["infinite_depth"]
    for key in ("bayes", "optimal_activation", "nearest_neighbour", "majority"):
        assert 0.3 < sphere[key] <= 1.0
    assert sphere["bayes"] > sphere["majority"]
    assert sphere["relu_ntk"]["depths"] == [10, 100]
    risk = res["risk"]["power_law"]
    assert "digits" not in res["risk"]
    for c in risk["curves"].values():
        assert len(c["theory"]) == len(c["measured"]) == len(risk["ks"])
        assert all(math.isfinite(v) and v > 0 for v in c["measured"])
    assert risk["optimal_in_k"]["theory_decreasing"] and risk["optimal_in_n"]["theory_decreasing"]
    dyn = res["eigen_dynamics"]
    assert dyn["widths"] == [32, 256] and dyn["gap"]["256"] < dyn["gap"]["32"]
    printed = capsys.readouterr().out
    assert "Finite-width corrections" in printed and "eigendirections" in printed
    assert (out / "index.html").exists()


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--widths", "0"], "--widths"),
        (["--widths", "wide"], "comma-separated"),
        (["--trials", "1"], "--trials"),
        (["--relu-depth", "5"], "--relu-depth"),
        (["--relu-n", "500", "--sphere-n", "100"], "--relu-n"),
    ],
)
def test_bad_flags_exit_2_and_write_nothing(tmp_path, capsys, flags, match) -> None:
    out = tmp_path / "theory"
    assert main(["theory", "--out", str(out), "--quiet", *flags]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists()
