"""``python -m benchmarks [--quick]``: run every benchmark, one JSON line per case."""

from __future__ import annotations

import sys

from . import bench_fc_kernel

BENCHMARKS = (bench_fc_kernel,)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    status = 0
    for bench in BENCHMARKS:
        status = max(status, bench.main(argv))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
