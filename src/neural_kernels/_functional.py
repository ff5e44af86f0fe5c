"""``torch.func.functional_call`` made safe to call on one module from several threads.

``functional_call`` swaps the given tensors into the module's attributes for the length of
the call and swaps the originals back afterwards, so two threads calling it on the same
module at once would each see the other's tensors. One re-entrant lock per module
serialises those calls (different modules still run in parallel); the results are those
of a single-threaded run.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = ["functional_call", "locks_model", "module_lock"]

F = TypeVar("F", bound=Callable[..., Any])

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def _lock_for(model: nn.Module) -> threading.RLock:
    with _GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def module_lock(model: Any) -> AbstractContextManager[Any]:
    """The re-entrant lock of ``model`` (a no-op context for anything but a module)."""
    return _lock_for(model) if isinstance(model, nn.Module) else nullcontext()


def locks_model(fn: F) -> F:
    """Run ``fn(model, ...)`` under ``model``'s lock.

    ``fn`` reads the module's parameters, which another thread's :func:`functional_call` on
    the same module would swap meanwhile.
    """

    @functools.wraps(fn)
    def wrapper(model: Any, *args: Any, **kwargs: Any) -> Any:
        with module_lock(model):
            return fn(model, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def functional_call(
    model: nn.Module,
    parameters_and_buffers: Any,
    args: Any = None,
    kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> Any:
    """:func:`torch.func.functional_call` under the module's lock (same arguments)."""
    with _lock_for(model):
        return torch.func.functional_call(
            model, parameters_and_buffers, args, dict(kwargs or {}), **options
        )
