"""What the predictors return: :class:`Gaussian`, :class:`Outputs`, :class:`Predictions`."""

from __future__ import annotations

import collections
import functools
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

from torch import Tensor

__all__ = ["Gaussian", "Outputs", "Predictions"]


class Gaussian(NamedTuple):
    """Mean and covariance of the outputs on a set of points.

    Attributes:
        mean: shape ``(m, k)`` (``(m,)`` for 1-D targets), with a leading time axis for
            several times.
        cov: shape ``(m, m)`` (one covariance shared by the ``k`` output columns), with a
            leading time axis for several times; ``None`` when it was not computed.

    """

    mean: Tensor
    cov: Tensor | None = None

    @property
    def covariance(self) -> Tensor | None:
        """Neural Tangents' name for :attr:`cov`."""
        return self.cov


class Outputs(NamedTuple):
    """Outputs on the training and test points (of :func:`gradient_descent`).

    Unpacks like Neural Tangents' ``(fx_train_t, fx_test_t)``.

    Attributes:
        train: outputs on the training points, shape ``(n, k)`` (time axis first).
        test: outputs on the test points, ``(m, k)``; ``None`` without ``k_test_train``.

    """

    train: Tensor
    test: Tensor | None = None


class Predictions(tuple):  # type: ignore[type-arg]
    """The predictions for several kernels: a named tuple of :class:`Gaussian`.

    Its fields are the kernel names in the order asked for (``get=("ntk", "nngp")``
    gives fields ``ntk, nngp``; ``get=None`` the default order ``nngp, ntk[, ntkgp]``),
    so that it unpacks like Neural Tangents' tuples and reads by attribute::

        fx_nngp, fx_ntk = predict_fn(t, get=("nngp", "ntk"))
        predict_fn(t).ntk.mean

    Reading it like the dict that earlier versions returned (``out["ntk"]``,
    ``"ntk" in out``, ``keys()``, ``values()``, ``items()``, ``get()``) still works but is
    deprecated (a ``DeprecationWarning``); iterating over it yields the Gaussians, not
    the names (``out._fields`` holds the names).
    """

    __slots__ = ()
    _fields: tuple[str, ...]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            _warn_by_name(f"predictions[{key!r}]", f"predictions.{key}")
            if key not in self._fields:
                raise KeyError(key)
            return tuple.__getitem__(self, self._fields.index(key))
        return tuple.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            _warn_by_name(f"{key!r} in predictions", "predictions._fields")
            return key in self._fields
        return tuple.__contains__(self, key)

    def keys(self) -> tuple[str, ...]:
        """The kernel names (deprecated: use ``_fields``)."""
        _warn_by_name("predictions.keys()", "predictions._fields")
        return self._fields

    def values(self) -> tuple[Gaussian, ...]:
        """The Gaussians (deprecated: the predictions are that tuple)."""
        _warn_by_name("predictions.values()", "tuple(predictions)")
        return tuple(self)

    def items(self) -> Iterator[tuple[str, Gaussian]]:
        """Pairs ``(name, Gaussian)`` (deprecated: use ``_asdict().items()``)."""
        _warn_by_name("predictions.items()", "zip(predictions._fields, predictions)")
        return zip(self._fields, tuple(self), strict=True)

    def get(self, key: str, default: Any = None) -> Any:
        """The Gaussian of ``key`` or ``default`` (deprecated: use ``getattr``)."""
        _warn_by_name(f"predictions.get({key!r})", f"getattr(predictions, {key!r}, default)")
        return tuple(self)[self._fields.index(key)] if key in self._fields else default

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_predictions, (self._fields, tuple(self)))


def _warn_by_name(old: str, new: str) -> None:
    warnings.warn(
        f"{old}: predictions for several kernels are a named tuple now; reading them like "
        f"a dict is deprecated. Use {new} (or unpack them in the order asked).",
        DeprecationWarning,
        stacklevel=3,
    )


@functools.cache
def _predictions_type(names: tuple[str, ...]) -> type[Predictions]:
    """The :class:`Predictions` class with fields ``names`` (one class per order)."""
    base = collections.namedtuple("Predictions", names)  # type: ignore[misc]
    return type("Predictions", (Predictions, base), {"__slots__": (), "__module__": __name__})


def _rebuild_predictions(names: tuple[str, ...], values: tuple[Gaussian, ...]) -> Predictions:
    return _predictions_type(tuple(names))(*values)


def format_predictions(out: dict[str, Gaussian], single: bool) -> Gaussian | Predictions:
    """One Gaussian, or a :class:`Predictions` named tuple in the order of ``out``."""
    if single:
        return next(iter(out.values()))
    return _predictions_type(tuple(out))(*out.values())
