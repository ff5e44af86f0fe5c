"""The property checks every layer must pass, shared by all layer tests.

``assert_kernel_properties(net, x1, x2)`` checks, for the NNGP and the NTK:

* symmetry of ``k(x1, x1)`` and positive semi-definiteness;
* ``x2=None`` equals ``x2=x1``;
* ``kernel_diag`` and the returned variances equal the full matrix's diagonal;
* invariance to the block size (rows, columns, and the symmetric path);
* float32 close to float64;
* no NaN or infinity anywhere.

Graph networks (``Aggregate``) take ``pattern=(pattern1, pattern2)``: the adjacency of
``x1`` and of ``x2``, passed to every kernel call as its inputs require.
"""

from __future__ import annotations

import torch

import neural_kernels as nk

#: Near correlation one the arc-cosine's derivative makes diagonals good to ~1e-8 only.
DIAG_RTOL = 1e-7


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, what: str) -> None:
    scale = float(b.abs().max()) + 1e-300
    err = float((a - b).abs().max())
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:.1e} x {scale:.3e}"


def assert_kernel_properties(
    net: nk.Layer,
    x1: torch.Tensor,
    x2: torch.Tensor,
    *,
    rtol: float = 1e-10,
    float32_rtol: float = 1e-4,
    psd_tol: float = 1e-9,
    pattern: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """Assert every shared kernel property of ``net`` on float64 inputs ``x1``, ``x2``.

    ``pattern``: graph adjacency ``(pattern1, pattern2)`` of ``x1`` and ``x2`` (``None``
    for networks without ``Aggregate``).
    """
    x1 = x1.double()
    x2 = x2.double()
    p1 = p2 = None
    if pattern is not None:
        p1, p2 = pattern
    one: dict = {} if pattern is None else {"pattern": p1}  # kernel(x1) and kernel_diag(x1)
    two: dict = {} if pattern is None else {"pattern": p2}  # kernel(x2)
    same: dict = {} if pattern is None else {"pattern": (p1, p1)}  # kernel(x1, x1)
    pair: dict = {} if pattern is None else {"pattern": (p1, p2)}  # kernel(x1, x2)
    k11 = net.kernel(x1, **one)
    k11b = net.kernel(x1, x1, **same)
    k12 = net.kernel(x1, x2, **pair)
    diag = net.kernel_diag(x1, **one)
    for name in ("nngp", "ntk"):
        a = getattr(k11, name)
        assert torch.isfinite(a).all(), f"{name}(x1, None) has non-finite entries"
        assert torch.isfinite(getattr(k12, name)).all(), f"{name}(x1, x2) not finite"
        # symmetric, exactly (the x2=None path mirrors the upper triangle)
        assert torch.equal(a, a.T), f"{name}(x1, None) is not symmetric"
        # PSD
        eig = torch.linalg.eigvalsh(a)
        assert float(eig.min()) >= -psd_tol * float(eig.abs().max()), (
            f"{name} is not PSD: smallest eigenvalue {float(eig.min()):.3e}"
        )
        # x2=None equals x2=x1
        b = getattr(k11b, name)
        off = ~torch.eye(a.shape[0], dtype=torch.bool)
        _close(a[off], b[off], rtol, f"{name}: x2=None vs x2=x1 (off-diagonal)")
        _close(a.diagonal(), b.diagonal(), DIAG_RTOL, f"{name}: x2=None vs x2=x1 (diagonal)")
        # diagonal path
        _close(getattr(diag, name), a.diagonal(), DIAG_RTOL, f"{name}: kernel_diag vs diagonal")
        # blocking invariance
        for block in (1, 3, (2, 3)):
            blocked12 = getattr(net.kernel(x1, x2, block_size=block, **pair), name)
            _close(blocked12, getattr(k12, name), rtol, f"{name}(x1, x2) with block_size={block}")
            blocked11 = getattr(net.kernel(x1, block_size=block, **one), name)
            _close(blocked11, a, rtol, f"{name}(x1, None) with block_size={block}")
        # float32 close to float64
        single = getattr(net.kernel(x1.float(), x2.float(), **pair), name)
        assert single.dtype == torch.float32
        _close(single.double(), getattr(k12, name), float32_rtol, f"{name} float32 vs float64")
    _close(k11.cov1, k11.nngp.diagonal(), DIAG_RTOL, "cov1 vs nngp diagonal")
    _close(k12.cov2, net.kernel(x2, **two).nngp.diagonal(), DIAG_RTOL, "cov2 vs nngp(x2) diagonal")
    only = net.kernel(x1, x2, get="nngp", **pair)
    assert only.ntk is None
    _close(only.nngp, k12.nngp, rtol, "get='nngp' vs both")
