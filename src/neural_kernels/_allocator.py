"""glibc's allocator, tuned once for the library's repeated large temporaries.

By default glibc serves allocations above a (dynamic) threshold with fresh ``mmap``
pages and trims freed memory at the top of each heap, so that buffers a kernel
allocates again on every chunk or call come back as fresh pages: page faults that cost
as much as the arithmetic and serialise worker threads. :func:`tune_allocator` asks it,
once per process, to serve allocations up to 32 MiB from the heap and to return freed
heap memory to the system beyond 64 MiB (``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``).
Called when the compiled kernels load and on the first empirical kernel. Set
``NEURAL_KERNELS_MALLOPT=0`` to leave the allocator alone; elsewhere than glibc on
Linux it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import threading

__all__ = ["tune_allocator"]

#: ``(parameter, value)`` pairs of ``mallopt``: ``M_MMAP_THRESHOLD`` (-3) and
#: ``M_TRIM_THRESHOLD`` (-1).
MALLOPT = ((-3, 32 * 2**20), (-1, 64 * 2**20))
_DONE = [False]
_LOCK = threading.Lock()


def tune_allocator() -> bool:
    """Apply :data:`MALLOPT` once per process; whether it is in effect."""
    if _DONE[0]:
        return True
    if sys.platform != "linux" or os.environ.get("NEURAL_KERNELS_MALLOPT", "1") == "0":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    with _LOCK:
        if not _DONE[0]:
            try:
                libc = ctypes.CDLL(None)
                for param, value in MALLOPT:
                    libc.mallopt(ctypes.c_int(param), ctypes.c_int(value))
            except (OSError, AttributeError):
                return False
            _DONE[0] = True
    return True
