"""The model and the options of an empirical kernel, read and checked once.

* :func:`parse_trace`, :func:`parse_budget` and :func:`read_inputs` check the options
  and the inputs of every public function.
* :func:`prepare` reads a model once: its trainable parameters (the ones the NTK
  differentiates), every other parameter and buffer (constants), the computation dtype.
* :func:`check_modules` and :func:`probe` refuse models whose examples are not
  independent or whose forward pass is random or changes its buffers.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._functional import functional_call
from .._validation import as_tensor, check_float_dtype, check_pair
from ..errors import (
    HyperparameterError,
    InputTypeError,
    ModelError,
    NonFiniteError,
    ShapeError,
    describe,
)

#: Default working memory of an empirical kernel, in bytes (besides its output).
DEFAULT_BUDGET = 1 << 30
#: Output modes: the mean over outputs (the default), their sum, or the full blocks.
TRACE_MODES = ("mean", "sum", "full")
#: The default ``trace_outputs`` of every empirical kernel: the per-output kernel.
DEFAULT_TRACE = "mean"


def parse_trace(trace_outputs: Any, where: str) -> str:
    """Normalise ``trace_outputs`` to ``"mean"``, ``"sum"`` or ``"full"``.

    ``"mean"`` (the default) is the per-output kernel that :mod:`neural_kernels.predict`
    and the closed forms describe (Neural Tangents' traced kernel). The older spellings
    keep their meaning: ``True`` is ``"sum"`` (the trace over outputs) and ``False`` is
    ``"full"``.
    """
    if isinstance(trace_outputs, bool):
        return "sum" if trace_outputs else "full"
    if isinstance(trace_outputs, str) and trace_outputs in TRACE_MODES:
        return trace_outputs
    raise HyperparameterError(
        describe(
            where,
            f"trace_outputs={trace_outputs!r}",
            'Use "mean" (the per-output kernel, the default), "sum" (the trace over '
            'outputs; True is the same), or "full" (the (n1, n2, k, k) blocks; False is '
            "the same).",
        )
    )


def parse_budget(memory_budget: Any, where: str) -> int:
    """A positive number of bytes (``None``: :data:`DEFAULT_BUDGET`)."""
    if memory_budget is None:
        return DEFAULT_BUDGET
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float)):
        raise HyperparameterError(
            describe(
                where, f"memory_budget={memory_budget!r}", "Pass a number of bytes, e.g. 2**30."
            )
        )
    if not math.isfinite(memory_budget) or memory_budget <= 0:
        raise HyperparameterError(
            describe(where, f"memory_budget={memory_budget!r}", "Pass a positive number of bytes.")
        )
    return int(memory_budget)


def _one_input(x: Any, name: str, where: str) -> Tensor:
    if isinstance(x, Tensor) and not (x.is_floating_point() or x.is_complex()):
        t = x if x.dtype != torch.bool else x.to(torch.get_default_dtype())
    else:  # floats (and arrays): checked finite; integer token ids stay integers
        t = as_tensor(x, name, where)
    if t.ndim < 1 or t.shape[0] == 0:
        raise ShapeError(
            describe(
                where,
                f"{name} has shape {tuple(t.shape)}",
                "Pass a batch of shape (n, *features) with n >= 1; for one example use x[None].",
            )
        )
    return t.detach()


def read_inputs(x1: Any, x2: Any, where: str) -> tuple[Tensor, Tensor | None]:
    """Check ``x1`` (and ``x2``): batches, finite, same feature shape and device."""
    a = _one_input(x1, "x1", where)
    if x2 is None:
        return a, None
    b = _one_input(x2, "x2", where)
    if a.is_floating_point() == b.is_floating_point():
        a, b = check_pair(a, b, where)
    else:
        check_pair(a.float(), b.float(), where)
    return a, b


# ----------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A model read once: what is differentiated, what is constant, in which dtype.

    Attributes:
        model: the module (called with :func:`torch.func.functional_call`).
        names: names of the trainable parameters (``requires_grad=True``), in order.
        params: their values (detached, in ``dtype``).
        constants: every other parameter and every buffer (floating ones in ``dtype``).
        dtype: the computation dtype.
        device: the parameters' device.
        where: the public function, for messages.

    """

    model: nn.Module
    names: tuple[str, ...]
    params: dict[str, Tensor]
    constants: dict[str, Tensor]
    dtype: torch.dtype
    device: torch.device
    where: str

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return sum(v.numel() for v in self.params.values())

    def call(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """The model's outputs on ``x`` with ``params`` (trainable ones) substituted."""
        out = functional_call(self.model, {**self.constants, **params}, (x,))
        if not isinstance(out, Tensor):
            raise ModelError(
                describe(
                    self.where,
                    f"the model returned {type(out).__name__}, not a tensor",
                    "Wrap it so that forward returns one tensor of shape (n, *outputs).",
                )
            )
        return out

    def flat(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """Outputs on ``x`` flattened to ``(n, k)``."""
        return self.call(params, x).reshape(x.shape[0], -1)

    def cast(self, x: Tensor) -> Tensor:
        """Floating inputs in the computation dtype (integer inputs unchanged)."""
        return x.to(self.dtype) if x.is_floating_point() else x


def prepare(model: Any, params: Any, dtype: Any, where: str, need_params: bool = True) -> Prepared:
    """Read ``model``: trainable parameters (overridden by ``params``), constants, dtype."""
    if not isinstance(model, nn.Module):
        raise InputTypeError(
            describe(
                where,
                f"model has type {type(model).__name__}",
                "Pass a torch.nn.Module (for a network description use net.module(in_shape)).",
            )
        )
    check_float_dtype(where, dtype)
    named = dict(model.named_parameters())
    override = _read_params(params, named, where)
    names = tuple(n for n, p in named.items() if p.requires_grad)
    if need_params and not names:
        raise ModelError(
            describe(
                where,
                f"the model ({type(model).__name__}) has no trainable parameters",
                "The NTK differentiates the parameters with requires_grad=True: give the model "
                "some (for the output covariance alone use empirical_nngp).",
            )
        )
    if dtype is None:
        floats = [p.dtype for p in named.values() if p.is_floating_point()]
        floats += [b.dtype for b in model.buffers() if b.is_floating_point()]
        dtype = floats[0] if floats else torch.get_default_dtype()

    def value(t: Tensor) -> Tensor:
        t = t.detach()
        return t.to(dtype) if t.is_floating_point() else t

    values = {n: value(override.get(n, p)) for n, p in named.items()}
    constants = {n: v for n, v in values.items() if n not in names}
    constants.update({n: value(b) for n, b in model.named_buffers()})
    trainable = {n: values[n] for n in names}
    first = next(iter(values.values()), None)
    device = first.device if first is not None else torch.device("cpu")
    return Prepared(model, names, trainable, constants, dtype, device, where)


def _read_params(params: Any, named: Mapping[str, Tensor], where: str) -> dict[str, Tensor]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InputTypeError(
            describe(
                where,
                f"params has type {type(params).__name__}",
                "Pass a dict {name: tensor} such as dict(model.named_parameters()).",
            )
        )
    out = {}
    for name, value in params.items():
        if name not in named:
            known = ", ".join(list(named)[:6])
            raise InputTypeError(
                describe(
                    where,
                    f"params names {name!r}, which is not a parameter of the model",
                    f"Use names of model.named_parameters() ({known}, ...).",
                )
            )
        if not isinstance(value, Tensor) or value.shape != named[name].shape:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ShapeError(
                describe(
                    where,
                    f"params[{name!r}] is {got} but the parameter has shape "
                    f"{tuple(named[name].shape)}",
                    "Pass tensors of the parameters' shapes.",
                )
            )
        out[name] = value
    return out


def check_modules(model: nn.Module, where: str) -> None:
    """Refuse batch statistics and random masks in training mode (examples must be independent)."""
    for name, m in model.named_modules():
        label = f"{name or 'model'} ({type(m).__name__})"
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (
            m.training or m.running_mean is None
        ):
            raise ModelError(
                describe(
                    where,
                    f"{label} normalises with the statistics of the batch (training mode or no "
                    "running statistics), so examples are not independent and its forward pass "
                    "updates its buffers",
                    "Call model.eval() first (batch norm then uses its running statistics).",
                )
            )
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            raise ModelError(
                describe(
                    where,
                    f"{label} draws random masks in training mode, so the kernel would be random",
                    "Call model.eval() first (dropout is then the identity).",
                )
            )


def probe(prep: Prepared, x: Tensor) -> int:
    """Run the model twice on ``x`` (a few examples); return ``k``, the outputs per example.

    Raises ModelError if the outputs have no batch axis, the forward pass changes a buffer
    or is random.
    """
    consts = {n: v.clone() for n, v in prep.constants.items()}
    with torch.no_grad():
        out = functional_call(prep.model, {**consts, **prep.params}, (x,))
        if not isinstance(out, Tensor):
            prep.call(prep.params, x)  # raises the message
        changed = [n for n, v in consts.items() if not torch.equal(v, prep.constants[n])]
        if changed:
            raise ModelError(
                describe(
                    prep.where,
                    f"the forward pass changes the buffer(s) {', '.join(changed[:4])}",
                    "Call model.eval() first (e.g. batch norm updates running statistics in "
                    "training mode) or remove the side effect.",
                )
            )
        if out.ndim < 1 or out.shape[0] != x.shape[0] or out[0].numel() == 0:
            raise ModelError(
                describe(
                    prep.where,
                    f"the model maps inputs of shape {tuple(x.shape)} to outputs of shape "
                    f"{tuple(out.shape)}",
                    "Its forward must return a tensor of shape (n, *outputs) with the batch first.",
                )
            )
        if not out.is_floating_point():
            raise ModelError(
                describe(prep.where, f"the outputs have dtype {out.dtype}", "Return floats.")
            )
        again = functional_call(prep.model, {**consts, **prep.params}, (x,))
        if not torch.allclose(out, again, rtol=1e-6, atol=0.0, equal_nan=True):
            raise ModelError(
                describe(
                    prep.where,
                    "two forward passes on the same inputs gave different outputs (a random "
                    "forward pass, e.g. dropout in training mode)",
                    "Call model.eval() first, or make the forward pass deterministic.",
                )
            )
    return int(out[0].numel())


def probe_batch(a: Tensor, b: Tensor | None) -> Tensor:
    """Two examples for probing: the first two of ``x1`` (or one of ``x1``, one of ``x2``)."""
    if b is not None:
        return torch.cat([a[:1], b[:1]])
    return a[:2] if a.shape[0] >= 2 else torch.cat([a, a])


def check_finite(k: Tensor, where: str) -> Tensor:
    """Refuse a kernel with NaN or infinity (the model's outputs or gradients were not finite)."""
    if not bool(torch.isfinite(k.sum())) and not bool(torch.isfinite(k).all()):
        raise NonFiniteError(
            describe(
                where,
                "the kernel holds NaN or infinite values: the model's outputs or gradients are "
                "not finite at these inputs or parameters",
                "Check the model (e.g. a division by zero, an overflow in float32) or use float64.",
            )
        )
    return k


def forward_ad_ready() -> None:
    """Load torch's forward-mode decompositions once, silencing their deprecation warning.

    ``torch.func.jvp`` imports them on first use with ``torch.jit.script``, which warns
    (an error under ``-W error``) in recent PyTorch; importing them here first avoids it.
    """
    if os.environ.get("PYTORCH_JIT", "1") == "1" and __debug__:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch._decomp import decompositions_for_jvp  # noqa: F401
