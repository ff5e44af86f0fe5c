"""``neural-kernels predict``: the CG progress bar and its options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr", reason="needs the scale extra")

from neural_kernels.cli import main

NET = """
[[layer]]
type = "Dense"
out_features = 32
w_std = 1.5
b_std = 0.1
[[layer]]
type = "ReLU"
[[layer]]
type = "Dense"
out_features = 1
"""


def _stores(tmp_path: Path) -> tuple[str, str, str]:
    g = np.random.default_rng(2)
    np.save(tmp_path / "x.npy", g.normal(size=(40, 3)))
    np.save(tmp_path / "xt.npy", g.normal(size=(7, 3)))
    np.save(tmp_path / "y.npy", g.normal(size=(40, 2)))
    (tmp_path / "net.toml").write_text(NET)
    common = ["--net", str(tmp_path / "net.toml"), "--block-size", "16", "--quiet"]
    k, kt = str(tmp_path / "k.zarr"), str(tmp_path / "kt.zarr")
    assert main(["kernel", "--data", str(tmp_path / "x.npy"), "--out", k, *common]) == 0
    against = ["--against", str(tmp_path / "x.npy"), "--out", kt]
    assert main(["kernel", "--data", str(tmp_path / "xt.npy"), *against, *common]) == 0
    return k, kt, str(tmp_path / "y.npy")


def test_predict_shows_a_cg_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    k, kt, y = _stores(tmp_path)
    capsys.readouterr()
    out = tmp_path / "pred"
    argv = ["predict", "--kernels", k, "--targets", y, "--test-kernels", kt, "--out", str(out)]
    assert main([*argv, "--tol", "1e-8", "--preconditioner", "none"]) == 0
    captured = capsys.readouterr()
    (solve,) = json.loads((out / "results.json").read_text())["predict"]["solves"]
    assert solve["residual"] <= 1e-8
    # the bar: the kernel solved, digits gained out of 8 (all), iterations, time left
    assert "CG NTK" in captured.err and "8.0/8 digits" in captured.err
    assert f"iteration {solve['iterations']}," in captured.err and "<00:00" in captured.err
    assert "regression with cg" in captured.out
    assert main([*argv, "--quiet"]) == 0
    assert capsys.readouterr().err == ""  # --quiet: no bar
