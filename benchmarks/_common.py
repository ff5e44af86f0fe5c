"""What every benchmark shares: peak memory, median times, one case per subprocess."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def maxrss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    On Linux from ``VmHWM``: ``ru_maxrss`` of a process started by a large parent keeps
    the parent's peak from before ``exec``, which would hide the case's own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # KiB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes / KiB


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeats`` calls after one warm-up call, and every run."""
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


def run_case(
    module: str, args: list[str], label: str, env: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """Run ``python -m module --case *args`` in a fresh process; its last line, parsed.

    A failure is reported on stderr (with ``label``) and gives ``None``.
    """
    cmd = [sys.executable, "-m", module, "--case", *args]
    done = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if done.returncode != 0 or not done.stdout.strip():
        print(f"{label} failed:\n{done.stderr}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])
