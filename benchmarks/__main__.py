"""``python -m benchmarks [--quick] [NAME ...]``: run the benchmarks, one JSON line per case.

Every module ``benchmarks/bench_*.py`` is a benchmark: it has ``main(argv) -> int`` that
accepts ``--quick``. Names (``fc_kernel`` or ``bench_fc_kernel``) pick some; none runs all.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path


def discover() -> list[str]:
    """Module names of every benchmark, sorted."""
    here = [str(Path(__file__).parent)]
    return sorted(m.name for m in pkgutil.iter_modules(here) if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="small smoke cases")
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    available = discover()
    chosen = [n if n.startswith("bench_") else f"bench_{n}" for n in args.names] or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        parser.error(
            f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}"
        )
    status = 0
    for name in chosen:
        module = importlib.import_module(f"{__package__}.{name}")
        status = max(status, module.main(["--quick"] if args.quick else []))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
