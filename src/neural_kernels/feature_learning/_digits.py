"""The handwritten digits of scikit-learn, split and scaled as the feature-learning checks use.

``X / 16`` centred by the training mean; the models add their own bias column. Needs
scikit-learn (the ``demo``/``test`` extras).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["digits"]


def digits(n_train: int = 1200, n_test: int | None = None, seed: int = 0) -> tuple[Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)``: float64 inputs ``(N, 64)``, int64 labels.

    The 1797 examples are shuffled with ``seed``; the first ``n_train`` train, the next
    ``n_test`` (default: all the rest) test.
    """
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]  # optional extra

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order] / 16.0, y[order]
    end = len(y) if n_test is None else n_train + n_test
    xtr, xte = x[:n_train], x[n_train:end]
    mean = xtr.mean(axis=0)
    return (
        torch.as_tensor(xtr - mean),
        torch.as_tensor(y[:n_train]).long(),
        torch.as_tensor(xte - mean),
        torch.as_tensor(y[n_train:end]).long(),
    )
