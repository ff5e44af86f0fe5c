"""Kernels larger than memory: a zarr (version 3) store, resumable, on a Dask cluster.

``net.kernel(x1, x2, store="k.zarr")`` computes the kernel block by block into a store
(:mod:`.writer`), skipping the blocks a previous, interrupted run finished;
``client=`` / ``scheduler=`` run the blocks as Dask tasks (:mod:`.distributed`).
:func:`open_kernel` reopens a store as a :class:`StoredKernel` whose matrices are read by
blocks (:mod:`.stored`); ``nk.predict.gp_inference(stored, y, solver="cg")`` solves
with them by conjugate gradients streaming the store. The manifest that guards resuming
is described in :mod:`.manifest`.

Needs the ``scale`` extra (``pip install neural-kernels[scale]``: zarr, dask); the
in-memory path works without it, and this package imports zarr and dask only when used.
"""

from __future__ import annotations

from .stored import StoredKernel, StoredMatrix, open_kernel
from .writer import compute_stored

__all__ = ["StoredKernel", "StoredMatrix", "compute_stored", "open_kernel"]
