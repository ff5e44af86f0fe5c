"""The main job ``neural-kernels demo`` (``neural_kernels.cli.demo``) and its kernel ridge."""

from __future__ import annotations

import math

import pytest
import torch

from neural_kernels.cli import RunError
from neural_kernels.cli.demo import _ridge

from .._support.cli import run_demo

SMALL = ["--n-train", "150", "--n-test", "100", "--quiet"]


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
