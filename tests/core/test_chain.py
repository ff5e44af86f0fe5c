"""The compiled per-chunk layer chain agrees with the per-layer eager path.

``neural_kernels.core.chain`` runs a whole network in one compiled call per chunk of
example pairs when every step has a compiled op; the per-layer path with the compiled
kernels off (``set_native(False)``) is the reference. Networks of several depths and
readouts, NNGP and NTK, with and without biases, ``x2`` absent and given, float32
against float64, and the cases that must step aside to the per-layer path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import neural_kernels as nk
from neural_kernels import _native
from neural_kernels.core import chain as chain_module
from neural_kernels.core import engine
from neural_kernels.core.chain import FEW_CHANNELS, native_chain
from neural_kernels.core.inputs import Geometry
from neural_kernels.core.plan import plan_network

ROOT2 = math.sqrt(2.0)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.fixture
def chain_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the chunks run by the compiled chain (one entry per kernel call)."""
    calls: list[int] = []

    def spy(*args: Any, **kwargs: Any) -> Callable[..., None] | None:
        runner = native_chain(*args, **kwargs)
        calls.append(0)
        if runner is None:
            return None
        index = len(calls) - 1

        def counted(*a: int) -> None:
            calls[index] += 1
            runner(*a)

        return counted

    monkeypatch.setattr(engine, "native_chain", spy)
    yield calls


def _cnn(depth: int, b_std: float | None) -> nk.Sequential:
    conv = nk.Conv(6, 3, padding="same", w_std=ROOT2, b_std=b_std)
    readout = nk.Dense(2, w_std=1.0, b_std=b_std)
    return nk.Sequential(*[conv, nk.ReLU()] * depth, nk.GlobalAvgPool(), readout)


def _myrtle_like() -> nk.Sequential:
    conv = nk.Conv(5, 3, padding="same", w_std=ROOT2, b_std=0.0)
    return nk.Sequential(
        conv, nk.ReLU(), conv, nk.ReLU(), nk.AvgPool(2, 2), conv, nk.ReLU(), nk.AvgPool(2, 2),
        nk.Flatten(), nk.Dense(3, w_std=ROOT2),
    )  # fmt: skip


def _general() -> nk.Sequential:
    """Strided, dilated and valid convolutions, sum pooling, a dual after a Dense."""
    return nk.Sequential(
        nk.Conv(4, (3, 2), stride=(2, 1), padding="valid", w_std=1.3, b_std=0.2,
                parametrization="standard"),
        nk.LeakyReLU(0.1),
        nk.Conv(4, 3, dilation=2, padding="same", w_std=1.1, b_std=0.3),
        nk.ABReLU(-0.5, 1.5),
        nk.SumPool(2, 1, padding="same"),
        nk.GlobalSumPool(),
        nk.Dense(7, w_std=0.9, b_std=0.1, parametrization="standard"),
        nk.ReLU(),
        nk.Dense(1, w_std=1.2),
    )  # fmt: skip


def _check(
    net: nk.Layer,
    x1: torch.Tensor,
    x2: torch.Tensor | None,
    calls: list[int],
    get: Any = ("nngp", "ntk"),
    tol: float = 1e-13,
    **kwargs: Any,
) -> None:
    fast = net.kernel(x1, x2, get=get, **kwargs)
    assert calls and calls[-1] > 0, "the compiled chain did not run"
    with _native.disabled():
        slow = net.kernel(x1, x2, get=get, **kwargs)
    names = (get,) if isinstance(get, str) else get
    for name in names:
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.shape == b.shape
        assert _rel(a, b) <= tol, name


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("b_std", [None, 0.0, 0.3])
def test_cnn_chain_matches_eager(depth: int, b_std: float | None, chain_calls: list[int]) -> None:
    g = torch.Generator().manual_seed(depth)
    x1 = torch.randn(5, 2, 5, 4, generator=g, dtype=torch.float64)
    _check(_cnn(depth, b_std), x1, None, chain_calls)


