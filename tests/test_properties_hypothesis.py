"""Property-based tests over random architectures and inputs (``hypothesis``).

Networks come from ``tests/_support/strategies.py``: fully connected or convolutional,
with activations, pooling, ``LayerNorm`` and combinators, inputs with exact duplicates.
For every drawn network the kernels must be finite, exactly symmetric and positive
semi-definite, independent of the block size and of the compiled path, with
``kernel_diag`` equal to the matrix's diagonal, and its finite twin must produce outputs
and empirical kernels of the announced shapes. The profile (``tests/conftest.py``) is
derandomized, so a failure reproduces.
"""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="needs the test extra (hypothesis)")

import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import neural_kernels as nk  # noqa: E402

from ._support.strategies import Case, conv_networks, networks  # noqa: E402

#: Near correlation one the arc-cosine's derivative makes diagonals good to ~1e-8 only.
DIAG_RTOL = 1e-7
RTOL = 1e-10
#: The compiled and eager paths round differently; near correlation one the arc-cosine
#: amplifies that through the layers (e.g. 2.7e-10 relative on an NTK entry at
#: correlation 0.999 after four layers with |x| and ReLU), so they agree to 1e-8.
NATIVE_RTOL = 1e-8
PSD_TOL = 1e-9


def _close(
    a: torch.Tensor, b: torch.Tensor, rtol: float, what: str, scale: float | None = None
) -> None:
    """``|a - b| <= rtol * scale`` entrywise, ``scale`` the largest ``|b|`` by default."""
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    scale = (float(b.abs().max()) if scale is None else scale) + 1e-300
    err = float((a - b).abs().max())
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:.1e} x {scale:.3e}"


def _off_and_diag(a: torch.Tensor, b: torch.Tensor, what: str, rtol: float = RTOL) -> None:
    off = ~torch.eye(a.shape[0], dtype=torch.bool)
    _close(a[off], b[off], rtol, f"{what} (off-diagonal)", float(b.abs().max()))
    _close(a.diagonal(), b.diagonal(), DIAG_RTOL, f"{what} (diagonal)")


@given(networks())
def test_kernels_are_finite_symmetric_and_psd(case: Case) -> None:
    k = case.net.kernel(case.x1)
    for name in ("nngp", "ntk"):
        a = getattr(k, name)
        assert a.shape == (len(case.x1), len(case.x1))
        assert torch.isfinite(a).all(), f"{name} has non-finite entries"
        assert torch.equal(a, a.T), f"{name}(x1, None) is not exactly symmetric"
        eig = torch.linalg.eigvalsh(a)
        assert float(eig.min()) >= -PSD_TOL * float(eig.abs().max()), (
            f"{name} is not PSD: smallest eigenvalue {float(eig.min()):.3e}"
        )
    # x2 = x1 agrees with x2 = None (the symmetric path)
    both = case.net.kernel(case.x1, case.x1)
    for name in ("nngp", "ntk"):
        _off_and_diag(getattr(both, name), getattr(k, name), f"{name}: x2=x1 vs None")


@given(networks(), st.sampled_from([1, 2, (1, 2), (3, 1)]))
def test_block_size_does_not_change_the_kernel(case: Case, block: int | tuple[int, int]) -> None:
    whole = case.net.kernel(case.x1, case.x2)
    blocked = case.net.kernel(case.x1, case.x2, block_size=block)
    square = case.net.kernel(case.x1)
    square_blocked = case.net.kernel(case.x1, block_size=block)
    for name in ("nngp", "ntk"):
        _close(getattr(blocked, name), getattr(whole, name), RTOL, f"{name} block {block}")
        _close(
            getattr(square_blocked, name),
            getattr(square, name),
            RTOL,
            f"{name}(x1, None) block {block}",
        )


@given(st.one_of(conv_networks(), networks()))
def test_compiled_path_equals_eager(case: Case) -> None:
    previous = nk.set_native(True)
    try:
        compiled = case.net.kernel(case.x1, case.x2)
        compiled_sym = case.net.kernel(case.x1)
        nk.set_native(False)
        eager = case.net.kernel(case.x1, case.x2)
        eager_sym = case.net.kernel(case.x1)
    finally:
        nk.set_native(previous)
    for name in ("nngp", "ntk"):
        _close(getattr(compiled, name), getattr(eager, name), NATIVE_RTOL, f"{name} compiled/eager")
        _off_and_diag(
            getattr(compiled_sym, name),
            getattr(eager_sym, name),
            f"{name}(x1) compiled vs eager",
            NATIVE_RTOL,
        )


@given(networks())
def test_kernel_diag_is_the_diagonal(case: Case) -> None:
    k = case.net.kernel(case.x1)
    diag = case.net.kernel_diag(case.x1)
    for name in ("nngp", "ntk"):
        _close(getattr(diag, name), getattr(k, name).diagonal(), DIAG_RTOL, f"{name} diag")
    _close(k.cov1, k.nngp.diagonal(), DIAG_RTOL, "cov1 vs the NNGP diagonal")
    k12 = case.net.kernel(case.x1, case.x2)
    _close(k12.cov1, diag.nngp, DIAG_RTOL, "cov1 of (x1, x2) vs kernel_diag")


@settings(max_examples=15)  # building twins and their Jacobians costs most here
@given(networks(), st.integers(1, 5), st.integers(0, 2**16))
def test_finite_twin_shapes(case: Case, width: int, seed: int) -> None:
    out_shape = case.net.out_shape(case.in_shape)
    model = case.net.module(
        case.in_shape,
        width=width,
        generator=torch.Generator().manual_seed(seed),
        dtype=torch.float64,
    )
    with torch.no_grad():
        out = model(case.x1)
    assert out.shape == (len(case.x1), *out_shape)
    assert out.dtype == torch.float64 and torch.isfinite(out).all()
    ntk = nk.empirical_ntk(model, case.x1, case.x2)
    assert ntk.shape == (len(case.x1), len(case.x2))
    assert torch.isfinite(ntk).all()
