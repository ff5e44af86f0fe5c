"""The command-line main job: ``neural-kernels COMMAND [options]``.

Also ``python -m neural_kernels``. Commands:

``demo``
    Infinite-width kernel regression on a small data set (scikit-learn's bundled 8x8
    handwritten digits by default, no download): standardise the features, split train
    and test by ``--seed``, compute the NNGP and NTK of a deep fully connected ReLU
    network, solve the kernel regression for each, then add the report sections of
    :mod:`neural_kernels.report` (a CNN's kernels, predictions against training time,
    finite networks against their kernels, the Gaussian picture, kernel movement) and
    write ``index.html``, PNG plots and ``results.json`` (every number, with the resolved
    configuration) into ``--out``, printing a short summary. ``--kernels-only`` stops
    after the kernel regression and writes ``results.json`` alone.

Options come from the command line and, optionally, a TOML file (``--config``): a key
``n_train`` (or ``n-train``) is the flag ``--n-train``; keys may sit at the top level or
in a ``[demo]`` table. Flags given on the command line win over the file, which wins
over the defaults. A relative ``data`` path in the file is read relative to the file.

Exit status: ``0`` success; ``2`` bad input (flags, config file, data), reported as one
line on stderr before anything is written; ``1`` a failure while running (for example
a kernel matrix that is not positive definite at the chosen ``--diag-reg``).

Outputs are written atomically (a temporary file in the output folder, then
``os.replace``), and ``results.json`` last, so a report folder is never left half
written. A command returns a :class:`Report` made of :class:`Section` s; later commands
and report sections (plots, HTML) add sections rather than new scripts.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import tempfile
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import NeuralKernelsError

__all__ = ["DemoConfig", "Plot", "Report", "Section", "main"]

PROG = "neural-kernels"
_BUNDLED = ("digits", "iris", "wine", "breast_cancer")
_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_KERNELS = ("nngp", "ntk")
#: Fraction of the examples held out for testing when ``--n-test`` is not given.
_TEST_FRACTION = 0.2
#: Sizes used by ``--quick`` (unless ``--n-train``/``--n-test`` say otherwise).
_QUICK_TRAIN, _QUICK_TEST = 400, 200
#: Width of the hidden layers; it names the finite twin and does not change the kernels.
_HIDDEN_WIDTH = 512


class UsageError(Exception):
    """Bad input from the user (flags, config file, data): exit status 2, nothing written."""


class RunError(Exception):
    """A failure while running a valid configuration: exit status 1, nothing written."""


# ----------------------------------------------------------------------------------------
# Reports: sections of numbers, summary lines and (later) plots
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plot:
    """A figure of a report section, saved as ``<name>.png`` when matplotlib is installed.

    Attributes:
        name: file stem, e.g. ``"spectrum"``.
        draw: draws the figure on a ``matplotlib.axes.Axes``.
        caption: one line saying what the plot shows (also its alt text in HTML).

    """

    name: str
    draw: Callable[[Any], None]
    caption: str = ""


@dataclass
class Section:
    """One part of a report.

    Attributes:
        name: key of the section in ``results.json``.
        data: JSON-serialisable numbers and facts.
        summary: lines for the printed summary.
        plots: figures of the section.
        title: heading in ``index.html`` (default: from ``name``).
        text: a paragraph under the heading.

    """

    name: str
    data: dict[str, Any]
    summary: list[str] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    title: str = ""
    text: str = ""


@dataclass
class Report:
    """What a command produces: a header and a list of sections, written to a folder."""

    command: str
    config: dict[str, Any]
    sections: list[Section] = field(default_factory=list)

    def add(self, section: Section) -> None:
        """Append ``section``; its name must be new."""
        if any(s.name == section.name for s in self.sections):
            raise ValueError(f"duplicate report section {section.name!r}")
        self.sections.append(section)

    def to_json(self) -> dict[str, Any]:
        """Every number of the report as one JSON-serialisable dict."""
        from . import __version__

        out: dict[str, Any] = {
            "neural_kernels_version": __version__,
            "command": self.command,
            "config": self.config,
            "environment": _environment(),
        }
        for s in self.sections:
            out[s.name] = s.data
        return out

    def summary(self) -> str:
        """The human-readable summary: every section's lines."""
        return "\n".join(line for s in self.sections for line in s.summary)

    def write(self, out_dir: Path) -> list[Path]:
        """Write the plots (if matplotlib is installed) and then ``results.json``.

        Returns:
            The paths written, ``results.json`` last.

        """
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        if _have("matplotlib"):
            written = [
                _write_plot(out_dir / f"{p.name}.png", p) for s in self.sections for p in s.plots
            ]
        text = json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n"
        results = out_dir / "results.json"
        _write_atomic(results, text.encode())
        return [*written, results]


