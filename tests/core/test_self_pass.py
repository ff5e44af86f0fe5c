"""The compiled self pass agrees with the per-layer one, and steps aside when it must.

With the compiled kernels on, the pairs ``(x_i, x_i)`` of a full-layout spatial network
go through ``nk_chain_*``'s self mode (norms from each pair itself, every layer's
variances read off as it goes); the per-layer pass with the kernels off is the
reference, for the self-pairs and for every recorded variance.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import neural_kernels as nk
from neural_kernels import _native
from neural_kernels.core import chain as chain_module
from neural_kernels.core import engine
from neural_kernels.errors import NonFiniteError

ROOT2 = math.sqrt(2.0)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """Records the compiled self pass's results and the variances the chunks replay."""
    record: dict[str, list[Any]] = {"fast": [], "steps": []}
    real_self = engine.native_self_pass
    real_chain = engine.native_chain

    def self_spy(*args: Any) -> Any:
        out = real_self(*args)
        record["fast"].append(out is not None)
        return out

    def chain_spy(
        plan: Any, geo: Any, fa: Any, fb: Any, s1: Any, s2: Any, outs: Any, **kw: Any
    ) -> Any:
        record["steps"].append([None if t is None else t.clone() for t in s1])
        return real_chain(plan, geo, fa, fb, s1, s2, outs, **kw)

    monkeypatch.setattr(engine, "native_self_pass", self_spy)
    monkeypatch.setattr(engine, "native_chain", chain_spy)
    yield record


def _pooled() -> nk.Sequential:
    conv = nk.Conv(5, 3, padding="same", w_std=ROOT2, b_std=0.1)
    return nk.Sequential(conv, nk.ReLU(), conv, nk.ReLU(), nk.AvgPool(2, 2), conv, nk.ReLU(),
                         nk.AvgPool(2, 2), nk.Flatten(), nk.Dense(3, w_std=ROOT2))  # fmt: skip


def _general() -> nk.Sequential:
    """Strided and dilated convolutions, a dual on its own, sum pooling, a global pool."""
    return nk.Sequential(
        nk.Conv(4, (3, 2), stride=(2, 1), padding="valid", w_std=1.3, b_std=0.2),
        nk.layers.ChannelsFirst(),  # a layer that changes nothing here: a skipped op
        nk.LeakyReLU(0.1),
        nk.Conv(4, 3, dilation=2, padding="same", w_std=1.1, b_std=0.3),
        nk.ABReLU(-0.5, 1.5),
        nk.SumPool(2, 1, padding="same"),
        nk.GlobalSumPool(),
        nk.Dense(7, w_std=0.9, b_std=0.1),
        nk.ReLU(),
        nk.Dense(1, w_std=1.2),
    )  # fmt: skip


def _gap_1d() -> nk.Sequential:
    return nk.Sequential(nk.Conv(3, 3, b_std=0.1), nk.ReLU(), nk.GlobalAvgPool(), nk.Dense(1))


CASES = {
    "pooled": (_pooled, (3, 8, 8)),
    "general": (_general, (2, 9, 7)),
    "gap_1d": (_gap_1d, (2, 11)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_self_pass_matches_the_per_layer_one(
    name: str, dtype: torch.dtype, seen: dict[str, list[Any]]
) -> None:
    make, shape = CASES[name]
    net = make()
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    fast = net.kernel(x, get=("nngp", "ntk"))
    assert seen["fast"] == [True]
    with _native.disabled():
        slow = net.kernel(x, get=("nngp", "ntk"))
    tol = 1e-13 if dtype == torch.float64 else 1e-5
    for a, b in ((fast.nngp, slow.nngp), (fast.ntk, slow.ntk)):
        assert a.shape == b.shape and _rel(a, b) <= tol
    # the self-pairs (the output's diagonal) and every layer's recorded variances
    fast_steps, slow_steps = seen["steps"]
    assert len(fast_steps) == len(slow_steps) == len(net.layers)
    for i, (a, b) in enumerate(zip(fast_steps, slow_steps, strict=True)):
        assert a.shape == b.shape, i
        assert _rel(a, b) <= tol, i


def test_second_inputs_get_their_own_compiled_pass(seen: dict[str, list[Any]]) -> None:
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64) * 2
    fast = _pooled().kernel(x1, x2, get="ntk")
    assert seen["fast"] == [True, True]
    with _native.disabled():
        slow = _pooled().kernel(x1, x2, get="ntk")
    assert _rel(fast.ntk, slow.ntk) <= 1e-13


def test_overflow_is_still_named_by_the_layer(seen: dict[str, list[Any]]) -> None:
    x = torch.full((3, 3, 8, 8), 1e152, dtype=torch.float64)
    x[1:] *= 1e2  # overflows in the later examples only, past the per-layer first one
    with pytest.raises(NonFiniteError) as fast:
        _pooled().kernel(x)
    assert seen["fast"] == [False]  # not finite: the per-layer pass says where
    with _native.disabled(), pytest.raises(NonFiniteError) as slow:
        _pooled().kernel(x)
    assert str(fast.value) == str(slow.value)


def test_one_example_and_autograd_keep_the_per_layer_pass(seen: dict[str, list[Any]]) -> None:
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    _pooled().kernel(x)
    assert seen["fast"] == []
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    _pooled().kernel(x).nngp.sum().backward()
    assert x.grad is not None and True not in seen["fast"]  # declined under autograd


def test_the_self_pass_runs_without_the_per_layer_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All but the first example: no per-layer dual runs on the others."""
    sizes: list[int] = []
    real = _native.abrelu_dual

    def counting(k: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        sizes.append(k.shape[0])
        return real(k, *args, **kwargs)

    monkeypatch.setattr(_native, "abrelu_dual", counting)
    x = torch.randn(7, 3, 8, 8, dtype=torch.float64)
    _pooled().kernel(x)
    assert sizes and max(sizes) == 1
    assert chain_module.native_self_pass is engine.native_self_pass


def test_batches_of_the_compiled_pass_keep_to_the_memory_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from neural_kernels._native.chain import Chain

    sizes: list[int] = []
    real = Chain.run_self

    def spy(self: Chain, cov: torch.Tensor, outs: Any, recs: Any) -> None:
        sizes.append(cov.shape[0])
        real(self, cov, outs, recs)

    monkeypatch.setattr(Chain, "run_self", spy)
    x = torch.randn(9, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    roomy = _pooled().kernel(x)
    assert sizes and max(sizes) == 2  # ceil(9 / SELF_BATCHES)
    sizes.clear()
    budget = 64 * 64 * 8 * torch.get_num_threads()  # one 64-position covariance per worker
    tight = _pooled().kernel(x, memory_budget=budget)
    assert sizes == [1] * 9
    assert _rel(tight.nngp, roomy.nngp) <= 1e-15 and _rel(tight.ntk, roomy.ntk) <= 1e-15


def test_kernel_diag_uses_the_compiled_pass(seen: dict[str, list[Any]]) -> None:
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    diag = _pooled().kernel_diag(x, get=("nngp", "ntk"))
    assert seen["fast"] == [True]
    with _native.disabled():
        slow = _pooled().kernel_diag(x, get=("nngp", "ntk"))
    full = _pooled().kernel(x, get=("nngp", "ntk"))
    for a, b, c in ((diag.nngp, slow.nngp, full.nngp), (diag.ntk, slow.ntk, full.ntk)):
        assert _rel(a, b) <= 1e-13 and torch.equal(a, torch.diagonal(c))
