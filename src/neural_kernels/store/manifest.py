"""The manifest of a kernel store: what was computed, from what, and how it is cut.

A store is a zarr (version 3) group whose attributes hold the manifest::

    {"format": "neural-kernels-store/1", "network": repr(net), "inputs": sha256,
     "dtype": "float64", "get": ["nngp", "ntk"], "shape": [n1, n2], "trailing": [...],
     "block": [rows, cols], "symmetric": true, "layout": "diagonal", "facts": {...},
     "versions": {"neural_kernels": ..., "torch": ..., "zarr": ...}}

Resuming compares the fields that determine the values (:data:`IDENTITY`); any
difference is refused with :class:`~neural_kernels.errors.StoreMismatchError`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor

from ..errors import StoreMismatchError, describe

__all__ = ["FORMAT", "IDENTITY", "check_same", "input_hash", "versions"]

FORMAT = "neural-kernels-store/1"
#: Manifest fields that must agree for a store to be resumed.
IDENTITY = ("format", "network", "inputs", "dtype", "get", "shape", "symmetric", "layout")
#: Why each identity field may differ, for the error message.
_WHAT = {
    "network": "a different network",
    "inputs": "different inputs",
    "dtype": "a different dtype",
    "get": "different kernels (get=)",
    "shape": "inputs of a different size",
    "symmetric": "x2=None on one run and not the other",
    "layout": "a different layout",
    "format": "another store format",
}


def input_hash(*tensors: Tensor | None) -> str:
    """SHA-256 of the inputs' dtypes, shapes and bytes (``None`` hashes as a marker)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"<none>")
            continue
        c = t.detach().cpu().contiguous()
        h.update(f"{c.dtype}:{tuple(c.shape)}:".encode())
        h.update(c.view(torch.uint8).numpy().tobytes() if c.numel() else b"")
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of the library and of the parts that wrote the store."""
    import zarr

    from .. import __version__

    return {"neural_kernels": __version__, "torch": torch.__version__, "zarr": zarr.__version__}


def check_same(old: dict[str, Any], new: dict[str, Any], path: str) -> None:
    """Refuse to resume ``path`` when its manifest ``old`` differs from ``new``."""
    for key in IDENTITY:
        if old.get(key) != new.get(key):
            shown_old, shown_new = str(old.get(key)), str(new.get(key))
            if len(shown_old) > 120 or len(shown_new) > 120:
                shown_old, shown_new = shown_old[:117] + "...", shown_new[:117] + "..."
            raise StoreMismatchError(
                describe(
                    "kernel(store=...)",
                    f"the store {path!r} was made with {_WHAT[key]} "
                    f"({key}: stored {shown_old}, now {shown_new})",
                    "Use the same network, inputs and dtype to resume, or give a new store path "
                    "(or delete the old store) to start over.",
                )
            )
