"""The benchmarks run (tiny case, no timing assertions)."""

from __future__ import annotations

import json

from benchmarks import bench_fc_kernel

FIELDS = (
    "name",
    "n",
    "dtype",
    "seconds",
    "peak_mb",
    "floor_seconds",
    "ratio_to_floor",
    "nt_seconds",
)


def test_fc_kernel_tiny_case():
    record = bench_fc_kernel.run_case(64, "float64", repeats=1, d=16)
    json.dumps(record, allow_nan=False)
    for key in FIELDS:
        assert key in record
    assert (record["n"], record["dtype"], record["nt_seconds"]) == (64, "float64", None)
    assert record["seconds"] >= 0 and record["floor_seconds"] >= 0


def test_floor_is_finite():
    import torch

    assert torch.isfinite(bench_fc_kernel.floor(torch.randn(32, 784))).all()


def test_every_benchmark_module_is_discovered():
    from benchmarks.__main__ import discover

    assert "bench_fc_kernel" in discover()


def test_neural_tangents_measured_beside_replaces_the_table(monkeypatch):
    from benchmarks import bench_threads

    records = [
        {"name": "cnn_gap", "threads": 1, "seconds": 0.5, "nt_seconds": 4.1,
         "ratio_to_nt": 0.5 / 4.1, "nt_source": "table"},
        {"name": "cnn_gap", "threads": 2, "seconds": 0.25, "nt_seconds": 4.1,
         "ratio_to_nt": 0.25 / 4.1, "nt_source": "table",
         "targets": bench_threads.TARGETS["cnn_gap"], "speedup_over_one": 2.0,
         "ratio_to_compiled_floor": 1.0},
    ]  # fmt: skip
    bench_threads.with_nt(records, [6.0, 4.0, 5.0])
    assert all(r["nt_seconds"] == 5.0 and r["nt_source"] == "measured" for r in records)
    assert records[1]["ratio_to_nt"] == 0.05
    assert records[1]["meets_targets"] == {
        "ratio_to_nt": True, "ratio_to_compiled_floor": True, "speedup": True
    }  # fmt: skip
    # no Neural Tangents case for a workload it has no script for
    assert bench_threads.nt_runs("/nonexistent/python", "unknown", 8) is None
    monkeypatch.setenv("NEURAL_KERNELS_NT_PYTHON", "/some/python")
    seen = {}
    monkeypatch.setattr(bench_threads, "run_case", lambda *a, **k: None)
    monkeypatch.setattr(bench_threads, "nt_runs", lambda py, *a: seen.setdefault("py", py))
    bench_threads.main(["--quick", "cnn_gap"])
    assert seen["py"] == "/some/python"