def _environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_plot(path: Path, plot: Plot) -> Path:
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), layout="constrained")
    plot.draw(fig.add_subplot())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    _write_atomic(path, buf.getvalue())
    return path


# ----------------------------------------------------------------------------------------
# Progress of long steps
# ----------------------------------------------------------------------------------------


class _Progress:
    """A ``progress(done, total)`` callback: a tqdm bar on a terminal, plain lines otherwise.

    Plain lines go to stderr at every quarter of the work. ``enabled=False`` prints nothing.
    """

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self._bar: Any = None
        self._done = 0
        self._next_quarter = 1
        self._fancy = enabled and sys.stderr.isatty() and _have("tqdm")

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._fancy:
            if self._bar is None:
                from tqdm import tqdm  # type: ignore[import-untyped]

                self._bar = tqdm(
                    total=total, desc=self.label, unit="pair", unit_scale=True, file=sys.stderr
                )
            self._bar.update(done - self._done)
        else:
            while total and done * 4 >= self._next_quarter * total and self._next_quarter <= 4:
                print(f"  {self.label}: {25 * self._next_quarter}%", file=sys.stderr, flush=True)
                self._next_quarter += 1
        self._done = done

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


# ----------------------------------------------------------------------------------------
# The demo: configuration
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    """Options of ``neural-kernels demo`` (each one is also a flag and a TOML key).

    Attributes:
        data: a bundled data set (``digits``, ``iris``, ``wine``, ``breast_cancer``) or a
            path to a ``.npz`` (arrays ``x`` and integer labels ``y``) or ``.csv`` file
            (last column the label, an optional header row).
        out: output folder.
        seed: seed of the train/test split.
        quick: use a small subset (a few seconds).
        depth: number of hidden ``[Dense, ReLU]`` blocks.
        w_std: weight standard deviation of the hidden layers.
        b_std: bias standard deviation of every layer.
        n_train: training examples (default: all but the test set).
        n_test: test examples (default: 20% of the data).
        dtype: ``float64`` (recommended) or ``float32``.
        diag_reg: ridge added to the kernel, relative to its mean diagonal.
        quiet: no progress output.
        kernels_only: only the kernel regression (no report sections, plots or finite
            networks): a few seconds.

    """

    data: str = "digits"
    out: str = "report"
    seed: int = 0
    quick: bool = False
    depth: int = 3
    w_std: float = math.sqrt(2.0)
    b_std: float = 0.1
    n_train: int | None = None
    n_test: int | None = None
    dtype: str = "float64"
    diag_reg: float = 1e-4
    quiet: bool = False
    kernels_only: bool = False


def _option_types(config: type) -> dict[str, type]:
    """The type of each field of a config dataclass, ``X | None`` read as ``X``."""
    types = {}
    for name, hint in typing.get_type_hints(config).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        types[name] = args[0] if args else hint
    return types


