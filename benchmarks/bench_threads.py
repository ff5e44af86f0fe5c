"""One thread against two on every workload, each beside its floor measured in the same run.

Workloads (``x2 = None``):

``empirical_ntk_traced`` / ``empirical_ntk_full``
    ``nk.empirical_ntk`` (``strategy="structured"``) of the MLP 784-512-512-10 without
    biases of :mod:`benchmarks.bench_empirical`, float32, ``n = 256``; the traced
    ``(n, n)`` kernel and the full ``(n, n, 10, 10)`` blocks.
``fc_relu3``
    NNGP + NTK of :mod:`benchmarks.bench_fc_kernel`'s network, float64, ``n = 2000``.
``cnn_gap`` / ``myrtle5``
    NNGP + NTK of :mod:`benchmarks.bench_spatial`'s networks, float64, ``n = 128`` / ``32``.

Each workload runs in its own fresh subprocess (so ``peak_mb`` is its own), which
alternates ``torch.set_num_threads(1)`` and ``(2)`` for ``ROUNDS`` rounds after one
warm-up each: on a shared machine both thread counts then see the same load, and the
medians and their ratio are comparable within the run. The subprocesses run with
``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it, except beside Neural Tangents
(``--nt``), where both libraries run at their defaults. One JSON line per workload and
thread count:

``seconds``
    the median over the rounds; ``runs`` every one.
``floor_seconds`` / ``ratio_to_floor``
    the floor measured in the same process at the same thread count, and ``seconds``
    over it. Empirical NTK: the strategy's multiply-adds ``macs`` (the forward pass,
    the ``k`` cotangent passes, and the Gram products of the layer inputs and of the
    cotangents over the ``n (n + 1) / 2`` pairs it computes; ``macs_square`` counts all
    ``n^2``) at the rate of a ``(k n, 512) x (512, 512)`` GEMM measured just before.
    Fully connected: one Gram product and three elementwise passes per layer.
    Convolutional: nine multiply-adds and one arc-cosine per covariance entry and
    layer (eager); ``dual_floor_seconds`` the compiled arc-cosine dual alone;
    ``compiled_floor_seconds`` the compiled convolution then the compiled dual, as
    separate calls, for every convolution of the network on all the pairs computed
    (:func:`benchmarks.bench_spatial.compiled_floor`), and ``ratio_to_compiled_floor``;
    ``compiled_chain`` whether the whole layer chain ran compiled.
``speedup_over_one``
    (on the two-thread line) the one-thread median over the two-thread one (target
    ``>= 1.7`` on CNN-GAP). ``dual_floor_speedup_over_one``: the same for the compiled
    dual floor, which holds no GIL: what two threads could gain on the machine as loaded
    during the run.
``nt_seconds`` / ``ratio_to_nt`` / ``nt_source``
    Neural Tangents 0.6.5 (JAX 0.5.3, XLA on CPU; it uses every core). With ``--nt
    PYTHON`` (a Python that imports it, see ``/work/shared/neural_tangents``), measured
    in this run: its timing script runs before and after this library's case, and
    ``nt_seconds`` is the median of all its timed runs (``nt_runs``), ``nt_source``
    ``"measured"``; ``$NEURAL_KERNELS_NT_PYTHON`` sets it too (so that ``make bench``
    measures both). Without it, the table below (``"table"``: one quiet sitting on this
    machine kind, which differs from machine to machine).
``targets`` / ``meets_targets``
    (convolutional workloads, two-thread line) the goals: at most ``ratio_to_nt`` of
    Neural Tangents (CNN-GAP 0.05, Myrtle-5 0.06), ``ratio_to_compiled_floor`` at most
    2, and a ``speedup`` of two threads over one of at least 1.7 on CNN-GAP; and
    whether this run's numbers meet each.
``native_fraction`` / ``torch_op_fraction`` / ``amdahl_bound``
    (convolutional workloads, one more single-threaded run) the shares of the time spent
    inside the compiled kernels and inside the other torch calls, both of which run
    without the GIL, and ``2 / (1 + rest)``: the most two threads can gain over one while
    the ``rest`` holds the GIL (see :func:`gil_shares`; the compiled layer chain counts
    as compiled). All three come from one run, so
    they need no idle machine.
``peak_mb``
    ``VmHWM`` after all rounds, above the post-setup baseline (one value per workload).

Also the 1-minute load average before and after (timings from a loaded machine are
noisy; the ratios much less so). ``python -m benchmarks.bench_threads [--quick]
[--rounds R] [--nt PYTHON] [WORKLOAD ...]`` (``--quick``: small sizes, smoke only).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ._common import maxrss_mb, run_case

ROUNDS = 5
THREADS = (1, 2)
#: workload -> (n, quick n)
SIZES = {
    "empirical_ntk_traced": (256, 32),
    "empirical_ntk_full": (256, 32),
    "fc_relu3": (2000, 300),
    "cnn_gap": (128, 8),
    "myrtle5": (32, 2),
}
#: Goals of the convolutional workloads (two threads; see the module docstring).
TARGETS = {
    "cnn_gap": {"ratio_to_nt": 0.05, "ratio_to_compiled_floor": 2.0, "speedup": 1.7},
    "myrtle5": {"ratio_to_nt": 0.06, "ratio_to_compiled_floor": 2.0},
}
#: Neural Tangents 0.6.5 (JAX 0.5.3, XLA on CPU) on this machine kind, seconds.
NT_SECONDS = {
    ("empirical_ntk_traced", 256): 0.0186,
    ("fc_relu3", 2000): 0.224,
    ("cnn_gap", 128): 4.1,
    ("myrtle5", 32): 3.70,
}


def gemm_rate(rows: int, inner: int, cols: int, dtype: torch.dtype) -> float:
    """Multiply-adds per second of one ``(rows, inner) x (inner, cols)`` product (best of 5)."""
    a = torch.randn(rows, inner, dtype=dtype)
    b = torch.randn(inner, cols, dtype=dtype)
    a @ b
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return rows * inner * cols / best


def empirical_macs(n: int, widths: tuple[int, ...], k: int, full: bool) -> tuple[float, float]:
    """Multiply-adds of the structured strategy on a bias-free MLP: (upper triangle, square).

    Forward ``n sum d_l d_{l+1}``; cotangents ``k n sum_{l >= 1} d_l d_{l+1}`` (every layer
    but the first pulls ``k`` cotangents back); Gram products per pair ``sum_l (d_l +
    kk d_{l+1})`` with ``kk = k`` traced, ``k^2`` full.
    """
    pairs = list(itertools.pairwise(widths))
    forward = n * sum(a * b for a, b in pairs)
    backward = k * n * sum(a * b for a, b in pairs[1:])
    kk = k * k if full else k
    per_pair = sum(a + kk * b for a, b in pairs)
    return (
        forward + backward + n * (n + 1) / 2 * per_pair,
        forward + backward + n * n * per_pair,
    )


def _workload(name: str, n: int) -> tuple[Callable[[], Any], Callable[[], dict[str, Any]]]:
    """``(run, floor)``: the timed call, and a function measuring the floor now."""
    if name.startswith("empirical_ntk"):
        import neural_kernels as nk

        from .bench_empirical import OUTPUTS, WIDTH, D, model_and_inputs

        model, x = model_and_inputs(n)
        full = name.endswith("full")
        macs, square = empirical_macs(n, (D, WIDTH, WIDTH, OUTPUTS), OUTPUTS, full)

        def floor_emp() -> dict[str, Any]:
            rate = gemm_rate(OUTPUTS * n, WIDTH, WIDTH, torch.float32)
            return {"floor_seconds": macs / rate, "macs": macs, "macs_square": square,
                    "gemm_macs_per_s": rate}  # fmt: skip

        return (
            lambda: nk.empirical_ntk(model, x, strategy="structured", trace_outputs=not full),
            floor_emp,
        )
    if name == "fc_relu3":
        from .bench_fc_kernel import D as FC_D
        from .bench_fc_kernel import floor as fc_floor
        from .bench_fc_kernel import network as fc_network

        x = torch.randn(n, FC_D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        net = fc_network()

        def floor_fc() -> dict[str, Any]:
            return {"floor_seconds": _median(lambda: fc_floor(x), 3)}

        return lambda: net.kernel(x), floor_fc
    from .bench_spatial import (
        _inputs,
        compiled_floor,
        conv_entries,
        dual_floor,
        entries,
        floor,
        network,
    )

    net, shape, layers = network(name)
    xs = _inputs(name, n, shape, torch.float64)
    total = entries(net, shape, n)

    def floor_conv() -> dict[str, Any]:
        record: dict[str, Any] = {
            "floor_seconds": _median(floor(total, layers, torch.float64), 3),
            "entries": total,
        }
        compiled = dual_floor(total, layers, torch.float64)
        record["dual_floor_seconds"] = None if compiled is None else _median(compiled, 3)
        chain = compiled_floor(net, shape, n, torch.float64)
        record["compiled_floor_seconds"] = None if chain is None else _median(chain, 3)
        record["conv_entries"] = conv_entries(net, shape, n)
        record["compiled_chain"] = record["conv_entries"] is not None and compiled is not None
        return record

    return lambda: net.kernel(xs, get=("nngp", "ntk")), floor_conv


class _OpTimer(TorchFunctionMode):
    """Adds up the wall time of every torch call made under it (each releases the GIL)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.seconds += time.perf_counter() - start


