"""Data of the commands: a bundled scikit-learn data set or a ``.npz``/``.csv`` file, split.

Bad data raises :class:`~._command.UsageError` with one line naming the file or option.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..report.writer import have
from ._command import UsageError

__all__ = ["BUNDLED", "Dataset", "load_dataset", "split", "standardise"]

#: Data sets bundled with scikit-learn (no download).
BUNDLED = ("digits", "iris", "wine", "breast_cancer")
#: Fraction of the examples held out for testing when ``--n-test`` is not given.
TEST_FRACTION = 0.2
#: Sizes used by ``--quick`` (unless ``--n-train``/``--n-test`` say otherwise).
QUICK_TRAIN, QUICK_TEST = 400, 200


@dataclass(frozen=True)
class Dataset:
    name: str
    x: np.ndarray  # (n, features), float64
    y: np.ndarray  # (n,), class indices 0..C-1
    classes: list[Any]


def load_dataset(spec: str) -> Dataset:
    """A bundled scikit-learn data set by name, or a ``.npz`` / ``.csv`` file."""
    if spec in BUNDLED:
        if not have("sklearn"):
            raise UsageError(
                f"--data {spec}: the bundled data sets need scikit-learn "
                "(pip install 'neural-kernels[demo]'), or pass a .npz or .csv file"
            )
        from sklearn import datasets  # type: ignore[import-untyped]

        x, y = getattr(datasets, f"load_{spec}")(return_X_y=True)
        return finish_dataset(spec, np.asarray(x), np.asarray(y), f"--data {spec}")
    path = Path(spec).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        if path.exists():
            raise UsageError(f"--data {spec}: unsupported file type (use a .npz or .csv file)")
        raise UsageError(
            f"--data {spec}: unknown data set (use one of {', '.join(BUNDLED)}, "
            "or a path to a .npz or .csv file)"
        )
    where = f"--data {spec}"
    if not path.is_file():
        raise UsageError(f"{where}: no such file")
    x, y = _read_npz(path, where) if suffix == ".npz" else _read_csv(path, where)
    return finish_dataset(path.name, x, y, where)


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


def finish_dataset(name: str, x: np.ndarray, y: np.ndarray, where: str) -> Dataset:
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
    return Dataset(name, x, index.astype(np.int64), [c.item() for c in classes])


def split(
    n: int, name: str, *, n_train: int | None, n_test: int | None, quick: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test indices of ``n`` examples: deterministic in ``seed``.

    ``n_test=None``: 20% of the examples (at most 200 with ``quick``); ``n_train=None``:
    the rest (at most 400 with ``quick``).
    """
    if n_test is None:
        n_test = max(1, round(TEST_FRACTION * n))
        if quick:
            n_test = min(n_test, QUICK_TEST)
    if n_test >= n:
        raise UsageError(f"--n-test {n_test}: {name} has only {n} examples")
    available = n - n_test
    if n_train is None:
        n_train = min(available, QUICK_TRAIN) if quick else available
    if n_train > available:
        raise UsageError(
            f"--n-train {n_train}: {name} has {available} examples besides the {n_test} "
            "test examples"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_test : n_test + n_train], perm[:n_test]


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero mean and unit variance per feature, with the training statistics."""
    mean = train.mean(0)
    std = train.std(0)
    std[std == 0] = 1.0
    return (train - mean) / std, (test - mean) / std


# ----------------------------------------------------------------------------------------
# The demo: kernels and regression
