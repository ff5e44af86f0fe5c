"""``neural-kernels bo``: options checked before any work, a small run and its report."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("botorch", reason="needs the botorch extra")

from neural_kernels.cli import main


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--problems", "branin,nope"], ["--problems", "nope"]),
        (["--surrogates", "rbf"], ["--surrogates", "matern"]),
        (["--seeds", "0"], ["--seeds", ">= 1"]),
        (["--iterations", "-1"], ["--iterations", ">= 0"]),
    ],
)
def test_bad_options_fail_before_writing(tmp_path, capsys, flags, words) -> None:
    out = tmp_path / "r"
    assert main(["bo", "--out", str(out), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words)
    assert not out.exists()


def test_small_run_writes_every_curve(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    flags = ["--problems", "branin", "--surrogates", "matern", "--seeds", "2"]
    flags += ["--n-init", "3", "--iterations", "1", "--raw-samples", "8", "--restarts", "1"]
    assert main(["bo", "--out", str(out), "--quiet", *flags]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["command"] == "bo"
    sec = res["bo_branin"]
    assert sec["dim"] == 2 and sec["n_init"] == 3 and sec["iterations"] == 1
    curves = sec["best_so_far"]["matern"]
    assert len(curves) == 2 and all(len(c) == 4 for c in curves)
    assert all(c == sorted(c) for c in curves)  # best so far never decreases
    final = sec["final_best"]["matern"]
    assert final["per_seed"] == [c[-1] for c in curves]
    assert final["mean"] == pytest.approx(sum(final["per_seed"]) / 2)
    assert all(v <= sec["optimum"] + 1e-9 for v in final["per_seed"])
    assert "bo branin" in capsys.readouterr().out
    assert (out / "index.html").exists()
