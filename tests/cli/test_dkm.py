"""``neural-kernels dkm``: the digits experiment of the deep kernel machine, tiny sizes."""

from __future__ import annotations

import json
import math

import pytest

from neural_kernels.cli import main

pytest.importorskip("sklearn", reason="needs the demo extra (the bundled digits)")

TINY = [
    "--splits", "2", "--n-train", "40", "--n-test", "60", "--steps", "4", "--nu", "10,1",
    "--inducing", "12", "--sparse-test", "1697", "--sparse-steps", "3", "--quiet",
]  # fmt: skip


def test_dkm_command_writes_every_number(tmp_path, capsys) -> None:
    out = tmp_path / "dkm"
    assert main(["dkm", "--out", str(out), *TINY]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["command"] == "dkm" and res["config"]["nus"] == ["inf", "10.0", "1.0"]
    full = res["full_dkm"]
    assert len(full["splits"]) == 2
    for split in full["splits"]:
        nngp = split["inf"]
        assert nngp["objective_rise"] == 0.0 and nngp["steps"] == 0 and nngp["kl"] == []
        for key in ("10.0", "1.0"):
            dkm = split[key]
            assert dkm["objective_nngp"] == pytest.approx(nngp["objective"], rel=1e-10)
            assert dkm["objective_rise"] > 0 and len(dkm["kl"]) == 2
            assert 0.5 < dkm["test_accuracy"] <= 1.0
    summary = full["summary"]["10.0"]
    assert summary["mean_test_accuracy"] == pytest.approx(
        sum(s["10.0"]["test_accuracy"] for s in full["splits"]) / 2
    )
    sparse = res["sparse_dkm"]
    assert (sparse["n_train"], sparse["n_test"], sparse["inducing"]) == (100, 1697, 12)
    assert sparse["objective"] > sparse["objective_start"]
    assert math.isfinite(sparse["fit_seconds"]) and 0 < sparse["test_accuracy"] <= 1
    printed = capsys.readouterr().out
    assert "DKM nu=10" in printed and "NNGP (nu=inf)" in printed and "sparse DKM" in printed
    assert (out / "index.html").exists()


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--nu", "0"], "--nu must be positive"),
        (["--nu", "ten"], "comma-separated"),
        (["--noise-var", "0"], "--noise-var"),
        (["--splits", "0"], "--splits"),
        (["--n-train", "1500", "--n-test", "400"], "digits has 1797"),
    ],
)
def test_bad_flags_exit_2_and_write_nothing(tmp_path, capsys, flags, match) -> None:
    out = tmp_path / "dkm"
    assert main(["dkm", "--out", str(out), *flags]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists()
