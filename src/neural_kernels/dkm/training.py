"""Fitting a deep kernel machine: Adam (full batch or minibatches) or L-BFGS.

The parameters are the Cholesky factors of the learned Grams, the output layer's
``q(f)`` (sparse or categorical DKMs) and a learned noise variance; the loss is minus
the objective. Adam uses the DKM authors' settings (``lr = 1e-2``, ``betas = (0.8,
0.9)``); L-BFGS uses a strong-Wolfe line search, full batch, and does not decrease the
objective. ``model.history`` records the full-data objective before every step and at
the end (for minibatches: the minibatch estimate before every step).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ..errors import HyperparameterError, describe

if TYPE_CHECKING:
    from .model import DKM

__all__ = ["fit"]

WHERE = "nk.dkm.DKM.fit"
OPTIMIZERS = ("adam", "lbfgs")

Callback = Callable[[int, int, float], None]


class _Bar:
    """A tqdm bar on stderr when tqdm is installed and stderr is a terminal, else nothing."""

    def __init__(self, steps: int) -> None:
        self._bar: Any = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm  # type: ignore[import-untyped]
            except ImportError:  # pragma: no cover - tqdm is in the demo extra
                return
            self._bar = tqdm(total=steps, desc="DKM fit", unit="step", file=sys.stderr)

    def __call__(self, step: int, steps: int, objective: float) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(objective=f"{objective:.4g}")
            if step == steps:
                self._bar.close()


def _callback(progress: bool | Callback, steps: int) -> Callback | None:
    if callable(progress):
        return progress
    return _Bar(steps) if progress else None


def _check(steps: object, optimizer: object, lr: object, batch_size: object, n: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise HyperparameterError(describe(WHERE, f"steps={steps!r}", "Pass an integer >= 0."))
    if optimizer not in OPTIMIZERS:
        raise HyperparameterError(
            describe(WHERE, f"optimizer={optimizer!r}", "Pass 'adam' or 'lbfgs'.")
        )
    if lr is not None and (not isinstance(lr, (int, float)) or not lr > 0):
        raise HyperparameterError(describe(WHERE, f"lr={lr!r}", "Pass a positive step size."))
    if batch_size is not None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise HyperparameterError(
                describe(WHERE, f"batch_size={batch_size!r}", "Pass a positive integer or None.")
            )
        if optimizer == "lbfgs":
            raise HyperparameterError(
                describe(
                    WHERE,
                    "optimizer='lbfgs' with a batch_size",
                    "L-BFGS needs the full-batch objective: use optimizer='adam' for minibatches.",
                )
            )


#: L-BFGS stops when a step raises the objective by at most this, relative (L-BFGS-B's
#: default ``ftol``): past it the line search only spends evaluations on rounding.
FTOL = 2.220446049250313e-09


def _converged(before: float, after: float, ftol: float) -> bool:
    return after - before <= ftol * max(abs(before), abs(after), 1.0)


def fit(
    model: DKM,
    x: Any,
    y: Any,
    *,
    steps: int = 100,
    optimizer: str = "adam",
    lr: float | None = None,
    batch_size: int | None = None,
    warm_start: bool = False,
    progress: bool | Callback = False,
    ftol: float = FTOL,
) -> list[float]:
    """Maximise ``model.objective()`` over its parameters.

    Args:
        model: the DKM.
        x: training inputs ``(n, d)``.
        y: targets.
        steps: optimiser steps (L-BFGS: iterations, each with its line search).
        optimizer: ``"adam"`` or ``"lbfgs"`` (see ``ftol``).
        lr: step size (default ``1e-2`` for Adam, ``1`` for L-BFGS).
        batch_size: minibatch size for Adam (``None``: full batch); each epoch visits
            the training points in a fresh random order.
        warm_start: continue from the current parameters (same ``x``, ``y`` as before)
            instead of starting again from the NNGP.
        progress: ``True`` for a progress bar on a terminal, or a callback
            ``progress(step, steps, objective)``.
        ftol: L-BFGS stops once a step raises the objective by at most ``ftol`` times
            its size (``0``: run every step).

    Returns:
        ``model.history``, the objective before each step and at the end.

    """
    if not (warm_start and model.is_initialized):
        model.initialize(x, y)
    n = model._data()[0].shape[0]
    _check(steps, optimizer, lr, batch_size, n)
    if not isinstance(ftol, (int, float)) or not ftol >= 0:
        raise HyperparameterError(describe(WHERE, f"ftol={ftol!r}", "Pass a number >= 0."))
    if batch_size is not None and not model.sparse and model.output is None:
        model.objective(torch.arange(1))  # raises the full Gaussian DKM's minibatch error
    params = [p for p in model.parameters() if p.requires_grad]
    callback = _callback(progress, steps)
    history = model.history
    if not params:  # every layer pinned at the NNGP (nu = inf), nothing to learn
        opt: torch.optim.Optimizer | None = None
    elif optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            params,
            lr=1.0 if lr is None else lr,
            max_iter=1,
            max_eval=25,
            history_size=50,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-12,
            tolerance_change=1e-14,
        )
    else:
        opt = torch.optim.Adam(params, lr=1e-2 if lr is None else lr, betas=(0.8, 0.9))
    gen = torch.Generator().manual_seed(model.seed)
    order = torch.randperm(n, generator=gen)
    cursor = 0

    def closure() -> torch.Tensor:
        model.zero_grad()
        loss = -model.objective()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    for step in range(1, steps + 1 if params else 1):
        if opt is None:
            break
        if optimizer == "lbfgs":
            value = -float(torch.as_tensor(opt.step(closure)).detach())  # type: ignore[arg-type]
            if history and _converged(history[-1], value, ftol):
                break  # the previous step gained nothing: stop, as L-BFGS-B's ftol does
        else:
            index = None
            if batch_size is not None and batch_size < n:
                if cursor + batch_size > n:
                    order, cursor = torch.randperm(n, generator=gen), 0
                index = order[cursor : cursor + batch_size]
                cursor += batch_size
            opt.zero_grad()
            objective = model.objective(index)
            (-objective).backward()  # type: ignore[no-untyped-call]
            opt.step()
            value = float(objective.detach())
        history.append(value)
        if callback is not None:
            callback(step, steps, value)
    with torch.no_grad():
        history.append(float(model.objective()))
    return history
