"""The plan fold: requirements composed serially and in parallel, checked once."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest
import torch

import neural_kernels as nk
from neural_kernels.core import Facts, Requirements, Spatial, Variances
from neural_kernels.core.plan import plan_network


def _plan(net: nk.Layer, shape: tuple[int, ...]) -> Any:
    return plan_network(net, shape, lambda: "test")


def test_nested_serial_layers_are_flattened_into_steps() -> None:
    inner = nk.Sequential(nk.Dense(4), nk.ReLU())
    net = nk.Sequential(inner, nk.Sequential(inner, nk.Dense(1)))
    plan = _plan(net, (3,))
    assert [type(s.layer).__name__ for s in plan.steps] == [
        "Dense",
        "ReLU",
        "Dense",
        "ReLU",
        "Dense",
    ]
    assert plan.replays and not plan.mixing and plan.switch_after is None


def test_parallel_steps_compose_their_branches() -> None:
    net = nk.Sequential(
        nk.Conv(4, padding="same"),
        nk.Residual(nk.ReLU(), nk.AvgPool(1, padding="same")),  # pooling inside a branch
        nk.Flatten(),
        nk.Dense(1),
    )
    plan = _plan(net, (2, 5, 5))
    spatial = [s.spatial for s in plan.steps]
    assert Spatial.MIXING in spatial  # the Parallel step mixes positions
    assert plan.mixing
    # the branch's pooling needs the whole self-covariance: the step carries it
    parallel = next(s for s in plan.steps if isinstance(s.layer, nk.Parallel))
    assert parallel.variances is Variances.CARRY and not plan.replays
    # keep only same-position entries after the last mixing step, before Flatten
    assert plan.switch_after == [s.layer for s in plan.steps].index(parallel.layer)
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    full = nk.Sequential(*net.layers[:-2], nk.GlobalAvgPool())  # keeps the full layout
    assert net.kernel(x).nngp.shape == (3, 3)
    assert full.kernel(x).nngp.shape == (3, 3)


def test_spatial_output_keeps_the_full_layout() -> None:
    net = nk.Sequential(nk.Conv(4, padding="same"), nk.AvgPool(2))
    assert _plan(net, (2, 4, 4)).switch_after is None


def test_raw_inputs_take_the_first_layers_channel_axis() -> None:
    assert (
        _plan(nk.Sequential(nk.Conv(3, padding="same"), nk.Flatten()), (2, 4, 4)).input_channel_axis
        == 0
    )
    assert _plan(nk.Sequential(nk.Dense(3)), (2, 4, 4)).input_channel_axis == -1
    # branches reading the raw inputs must agree on their channel axis
    conflict = nk.Sequential(nk.FanOut(2), nk.Parallel(nk.Conv(3, padding="same"), nk.Dense(3)))
    with pytest.raises(nk.LayerCompatibilityError, match="channels"):
        _plan(conflict, (2, 4, 4))


def test_an_activation_on_raw_inputs_says_so() -> None:
    with pytest.raises(nk.LayerCompatibilityError, match="raw inputs"):
        nk.Sequential(nk.ReLU(), nk.Dense(1)).kernel(torch.randn(2, 3))
    with pytest.raises(nk.LayerCompatibilityError, match="follows a nonlinearity"):
        nk.Sequential(nk.Dense(3), nk.ReLU(), nk.Erf()).kernel(torch.randn(2, 3))


def test_tensors_of_every_layer_are_collected() -> None:
    w = torch.tensor(1.3, requires_grad=True)
    b = torch.tensor(0.2, requires_grad=True)
    net = nk.Sequential(nk.Dense(3, w_std=w), nk.Residual(nk.ReLU(), nk.Dense(3, b_std=b)))
    tensors = _plan(net, (3,)).tensors
    assert any(t is w for t in tensors) and any(t is b for t in tensors)
    assert {id(t) for t in net.hyperparameters()} == {id(w), id(b)}


class TestCorrelatedProducts:
    """``FanInProduct`` multiplies kernels only of independent branches."""

    def test_nonlinearities_of_the_same_values_are_refused(self) -> None:
        net = nk.Sequential(
            nk.Dense(4), nk.FanOut(2), nk.Parallel(nk.Sin(), nk.Erf()), nk.FanInProduct()
        )
        with pytest.raises(nk.LayerCompatibilityError, match="correlated"):
            net.kernel(torch.randn(3, 2))

    def test_raw_inputs_twice_are_refused(self) -> None:
        net = nk.Sequential(nk.FanOut(2), nk.Parallel(nk.Identity(), nk.Identity()))
        with pytest.raises(nk.LayerCompatibilityError, match="correlated"):
            nk.Sequential(net, nk.FanInProduct()).out_shape((3,))

    def test_a_residual_branch_shares_the_skip_connection(self) -> None:
        skip = nk.Sequential(nk.FanOut(2), nk.Parallel(nk.Dense(4), nk.Identity()), nk.FanInSum())
        net = nk.Sequential(
            nk.Dense(4), nk.FanOut(2), nk.Parallel(skip, nk.Identity()), nk.FanInProduct()
        )
        with pytest.raises(nk.LayerCompatibilityError, match="branches 0 and 1"):
            net.out_shape((3,))

    def test_independent_branches_are_accepted_and_match_twins(self) -> None:
        net = nk.Sequential(
            nk.Dense(4, b_std=0.2),
            nk.FanOut(2),
            nk.Parallel(nk.Sequential(nk.Dense(4), nk.Sin()), nk.Sequential(nk.Dense(4), nk.Erf())),
            nk.FanInProduct(),
            nk.Dense(64),  # 64 i.i.d. readouts a twin: 30 twins give 1920 draws
        )
        x = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        k = net.kernel(x, get="nngp").nngp
        g = torch.Generator().manual_seed(1)
        outs = []
        for _ in range(30):
            model = net.module((2,), width=512, generator=g, dtype=torch.float64)
            with torch.no_grad():
                outs.append(model(x))
        f = torch.cat(outs, dim=1)
        mc = f @ f.T / f.shape[1]
        assert float((mc - k).norm() / k.norm()) < 0.15  # measured 0.035-0.08 over 5 seeds


def test_legacy_class_attributes_still_declare_requirements() -> None:
    with pytest.warns(DeprecationWarning, match="Requirements"):

        class Old(nk.Layer):  # an earlier version's declarations
            input_channel_axis: ClassVar[int | None] = 0
            needs_full: ClassVar[bool] = True
            variance_replay: ClassVar[str] = "exact"

    assert Old.requirements.channel_axis == 0
    assert Old.requirements.spatial is Spatial.MIXING
    assert Old.requirements.variances is Variances.EXACT


def test_facts_compare_without_their_sources() -> None:
    a = Facts((3,), True, -1, sources=frozenset({object()}))
    b = dataclasses.replace(a, sources=frozenset())
    assert a == b
    assert Requirements() == Requirements(variances=Variances.CARRY)