def gil_shares(run: Callable[[], Any]) -> dict[str, float] | None:
    """Shares of one single-threaded ``run()`` spent outside the GIL (``None``: not compiled).

    ``native_fraction``: inside the compiled kernels (their wrappers' own torch calls
    included); ``torch_op_fraction``: inside the other torch calls (timed by a torch
    function mode, whose own cost counts as GIL time); the rest holds the GIL, and
    ``amdahl_bound = 2 / (1 + rest)`` is the most two threads can gain over one.
    """
    import neural_kernels as nk
    from neural_kernels import _native
    from neural_kernels._native.chain import Chain

    if not nk.native_status()["available"]:
        return None
    inside = [0.0]
    names = ("conv_abrelu", "conv_pairs", "abrelu_dual")
    saved = {name: getattr(_native, name) for name in names}
    chain_run = Chain.run

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                with torch._C.DisableTorchFunction():
                    return fn(*args, **kwargs)
            finally:
                inside[0] += time.perf_counter() - start

        return wrapper

    torch.set_num_threads(1)
    ops = _OpTimer()
    for name in names:
        setattr(_native, name, timed(saved[name]))
    Chain.run = timed(chain_run)  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        with ops:
            run()
        total = time.perf_counter() - start
    finally:
        for name in names:
            setattr(_native, name, saved[name])
        Chain.run = chain_run  # type: ignore[method-assign]
    native, torch_ops = inside[0] / total, ops.seconds / total
    rest = max(0.0, 1.0 - native - torch_ops)
    return {
        "native_fraction": native,
        "torch_op_fraction": torch_ops,
        "amdahl_bound": 2.0 / (1.0 + rest),
    }


