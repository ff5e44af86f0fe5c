"""Helpers of the command-line tests: a quick demo run, small files, a toy data set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from neural_kernels.cli import main


def run_demo(out: Path, *flags: str) -> dict:
    """The kernel regression alone (the full report is tested in ``tests/report``)."""
    assert main(["demo", "--out", str(out), "--kernels-only", *flags]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # no temporary files
    return json.loads((out / "results.json").read_text())


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def blobs(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in 4 dimensions: ``x`` ``(n, 4)``, labels ``y`` ``(n,)``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = np.array([[3.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    return centres[y] + rng.standard_normal((n, 4)), y