_DEMO_TYPES = _option_types(DemoConfig)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_demo_arguments(p: argparse.ArgumentParser) -> None:
    d = DemoConfig()
    p.add_argument(
        "--data",
        metavar="NAME|PATH",
        help=f"{', '.join(_BUNDLED)}, or a .npz (x, y) or .csv (label last) file "
        f"(default: {d.data})",
    )
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: ./{d.out})")
    p.add_argument("--seed", type=int, metavar="N", help=f"seed of the split (default: {d.seed})")
    p.add_argument(
        "--quick",
        action=argparse.BooleanOptionalAction,
        help="small subsets and fewer widths: about a minute",
    )
    p.add_argument(
        "--depth", type=int, metavar="L", help=f"hidden [Dense, ReLU] blocks (default: {d.depth})"
    )
    p.add_argument(
        "--w-std", type=float, metavar="S", help="weight std of hidden layers (default: sqrt(2))"
    )
    p.add_argument("--b-std", type=float, metavar="S", help=f"bias std (default: {d.b_std})")
    p.add_argument("--n-train", type=int, metavar="N", help="training examples (default: all)")
    p.add_argument("--n-test", type=int, metavar="N", help="test examples (default: 20%%)")
    p.add_argument(
        "--dtype", choices=tuple(_DTYPES), help=f"dtype of the kernels (default: {d.dtype})"
    )
    p.add_argument(
        "--diag-reg",
        type=float,
        metavar="R",
        help=f"ridge relative to the kernel's mean diagonal (default: {d.diag_reg:g})",
    )
    p.add_argument("--quiet", action=argparse.BooleanOptionalAction, help="no progress output")
    p.add_argument(
        "--kernels-only",
        action=argparse.BooleanOptionalAction,
        help="only the kernel regression: no plots, finite networks or HTML sections",
    )
    p.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef]
        except ModuleNotFoundError:
            raise UsageError(
                f"--config {path}: reading TOML needs Python 3.11+ or the 'tomli' package "
                "(pip install tomli)"
            ) from None
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--config {path}: is a folder, not a TOML file") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"--config {path}: malformed TOML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--config {path}: cannot read it: {err}") from None


def _config_values(path: Path, command: str, types: dict[str, type]) -> dict[str, Any]:
    """The options for ``command`` in a TOML file, type-checked, keys with underscores."""
    raw = _read_toml(path)
    values: dict[str, Any] = {}
    table = raw.get(command, {})
    if not isinstance(table, dict):
        raise UsageError(f"--config {path}: '{command}' must be a table ([{command}])")
    items = [(k, v) for k, v in raw.items() if k not in _COMMANDS]
    for key, value in [*items, *table.items()]:
        name = key.replace("-", "_")
        if name not in types:
            raise UsageError(
                f"--config {path}: unknown option '{key}' "
                f"(known: {', '.join(sorted(types))}, or a [{command}] table)"
            )
        want = types[name]
        if not _has_type(value, want):
            raise UsageError(
                f"--config {path}: option '{key}' must be of type {want.__name__}, got {value!r}"
            )
        values[name] = float(value) if want is float else value
    data = Path(values.get("data", "")).expanduser()
    if data.suffix.lower() in (".npz", ".csv") and not data.is_absolute():
        values["data"] = str(path.parent / data)
    return values


def _has_type(value: Any, want: type) -> bool:
    """TOML value check: booleans are not numbers, integers are floats."""
    if want is bool or isinstance(value, bool):
        return want is bool and isinstance(value, bool)
    if want is float:
        return isinstance(value, (int, float))
    return isinstance(value, want)


def _resolve_demo_config(args: argparse.Namespace) -> DemoConfig:
    """Defaults, then the TOML file, then the flags given; then check every value."""
    given = {k: v for k, v in vars(args).items() if k in _DEMO_TYPES}
    values: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        values.update(_config_values(Path(args.config).expanduser(), "demo", _DEMO_TYPES))
    values.update(given)
    cfg = replace(DemoConfig(), **values)
    _check_demo_config(cfg)
    return cfg


