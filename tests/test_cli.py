"""The command-line main job: ``neural-kernels demo``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neural_kernels.cli import RunError, main
from neural_kernels.cli.demo import _ridge
from neural_kernels.report import Plot, Report, Section, write_report

SMALL = ["--n-train", "150", "--n-test", "100", "--quiet"]


def run_demo(out: Path, *flags: str) -> dict:
    """The kernel regression alone (the full report is tested in ``test_report.py``)."""
    assert main(["demo", "--out", str(out), "--kernels-only", *flags]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # no temporary files
    return json.loads((out / "results.json").read_text())


def test_demo_quick(tmp_path, capsys):
    res = run_demo(tmp_path / "report", "--quick")
    for key in ("command", "config", "environment", "data", "network", "results", "timings"):
        assert key in res
    assert res["command"] == "demo"
    assert res["config"]["quick"] is True
    assert res["data"]["name"] == "digits"
    assert (res["data"]["n_features"], res["data"]["n_classes"]) == (64, 10)
    assert res["data"]["n_train"] == res["config"]["n_train"] > 0
    chance = res["data"]["majority_class_test_accuracy"]
    assert set(res["results"]) == {"nngp", "ntk"}
    for scores in res["results"].values():
        assert 0.0 <= scores["test_accuracy"] <= 1.0
        assert scores["test_accuracy"] > max(0.8, chance + 0.5)
        assert math.isfinite(scores["test_mse"])
        assert 0.0 <= scores["test_mse"] < 0.1  # predicting zero scores 0.09
    seconds = res["timings"]["seconds"]
    for key in ("kernel_train_train", "kernel_test_train", "regression_nngp", "total"):
        assert seconds[key] > 0
    printed = capsys.readouterr().out
    assert "NNGP" in printed and "NTK" in printed and "results.json" in printed


def test_demo_deterministic(tmp_path):
    a = run_demo(tmp_path / "a", *SMALL, "--seed", "3")
    b = run_demo(tmp_path / "b", *SMALL, "--seed", "3")
    c = run_demo(tmp_path / "c", *SMALL, "--seed", "4")
    assert a["results"] == b["results"] and a["data"] == b["data"]
    assert a["results"]["ntk"]["test_mse"] != c["results"]["ntk"]["test_mse"]


def test_entry_point_subprocess(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    cmd = [sys.executable, "-m", "neural_kernels", "demo", "--quick", "--kernels-only"]
    cmd += ["--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "results.json").read_text())["results"]["ntk"]
    # Progress goes to stderr (plain lines, not a terminal), the summary to stdout.
    assert "100%" in done.stderr and "NTK" in done.stdout

    bad = subprocess.run([*cmd[:-2], "--data", "mnist"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "unknown data set" in bad.stderr


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_INPUTS = {
    "missing_npz": (["--data", "{tmp}/nope.npz"], "no such file"),
    "unknown_dataset": (["--data", "mnist"], "unknown data set"),
    "malformed_toml": (["--config", "{tmp}/bad.toml"], "malformed TOML"),
    "missing_toml": (["--config", "{tmp}/absent.toml"], "no such file"),
    "unknown_toml_key": (["--config", "{tmp}/unknown.toml"], "unknown option 'width'"),
    "wrong_toml_type": (["--config", "{tmp}/type.toml"], "must be of type int"),
    "negative_n_train": (["--n-train", "-5"], "--n-train must be an integer >= 1"),
    "too_many_n_train": (["--n-train", "100000"], "--n-train 100000"),
    "negative_w_std": (["--w-std=-1"], "--w-std must be a finite number >= 0"),
    "nan_diag_reg": (["--diag-reg", "nan"], "--diag-reg must be a finite number"),
    "bad_dtype": (["--dtype", "float16"], "invalid choice"),
    "not_an_int": (["--seed", "x"], "invalid int value"),
    "unknown_flag": (["--colour"], "unrecognized arguments"),
    "bad_npz": (["--data", "{tmp}/bad.npz"], "missing array(s) y"),
    "ragged_csv": (["--data", "{tmp}/ragged.csv"], "row 2 has 2 columns"),
    "out_is_file": (["--out", "{tmp}/bad.toml"], "not a folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(case, tmp_path, capsys):
    write(tmp_path / "bad.toml", "depth = [1, \n")
    write(tmp_path / "unknown.toml", "width = 3\n")
    write(tmp_path / "type.toml", '[demo]\nseed = "zero"\n')
    write(tmp_path / "ragged.csv", "1,2,0\n3,1\n")
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 2)))
    flags, message = BAD_INPUTS[case]
    out = tmp_path / "report"
    args = [f.format(tmp=tmp_path) for f in flags]
    if "--out" not in args:
        args += ["--out", str(out)]
    assert main(["demo", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("neural-kernels: error: "), captured.err
    assert message in lines[0]
    assert not out.exists()


def test_no_command_exits_2(capsys):
    assert main([]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def blobs(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = np.array([[3.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    return centres[y] + rng.standard_normal((n, 4)), y


def test_npz_and_csv_data(tmp_path):
    x, y = blobs()
    np.savez(tmp_path / "blobs.npz", x=x, y=y + 7)  # any integer labels
    names = np.array(["cat", "dog", "emu"])[y]
    rows = ["f1,f2,f3,f4,label"] + [
        ",".join(f"{v:.17g}" for v in xi) + f",{name}" for xi, name in zip(x, names, strict=True)
    ]
    write(tmp_path / "blobs.csv", "\n".join(rows) + "\n")
    a = run_demo(tmp_path / "a", "--data", str(tmp_path / "blobs.npz"), "--quiet")
    b = run_demo(tmp_path / "b", "--data", str(tmp_path / "blobs.csv"), "--quiet")
    assert a["data"]["classes"] == [7, 8, 9] and b["data"]["classes"] == ["cat", "dog", "emu"]
    assert a["data"]["n_test"] == 18 and a["data"]["n_train"] == 72
    assert a["results"]["ntk"]["test_accuracy"] > 0.9
    assert a["results"] == b["results"]


def test_toml_config_and_flag_precedence(tmp_path):
    x, y = blobs()
    np.savez(tmp_path / "blobs.npz", x=x, y=y)
    write(
        tmp_path / "run.toml",
        'data = "blobs.npz"\nseed = 5\n[demo]\ndepth = 1\nn-train = 40\nquiet = true\n',
    )
    res = run_demo(tmp_path / "r", "--config", str(tmp_path / "run.toml"), "--seed", "6")
    cfg = res["config"]
    assert (cfg["depth"], cfg["n_train"], cfg["seed"], cfg["quiet"]) == (1, 40, 6, True)
    assert cfg["data"] == str(tmp_path / "blobs.npz")  # relative to the config file


def test_kernel_regression_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    xt = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.randn(20, 2, generator=g, dtype=torch.float64)
    k = x @ x.T + 1.0
    reg = 1e-2 * k.diagonal().mean()
    expected = (xt @ x.T + 1.0) @ torch.linalg.solve(k + reg * torch.eye(20), y)
    got = _ridge(k, y, xt @ x.T + 1.0, 1e-2)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_kernel_regression_refuses_singular_kernel():
    ones = torch.ones(3, 3, dtype=torch.float64)
    with pytest.raises(RunError, match="not positive definite"):
        _ridge(ones, torch.ones(3, 1, dtype=torch.float64), ones, 0.0)


def test_report_writes_plots_then_results(tmp_path):
    pytest.importorskip("matplotlib")
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
