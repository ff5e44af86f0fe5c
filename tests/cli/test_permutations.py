"""``neural-kernels permutations``: options checked before any work, a small run's report."""

from __future__ import annotations

import json
import math

import pytest

from neural_kernels.cli import main


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--ks", "1,4"], ["--ks", "2 <= k"]),
        (["--ks", "four"], ["--ks", "four"]),
        (["--finite-ks", "20"], ["--finite-ks"]),
        (["--delta", "1.5"], ["--delta", "(0, 1)"]),
        (["--pool", "0"], ["--pool", ">= 1"]),
    ],
)
def test_bad_options_fail_before_writing(tmp_path, capsys, flags, words) -> None:
    out = tmp_path / "r"
    assert main(["permutations", "--out", str(out), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words)
    assert not out.exists()


def test_small_run(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    flags = ["--ks", "3,4", "--finite-ks", "3", "--pool", "24", "--width", "256"]
    flags += ["--steps", "100", "--samples", "300"]
    assert main(["permutations", "--out", str(out), "--quiet", *flags]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["command"] == "permutations"
    row = res["permutations_kernel"]["sizes"]["3"]
    assert row["test_inputs"] == 2**3 - 1 - 3  # nonzero inputs with at least two ones
    for variant in ("nngp", "ntk"):
        r = row[variant]
        assert r["signs_ok"] is True
        assert set(r["mean_closed_form"]) == {"2", "3"}
        assert r["mean_max_abs_diff_closed_form"] < 1e-6
        assert r["models_over_k2"] == pytest.approx(r["models_needed"] / 9)
        curve = r["recovery_vs_models"]
        assert curve == sorted(curve) and 0 <= curve[0] <= curve[-1] <= 1
    # training both layers adds variance: the NTK variant needs more models
    assert row["ntk"]["models_needed"] > row["nngp"]["models_needed"] >= 1
    four = res["permutations_kernel"]["sizes"]["4"]
    for r in (row, four):
        nngp = r["nngp"]
        assert nngp["models_needed_single_input_max"] < nngp["models_needed_union_bound"]
        assert nngp["models_needed_union_bound"] >= 0.9 * nngp["models_needed"]
        assert (
            max(nngp["models_needed_single_input_by_ones"].values())
            == (nngp["models_needed_single_input_max"])
        )
    assert row["reference_grid_count"] is None and row["nngp"]["growth_exponent"] is None
    assert four["reference_grid_count"] == 48
    assert isinstance(four["reference_interval_holds"], bool)
    slope = four["nngp"]["growth_exponent"]
    assert slope == pytest.approx(
        math.log(four["nngp"]["models_needed"] / row["nngp"]["models_needed"]) / math.log(4 / 3)
    )
    finite = res["permutations_finite"]["sizes"]["3"]
    assert finite["kernel_models_needed"] == row["nngp"]["models_needed"]
    assert len(finite["recovery_vs_models"]) == len(res["permutations_finite"]["models_grid"])
    assert all(0 <= v <= 1 for v in finite["recovery_vs_models"])
    assert "k= 3: NNGP" in capsys.readouterr().out
