"""The digits set-up of :mod:`neural_kernels.dkm.experiment`: split, network, comparison."""

from __future__ import annotations

import math

import pytest
import torch

import neural_kernels as nk
from neural_kernels.dkm import experiment as ex


def test_stratified_split_is_balanced_disjoint_and_deterministic() -> None:
    labels = torch.arange(200) % 10
    train, test = ex.stratified_split(labels, 47, 60, seed=3)
    assert train.shape == (47,) and test.shape == (60,)
    assert len(set(train.tolist()) | set(test.tolist())) == 107
    counts = torch.bincount(labels[train], minlength=10)
    assert int(counts.min()) >= 4 and int(counts.max()) <= 5
    again = ex.stratified_split(labels, 47, 60, seed=3)
    assert torch.equal(again[0], train) and torch.equal(again[1], test)
    with pytest.raises(nk.HyperparameterError, match="at most 200 points"):
        ex.stratified_split(labels, 150, 60, seed=0)


def test_the_network_is_the_papers_setup() -> None:
    x = torch.randn(7, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    arch = nk.dkm.parse_network(ex.network(64, 10))
    torch.testing.assert_close(arch.input_full(x), x @ x.T / 64)
    assert len(arch.hidden) == 2 and arch.n_outputs == 10
    for gmap in (*arch.hidden, arch.output):
        assert isinstance(gmap.activation, nk.ReLU)
        assert gmap.dense.w_std == pytest.approx(math.sqrt(2.0))
        assert gmap.dense.b_std == pytest.approx(math.sqrt(0.1))
    targets = ex.one_hot_targets(torch.tensor([0, 9]), 10, torch.float64)
    assert float(targets[0, 0]) == pytest.approx(0.9) and float(targets[0, 1]) == -0.1


def test_compare_starts_every_nu_at_the_nngp() -> None:
    gen = torch.Generator().manual_seed(1)
    centres = 3 * torch.randn(3, 6, generator=gen, dtype=torch.float64)
    labels = torch.arange(45) % 3
    x = centres[labels] + torch.randn(45, 6, generator=gen, dtype=torch.float64)
    a, b = ex.standardise(x[:30], x[30:])
    assert torch.allclose(a.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-12)
    res = ex.compare(a, labels[:30], b, labels[30:], nus=(math.inf, 5.0), steps=5)
    assert res["inf"]["nu"] == "inf" and res["inf"]["kl"] == []
    assert res["5.0"]["objective_nngp"] == pytest.approx(res["inf"]["objective"], rel=1e-10)
    assert res["5.0"]["objective_rise"] > 0 and all(kl > 0 for kl in res["5.0"]["kl"])
    assert res["inf"]["test_accuracy"] > 0.9  # three separated blobs
