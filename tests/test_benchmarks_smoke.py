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
