"""Reference kernels from Neural Tangents for the layers of issue 16.

``tests/data/reference/nt16_<case>.npz`` hold ``x1`` (and ``x2``), ``nngp_11``,
``ntk_11`` (and ``nngp_12``, ``ntk_12``), computed by Neural Tangents 0.6.5 (JAX 0.5.3,
float64); see ``tests/data/reference/README.md``. Inputs are stored channels-last as
Neural Tangents takes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

import neural_kernels as nk

DATA = Path(__file__).resolve().parents[1] / "data" / "reference"


def load(case: str) -> dict[str, torch.Tensor]:
    """The arrays of ``nt16_<case>.npz`` as float64 tensors."""
    with np.load(DATA / f"nt16_{case}.npz") as d:
        return {k: torch.from_numpy(d[k]) for k in d.files}


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """``(n, *spatial, C)`` to ``(n, C, *spatial)``."""
    return x.movedim(-1, 1)


def assert_matches(
    net: nk.Layer,
    ref: dict[str, torch.Tensor],
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    rtol: float = 1e-9,
    diag_rtol: float = 1e-7,
    **kwargs: Any,
) -> float:
    """Assert ``net``'s kernels equal the reference; return the largest relative error.

    Off-diagonal entries are compared at ``rtol`` (relative to the largest entry), the
    diagonal of ``k(x1, x1)`` at ``diag_rtol`` (see ``CONVENTIONS.md``: arc-cosine
    diagonals are good to about ``1e-8``).
    """
    worst = 0.0
    pairs = [("11", net.kernel(x1, **kwargs))]
    if x2 is not None:
        pairs.append(("12", net.kernel(x1, x2, **kwargs)))
    for tag, k in pairs:
        for name in ("nngp", "ntk"):
            got, want = getattr(k, name), ref[f"{name}_{tag}"]
            scale = float(want.abs().max())
            err = (got - want).abs() / scale
            if tag == "11":
                off = ~torch.eye(err.shape[0], dtype=torch.bool)
                diag = float(err.diagonal().max())
                assert diag <= diag_rtol, f"{name}_{tag} diagonal: {diag:.2e}"
                err = err[off]
            e = float(err.max())
            assert e <= rtol, f"{name}_{tag}: max relative error {e:.2e}"
            worst = max(worst, e)
    return worst


def assert_twin_agrees(
    net: nk.Layer,
    x: torch.Tensor,
    *,
    samples: int = 24,
    width: int = 128,
    seed: int = 0,
    sigmas: float = 5.0,
    slack: float = 0.03,
    **kwargs: Any,
) -> None:
    """Monte Carlo kernels of finite twins agree with the closed form.

    Each entry must lie within ``sigmas`` standard errors plus ``slack`` times the
    largest entry (the finite-width bias).
    """
    exact = net.kernel(x, **kwargs)
    mc = nk.monte_carlo_kernel(
        net, x, n_samples=samples, width=width, generator=torch.Generator().manual_seed(seed)
    )
    for name in ("nngp", "ntk"):
        est, err, ref = getattr(mc, name), getattr(mc, name + "_stderr"), getattr(exact, name)
        bad = (est - ref).abs() > sigmas * err + slack * ref.abs().max()
        assert not bool(bad.any()), f"{name}: {est} vs {ref} (stderr {err})"
