"""Machinery shared by the empirical kernels of any ``torch.nn.Module``.

* :func:`prepare` reads a model once: its trainable parameters (the ones the NTK
  differentiates), every other parameter and buffer (constants), the computation dtype.
* :func:`check_modules` and :func:`probe` refuse models whose examples are not
  independent or whose forward pass is random or changes its buffers.
* A kernel is assembled from per-example *features* (:class:`Dot`, :class:`Kron`,
  :class:`Pos`) in blocks of examples (:func:`assemble`), so that no block needs more than
  a memory budget; for ``x2 = None`` only the upper triangle is computed and mirrored.
* :func:`jacobian_features` are the per-example Jacobians of the Jacobian-contraction
  strategy (and of the structured strategy's fallback).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from ._validation import as_tensor, check_pair
from .errors import (
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
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise InputTypeError(
            describe(
                where, f"dtype={dtype!r}", "Pass a floating torch dtype such as torch.float64."
            )
        )
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


# ----------------------------------------------------------------------------------------
# Features and their contraction
# ----------------------------------------------------------------------------------------


@dataclass
class Dot:
    """Per-example gradients ``t`` of logical shape ``(k, b, D)``: the term ``sum_d t1 t2``."""

    t: Tensor


@dataclass
class Kron:
    """A weight ``z = x W^T`` seen once per example: ``p (b, Din)``, cotangents ``g (k, b, Dout)``.

    Its term is ``(p1 . p2) (g1 . g2)``: the per-example gradient ``g p^T`` never forms.
    """

    p: Tensor
    g: Tensor


@dataclass
class Pos:
    """A weight applied at ``S`` positions: ``p (b, S, Din)``, cotangents ``g (k, b, S, Dout)``.

    Its term is ``sum_{s, t} (p1[s] . p2[t]) (g1[s] . g2[t])``.
    """

    p: Tensor
    g: Tensor


Feature = Union[Dot, Kron, Pos]  # noqa: UP007 (runtime alias, Python 3.10)


def _rows(f: Feature, start: int, stop: int) -> Feature:
    if isinstance(f, Dot):
        return Dot(f.t[:, start:stop])
    return type(f)(f.p[start:stop], f.g[:, start:stop])


def contract(fa: Sequence[Feature], fb: Sequence[Feature], full: bool) -> Tensor:
    """The kernel block between two sets of features of the same parameters.

    Returns ``(b1, b2)`` (summed over outputs) or, when ``full``, ``(b1, k, b2, k)``
    (``[i, o, j, p]``).
    """
    out: Tensor | None = None
    for a, b in zip(fa, fb, strict=True):
        term = _term(a, b, full)
        if out is None:
            out = term if term.is_contiguous() else term.contiguous()
        else:
            out.add_(term)
    assert out is not None
    return out


def _outputs_first(a: Tensor) -> bool:
    """Whether ``a`` (logical ``(k, b, ...)``) is stored outputs-first (else examples-first)."""
    return not a.transpose(0, 1).is_contiguous() or a.is_contiguous()


def _gram_sum(a: Tensor, b: Tensor) -> Tensor:
    """``sum_o a[o] b[o]^T`` for ``a (k, b1, D)``, ``b (k, b2, D)``: ``(b1, b2)``."""
    if not _outputs_first(a) and not _outputs_first(b):  # stored (b, k, D): one GEMM
        return (
            a.transpose(0, 1).reshape(a.shape[1], -1) @ b.transpose(0, 1).reshape(b.shape[1], -1).T
        )
    return torch.bmm(a, b.transpose(1, 2)).sum(dim=0)


def _gram_full(a: Tensor, b: Tensor) -> Tensor:
    """``a[o, i] . b[p, j]`` for ``a (ka, b1, D)``, ``b (kb, b2, D)``: ``(b1, ka, b2, kb)``."""
    ka, b1, kb, b2 = a.shape[0], a.shape[1], b.shape[0], b.shape[1]
    if not _outputs_first(a) and not _outputs_first(b):
        h = a.transpose(0, 1).reshape(b1 * ka, -1) @ b.transpose(0, 1).reshape(b2 * kb, -1).T
        return h.view(b1, ka, b2, kb)
    h = a.reshape(ka * b1, -1) @ b.reshape(kb * b2, -1).T
    return h.view(ka, b1, kb, b2).permute(1, 0, 3, 2)


def _term(a: Feature, b: Feature, full: bool) -> Tensor:
    if isinstance(a, Dot):
        assert isinstance(b, Dot)
        return _gram_full(a.t, b.t) if full else _gram_sum(a.t, b.t)
    if isinstance(a, Kron):
        assert isinstance(b, Kron)
        c = a.p @ b.p.T
        if full:
            return _gram_full(a.g, b.g).mul_(c[:, None, :, None])
        return _gram_sum(a.g, b.g).mul_(c)
    assert isinstance(a, Pos) and isinstance(b, Pos)
    k, b1, s1 = a.g.shape[:3]
    b2, s2 = b.g.shape[1:3]
    c = a.p.reshape(b1 * s1, -1) @ b.p.reshape(b2 * s2, -1).T
    if full:
        h = a.g.reshape(k * b1 * s1, -1) @ b.g.reshape(k * b2 * s2, -1).T
        h = h.view(k, b1, s1, k, b2, s2).mul_(c.view(1, b1, s1, 1, b2, s2))
        return h.sum(dim=(2, 5)).permute(1, 0, 3, 2)
    h = torch.bmm(a.g.reshape(k, b1 * s1, -1), b.g.reshape(k, b2 * s2, -1).transpose(1, 2))
    h = h.sum(dim=0).mul_(c)
    return h.view(b1, s1, b2, s2).sum(dim=(1, 3))


# ----------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------


def block_size(n: int, per_example: float, per_pair: float, budget: int, itemsize: int) -> int:
    """Largest ``b <= n`` with ``itemsize * (2 b per_example + b^2 per_pair) <= budget``."""
    room = budget / itemsize
    e, p = max(per_example, 1.0), max(per_pair, 0.0)
    b = room / (2 * e) if p == 0 else (-2 * e + math.sqrt(4 * e * e + 4 * p * room)) / (2 * p)
    return int(max(1, min(n, math.floor(b))))


def _ranges(n: int, step: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + step)) for i in range(0, n, step)]


def assemble(
    features: Callable[[Tensor], list[Feature]],
    x1: Tensor,
    x2: Tensor | None,
    k: int,
    full: bool,
    block: int,
    cache: bool,
    dtype: torch.dtype,
    out: Tensor | None = None,
    col_block: int | None = None,
) -> Tensor:
    """Assemble the kernel from features computed ``block`` examples at a time.

    ``cache``: keep the features of every block; else every row block is computed once
    and the columns are recomputed for it in chunks of ``col_block`` examples (default
    ``block``; small chunks leave room for large row blocks, hence fewer recomputations).
    With ``x2 = None`` only blocks on and above the diagonal are contracted (the diagonal
    block row by row in sub-blocks) and mirrored, so the result is exactly symmetric.
    Returns ``(n1, n2)`` or ``(n1, n2, k, k)``; with ``out`` given, the blocks are added
    to it (a sum over groups of parameters).
    """
    sym = x2 is None
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    shape = (n1, n2, k, k) if full else (n1, n2)
    add = out is not None
    if out is None:
        out = torch.empty(shape, dtype=dtype, device=x1.device)
    res = out

    def put(r0: int, r1: int, c0: int, c1: int, blk: Tensor, mirror: bool) -> None:
        a = blk.permute(0, 2, 1, 3) if full else blk  # [i,o,j,p] -> [i,j,o,p]
        if add:
            res[r0:r1, c0:c1] += a
        else:
            res[r0:r1, c0:c1] = a
        if mirror:
            t = blk.permute(2, 0, 3, 1) if full else blk.T
            if add:
                res[c0:c1, r0:r1] += t
            else:
                res[c0:c1, r0:r1] = t

    rows = _ranges(n1, block)
    other = x1 if x2 is None else x2
    if not cache:  # each row block once; the columns in chunks of col_block, recomputed
        step = col_block or block
        for r0, r1 in rows:
            fa = features(x1[r0:r1])
            if sym:
                _diagonal(fa, r0, r1, k, full, put, out)
            for c0 in range(r1 if sym else 0, n2, step):
                c1 = min(n2, c0 + step)
                put(r0, r1, c0, c1, contract(fa, features(other[c0:c1]), full), sym)
        return out
    cols = rows if sym else _ranges(n2, block)
    stored: dict[int, list[Feature]] = {}

    def column(j: int) -> list[Feature]:
        if j not in stored:
            c0, c1 = cols[j]
            stored[j] = features(other[c0:c1])
        return stored[j]

    for i, (r0, r1) in enumerate(rows):
        fa = column(i) if sym else features(x1[r0:r1])
        if sym:
            _diagonal(fa, r0, r1, k, full, put, out)
        for j in range(i + 1 if sym else 0, len(cols)):
            c0, c1 = cols[j]
            put(r0, r1, c0, c1, contract(fa, column(j), full), sym)
        if sym:
            stored.pop(i, None)
    return out


def _diagonal(
    fa: list[Feature],
    r0: int,
    r1: int,
    k: int,
    full: bool,
    put: Callable[..., None],
    out: Tensor,
) -> None:
    """The diagonal block from its upper triangle of sub-blocks, exactly symmetric."""
    b = r1 - r0
    n_rows = b * k if full else b
    n_sub = max(1, min(8, n_rows // 64))
    step = -(-b // n_sub)
    for s0 in range(0, b, step):
        s1 = min(b, s0 + step)
        blk = contract([_rows(f, s0, s1) for f in fa], [_rows(f, s0, b) for f in fa], full)
        w = s1 - s0
        sq = blk[:, :, :w] if full else blk[:, :w]
        sq = 0.5 * (sq + sq.permute(2, 3, 0, 1)) if full else 0.5 * (sq + sq.T)
        put(r0 + s0, r0 + s1, r0 + s0, r0 + s1, sq, False)
        if s1 < b:
            rect = blk[:, :, w:] if full else blk[:, w:]
            put(r0 + s0, r0 + s1, r0 + s1, r1, rect, True)


# ----------------------------------------------------------------------------------------
# Per-example Jacobians
# ----------------------------------------------------------------------------------------


def jacobian_features(
    prep: Prepared, names: Sequence[str], x: Tensor, outputs: tuple[int, int] | None = None
) -> list[Feature]:
    """Per-example Jacobians of the parameters ``names``, one :class:`Dot` per tensor.

    ``vmap(jacrev(...))`` over single examples: each example is evaluated alone.
    ``outputs=(o0, o1)`` restricts them to outputs ``o0 <= o < o1``.
    """
    diff = {n: prep.params[n] for n in names}
    const = {n: v for n, v in prep.params.items() if n not in diff}
    lo, hi = outputs if outputs is not None else (0, None)

    def single(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        return prep.call({**const, **p}, xi.unsqueeze(0)).reshape(-1)[lo:hi]

    try:
        jac = vmap(jacrev(single), in_dims=(None, 0))(diff, x)
    except RuntimeError as err:
        if "random" not in str(err).lower():
            raise
        raise ModelError(
            describe(
                prep.where,
                f"the forward pass draws random numbers ({err})",
                "Call model.eval() first, or make the forward pass deterministic.",
            )
        ) from None
    b = x.shape[0]
    return [Dot(v.reshape(b, v.shape[1], -1).transpose(0, 1)) for v in jac.values()]


def forward_ad_ready() -> None:
    """Load torch's forward-mode decompositions once, silencing their deprecation warning.

    ``torch.func.jvp`` imports them on first use with ``torch.jit.script``, which warns
    (an error under ``-W error``) in recent PyTorch; importing them here first avoids it.
    """
    if os.environ.get("PYTORCH_JIT", "1") == "1" and __debug__:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch._decomp import decompositions_for_jvp  # noqa: F401


def iter_chunks(n: int, step: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of ``step``."""
    yield from _ranges(n, step)
