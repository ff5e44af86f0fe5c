"""The command line (``neural_kernels.cli``): the entry point, configuration files and flags,
bad input exits with status 2 and one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from neural_kernels.cli import main

from .._support.cli import blobs, run_demo, write


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


@pytest.mark.parametrize(
    ("error", "status"),
    [("RunError", 1), ("SolverError", 1), ("UsageError", 2), ("ShapeError", 2)],
)
def test_run_errors_exit_1_and_bad_input_exits_2(error, status, monkeypatch, capsys):
    # RunError is a NeuralKernelsError too; it must still mean "failed while running".
    import neural_kernels as nk
    import neural_kernels.cli as cli

    def run(args):
        raise getattr(nk, error)("boom")

    fake = cli.Command("fake", "raises", lambda parser: None, run)
    monkeypatch.setitem(cli.COMMANDS, "fake", fake)
    assert main(["fake"]) == status
    assert capsys.readouterr().err.strip() == "neural-kernels: error: boom"
