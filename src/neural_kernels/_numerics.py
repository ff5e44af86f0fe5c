"""Numerical constants shared by the eager and the compiled kernels."""

from __future__ import annotations

import torch

__all__ = ["SNAP_ULPS", "snap_factor"]

#: Correlations within this many rounding units of +-1 are snapped to +-1: there the
#: arc-cosine turns rounding noise of ``1e-16`` into angles of ``1e-8``, while the exact
#: answer for identical inputs is ``0``.
SNAP_ULPS = 16.0


def snap_factor(dtype: torch.dtype) -> float:
    """``1 + SNAP_ULPS * eps``: scaling a correlation by it snaps those near +-1 to +-1."""
    return 1.0 + SNAP_ULPS * torch.finfo(dtype).eps
