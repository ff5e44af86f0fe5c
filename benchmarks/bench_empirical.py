"""Empirical NTK of an MLP, every strategy, against a per-example Jacobian loop.

Model: ``nk.Sequential(Dense(512), ReLU, Dense(512), ReLU, Dense(10))`` without biases,
NTK parametrization, built by ``.module((784,))`` (668,672 parameters), float32, on
``n`` standard-normal inputs; ``nk.empirical_ntk(model, x)`` (``x2=None``) traced
(``trace_outputs=True``: the sum over the 10 outputs, ``(n, n)``) and full
(``trace_outputs=False``: ``(n, n, 10, 10)``), with ``strategy`` = ``structured``,
``jacobian``, ``ntvp`` and ``auto``. Each case runs in a fresh subprocess with
``torch.set_num_threads(THREADS)`` and prints one JSON line:

``seconds``
    the median of ``REPEATS`` runs after one warm-up when that warm-up takes under
    ``SLOW`` seconds; else the one (cold) run.
``peak_mb`` / ``peak_total_mb``
    ``ru_maxrss`` after the runs, above the post-setup baseline / in total.
``loop_seconds``
    the naive baseline, measured in its own subprocess of the same run: a Python loop
    over examples and outputs with ``torch.autograd.grad`` building the per-example
    Jacobian ``J`` (``n x 10 x 668,672``), then ``J J^T`` traced or in full blocks (the
    Jacobian time counted in both). Its own record has ``strategy = "loop"``.
``speedup``
    ``loop_seconds / seconds`` (target: >= 5).
``nt_seconds`` / ``nt_best_seconds``
    Neural Tangents on this machine kind (``vmap_axes=0``, ``shared/reference/
    nt_timings.md``): the same strategy, and its best one (structured derivatives:
    0.033 s traced, 0.13 s full), the target.
``macs`` / ``floor_seconds`` / ``ratio_to_floor``
    the structured strategy's multiply-adds (forward, cotangents, Gram products over the
    pairs it computes; see :func:`benchmarks.bench_threads.empirical_macs`), that count at
    the rate of a ``(k n, 512) x (512, 512)`` GEMM measured in the same process, and
    ``seconds`` over it.
``max_rel_diff``
    ``max |K - K_loop| / max |K_loop|`` (float32 agreement with the loop).
``chosen``
    the strategy ``auto`` picks.

Also: every run's seconds (``runs``), torch's thread count and the 1-minute load average
(other work on a shared machine inflates timings; rerun when it is high). Cases run with
``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it: with two threads on a busy
machine, spinning OpenMP threads otherwise make small matrix products 10-100x slower.
Beside Neural Tangents (``--nt``), this library runs with OpenMP as the environment
has it (``omp_wait_policy`` in the line), as Neural Tangents runs its own thread pool:
both at their defaults.

``python -m benchmarks.bench_empirical [--quick] [--threads T]`` (``--quick``: ``n = 32``).

``--nt PYTHON`` instead measures this library beside Neural Tangents in one sitting: for
traced and full, ``--rounds`` alternating pairs of runs, each in a fresh process, of the
structured strategy here and of Neural Tangents' structured derivatives (``vmap_axes=0``;
``PYTHON`` is an interpreter of the environment of ``shared/neural_tangents/``, the script
``--nt-script``), each the median of ``REPEATS`` runs; one JSON line per output mode with
both medians over the rounds, their spread (min, max), the ratio of the medians, the
floor and the ratio to it, and both peak memories (``nt_peak_mb``: Neural Tangents' peak
RSS above its RSS after import, compilation included). With ``--threads 1`` XLA runs
single-threaded too (steadier on a busy machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import neural_kernels as nk
from neural_kernels import empirical

from ._common import maxrss_mb
from .bench_threads import empirical_macs, gemm_rate

NAME = "empirical_ntk_mlp_784_512_512_10"
D, WIDTH, OUTPUTS = 784, 512, 10
N, QUICK_N = 256, 32
THREADS = 2
REPEATS = 5
SLOW = 2.0
STRATEGIES = ("structured", "jacobian", "ntvp", "auto")
#: Neural Tangents 0.6.5 on this machine kind, vmap_axes=0 (seconds), n = 256, float32.
#: The structured traced time is the quiet-machine median of the performance issue's table
#: (0.0186-0.0226 s); under load measure both side by side with ``--nt PYTHON``.
NT_SECONDS = {
    ("structured", "traced"): 0.0186,
    ("structured", "full"): 0.13,
    ("jacobian", "traced"): 18.5,
    ("jacobian", "full"): 52.2,
    ("ntvp", "traced"): 14.3,
    ("ntvp", "full"): 15.6,
}
NT_BEST = {"traced": 0.0186, "full": 0.13}
ROOT = Path(__file__).resolve().parents[1]
NT_SCRIPT = "/work/shared/neural_tangents/nt_empirical_bench.py"
ROUNDS = 5


def model_and_inputs(n: int, width: int = WIDTH, d: int = D, seed: int = 0):
    """The benchmark's model (float32, no biases, NTK parametrization) and inputs."""
    net = nk.Sequential(
        nk.Dense(width, b_std=None),
        nk.ReLU(),
        nk.Dense(width, b_std=None),
        nk.ReLU(),
        nk.Dense(OUTPUTS, b_std=None),
    )
    gen = torch.Generator().manual_seed(seed)
    model = net.module((d,), generator=gen, dtype=torch.float32)
    x = torch.randn(n, d, generator=gen, dtype=torch.float32)
    return model, x


