"""What one call of the empirical NTK learns about a model before computing, kept for the next.

Every call first probes the model on two examples (two forward passes: the outputs per
example, no buffer changes, not random) and, for the structured strategy, classifies its
parameters (a forward and a backward pass: :func:`~._structured.make_plan`). Both depend
on the model's structure, not on the values of its parameters or inputs, so they are kept
per model under a key of everything they depend on: the modules (names, types, training
flags, hooks), the trainable and constant tensors' names, shapes and dtypes, and the
inputs' feature shape, dtype and device. Another structure is another key. A call that
fails with a ``ModelError`` under a cached probe (e.g. a forward pass that no longer
matches the plan, after a change the key does not see) drops it and probes afresh
(:func:`forget`), where a lasting fault raises again.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor, nn

from ._model import Prepared
from ._structured import Plan

#: Keys kept per model (its newest ones).
MAX_KEYS = 8

_LOCK = threading.Lock()
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], Probed]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class Probed:
    """What the probe found: ``k`` outputs per example, the structured plan (or ``None``)."""

    k: int
    plan: Plan | None


def key(prep: Prepared, x: Tensor, strategy: str) -> tuple[Any, ...]:
    """Everything the probe and the plan depend on, for a model and inputs like ``x``."""
    modules = tuple(
        (name, type(m), m.training, tuple(m._forward_hooks), tuple(m._forward_pre_hooks))
        for name, m in prep.model.named_modules()
    )
    params = tuple((n, tuple(v.shape), v.dtype) for n, v in prep.params.items())
    consts = tuple((n, tuple(v.shape), v.dtype) for n, v in prep.constants.items())
    return (strategy, modules, params, consts, tuple(x.shape[1:]), x.dtype, x.device, prep.dtype)


def lookup(model: nn.Module, k: tuple[Any, ...]) -> Probed | None:
    """The cached probe for ``k``, with a plan of its own (a call's block choices mutate it)."""
    with _LOCK:
        found = _CACHE.get(model, {}).get(k)
    if found is None or found.plan is None:
        return found
    return Probed(found.k, replace(found.plan, as_dot=set(found.plan.as_dot)))


def store(model: nn.Module, k: tuple[Any, ...], probed: Probed) -> None:
    """Keep ``probed`` for ``k`` (the model's oldest key goes beyond :data:`MAX_KEYS`).

    Its plan is not used again by the caller; :func:`lookup` hands out copies.
    """
    with _LOCK:
        entries = _CACHE.setdefault(model, {})
        entries.pop(k, None)
        entries[k] = probed
        while len(entries) > MAX_KEYS:
            entries.pop(next(iter(entries)))


def forget(model: nn.Module, k: tuple[Any, ...]) -> None:
    """Drop the cached probe for ``k``."""
    with _LOCK:
        _CACHE.get(model, {}).pop(k, None)
