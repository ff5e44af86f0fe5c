"""The public result ``Kernel``: lean, saved and loaded, with deprecated names kept."""

from __future__ import annotations

import io
import pickle

import pytest
import torch

import neural_kernels as nk


def _kernel() -> nk.Kernel:
    x = torch.randn(4, 3, dtype=torch.float64)
    return nk.Sequential(nk.Dense(4), nk.ReLU(), nk.Dense(1)).kernel(x)


def test_fields_and_shapes() -> None:
    k = _kernel()
    assert k.nngp.shape == k.ntk.shape == (4, 4)
    assert k.cov1.shape == (4,) and k.cov2 is k.cov1
    assert k.shape1 == (1,) and k.is_gaussian and not k.self_pairs
    assert k.dtype == torch.float64 and k.device.type == "cpu"
    torch.testing.assert_close(k.cov1, k.nngp.diagonal())


def test_torch_save_and_load_with_weights_only() -> None:
    k = _kernel()
    buffer = io.BytesIO()
    torch.save(k, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)  # torch's default: weights_only=True
    assert isinstance(loaded, nk.Kernel)
    assert torch.equal(loaded.nngp, k.nngp) and torch.equal(loaded.ntk, k.ntk)
    assert loaded.shape1 == k.shape1 and loaded.layout == k.layout
    again = pickle.loads(pickle.dumps(k))
    assert torch.equal(again.cov1, k.cov1)


def test_diagonal_is_a_deprecated_name_of_self_pairs() -> None:
    d = nk.Sequential(nk.Dense(2)).kernel_diag(torch.randn(3, 2))
    assert d.self_pairs
    with pytest.warns(DeprecationWarning, match="self_pairs"):
        assert d.diagonal
    with pytest.warns(DeprecationWarning, match="self_pairs"):
        made = nk.Kernel(d.nngp, diagonal=True)
    assert made.self_pairs


def test_engine_state_is_gone_with_a_warning() -> None:
    k = _kernel()
    with pytest.warns(DeprecationWarning, match="KernelBlock"):
        q1, q2 = k.marginals()
    assert q1.shape == (4, 1) and q2.shape == (1, 4)
    with pytest.raises(AttributeError):
        k.no_such_field  # noqa: B018


def test_to_moves_every_tensor() -> None:
    k = _kernel().to(torch.float32)
    assert k.nngp.dtype == k.ntk.dtype == k.cov1.dtype == torch.float32
    assert k.cov2 is k.cov1


def test_to_diagonal_layout_keeps_same_position_entries() -> None:
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    net = nk.Sequential(nk.Conv(3, padding="same"), nk.ReLU())
    full = net.kernel(x, layout="full")
    diag = net.kernel(x, layout="diagonal")
    assert full.nngp.shape == (3, 3, 4, 4, 4, 4) and diag.nngp.shape == (3, 3, 4, 4)
    torch.testing.assert_close(full.to_diagonal_layout().nngp, diag.nngp)
    torch.testing.assert_close(full.to_diagonal_layout().cov1, diag.cov1)
