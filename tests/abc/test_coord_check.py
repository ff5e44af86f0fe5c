"""nk.abc.coord_check: flat under muP, growing under the standard parametrization."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import neural_kernels as nk

NET = nk.Sequential(
    nk.Dense(32, b_std=0.1), nk.Tanh(), nk.Dense(32, b_std=0.1), nk.Tanh(), nk.Dense(4)
)
WIDTHS = [32, 128, 512]


@functools.cache
def _check(parametrization: str) -> nk.abc.CoordCheck:
    torch.manual_seed(0)
    x = torch.randn(16, 8, dtype=torch.float64)
    y = torch.randn(16, 4, dtype=torch.float64)

    def make(n: int, p: object) -> torch.nn.Module:
        return NET.module((8,), width=n, parametrization=p, base_width=32, dtype=torch.float64)

    return nk.abc.coord_check(make, WIDTHS, x, y, steps=3, lr=0.5, parametrization=parametrization,
                              seeds=2)  # fmt: skip


def test_mup_activations_are_flat_and_standard_ones_grow() -> None:
    mup, sp = _check("mup"), _check("standard")
    assert mup.layers == sp.layers and len(mup.layers) == 5
    assert mup.values.shape == (3, 4, 5)
    assert np.all(np.abs(mup.slopes) < 0.2), mup.slopes
    assert np.max(sp.slopes) > 1.0, sp.slopes
    # at initialisation the two agree in the hidden layers: the growth comes from training
    assert np.all(np.abs(sp.slopes_at(0)[:4]) < 0.1)
    d = mup.as_dict()
    assert d["widths"] == WIDTHS and len(d["slopes"]) == 5


def test_plot_needs_matplotlib() -> None:
    pytest.importorskip("matplotlib", reason="needs the plot extra")
    import matplotlib

    matplotlib.use("Agg")
    ax = _check("mup").plot()
    assert len(ax.lines) == 5
    import matplotlib.pyplot as plt

    plt.close("all")


def test_bad_input() -> None:
    x, y = torch.randn(4, 8), torch.randn(4, 4)
    make = lambda n, p: NET.module((8,), width=n, parametrization=p)  # noqa: E731
    with pytest.raises(nk.HyperparameterError, match="widths"):
        nk.abc.coord_check(make, [64], x, y)
    with pytest.raises(nk.HyperparameterError, match="lr="):
        nk.abc.coord_check(make, [8, 16], x, y, lr=0.0)
    with pytest.raises(nk.HyperparameterError, match="loss"):
        nk.abc.coord_check(make, [8, 16], x, y, loss="hinge")
