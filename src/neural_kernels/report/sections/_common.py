"""What every section shares: the :class:`Context`, the sizes, small helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

from ..progress import Progress

__all__ = ["COLORS", "Context", "Sizes", "floats", "mean_of", "scores", "sizes_for"]

T = TypeVar("T")

#: Line colours of the plots, one per curve.
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


@dataclass(frozen=True)
class Sizes:
    """How big each part of the report is (the default run and ``--quick``)."""

    cnn_train: int
    cnn_test: int
    finite_train: int
    finite_test: int
    widths: tuple[int, ...]
    steps: int
    gauss_widths: tuple[int, ...]
    gauss_seeds: int
    probe: int


def sizes_for(quick: bool) -> Sizes:
    """The sizes of the default run, or of ``--quick``."""
    if quick:
        return Sizes(100, 50, 100, 50, (64, 128, 256, 512), 100, (2, 16, 256), 200, 16)
    return Sizes(
        600, 300, 300, 150, (64, 128, 256, 512, 1024, 2048, 4096), 100, (2, 8, 64, 512), 500, 32
    )


@dataclass
class Context:
    """What the sections share: the data (standardised), the targets and the FC kernels."""

    x_train: Tensor  # (n, features), the demo's dtype
    x_test: Tensor
    targets: Tensor  # (n, classes), one-hot minus 1/classes
    targets_test: Tensor
    y_test: Tensor  # (m,) class indices
    n_classes: int
    net: Any  # the demo's fully connected network
    k_train: Any  # its kernels, train x train
    k_test: Any  # test x train
    diag_reg: float
    seed: int
    quick: bool
    quiet: bool
    chance: float
    _shared: dict[str, Any] = field(default_factory=dict, repr=False)

    def shared(self, key: str, compute: Callable[[Context], T]) -> T:
        """``compute(self)``, computed once for every section that asks for ``key``."""
        if key not in self._shared:
            self._shared[key] = compute(self)
        return self._shared[key]  # type: ignore[no-any-return]

    def progress(self, label: str) -> Progress:
        """A progress callback for a long step (silent with ``--quiet``)."""
        return Progress(label, enabled=not self.quiet)


def floats(t: Any) -> list[float]:
    return [float(v) for v in torch.as_tensor(t).reshape(-1)]


def mean_of(prediction: Any) -> Tensor:
    """The mean of a single-kernel prediction of :mod:`neural_kernels.predict`."""
    return prediction.mean  # type: ignore[no-any-return]


def scores(mean: Tensor, ctx_targets: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Test accuracy and test MSE of predictions ``mean`` (..., m, k)."""
    acc = (mean.argmax(-1) == y).double().mean(-1)
    mse = ((mean - ctx_targets) ** 2).mean((-2, -1))
    return acc, mse
