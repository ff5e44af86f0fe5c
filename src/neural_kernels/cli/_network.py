"""A network from a TOML file: one ``[[layer]]`` table per layer, in order.

::

    [[layer]]
    type = "Dense"          # any layer of neural_kernels (nk.Dense, nk.Conv, ...)
    out_features = 512
    w_std = 1.5
    [[layer]]
    type = "ReLU"

The layers are chained by :class:`~neural_kernels.Sequential`; the other keys are the
layer's keyword arguments (lists become tuples, e.g. ``kernel_size = [3, 3]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._command import UsageError
from ._config import read_toml

__all__ = ["load_network"]


def load_network(path: str) -> Any:
    """The ``Sequential`` network described by the TOML file ``path``."""
    import neural_kernels as nk
    from neural_kernels import layers

    where = f"--net {path}"
    table = read_toml(Path(path).expanduser())
    specs = table.get("layer")
    if not isinstance(specs, list) or not specs:
        raise UsageError(f"{where}: no [[layer]] tables; see 'neural-kernels kernel --help'")
    built = []
    for i, spec in enumerate(specs):
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(spec).items()}
        name = kwargs.pop("type", None)
        if name not in layers.__all__:
            raise UsageError(
                f"{where}: layer {i + 1} has type {name!r}; use a layer of neural_kernels "
                "such as 'Dense', 'ReLU', 'Conv', 'GlobalAvgPool'"
            )
        try:
            built.append(getattr(layers, name)(**kwargs))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{where}: layer {i + 1} ({name}): {exc}") from exc
    return nk.Sequential(*built)