def loop_ntk(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The per-example Jacobians by a loop of ``torch.autograd.grad``: ``(J, seconds)``."""
    params = [p for p in model.parameters() if p.requires_grad]
    start = time.perf_counter()
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i : i + 1]).reshape(-1)
        grads = [
            torch.cat(
                [g.reshape(-1) for g in torch.autograd.grad(out[o], params, retain_graph=True)]
            )
            for o in range(out.shape[0])
        ]
        rows.append(torch.stack(grads))
    jac = torch.stack(rows)
    return jac, time.perf_counter() - start


def run_loop(n: int, out_dir: Path, width: int = WIDTH, d: int = D) -> dict[str, Any]:
    """The naive loop in this process: Jacobians once, then the traced and full products."""
    model, x = model_and_inputs(n, width, d)
    baseline = maxrss_mb()
    jac, jac_seconds = loop_ntk(model, x)
    k = jac.shape[1]
    start = time.perf_counter()
    traced = jac.reshape(n, -1) @ jac.reshape(n, -1).T
    traced_seconds = time.perf_counter() - start
    torch.save(traced, out_dir / "loop_traced.pt")
    del traced
    start = time.perf_counter()
    flat = jac.reshape(n * k, -1)
    full = (flat @ flat.T).view(n, k, n, k).permute(0, 2, 1, 3).contiguous()
    full_seconds = time.perf_counter() - start
    torch.save(full, out_dir / "loop_full.pt")
    peak = maxrss_mb()
    return {
        "name": NAME,
        "n": n,
        "dtype": "float32",
        "strategy": "loop",
        "jacobian_seconds": jac_seconds,
        "loop_seconds": {
            "traced": jac_seconds + traced_seconds,
            "full": jac_seconds + full_seconds,
        },
        "peak_mb": peak - baseline,
        "peak_total_mb": peak,
        "threads": torch.get_num_threads(),
        "loadavg_1min": os.getloadavg()[0],
    }


def run_case(
    strategy: str,
    outputs: str,
    n: int,
    out_path: Path | None = None,
    width: int = WIDTH,
    d: int = D,
    repeats: int = REPEATS,
) -> dict[str, Any]:
    """Time one (strategy, outputs) case in this process; returns the JSON record."""
    model, x = model_and_inputs(n, width, d)
    trace = outputs == "traced"
    baseline = maxrss_mb()

    def once() -> tuple[torch.Tensor, float]:
        start = time.perf_counter()
        k = nk.empirical_ntk(model, x, strategy=strategy, trace_outputs=trace)
        return k, time.perf_counter() - start

    kernel, first = once()
    runs = [first]
    if first < SLOW:
        runs = [once()[1] for _ in range(repeats)]
    peak = maxrss_mb()
    full = not trace
    macs = empirical_macs(n, (d, width, width, OUTPUTS), OUTPUTS, full)[0]
    floor_seconds = macs / gemm_rate(OUTPUTS * n, width, width, torch.float32)
    if out_path is not None:
        torch.save(kernel, out_path)
    chosen = (
        empirical.ntk_strategy(model, x, trace_outputs=trace) if strategy == "auto" else strategy
    )
    return {
        "name": NAME,
        "n": n,
        "dtype": "float32",
        "strategy": strategy,
        "chosen": chosen,
        "outputs": outputs,
        "seconds": statistics.median(runs),
        "runs": runs,
        "peak_mb": peak - baseline,
        "peak_total_mb": peak,
        "macs": macs,
        "floor_seconds": floor_seconds,
        "ratio_to_floor": statistics.median(runs) / floor_seconds,
        "nt_seconds": NT_SECONDS.get((chosen, outputs)) if n == N else None,
        "nt_best_seconds": NT_BEST[outputs] if n == N else None,
        "threads": torch.get_num_threads(),
        "loadavg_1min": os.getloadavg()[0],
    }


def _subprocess(args: list[str], threads: int, passive: bool = True) -> dict[str, Any] | None:
    cmd = [sys.executable, "-m", "benchmarks.bench_empirical", "--threads", str(threads), *args]
    # waiting OpenMP threads sleep rather than spin: on a shared machine a spinning thread
    # steals the core its partner needs, and small GEMMs then take 10-100x longer
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ} if passive else dict(os.environ)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(f"{NAME} {' '.join(args)} failed:\n{done.stderr}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _nt_run(python: str, script: str, outputs: str, n: int, threads: int) -> dict[str, Any] | None:
    """One Neural Tangents run (structured derivatives, ``vmap_axes=0``) in its process.

    ``threads == 1``: XLA's CPU backend single-threaded too (``XLA_FLAGS``).
    """
    trace = "out" if outputs == "traced" else "none"
    cmd = [python, script, "--impl", "STRUCTURED_DERIVATIVES", "--trace", trace, "--n", str(n),
           "--vmap-axes", "0", "--sd-shim", "--repeats", str(REPEATS)]  # fmt: skip
    env = dict(os.environ)
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"Neural Tangents {outputs} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def _spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}  # fmt: skip


def beside_nt(python: str, script: str, n: int, rounds: int, threads: int) -> int:
    """Alternate runs of this library and Neural Tangents; one JSON line per output mode."""
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        for outputs in ("traced", "full"):
            ours: list[dict[str, Any]] = []
            theirs: list[dict[str, Any]] = []
            for _ in range(rounds):
                out = str(Path(tmp) / "k.pt")
                # OpenMP as the user has it (as Neural Tangents runs its own thread pool)
                record = _subprocess(
                    ["--case", "structured", outputs, str(n), out], threads, passive=False
                )
                nt = _nt_run(python, script, outputs, n, threads)
                if record is None or nt is None:
                    status = 1
                    continue
                ours.append(record)
                theirs.append(nt)
            if not ours:
                continue
            mine = _spread([r["seconds"] for r in ours])
            nts = _spread([r["median_s"] for r in theirs])
            floor = _spread([r["floor_seconds"] for r in ours])
            print(json.dumps({
                "name": f"{NAME}_beside_nt", "n": n, "dtype": "float32", "outputs": outputs,
                "rounds": len(ours), "threads": threads, "seconds": mine, "nt_seconds": nts,
                "ratio_to_nt": mine["median"] / nts["median"], "floor_seconds": floor,
                "ratio_to_floor": mine["median"] / floor["median"],
                "nt_ratio_to_floor": nts["median"] / floor["median"],
                "peak_mb": max(r["peak_mb"] for r in ours),
                "peak_total_mb": max(r["peak_total_mb"] for r in ours),
                "nt_peak_mb": max(r["peak_rss_mb"] - r["rss_after_import_mb"] for r in theirs),
                "nt_peak_total_mb": max(r["peak_rss_mb"] for r in theirs),
                "loadavg_1min": os.getloadavg()[0],
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            }), flush=True)  # fmt: skip
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_empirical")
    parser.add_argument("--quick", action="store_true", help=f"n={QUICK_N} (smoke run)")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads per case")
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES), help="which ones")
    parser.add_argument("--case", nargs=4, metavar=("STRATEGY", "OUTPUTS", "N", "OUT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--loop", nargs=2, metavar=("N", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--nt", metavar="PYTHON", help="alternate with Neural Tangents (see above)")
    parser.add_argument("--nt-script", default=NT_SCRIPT, help="Neural Tangents' timing script")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating rounds (--nt)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.nt is not None:
        n = QUICK_N if args.quick else N
        return beside_nt(args.nt, args.nt_script, n, args.rounds, args.threads)
    if args.loop is not None:  # the naive loop, in this (fresh) process
        print(json.dumps(run_loop(int(args.loop[0]), Path(args.loop[1]))), flush=True)
        return 0
    if args.case is not None:  # one case, in this (fresh) process
        strategy, outputs, n, out = args.case
        print(json.dumps(run_case(strategy, outputs, int(n), Path(out))), flush=True)
        return 0
    n = QUICK_N if args.quick else N
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        loop = _subprocess(["--loop", str(n), tmp], args.threads)
        if loop is None:
            return 1
        print(json.dumps(loop), flush=True)
        for outputs in ("traced", "full"):
            reference = torch.load(Path(tmp) / f"loop_{outputs}.pt")
            for strategy in args.strategies:
                out = Path(tmp) / f"{strategy}_{outputs}.pt"
                record = _subprocess(["--case", strategy, outputs, str(n), str(out)], args.threads)
                if record is None:
                    status = 1
                    continue
                kernel = torch.load(out)
                record["loop_seconds"] = loop["loop_seconds"][outputs]
                record["speedup"] = record["loop_seconds"] / record["seconds"]
                diff = (kernel - reference).abs().max() / reference.abs().max()
                record["max_rel_diff"] = float(diff)
                print(json.dumps(record), flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
