"""The runnable examples run, and print what they claim (small sizes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cnn_digits(capsys: pytest.CaptureFixture[str]) -> None:
    results = _load("cnn_digits").main(["--n", "120", "--m", "60"])
    printed = capsys.readouterr().out
    assert "posterior test accuracy" in printed
    for name in ("nngp", "ntk"):
        assert results[f"{name}_posterior_accuracy"] > 0.8  # chance is 0.1
        # long training reaches the posterior (same regulariser)
        gap = results[f"{name}_trained_accuracy"] - results[f"{name}_posterior_accuracy"]
        assert abs(gap) < 0.05
    assert results["empirical_ntk_error_width_1024"] < results["empirical_ntk_error_width_64"]


def test_function_space(capsys: pytest.CaptureFixture[str]) -> None:
    results = _load("function_space").main(
        ["--n", "64", "--m", "64", "--width", "512", "--steps", "40"]
    )
    assert "NTK dynamics" in capsys.readouterr().out
    # a wide network follows its NTK dynamics: a small gap early, still small later
    assert results["gap_step_4"] < 0.1
    assert results["gap_step_40"] < 0.3


def test_weight_space(capsys: pytest.CaptureFixture[str]) -> None:
    results = _load("weight_space").main(
        ["--n", "128", "--m", "64", "--width", "512", "--steps", "40"]
    )
    assert "linearised" in capsys.readouterr().out
    assert results["gap"] < 0.05  # the wide network trains like its linearisation


def test_myrtle_kernels(capsys: pytest.CaptureFixture[str]) -> None:
    results = _load("myrtle_kernels").main(["--n", "60", "--m", "60", "--depths", "5", "7"])
    assert "Myrtle-7" in capsys.readouterr().out
    for depth in (5, 7):
        for name in ("nngp", "ntk"):
            assert results[f"myrtle{depth}_{name}_accuracy"] > 0.6  # chance is 0.1
