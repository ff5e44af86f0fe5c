"""Data files read by the command line (``neural_kernels.cli._data``): npz and csv."""

from __future__ import annotations

import numpy as np

from .._support.cli import blobs, run_demo, write


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
