"""``neural-kernels kernel`` and ``predict``: a store from files, resumed, then CG regression."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("zarr", reason="needs the scale extra")

import neural_kernels as nk
from neural_kernels.cli import main

NET = """
[[layer]]
type = "Dense"
out_features = 64
w_std = 1.5
b_std = 0.1
[[layer]]
type = "ReLU"
[[layer]]
type = "Dense"
out_features = 1
"""


def test_kernel_then_predict_from_the_command_line(tmp_path: Path) -> None:
    g = np.random.default_rng(0)
    x, xt = g.normal(size=(60, 4)), g.normal(size=(15, 4))
    y, yt = g.integers(0, 3, 60), g.integers(0, 3, 15)
    for name, arr in (("x", x), ("xt", xt), ("y", y), ("yt", yt)):
        np.save(tmp_path / f"{name}.npy", arr)
    (tmp_path / "net.toml").write_text(NET)
    common = ["--net", str(tmp_path / "net.toml"), "--block-size", "16", "--quiet"]
    k, kt = str(tmp_path / "k.zarr"), str(tmp_path / "kt.zarr")
    assert main(["kernel", "--data", str(tmp_path / "x.npy"), "--out", k, *common]) == 0
    assert main(["kernel", "--data", str(tmp_path / "x.npy"), "--out", k, *common]) == 0  # resumes
    against = ["--against", str(tmp_path / "x.npy"), "--out", kt]
    assert main(["kernel", "--data", str(tmp_path / "xt.npy"), *against, *common]) == 0
    info = json.loads((tmp_path / "k.zarr.report" / "results.json").read_text())
    assert info["kernel"]["shape"] == [60, 60] and info["kernel"]["disk_bytes"] > 0
    out = tmp_path / "pred"
    argv = ["predict", "--kernels", k, "--targets", str(tmp_path / "y.npy"), "--test-kernels", kt]
    argv += ["--test-targets", str(tmp_path / "yt.npy"), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    got = np.load(out / "predictions.npy")
    net = nk.Sequential(nk.Dense(64, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(1))
    xs, xts = torch.from_numpy(x), torch.from_numpy(xt)
    onehot = torch.nn.functional.one_hot(torch.from_numpy(y), 3).double() - 1 / 3
    want = nk.predict.gp_inference(net.kernel(xs), onehot, diag_reg=1e-4)(
        "ntk", net.kernel(xts, xs)
    )
    np.testing.assert_allclose(got, want.mean.numpy(), atol=1e-6)
    result = json.loads((out / "results.json").read_text())["predict"]
    assert 0 <= result["test_accuracy"] <= 1 and result["solves"][0]["residual"] <= 1e-10


def test_local_workers_progress_bar_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = np.random.default_rng(1).normal(size=(40, 3))
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "net.toml").write_text(NET)
    argv = ["kernel", "--data", str(tmp_path / "x.npy"), "--net", str(tmp_path / "net.toml")]
    argv += ["--block-size", "10"]
    k = str(tmp_path / "k.zarr")
    # scheduler="local": a LocalCluster of one worker process computes every block
    assert main([*argv, "--out", k, "--local-workers", "1"]) == 0
    bar = capsys.readouterr().err
    # 4 diagonal blocks and 6 above them; the bar shows chunks done and the time left
    assert "10/10" in bar and "chunks" in bar and "<00:00" in bar
    assert main([*argv, "--out", k]) == 0  # resumes: nothing left to do
    assert "10/10" in capsys.readouterr().err
    net = nk.Sequential(nk.Dense(64, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(1))
    here = net.kernel(torch.from_numpy(x), store=tmp_path / "here.zarr", block_size=10)
    for name in ("nngp", "ntk"):
        got = getattr(nk.open_kernel(k), name).to_tensor()
        assert torch.equal(got, getattr(here, name).to_tensor())
    assert main([*argv, "--out", str(tmp_path / "b.zarr"), "--local-workers", "-1"]) == 2
    assert "--local-workers" in capsys.readouterr().err


def test_bad_network_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    (tmp_path / "net.toml").write_text('[[layer]]\ntype = "Dens"\n')
    argv = ["kernel", "--data", str(tmp_path / "x.npy"), "--net", str(tmp_path / "net.toml")]
    assert main([*argv, "--out", str(tmp_path / "k.zarr")]) == 2
    assert "'Dens'" in capsys.readouterr().err
    assert not (tmp_path / "k.zarr").exists()