def _median(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


#: Neural Tangents' analytic timing script's case for each workload (float64).
NT_CASES = {"fc_relu3": "fc", "cnn_gap": "cnn_gap", "myrtle5": "myrtle"}


def nt_runs(python: str, name: str, n: int) -> list[float] | None:
    """Timed runs of Neural Tangents on ``name`` in a fresh process (``None``: none)."""
    from .bench_empirical import NT_SCRIPT, _nt_run  # (it imports this module)

    if name.startswith("empirical_ntk"):  # bench_empirical's own side-by-side run
        outputs = "traced" if name.endswith("traced") else "full"
        record = _nt_run(python, NT_SCRIPT, outputs, n, threads=2)
        return None if record is None else [float(v) for v in record["runs_s"]]
    if name not in NT_CASES:
        return None
    script = os.path.join(os.path.dirname(NT_SCRIPT), "nt_bench.py")
    cmd = [python, script, "--case", NT_CASES[name], "--n", str(n),
           "--dtype", "float64", "--repeats", "3"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"Neural Tangents {name} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return [float(v) for v in json.loads(lines[-1])["runs_s"]]


def with_nt(records: list[dict[str, Any]], runs: list[float]) -> None:
    """Replace the table's Neural Tangents time by the runs measured beside this case."""
    nt = statistics.median(runs)
    for record in records:
        record["nt_seconds"] = nt
        record["nt_runs"] = runs
        record["nt_source"] = "measured"
        record["ratio_to_nt"] = record["seconds"] / nt
        if "targets" in record:
            record["meets_targets"] = _meets(record, record["targets"])


def measure(name: str, n: int, rounds: int) -> list[dict[str, Any]]:
    """Alternate the thread counts for ``rounds`` rounds in this process; one record each."""
    load = os.getloadavg()[0]
    run, floor_now = _workload(name, n)
    baseline = maxrss_mb()
    for t in THREADS:  # warm-up at every thread count
        torch.set_num_threads(t)
        run()
    runs: dict[int, list[float]] = {t: [] for t in THREADS}
    for _ in range(rounds):
        for t in THREADS:
            torch.set_num_threads(t)
            start = time.perf_counter()
            run()
            runs[t].append(time.perf_counter() - start)
    peak = maxrss_mb()
    shares = None if name.startswith(("empirical", "fc")) else gil_shares(run)
    floors = {}
    for t in THREADS:
        torch.set_num_threads(t)
        floors[t] = floor_now()
    records = []
    one = statistics.median(runs[THREADS[0]])
    nt = NT_SECONDS.get((name, n))
    for t in THREADS:
        seconds = statistics.median(runs[t])
        record: dict[str, Any] = {
            "name": name,
            "n": n,
            "threads": t,
            "seconds": seconds,
            "peak_mb": peak - baseline,
            "peak_total_mb": peak,
            **floors[t],
        }
        record["ratio_to_floor"] = seconds / record["floor_seconds"]
        if record.get("dual_floor_seconds"):
            record["ratio_to_dual_floor"] = seconds / record["dual_floor_seconds"]
        if record.get("compiled_floor_seconds"):
            record["ratio_to_compiled_floor"] = seconds / record["compiled_floor_seconds"]
        record["speedup_over_one"] = one / seconds
        first = floors[THREADS[0]].get("dual_floor_seconds")
        if first and record.get("dual_floor_seconds"):  # what the machine gave the floor
            record["dual_floor_speedup_over_one"] = first / record["dual_floor_seconds"]
        record["nt_seconds"] = nt
        record["nt_source"] = None if nt is None else "table"
        record["ratio_to_nt"] = None if nt is None else seconds / nt
        if name in TARGETS and t == THREADS[-1]:
            record["targets"] = TARGETS[name]
            record["meets_targets"] = _meets(record, TARGETS[name])
        record.update(shares or {})
        record["runs"] = runs[t]
        record["loadavg_1min"] = [load, os.getloadavg()[0]]
        records.append(record)
    return records


def _meets(record: dict[str, Any], targets: dict[str, float]) -> dict[str, bool | None]:
    """Whether the record meets each target (``None``: not measured in this run)."""
    got = {
        "ratio_to_nt": record.get("ratio_to_nt"),
        "ratio_to_compiled_floor": record.get("ratio_to_compiled_floor"),
        "speedup": record.get("speedup_over_one"),
    }
    out: dict[str, bool | None] = {}
    for key, goal in targets.items():
        value = got[key]
        out[key] = None if value is None else (value >= goal if key == "speedup" else value <= goal)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_threads")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating rounds")
    parser.add_argument("--case", nargs=3, metavar=("NAME", "N", "ROUNDS"), help=argparse.SUPPRESS)
    nt_default = os.environ.get("NEURAL_KERNELS_NT_PYTHON")
    parser.add_argument("--nt", metavar="PYTHON", default=nt_default,
                        help="measure Neural Tangents beside each case "
                        "(default: $NEURAL_KERNELS_NT_PYTHON, e.g. under make bench)")  # fmt: skip
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help="default: all")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.case is not None:  # one workload, in this (fresh) process: all its lines
        name, n, rounds = args.case
        print(json.dumps(measure(name, int(n), int(rounds))), flush=True)
        return 0
    chosen = args.workloads or list(SIZES)
    unknown = sorted(set(chosen) - set(SIZES))
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; available: {', '.join(SIZES)}")
    rounds = 1 if args.quick else args.rounds
    status = 0
    # waiting OpenMP threads sleep rather than spin (a spinning one steals a shared core);
    # beside Neural Tangents (its own thread pool) both run at their defaults
    env = {} if args.nt else {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    for name in chosen:
        n = SIZES[name][1 if args.quick else 0]
        before = nt_runs(args.nt, name, n) if args.nt else None
        records = run_case(
            "benchmarks.bench_threads", [name, str(n), str(rounds)], f"{name} n={n}", env
        )
        if records is None:
            status = 1
            continue
        after = nt_runs(args.nt, name, n) if args.nt else None
        if before or after:
            with_nt(records, (before or []) + (after or []))
        for record in records:  # the case prints one JSON list; one line per thread count
            print(json.dumps(record), flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
