"""Helpers of the prediction tests: a small network, a PSD check, error assertions."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import neural_kernels as nk

F64 = torch.float64

#: The network of the shared ``problem`` fixture (``tests/predict/conftest.py``).
NET = nk.Sequential(
    nk.Dense(64, w_std=1.5, b_std=0.1), nk.ReLU(), nk.Dense(1, w_std=1.5, b_std=0.1)
)


def make_problem() -> dict[str, Any]:
    """Training points ``x`` (12, 5), test points ``xt`` (6, 5), targets ``y`` (12, 2) and
    the kernels ``kdd``, ``ktd``, ``ktt`` of ``NET`` on them (float64)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(12, 5, generator=g, dtype=F64)
    xt = torch.randn(6, 5, generator=g, dtype=F64)
    return {
        "x": x,
        "xt": xt,
        "y": torch.randn(12, 2, generator=g, dtype=F64),
        "kdd": NET.kernel(x),
        "ktd": NET.kernel(xt, x),
        "ktt": NET.kernel(xt),
    }


def assert_psd(cov: torch.Tensor, what: str) -> None:
    """Every trailing ``(m, m)`` matrix exactly symmetric and positive semi-definite."""
    covs = cov.reshape(-1, *cov.shape[-2:])
    for c in covs:
        assert torch.equal(c, c.T), f"{what}: not symmetric"
        evals = torch.linalg.eigvalsh(c)
        scale = max(float(evals.abs().max()), 1e-300)
        assert float(evals.min()) >= -1e-10 * scale, f"{what}: eigenvalue {float(evals.min())}"


def raises(cls: type, match: str, fn: Any, *args: Any, **kwargs: Any) -> str:
    """``fn(*args, **kwargs)`` raises ``cls`` (a ``NeuralKernelsError``); its message."""
    with pytest.raises(cls, match=match) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, nk.NeuralKernelsError)
    return str(info.value)
