"""Parsing a network into the input layer, the learned Gram maps and the output map.

The Gram maps reproduce ``net.kernel`` (the NNGP chain) layer by layer, and networks that
are not fully connected are refused naming the layer.
"""

from __future__ import annotations

import pytest
import torch

import neural_kernels as nk
from neural_kernels.dkm import parse_network

from .conftest import relu_net


def test_the_gram_chain_is_the_nngp(data) -> None:
    x, _ = data
    net = relu_net(hidden=3)
    arch = parse_network(net)
    assert len(arch.hidden) == 3 and arch.n_outputs == 1
    g = arch.input_full(x)
    for gmap in arch.hidden:
        g = gmap.full(g)
    k = arch.output.full(g)
    torch.testing.assert_close(k, net.kernel(x, get="nngp").nngp, rtol=1e-10, atol=1e-12)


def test_cross_and_diagonal_blocks_agree_with_the_full_map(data) -> None:
    x, _ = data
    arch = parse_network(
        nk.Sequential(
            nk.Dense(4), nk.Erf(), nk.Dense(4, b_std=0.2), nk.Erf(), nk.Dense(3, w_std=1.3)
        )
    )
    g = arch.input_full(x)
    gmap = arch.hidden[0]
    full = gmap.full(g)
    cross = gmap.cross(g[:5], torch.diagonal(g)[:5], torch.diagonal(g))
    torch.testing.assert_close(cross, full[:5])
    torch.testing.assert_close(gmap.diag(torch.diagonal(g)), torch.diagonal(full))
    torch.testing.assert_close(arch.input_cross(x[:5], x), g[:5])
    torch.testing.assert_close(arch.input_diag(x), torch.diagonal(g))


def test_nested_sequentials_and_identities_are_flattened() -> None:
    inner = nk.Sequential(nk.ReLU(), nk.Dense(4), nk.Identity())
    arch = parse_network(nk.Sequential(nk.Dense(4), inner, nk.ReLU(), nk.Dense(2)))
    assert len(arch.hidden) == 1 and arch.n_outputs == 2


@pytest.mark.parametrize(
    ("net", "match"),
    [
        (
            nk.Sequential(nk.Conv(4, 3), nk.ReLU(), nk.Dense(4), nk.ReLU(), nk.Dense(1)),
            "layer 0.*not fully connected",
        ),
        (
            nk.Sequential(nk.Dense(4), nk.ReLU(), nk.Dense(4), nk.Flatten(), nk.Dense(1)),
            "layer 3.*not fully connected",
        ),
        (
            nk.Sequential(nk.Dense(4), nk.ReLU(), nk.Erf(), nk.Dense(4), nk.Dense(1)),
            "two activations in a row",
        ),
        (nk.Sequential(nk.ReLU(), nk.Dense(4), nk.Dense(1)), "starts with"),
        (nk.Sequential(nk.Dense(4), nk.ReLU(), nk.Dense(4), nk.ReLU()), "ends with"),
        (nk.Sequential(nk.Dense(4), nk.ReLU(), nk.Dense(1)), "no Gram matrix to learn"),
        (torch.nn.Linear(3, 3), "not an nk layer"),
    ],
    ids=["conv", "flatten", "two_activations", "starts", "ends", "too_shallow", "torch"],
)
def test_networks_that_are_not_fully_connected_are_refused(net, match: str) -> None:
    with pytest.raises(nk.LayerCompatibilityError, match=match) as err:
        nk.dkm.DKM(net)
    assert "nk.dkm.DKM" in str(err.value) and "nk.Sequential(nk.Dense" in str(err.value)
