"""``neural-kernels feature-learning`` at tiny sizes: the report and every number in JSON."""

from __future__ import annotations

import json

import pytest

from neural_kernels.cli import main

pytest.importorskip("sklearn", reason="needs the demo extra (the bundled digits)")


def test_tiny_run_writes_the_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "fl"
    assert main(["feature-learning", "--out", str(out), "--quick", "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    text = json.dumps(results)
    assert "mup_limit_kernel_change" in text and "best_lr" in text
    transfer = results["transfer"]
    assert set(transfer) == {"mlp", "cnn"} and transfer["cnn"]["mup"]["widths"] == [4, 8]
    assert transfer["mlp"]["standard"]["optimizer"] == "adam"
    forgetting = results["forgetting"]
    assert forgetting["widths"] == [16, 32] and set(forgetting["forgetting"]) == {
        "early",
        "converged",
    }
    assert (out / "index.html").exists()


def test_bad_widths_are_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bad"
    assert main(["feature-learning", "--out", str(out), "--quick", "--widths", "64"]) == 2
    assert main(["feature-learning", "--out", str(out), "--quick", "--cnn-widths", "8"]) == 2
    assert not out.exists()


def test_transfer_report_is_rebuilt_from_stored_runs(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """--parts transfer --transfer-runs FILE: the report from a store, nothing trained."""
    import math

    from neural_kernels.feature_learning import transfer
    from neural_kernels.feature_learning._digits import digits

    xtr, ytr, _, _ = digits(1200, 0)
    data = {"mlp": transfer._digest(xtr.float(), ytr),
            "cnn": transfer._digest(xtr.float().reshape(-1, 1, 8, 8), ytr)}  # fmt: skip
    widths = {"mlp": (16, 32), "cnn": (4, 8)}
    best = {("mlp", "mup"): (-6, -6), ("mlp", "standard"): (-6, -8),
            ("cnn", "mup"): (-5, -4), ("cnn", "standard"): (-5, -7)}  # fmt: skip
    store = tmp_path / "runs.jsonl"
    with store.open("w") as fh:
        for (arch, p), optima in best.items():
            for width, k_best in zip(widths[arch], optima, strict=True):
                for lr in transfer.PROTOCOL["lrs"]["adam"]:
                    k = math.log2(lr)
                    rec = {"label": arch, "parametrization": p, "optimizer": "adam", "steps": 5,
                           "batch_size": 64, "dtype": "float32", "data": data[arch],
                           "base_width": widths[arch][0], "width": width, "lr": lr, "seed": 0,
                           "loss": None if k == -2 else 0.1 + (k - k_best) ** 2,
                           "seconds": 0.0}  # fmt: skip
                    fh.write(json.dumps(rec) + "\n")

    def refuse(*args: object) -> float:
        raise AssertionError("a stored run was trained again")

    monkeypatch.setattr(transfer, "_train", refuse)
    out = tmp_path / "rebuilt"
    args = ["feature-learning", "--out", str(out), "--quick", "--quiet", "--parts", "transfer",
            "--transfer-runs", str(store)]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"transfer"} and "linear_limit" not in results
    assert "forgetting" not in results
    for (arch, p), optima in best.items():
        got = results["transfer"][arch][p]
        assert got["best_lr"] == [2.0**k for k in optima]
        assert got["shift"] == abs(optima[1] - optima[0])
        assert got["seed_loss"][0][0][-1] is None  # the diverged run, stored as null
        # log(0.1 + d^2) is symmetric about the optimum: the parabola's vertex is on it
        assert got["best_log2_lr_fit"] == pytest.approx(list(optima), abs=1e-9)
    assert store.read_text().count("\n") == 4 * 2 * 13  # nothing appended
    if (out / "index.html").exists() and list(out.glob("*.png")):
        assert {p.name for p in out.glob("transfer_*.png")} == {"transfer_mlp.png",
                                                                "transfer_cnn.png"}  # fmt: skip


def test_unknown_part_is_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bad"
    assert main(["feature-learning", "--out", str(out), "--quick", "--parts", "kernel"]) == 2
    assert not out.exists()