@pytest.mark.parametrize("get", ["nngp", "ntk", ("nngp", "ntk")])
def test_chain_with_second_inputs(get: Any, chain_calls: list[int]) -> None:
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(4, 3, 6, 6, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, 3, 6, 6, generator=g, dtype=torch.float64) * 2
    _check(_cnn(2, 0.1), x1, x2, chain_calls, get=get)


@pytest.mark.parametrize("symmetric", [True, False])
def test_pooling_chain_matches_eager(symmetric: bool, chain_calls: list[int]) -> None:
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    x2 = None if symmetric else torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    _check(_myrtle_like(), x1, x2, chain_calls)


def test_general_geometry_chain_matches_eager(chain_calls: list[int]) -> None:
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(4, 2, 9, 7, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, 2, 9, 7, generator=g, dtype=torch.float64)
    _check(_general(), x1, x2, chain_calls)
    _check(_general(), x1, None, chain_calls)


def test_one_and_three_dimensional_chains(chain_calls: list[int]) -> None:
    g = torch.Generator().manual_seed(4)
    net1 = nk.Sequential(nk.Conv(3, 3, b_std=0.1), nk.Abs(), nk.Conv(3, 2, padding="valid"),
                         nk.ReLU(), nk.GlobalAvgPool(), nk.Dense(1))  # fmt: skip
    _check(net1, torch.randn(5, 2, 11, generator=g, dtype=torch.float64), None, chain_calls)
    net3 = nk.Sequential(nk.Conv(3, 2, b_std=0.1), nk.ReLU(), nk.AvgPool(2), nk.Flatten())
    _check(net3, torch.randn(3, 2, 4, 4, 4, generator=g, dtype=torch.float64), None, chain_calls)


def test_spatial_output_in_the_full_layout(chain_calls: list[int]) -> None:
    g = torch.Generator().manual_seed(5)
    net = nk.Sequential(nk.Conv(4, 3, b_std=0.2), nk.ReLU(), nk.Conv(4, 3, w_std=1.5))
    x1 = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64)
    _check(net, x1, None, chain_calls, layout="full")
    _check(net, x1, x1[:2] * 0.5, chain_calls, layout="full")


def test_chunks_of_many_tasks_and_two_threads(chain_calls: list[int]) -> None:
    g = torch.Generator().manual_seed(6)
    x1 = torch.randn(12, 2, 4, 4, generator=g, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _check(_cnn(2, 0.1), x1, None, chain_calls, block_size=5)
    finally:
        torch.set_num_threads(threads)
    assert chain_calls[0] > 3  # several chunks


def test_float32_chain_is_close_to_float64(chain_calls: list[int]) -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 3, 6, 6, generator=g, dtype=torch.float64)
    net = _myrtle_like()
    single = net.kernel(x.float(), get=("nngp", "ntk"))
    assert chain_calls and chain_calls[-1] > 0
    with _native.disabled():
        double = net.kernel(x, get=("nngp", "ntk"))
    assert single.nngp.dtype == torch.float32
    assert _rel(single.nngp.double(), double.nngp) < 1e-5
    assert _rel(single.ntk.double(), double.ntk) < 1e-5


def test_layers_without_an_op_keep_the_per_layer_path(chain_calls: list[int]) -> None:
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64)
    for net in (
        nk.Sequential(nk.Conv(3, 3), nk.Erf(), nk.GlobalAvgPool()),
        nk.Sequential(nk.Conv(3, 3, padding="circular"), nk.ReLU(), nk.GlobalAvgPool()),
        nk.Sequential(nk.Conv(3, 3), nk.ReLU(), nk.AvgPool(3, 1, padding="same",
                                                           normalize_edges=True), nk.Flatten()),
        nk.Sequential(nk.Conv(3, 3, w_std=torch.tensor(1.5, dtype=torch.float64)), nk.ReLU(),
                      nk.GlobalAvgPool()),
    ):  # fmt: skip
        fast = net.kernel(x, get=("nngp", "ntk"))
        assert chain_calls[-1] == 0
        with _native.disabled():
            slow = net.kernel(x, get=("nngp", "ntk"))
        assert _rel(fast.ntk, slow.ntk) <= 1e-13


