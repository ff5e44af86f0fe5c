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


def test_curves_file_resumes_a_run(tmp_path) -> None:
    curves = tmp_path / "curves.jsonl"
    flags = ["--problems", "branin", "--surrogates", "ibnn_tutorial", "--n-init", "3"]
    flags += ["--iterations", "1", "--raw-samples", "8", "--restarts", "1", "--quiet"]
    flags += ["--curves", str(curves)]
    assert main(["bo", "--out", str(tmp_path / "a"), "--seeds", "1", *flags]) == 0
    first = [json.loads(line) for line in curves.read_text().splitlines()]
    assert len(first) == 1 and len(first[0]["best"]) == 4 and first[0]["seconds"] > 0
    # a torn line (an interrupted write) is ignored; seed 0 is reused, seed 1 is run
    with curves.open("a") as fh:
        fh.write('{"key": "[\\"branin\\"')
    assert main(["bo", "--out", str(tmp_path / "b"), "--seeds", "2", *flags]) == 0
    lines = curves.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["key"].startswith('["branin", ')
    res = json.loads((tmp_path / "b" / "results.json").read_text())["bo_branin"]
    runs = res["best_so_far"]["ibnn_tutorial"]
    assert runs[0] == first[0]["best"] and len(runs) == 2
    assert res["seconds"]["ibnn_tutorial"] >= first[0]["seconds"]
    # other sizes are other runs: nothing reused
    more = [f if f != "1" else "2" for f in flags]  # --iterations 2 (and restarts 2)
    assert main(["bo", "--out", str(tmp_path / "c"), "--seeds", "1", *more]) == 0
    assert len(curves.read_text().splitlines()) == 4


def test_first_seed_splits_a_run(tmp_path) -> None:
    curves = tmp_path / "curves.jsonl"
    flags = ["--problems", "branin", "--surrogates", "ibnn", "--n-init", "3", "--quiet"]
    flags += ["--iterations", "0", "--curves", str(curves)]
    assert (
        main(["bo", "--out", str(tmp_path / "a"), "--first-seed", "1", "--seeds", "1", *flags]) == 0
    )
    assert json.loads(curves.read_text())["key"].startswith('["branin", "ibnn", 1,')
    assert main(["bo", "--out", str(tmp_path / "b"), "--seeds", "2", *flags]) == 0
    res = json.loads((tmp_path / "b" / "results.json").read_text())["bo_branin"]
    assert len(res["best_so_far"]["ibnn"]) == 2 and len(curves.read_text().splitlines()) == 2
    assert main(["bo", "--out", str(tmp_path / "c"), "--first-seed", "-1", *flags]) == 2
