"""Checks for the optional extras, with a clear error naming the extra to install."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from .errors import HyperparameterError, InputTypeError, describe

__all__ = ["require_scale"]


def require_scale(where: str, store: Any, pattern: Any = None) -> str | os.PathLike[str]:
    """The store path, once the ``scale`` extra is installed and the call well formed."""
    missing = [m for m in ("zarr",) if importlib.util.find_spec(m) is None]
    if missing:
        raise InputTypeError(
            describe(
                where,
                f"store= but {', '.join(missing)} is not installed",
                "Install the scale extra: pip install 'neural-kernels[scale]'.",
            )
        )
    if store is None:
        raise HyperparameterError(
            describe(
                where,
                "client= or scheduler= without store=",
                "Give store='path/to/k.zarr': Dask workers write their blocks into it.",
            )
        )
    if pattern is not None:
        raise HyperparameterError(
            describe(
                where,
                "store= with pattern= (graph inputs)",
                "Compute kernels of Aggregate networks in memory (without store=).",
            )
        )
    if not isinstance(store, (str, os.PathLike)):
        raise InputTypeError(
            describe(where, f"store={store!r}", "Give a folder path (a str or a Path).")
        )
    return store