def test_spatial_steps_after_the_switch_to_same_positions_decline(
    chain_calls: list[int],
) -> None:
    """A convolution after the last pooling runs on same-position entries only, per layer."""
    net = nk.Sequential(nk.Conv(3, 3, b_std=0.1), nk.ReLU(), nk.AvgPool(2), nk.Conv(3, 2),
                        nk.ReLU(), nk.Flatten(), nk.Dense(1))  # fmt: skip
    net.kernel(torch.randn(3, 2, 6, 6, dtype=torch.float64))
    assert chain_calls[-1] == 0


def test_autograd_and_disabled_kernels_skip_the_chain(chain_calls: list[int]) -> None:
    net = _cnn(1, 0.1)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    k = net.kernel(x, get="ntk")
    k.ntk.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert not chain_calls or chain_calls[-1] == 0
    with _native.disabled():
        net.kernel(x.detach(), get="ntk")
    assert chain_calls[-1] == 0


def test_other_devices_step_aside() -> None:
    """Tensors off the CPU (CUDA alike; the meta device here) get no compiled chain."""
    net = _cnn(2, 0.1)
    plan = plan_network(net, (2, 4, 4), lambda: "test")
    geo = Geometry((2, 4, 4), 0, (4, 4), "full")
    for device in ("meta", "cpu"):
        f = torch.zeros(3, 16, 2, dtype=torch.float64, device=device)
        v = [torch.ones(3, 4, 4, dtype=torch.float64, device=device)] * len(plan.steps)
        out = [torch.empty(3, 3, dtype=torch.float64, device=device)]
        runner = native_chain(plan, geo, f, f, v, v, out)
        assert (runner is None) == (device == "meta")


def test_upper_runner_skips_the_pairs_on_and_below_the_diagonal() -> None:
    """``upper=True`` writes the pairs ``i < j`` exactly as without it, and no other pair."""
    net = _cnn(2, 0.1)
    x = torch.randn(6, 2, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    plan = plan_network(net, (2, 4, 4), lambda: "test")
    geo = Geometry((2, 4, 4), 0, (4, 4), "full")
    f = x.reshape(6, 2, 16).transpose(1, 2)
    steps: list[torch.Tensor | None] = []
    engine._self_pass(plan, geo, f, True, None, engine._Where(net, "kernel"), None, steps)
    runs = {}
    for upper in (False, True):
        outs = [torch.full((6, 6), float("nan"), dtype=torch.float64) for _ in range(2)]
        runner = native_chain(plan, geo, f, f, steps, steps, outs, upper=upper)
        assert runner is not None
        runner(0, 4, 0, 6)  # a chunk across the diagonal
        runner(4, 6, 4, 6)
        runs[upper] = outs
    ran = torch.ones(6, 6, dtype=torch.bool)
    ran[4:, :4] = False
    strict = torch.ones(6, 6, dtype=torch.bool).triu(1)
    for full, upper in zip(runs[False], runs[True], strict=True):
        assert bool(torch.isfinite(full[ran]).all())
        assert torch.equal(upper[strict], full[strict])
        assert bool(upper[~strict].isnan().all())


@pytest.mark.parametrize("channels", [1, FEW_CHANNELS, FEW_CHANNELS + 1])
def test_input_pairs_from_features_and_from_the_gram_product(
    channels: int, chain_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to FEW_CHANNELS input channels the compiled call forms each pair's input
    entries itself, above that it reads each chunk's Gram product: both match eager."""
    formed: list[int] = []
    real = chain_module.input_features

    def spy(f: torch.Tensor, scale: bool) -> torch.Tensor:
        formed.append(f.shape[-1])
        return real(f, scale)

    monkeypatch.setattr(chain_module, "input_features", spy)
    g = torch.Generator().manual_seed(channels)
    x1 = torch.randn(5, channels, 8, 6, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, channels, 8, 6, generator=g, dtype=torch.float64)
    _check(_cnn(2, 0.2), x1, None, chain_calls)
    _check(_myrtle_like(), x1, x2, chain_calls)
    assert bool(formed) == (channels <= FEW_CHANNELS)
