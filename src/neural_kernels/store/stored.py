r"""Kernels backed by a store: read by blocks, mirrored on read, multiplied by streaming.

A symmetric kernel ``k(x, x)`` is stored once: only the blocks on and above the block
diagonal are written, and a block below is its mirror :math:`B_{ji} = B_{ij}^\top` (with
the spatial axis pairs swapped). :meth:`StoredMatrix.matmul` reads every stored block
once per product, so a conjugate-gradient iteration costs one read of the store.

**Reads.** The store's chunks are uncompressed (codec ``bytes``, little-endian), so a chunk
file of a local store is, by the zarr version 3 specification, the chunk's C-order bytes;
:class:`StoredMatrix` reads such files directly with numpy (a missing chunk is the fill
value), which is several times faster than a read through zarr's asynchronous codec
pipeline (a product streaming 75 MB took 0.54 s through zarr against 0.08 s to read the
files). Any other layout (a compressed or remote store) is read through zarr.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import StoreError, describe

__all__ = ["DONE_DIR", "StoredKernel", "StoredMatrix", "open_kernel", "torch_dtype"]

#: Folder of a store holding one empty marker file per finished chunk.
DONE_DIR = "_nk_done"
#: Largest slab of rows that a streamed product reads at once.
SLAB_BYTES = 128 * 2**20


def torch_dtype(name: str) -> torch.dtype:
    """``"float64"`` -> ``torch.float64``."""
    return {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16}[name]


class StoredMatrix:
    """One kernel of a store, shape ``(n1, n2, *pairs)``, read block by block.

    Attributes:
        shape: the full shape (the lower triangle of a symmetric kernel included).
        dtype: the torch dtype.

    """

    def __init__(self, array: Any, manifest: dict[str, Any]) -> None:
        self.array = array
        self.symmetric = bool(manifest["symmetric"])
        self.rows, self.cols = (int(b) for b in manifest["block"])
        self.perm = tuple(int(p) for p in manifest["swap"])
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = torch_dtype(manifest["dtype"])
        self.folder, self.chunk, self.encode = _direct_layout(array)
        # buffers reused across reads, one set per thread (several threads may share a store)
        self._local = threading.local()

    def __repr__(self) -> str:
        kind = "symmetric, " if self.symmetric else ""
        return f"StoredMatrix(shape={self.shape}, {kind}block=({self.rows}, {self.cols}))"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _raw(self, i0: int, i1: int, j0: int, j1: int, reuse: bool = False) -> Tensor:
        """Entries ``[i0:i1, j0:j1]`` as stored; ``reuse``: into a buffer kept for the next call.

        Reused buffers matter: a fresh large array costs a page fault per page on first
        touch (0.15-2 s for 128 MiB on a loaded machine, more than reading the files).
        """
        if self.folder is None:
            return torch.from_numpy(self.array[i0:i1, j0:j1])
        trailing = self.shape[2:]
        shape = (i1 - i0, j1 - j0, *trailing)
        local = self._local
        if reuse:
            size = int(np.prod(shape))
            if getattr(local, "slab", None) is None or local.slab.size < size:
                local.slab = np.empty(size, dtype=self.array.dtype)
            out = local.slab[:size].reshape(shape)
        else:
            out = np.empty(shape, dtype=self.array.dtype)
        (cr, cc), fill = self.chunk[:2], self.array.metadata.fill_value
        if getattr(local, "chunk", None) is None:
            local.chunk = np.empty(self.chunk, dtype=self.array.dtype)
        chunk = local.chunk
        view = memoryview(chunk.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        for a in range(i0 // cr, -(-i1 // cr)):
            for b in range(j0 // cc, -(-j1 // cc)):
                r0, r1 = max(a * cr, i0), min((a + 1) * cr, i1)
                s0, s1 = max(b * cc, j0), min((b + 1) * cc, j1)
                dest = out[r0 - i0 : r1 - i0, s0 - j0 : s1 - j0]
                name = os.path.join(self.folder, self.encode((a, b, *[0] * len(trailing))))
                try:
                    with open(name, "rb", buffering=0) as f:
                        got = f.readinto(view)
                        extra = f.read(1)
                except FileNotFoundError:
                    dest[...] = fill
                    continue
                if got != chunk.nbytes or extra:  # not a plain chunk: ask zarr
                    dest[...] = self.array[r0:r1, s0:s1]
                    continue
                dest[...] = chunk[r0 - a * cr : r1 - a * cr, s0 - b * cc : s1 - b * cc]
        return torch.from_numpy(out)

    def _mirror(self, t: Tensor) -> Tensor:
        return t.permute(1, 0, *(2 + p for p in self.perm))

    def read(self, i0: int, i1: int, j0: int, j1: int) -> Tensor:
        """The entries ``[i0:i1, j0:j1]`` (blocks below the diagonal mirrored)."""
        if not self.symmetric:
            return self._raw(i0, i1, j0, j1)
        out = torch.empty((i1 - i0, j1 - j0, *self.shape[2:]), dtype=self.dtype)
        b = self.rows
        for a0 in range(i0 - i0 % b, i1, b):
            for c0 in range(j0 - j0 % b, j1, b):
                r0, r1 = max(a0, i0), min(a0 + b, i1)
                s0, s1 = max(c0, j0), min(c0 + b, j1)
                if a0 <= c0:  # on or above the block diagonal: stored as is
                    part = self._raw(r0, r1, s0, s1)
                else:
                    part = self._mirror(self._raw(s0, s1, r0, r1))
                out[r0 - i0 : r1 - i0, s0 - j0 : s1 - j0] = part
        return out

    def to_tensor(self) -> Tensor:
        """The whole matrix in memory."""
        return self.read(0, self.shape[0], 0, self.shape[1])

    def row_panel(self, i0: int, i1: int) -> Tensor:
        """Rows ``i0:i1`` across every column."""
        return self.read(i0, i1, 0, self.shape[1])

    def diagonal(self) -> Tensor:
        """The diagonal ``A[i, i]`` of a square 2-D kernel, read by diagonal blocks."""
        n = min(self.shape[0], self.shape[1])
        b = self.rows
        return torch.cat(
            [torch.diagonal(self._raw(i, min(n, i + b), i, min(n, i + b))) for i in range(0, n, b)]
        )

    def _widen(self, slab: Tensor, dtype: torch.dtype) -> Tensor:
        """``slab`` in ``dtype``, converted into a buffer kept for the next slab.

        A fresh conversion of each slab cost a float32 store twice the CPU time of a
        float64 one per CG iteration (the page faults of a new 400 MB array each time).
        """
        if slab.dtype == dtype:
            return slab
        wide = getattr(self._local, "wide", None)
        if wide is None or wide.dtype != dtype or wide.numel() < slab.numel():
            wide = self._local.wide = torch.empty(slab.numel(), dtype=dtype)
        return wide[: slab.numel()].view(slab.shape).copy_(slab)

    def matmul(self, v: Tensor) -> Tensor:
        """``A @ v`` for ``v`` of shape ``(n2, k)``, streaming each stored block once."""
        if len(self.shape) != 2:
            raise StoreError(
                describe(
                    "StoredMatrix.matmul",
                    f"a kernel of shape {self.shape} (with spatial axis pairs)",
                    "Products need a flat (n1, n2) kernel: end the network with a readout.",
                )
            )
        n1, n2 = self.shape
        out = torch.zeros(n1, v.shape[1], dtype=torch.promote_types(self.dtype, v.dtype))
        v = v.to(out.dtype)
        # one read per slab of block rows (zarr fetches its chunks concurrently; each
        # call costs a round trip through its event loop), each slab <= SLAB_BYTES
        per_row = n2 * out.element_size()
        step = self.rows * max(1, SLAB_BYTES // max(1, per_row * self.rows))
        for i0 in range(0, n1, step):
            i1 = min(n1, i0 + step)
            if not self.symmetric:
                out[i0:i1] = self._widen(self._raw(i0, i1, 0, n2, reuse=True), out.dtype) @ v
                continue
            slab = self._widen(self._raw(i0, i1, i0, n2, reuse=True), out.dtype)
            for r0 in range(i0, i1, self.rows):
                # the blocks on and right of the diagonal, each used as itself and as
                # its mirror
                r1 = min(i1, r0 + self.rows)
                part = slab[r0 - i0 : r1 - i0, r0 - i0 :]
                out[r0:r1] += part @ v[r0:]
                if r1 < n2:
                    out[r1:] += part[:, r1 - r0 :].mT @ v[r0:r1]
        return out

    __matmul__ = matmul


@dataclass(frozen=True)
class StoredKernel:
    """A kernel computed into a store (``net.kernel(..., store=path)``, :func:`open_kernel`).

    Attributes:
        path: the store's folder.
        nngp: the NNGP kernel, a :class:`StoredMatrix` of shape ``(n1, n2, *pairs)``, or
            ``None`` when it was not asked for.
        ntk: the NTK, or ``None`` when it was not asked for.
        cov1: the first inputs' variances ``(n1, *pairs)``, in memory.
        cov2: the second inputs' variances ``(n2, *pairs)``.
        manifest: the store's manifest (see :mod:`neural_kernels.store.manifest`).

    """

    path: str
    nngp: StoredMatrix | None
    ntk: StoredMatrix | None
    cov1: Tensor
    cov2: Tensor
    manifest: dict[str, Any]

    #: Marks a stored kernel for the predictors (no import of this module needed there).
    stored = True
    self_pairs = False

    def load(self) -> Any:
        """The whole kernel in memory, a :class:`~neural_kernels.Kernel`."""
        from ..kernel import Kernel

        facts = self.manifest["facts"]
        if self.nngp is None:
            raise StoreError(
                describe(
                    "StoredKernel.load",
                    f"the store {self.path!r} holds no NNGP",
                    "Read the NTK alone with .ntk.to_tensor(), or compute the store with "
                    "get=('nngp', 'ntk').",
                )
            )
        return Kernel(
            self.nngp.to_tensor(),
            None if self.ntk is None else self.ntk.to_tensor(),
            self.cov1,
            self.cov2,
            shape1=tuple(facts["shape1"]),
            shape2=tuple(facts["shape2"]),
            is_gaussian=facts["is_gaussian"],
            layout=facts["layout"],
            channel_axis=facts["channel_axis"],
        )


def _direct_layout(array: Any) -> tuple[str | None, tuple[int, ...], Any]:
    """The folder, chunk shape and chunk-key encoder of chunk files numpy can read as is.

    ``(None, (), None)`` unless the array is in a local store, on a regular grid, with the
    ``bytes`` codec alone in this machine's byte order (then a chunk file is the chunk's
    C-order bytes).
    """
    try:
        from zarr.codecs import BytesCodec
        from zarr.core.chunk_grids import RegularChunkGrid
        from zarr.storage import LocalStore

        meta = array.metadata
        store = array.store_path.store
        codecs = tuple(meta.codecs)
        plain = (
            isinstance(store, LocalStore)
            and isinstance(meta.chunk_grid, RegularChunkGrid)
            and len(codecs) == 1
            and isinstance(codecs[0], BytesCodec)
            and (codecs[0].endian is None or codecs[0].endian.value == sys.byteorder)
            and np.dtype(array.dtype).isnative
        )
        if not plain:
            return None, (), None
        folder = os.path.join(str(store.root), array.store_path.path)
        chunk = tuple(int(c) for c in meta.chunk_grid.chunk_shape)
        return folder, chunk, meta.chunk_key_encoding.encode_chunk_key
    except (ImportError, AttributeError):  # pragma: no cover (another zarr version)
        return None, (), None


def _not_a_store(path: str, why: str) -> StoreError:
    return StoreError(
        describe(
            "open_kernel",
            f"{path!r} {why}",
            "Pass the folder written by net.kernel(..., store=path); rerun that call to "
            "finish an interrupted store.",
        )
    )


def manifest_of(path: str) -> dict[str, Any] | None:
    """The manifest of the store at ``path``, or ``None`` when it has none yet."""
    meta = os.path.join(path, "zarr.json")
    if not os.path.isfile(meta):
        return None
    with open(meta, encoding="utf-8") as f:
        attrs = json.load(f).get("attributes", {})
    found = attrs.get("neural_kernels")
    return found if isinstance(found, dict) else None


def open_kernel(path: str | os.PathLike[str], *, allow_partial: bool = False) -> StoredKernel:
    """Reopen a kernel store written by ``net.kernel(..., store=path)``.

    Args:
        path: the store's folder.
        allow_partial: open a store whose computation has not finished (chunks not yet
            computed read as zeros).

    Raises:
        StoreError: no store at ``path``, or an unfinished one (without ``allow_partial``).

    """
    import zarr

    path = os.fspath(path)
    manifest = manifest_of(path)
    if manifest is None:
        raise _not_a_store(path, "is not a kernel store (no manifest)")
    if not manifest.get("complete") and not allow_partial:
        raise _not_a_store(path, "is an unfinished kernel store")
    group = zarr.open_group(path, mode="r", zarr_format=3)
    dtype = torch_dtype(manifest["dtype"])
    ntk = StoredMatrix(group["ntk"], manifest) if "ntk" in manifest["get"] else None
    arrays: Any = group
    cov1 = torch.from_numpy(arrays["cov1"][...]).to(dtype)
    cov2 = cov1 if manifest["symmetric"] else torch.from_numpy(arrays["cov2"][...]).to(dtype)
    nngp = StoredMatrix(group["nngp"], manifest) if "nngp" in manifest["get"] else None
    return StoredKernel(path, nngp, ntk, cov1, cov2, manifest)