def _check_demo_config(cfg: DemoConfig) -> None:
    def bad(name: str, what: str) -> UsageError:
        return UsageError(f"{_flag(name)} {what}, got {getattr(cfg, name)!r}")

    if cfg.seed < 0:
        raise bad("seed", "must be an integer >= 0")
    if cfg.depth < 0:
        raise bad("depth", "must be an integer >= 0")
    for name in ("n_train", "n_test"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise bad(name, "must be an integer >= 1")
    for name in ("w_std", "b_std", "diag_reg"):
        value = getattr(cfg, name)
        if not math.isfinite(value) or value < 0:
            raise bad(name, "must be a finite number >= 0")
    if cfg.dtype not in _DTYPES:
        raise bad("dtype", f"must be one of {', '.join(_DTYPES)}")
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {cfg.out}: exists and is not a folder")


# ----------------------------------------------------------------------------------------
# The demo: data
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dataset:
    name: str
    x: np.ndarray  # (n, features), float64
    y: np.ndarray  # (n,), class indices 0..C-1
    classes: list[Any]


def _load_dataset(spec: str) -> _Dataset:
    """A bundled scikit-learn data set by name, or a ``.npz`` / ``.csv`` file."""
    if spec in _BUNDLED:
        if not _have("sklearn"):
            raise UsageError(
                f"--data {spec}: the bundled data sets need scikit-learn "
                "(pip install 'neural-kernels[demo]'), or pass a .npz or .csv file"
            )
        from sklearn import datasets  # type: ignore[import-untyped]

        x, y = getattr(datasets, f"load_{spec}")(return_X_y=True)
        return _finish_dataset(spec, np.asarray(x), np.asarray(y), f"--data {spec}")
    path = Path(spec).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        if path.exists():
            raise UsageError(f"--data {spec}: unsupported file type (use a .npz or .csv file)")
        raise UsageError(
            f"--data {spec}: unknown data set (use one of {', '.join(_BUNDLED)}, "
            "or a path to a .npz or .csv file)"
        )
    where = f"--data {spec}"
    if not path.is_file():
        raise UsageError(f"{where}: no such file")
    x, y = _read_npz(path, where) if suffix == ".npz" else _read_csv(path, where)
    return _finish_dataset(path.name, x, y, where)


def _read_npz(path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise UsageError(
                    f"{where}: missing array(s) {', '.join(missing)} (found: "
                    f"{', '.join(f.files) or 'none'}); save with np.savez(path, x=..., y=...)"
                )
            return np.asarray(f["x"]), np.asarray(f["y"])
    except UsageError:
        raise
    except Exception as err:  # numpy raises many kinds for a corrupt file
        raise UsageError(f"{where}: cannot read it as .npz ({type(err).__name__}: {err})") from None


def _read_csv(path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"{where}: cannot read it ({err})") from None
    if rows and not _all_numbers(rows[0][:-1]):
        rows = rows[1:]  # a header row
    if not rows:
        raise UsageError(f"{where}: no data rows")
    width = len(rows[0])
    if width < 2:
        raise UsageError(f"{where}: needs at least one feature column and a label column")
    features = []
    for i, row in enumerate(rows):
        if len(row) != width:
            raise UsageError(f"{where}: row {i + 1} has {len(row)} columns, expected {width}")
        try:
            features.append([float(c) for c in row[:-1]])
        except ValueError:
            raise UsageError(f"{where}: row {i + 1} has a non-numeric feature") from None
    labels = [r[-1].strip() for r in rows]
    y: np.ndarray = np.asarray(labels)
    if _all_numbers(labels):
        y = np.asarray([float(v) for v in labels])
    return np.asarray(features, dtype=np.float64), y


def _all_numbers(cells: Sequence[str]) -> bool:
    try:
        for c in cells:
            float(c)
    except ValueError:
        return False
    return True


def _finish_dataset(name: str, x: np.ndarray, y: np.ndarray, where: str) -> _Dataset:
    if x.ndim < 2 or x.shape[0] == 0 or x[0].size == 0:
        raise UsageError(f"{where}: x must have shape (examples, features), got {x.shape}")
    if x.dtype.kind not in "biuf":
        raise UsageError(f"{where}: x must be numeric, got dtype {x.dtype}")
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    if not np.isfinite(x).all():
        raise UsageError(f"{where}: x holds NaN or infinite values")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise UsageError(
            f"{where}: y must hold one label per example, shape ({x.shape[0]},), got {y.shape}"
        )
    if y.dtype.kind == "f":
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise UsageError(f"{where}: labels must be integers (class indices)")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "biuUS":
        raise UsageError(f"{where}: labels must be integers, got dtype {y.dtype}")
    classes, index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise UsageError(f"{where}: needs at least two classes, found {len(classes)}")
    return _Dataset(name, x, index.astype(np.int64), [c.item() for c in classes])


def _split(n: int, cfg: DemoConfig, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test indices: deterministic in ``cfg.seed``."""
    n_test = cfg.n_test
    if n_test is None:
        n_test = max(1, round(_TEST_FRACTION * n))
        if cfg.quick:
            n_test = min(n_test, _QUICK_TEST)
    if n_test >= n:
        raise UsageError(f"--n-test {n_test}: {name} has only {n} examples")
    available = n - n_test
    n_train = cfg.n_train
    if n_train is None:
        n_train = min(available, _QUICK_TRAIN) if cfg.quick else available
    if n_train > available:
        raise UsageError(
            f"--n-train {n_train}: {name} has {available} examples besides the {n_test} "
            "test examples"
        )
    perm = np.random.default_rng(cfg.seed).permutation(n)
    return perm[n_test : n_test + n_train], perm[:n_test]


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero mean and unit variance per feature, with the training statistics."""
    mean = train.mean(0)
    std = train.std(0)
    std[std == 0] = 1.0
    return (train - mean) / std, (test - mean) / std


# ----------------------------------------------------------------------------------------
# The demo: kernels and regression
# ----------------------------------------------------------------------------------------


def _network(cfg: DemoConfig, n_out: int) -> Any:
    import neural_kernels as nk

    hidden = [nk.Dense(_HIDDEN_WIDTH, w_std=cfg.w_std, b_std=cfg.b_std), nk.ReLU()]
    return nk.Sequential(*hidden * cfg.depth, nk.Dense(n_out, w_std=1.0, b_std=cfg.b_std))


def _timed_kernel(
    net: Any, x1: Tensor, x2: Tensor | None, label: str, quiet: bool
) -> tuple[Any, float]:
    """The NNGP and NTK, and the seconds taken, with progress over the engine's blocks."""
    with _Progress(label, enabled=not quiet) as progress:
        start = time.perf_counter()
        k = net.kernel(x1, x2, get=_KERNELS, progress=progress)
        return k, time.perf_counter() - start


def _kernel_regression(
    k_train_train: Tensor, y_train: Tensor, k_test_train: Tensor, diag_reg: float
) -> Tensor:
    r"""Kernel ridge regression: predictions on the test set.

    .. math::
        \hat y = K_{*}\,(K + \lambda\, \tfrac{\operatorname{tr} K}{n} I)^{-1} Y

    solved by Cholesky. ``k_train_train`` is ``(n, n)``, ``y_train`` ``(n, c)``,
    ``k_test_train`` ``(m, n)``; returns ``(m, c)``.

    Raises:
        RunError: the regularised kernel is not positive definite.

    """
    n = k_train_train.shape[0]
    reg = k_train_train.clone()
    reg.diagonal().add_(diag_reg * float(k_train_train.diagonal().mean()))
    chol, info = torch.linalg.cholesky_ex(reg)
    if int(info) != 0:
        raise RunError(
            f"the {n} x {n} kernel plus diag_reg={diag_reg:g} is not positive definite "
            f"in {k_train_train.dtype}: raise --diag-reg or use --dtype float64"
        )
    return k_test_train @ torch.cholesky_solve(y_train, chol)


def run_demo(cfg: DemoConfig) -> Report:
    """Run the demo for a checked configuration and return its report (nothing written)."""
    start = time.perf_counter()
    data = _load_dataset(cfg.data)
    train, test = _split(len(data.y), cfg, data.name)
    x_train, x_test = _standardise(data.x[train], data.x[test])
    dtype = _DTYPES[cfg.dtype]
    a = torch.as_tensor(x_train, dtype=dtype)
    b = torch.as_tensor(x_test, dtype=dtype)
    n_classes = len(data.classes)
    y_train = torch.as_tensor(data.y[train])
    y_test = torch.as_tensor(data.y[test])
    # One-hot targets shifted to mean zero over the classes (minus 0.1 for ten digits).
    targets = torch.nn.functional.one_hot(y_train, n_classes).to(dtype) - 1.0 / n_classes
    targets_test = torch.nn.functional.one_hot(y_test, n_classes).to(dtype) - 1.0 / n_classes

    net = _network(cfg, n_classes)
    k_train, t_train = _timed_kernel(net, a, None, "kernel train x train", cfg.quiet)
    k_test, t_test = _timed_kernel(net, b, a, "kernel test x train", cfg.quiet)

    scores: dict[str, dict[str, float]] = {}
    solve_seconds: dict[str, float] = {}
    for name in _KERNELS:
        t0 = time.perf_counter()
        pred = _kernel_regression(
            getattr(k_train, name), targets, getattr(k_test, name), cfg.diag_reg
        )
        solve_seconds[name] = time.perf_counter() - t0
        scores[name] = {
            "test_accuracy": float((pred.argmax(1) == y_test).double().mean()),
            "test_mse": float(((pred - targets_test) ** 2).mean()),
        }
    chance = float(np.bincount(data.y[test], minlength=n_classes).max() / len(test))

    config = asdict(cfg)
    config.update(n_train=len(train), n_test=len(test))
    report = Report("demo", config)
    report.add(
        Section(
            "data",
            {
                "name": data.name,
                "n_train": len(train),
                "n_test": len(test),
                "n_features": int(a.shape[1]),
                "n_classes": n_classes,
                "classes": data.classes,
                "majority_class_test_accuracy": chance,
            },
            [
                f"data     {data.name}: {len(train)} train, {len(test)} test, "
                f"{a.shape[1]} features, {n_classes} classes; {cfg.dtype}"
            ],
        )
    )
    report.add(
        Section(
            "network",
            {"repr": repr(net), "depth": cfg.depth, "w_std": cfg.w_std, "b_std": cfg.b_std},
            [
                f"network  {cfg.depth} x [Dense(w_std={cfg.w_std:.4g}, b_std={cfg.b_std:g}), "
                f"ReLU] + Dense({n_classes}, w_std=1, b_std={cfg.b_std:g}), infinite width"
            ],
        )
    )
    lines = [f"{'':8} {'test accuracy':>14} {'test MSE':>10}"]
    lines += [
        f"  {name.upper():6} {s['test_accuracy']:>14.4f} {s['test_mse']:>10.5f}"
        for name, s in scores.items()
    ]
    lines.append(f"  {'chance':6} {chance:>14.4f}   (majority class)")
    report.add(Section("results", scores, lines))
    if not cfg.kernels_only:
        from .report import Context, add_sections

        add_sections(
            report,
            Context(
                a,
                b,
                targets,
                targets_test,
                y_test,
                n_classes,
                net,
                k_train,
                k_test,
                cfg.diag_reg,
                cfg.seed,
                cfg.quick,
                cfg.quiet,
                chance,
            ),
        )
    timings = {
        "kernel_train_train": t_train,
        "kernel_test_train": t_test,
        **{f"regression_{name}": s for name, s in solve_seconds.items()},
        "total": time.perf_counter() - start,
    }
    report.add(
        Section(
            "timings",
            {"seconds": timings},
            [
                f"time     kernels {t_train:.2f} s (train x train) + {t_test:.2f} s "
                f"(test x train); total {timings['total']:.2f} s"
            ],
        )
    )
    return report


def _demo(args: argparse.Namespace) -> int:
    cfg = _resolve_demo_config(args)
    report = run_demo(cfg)
    if cfg.kernels_only:
        paths = report.write(Path(cfg.out).expanduser())
    else:
        from .report import write_report

        paths = write_report(report, Path(cfg.out).expanduser())
    print(report.summary())
    print(f"wrote    {paths[-1]}")
    return 0


# ----------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_COMMANDS: dict[str, _Command] = {
    "demo": _Command(
        "infinite-width kernel regression on a small data set (digits by default)",
        _add_demo_arguments,
        _demo,
    ),
}


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of printing usage."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _parser() -> _Parser:
    from . import __version__

    parser = _Parser(
        prog=PROG,
        description="Infinitely wide neural networks: NNGP and NTK kernels, experiments.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in _COMMANDS.items():
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.help,
            argument_default=argparse.SUPPRESS,
        )
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``neural-kernels`` with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Bad input prints one line on stderr and returns ``2`` before anything is written;
    a failure while running prints one line and returns ``1``.
    """
    try:
        args = _parser().parse_args(argv)
        return int(args.run(args))
    except (UsageError, NeuralKernelsError) as err:
        return _fail(err, 2)
    except (RunError, OSError) as err:
        return _fail(err, 1)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _fail(err: BaseException, status: int) -> int:
    message = " ".join(str(err).split())
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status
