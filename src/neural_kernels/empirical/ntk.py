r"""Empirical (finite-width) kernels of any ``torch.nn.Module``, linearised networks, diagnostics.

For a model :math:`f_\theta` with :math:`k` outputs per example (all output axes
flattened) and trainable parameters :math:`\theta` (those with ``requires_grad=True``):

* the **empirical NTK** is :math:`\Theta_{ij,op} = \partial_\theta f_o(x_i) \cdot
  \partial_\theta f_p(x'_j)`, an ``(n1, n2, k, k)`` array (``trace_outputs="full"``);
* by default (``trace_outputs="mean"``) it is the **mean** over outputs,
  :math:`\frac{1}{k}\sum_o \Theta_{ij,oo}`, of shape ``(n1, n2)``: the per-output kernel
  that :mod:`neural_kernels.predict` expects (one kernel shared by the ``k`` output
  columns), that the closed-form ``net.kernel`` of a network with i.i.d. readout units
  equals, that :func:`~neural_kernels.monte_carlo_kernel` averages, and Neural Tangents'
  traced kernel (``trace_axes=(-1,)``). ``trace_outputs="sum"`` (or ``True``, the old
  default) is the trace :math:`\sum_o \Theta_{ij,oo}`, ``k`` times larger: passed to a
  predictor it makes training run ``k`` times too fast.
* the **empirical NNGP** is the output covariance :math:`f_o(x_i) f_p(x'_j)`, reduced
  over outputs the same way (one forward pass; no derivatives).

The NTK is computed by one of three strategies (``strategy=``), all exact (they agree to
rounding; the structured one is the fast path, e.g. 0.025 s for the traced NTK of a
784-512-512-10 MLP on 256 examples on two CPU cores, where the others take 7-40 s):

``"jacobian"``
    per-example Jacobians (``vmap(jacrev)``, every example evaluated alone) contracted
    per parameter tensor: ``n k n_params`` numbers to form, work ``n1 n2 k n_params``.
    Tensors are grouped so that a group's Jacobians fit in the memory budget; a larger
    tensor is split over outputs (each output's Jacobians formed once for the traced
    kernel) or, failing that, over blocks of examples.
``"ntvp"``
    NTK-vector products (``jvp`` of ``vjp``): columns of the NTK without contracting
    Jacobians; work about ``n2 k`` forward-mode passes over ``x1``.
``"structured"``
    the terms of linear maps from activations and cotangents: for ``z = x W^T``,
    :math:`\Theta^W_{ij,op} = (x_i \cdot x_j)(g_{i,o} \cdot g_{j,p})` with :math:`g` the
    cotangents of ``z`` (likewise convolutions over their input patches, biases and the
    affine parameters of ``F.layer_norm``, and any tensor made from one parameter alone
    and added to a batch), found by watching the torch calls of one forward pass, from
    whatever module, plus ``k`` backward passes over the batch. Any parameter used another
    way falls back to per-example Jacobians. A few GEMMs for a fully connected network.
``"auto"`` (default)
    the cheapest by a cost estimate (multiply-adds from the number of parameters,
    outputs and examples, and the shapes of the linear maps seen on two examples).

**Examples must be independent**: the model's output for one example must depend only
on that example (as with ``model.eval()``). Batch norm in training mode and dropout in
training mode are refused, as is any forward pass that changes a buffer or is random;
the structured strategy also checks on two examples that their cotangents do not mix
(if they do, ``"auto"`` uses the Jacobian strategy). These probes (and the structured
strategy's classification of the parameters) are kept for later calls on a model of the
same structure and inputs of the same feature shape (``empirical._plans``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._allocator import tune_allocator
from .._functional import locks_model
from ..errors import HyperparameterError, InputTypeError, ModelError, describe
from . import _plans
from ._features import assemble, block_size
from ._jacobian import jacobian_kernel
from ._model import (
    DEFAULT_TRACE,
    Prepared,
    check_finite,
    check_modules,
    parse_budget,
    parse_trace,
    prepare,
    probe,
    probe_batch,
    read_inputs,
)
from ._ntvp import ntvp_kernel
from ._structured import Plan, make_plan, structured_features

__all__ = ["STRATEGIES", "empirical_nngp", "empirical_ntk", "ntk_strategy"]

#: The strategies of :func:`empirical_ntk`.
STRATEGIES = ("auto", "jacobian", "ntvp", "structured")


@locks_model
def empirical_ntk(
    model: Any,
    x1: Any,
    x2: Any = None,
    *,
    strategy: str = "auto",
    trace_outputs: bool | str = DEFAULT_TRACE,
    params: Any = None,
    memory_budget: int | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""The empirical NTK of ``model`` between ``x1`` and ``x2``.

    :math:`\Theta_{ij,op} = \sum_{\theta} \partial f_o(x_i) / \partial\theta \cdot
    \partial f_p(x'_j) / \partial\theta` over the trainable parameters (``requires_grad``),
    with :math:`k` outputs per example (all output axes flattened).

    Args:
        model: any ``torch.nn.Module`` mapping ``(n, *features)`` to ``(n, *outputs)``.
            Call ``model.eval()`` first if it has batch norm or dropout.
        x1: inputs ``(n1, *features)`` (floats are cast to ``dtype``; integer inputs such
            as token ids are passed unchanged).
        x2: inputs ``(n2, *features)``; ``None`` means ``x1`` and uses the symmetry (the
            result is then exactly symmetric).
        strategy: ``"auto"``, ``"jacobian"``, ``"ntvp"`` or ``"structured"`` (see the
            module's documentation). All give the same kernel up to rounding.
        trace_outputs: ``"mean"`` (default): the mean over outputs,
            :math:`\frac{1}{k}\sum_o \Theta_{ij,oo}`, shape ``(n1, n2)``, the per-output
            kernel that :mod:`neural_kernels.predict` expects (Neural Tangents' traced
            kernel, ``trace_axes=(-1,)``). ``"sum"`` (or ``True``, the former default):
            the trace :math:`\sum_o \Theta_{ij,oo}`. ``"full"`` (or
            ``False``): the blocks, shape ``(n1, n2, k, k)``.
        params: optional ``{name: tensor}`` overriding some parameters' values (e.g. a
            checkpoint); names are those of ``model.named_parameters()``.
        memory_budget: bytes of working memory besides the output (default 1 GiB);
            examples are processed in blocks that fit.
        dtype: computation dtype (default: the parameters'); float64 is the precise
            choice, float32 the fast one.

    Returns:
        A tensor ``(n1, n2)`` or ``(n1, n2, k, k)`` in ``dtype``, detached.

    Raises:
        InputTypeError: ``model`` is not a module, ``params`` or ``dtype`` has the wrong
            type, inputs are not on the parameters' device.
        ShapeError: the inputs are not batches or ``x1`` and ``x2`` differ in feature shape.
        NonFiniteError: the inputs hold NaN or infinity, or the kernel came out non-finite.
        ModelError: no trainable parameters, batch norm or dropout in training mode, a
            forward pass that changes buffers or is random, outputs without a batch
            axis; ``"structured"`` on a model whose examples interact.
        HyperparameterError: an unknown ``strategy``/``trace_outputs``, a bad budget.

    Example:
        >>> import torch, neural_kernels as nk
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(),
        ...                             torch.nn.Linear(16, 2)).double()
        >>> x = torch.randn(5, 3, dtype=torch.float64)
        >>> nk.empirical_ntk(model, x).shape, nk.empirical_ntk(model, x, trace_outputs="full").shape
        (torch.Size([5, 5]), torch.Size([5, 5, 2, 2]))

    """
    where = "empirical_ntk"
    mode = parse_trace(trace_outputs, where)
    if strategy not in STRATEGIES:
        raise HyperparameterError(
            describe(
                where, f"strategy={strategy!r}", f"Use one of {', '.join(map(repr, STRATEGIES))}."
            )
        )
    budget = parse_budget(memory_budget, where)
    prep = prepare(model, params, dtype, where)
    a, b = _inputs(prep, x1, x2)
    check_modules(prep.model, where)
    full = mode == "full"
    # the probe and the plan of an earlier call on this structure (see _plans)
    key = _plans.key(prep, a, strategy)
    probed = _plans.lookup(prep.model, key)
    out = None
    if probed is not None:
        try:
            out = _run(prep, strategy, probed, a, b, full, budget)
        except ModelError:  # e.g. the model changed in a way the key does not see: probe
            _plans.forget(prep.model, key)  # afresh (a lasting fault raises again there)
    if out is None or probed is None:
        probed = _probe(prep, strategy, a, b)
        out = _run(prep, strategy, probed, a, b, full, budget)
        _plans.store(prep.model, key, probed)
    k = probed.k
    if mode == "mean":
        out.div_(k)
    return check_finite(out.detach(), where)


def _inputs(prep: Prepared, x1: Any, x2: Any) -> tuple[Tensor, Tensor | None]:
    a, b = read_inputs(x1, x2, prep.where)
    stateless = not prep.params and not prep.constants
    for t, name in ((a, "x1"), (b, "x2")):
        if t is not None and t.device != prep.device and not stateless:
            raise InputTypeError(
                describe(
                    prep.where,
                    f"{name} is on {t.device} but the model's parameters on {prep.device}",
                    "Move the inputs to the model's device.",
                )
            )
    return prep.cast(a), None if b is None else prep.cast(b)


def _probe(prep: Prepared, strategy: str, a: Tensor, b: Tensor | None) -> _plans.Probed:
    """The outputs per example and, unless ``strategy`` needs none, the structured plan."""
    batch = probe_batch(a, b)
    k = probe(prep, batch)
    if strategy in ("jacobian", "ntvp"):
        return _plans.Probed(k, None)
    with torch.enable_grad():
        return _plans.Probed(k, make_plan(prep, batch))


def _run(
    prep: Prepared,
    strategy: str,
    probed: _plans.Probed,
    a: Tensor,
    b: Tensor | None,
    full: bool,
    budget: int,
) -> Tensor:
    """The kernel by ``strategy`` (``auto``: the cheapest estimate), from the probe's facts."""
    with torch.no_grad():
        chosen, plan = _choose(prep, strategy, probed.plan, a, b, probed.k, full)
        return _compute(prep, chosen, plan, a, b, probed.k, full, budget)


def _choose(
    prep: Prepared,
    strategy: str,
    plan: Plan | None,
    a: Tensor,
    b: Tensor | None,
    k: int,
    full: bool,
) -> tuple[str, Plan | None]:
    """The strategy to run (``auto``: the cheapest estimate) and the structured plan."""
    if strategy in ("jacobian", "ntvp") or plan is None:
        return strategy, None
    if not plan.independent:
        if strategy == "structured":
            raise ModelError(
                describe(
                    prep.where,
                    "the gradients of one example's outputs reach other examples' activations "
                    "(examples interact, or a layer's batch axis is not the first)",
                    'Use strategy="jacobian", which evaluates every example alone.',
                )
            )
        return "jacobian", None
    if strategy == "structured":
        return strategy, plan
    costs = _costs(prep, plan, a.shape[0], a.shape[0] if b is None else b.shape[0], k, full)
    best = min(costs, key=costs.__getitem__)
    return best, plan if best == "structured" else None


def _costs(prep: Prepared, plan: Plan, n1: int, n2: int, k: int, full: bool) -> dict[str, float]:
    """Multiply-adds of each strategy (estimates)."""
    n_params = prep.n_params
    fallback = sum(prep.params[n].numel() for n in plan.fallback)
    fwd = max(plan.flops_per_example, float(n_params))  # per example
    kk = k * k if full else k
    n = n1 + n2
    # forward + k backward passes (with weight gradients for the Jacobians), contractions
    jac = (1 + 2 * k) * n * fwd + n * k * n_params + n1 * n2 * kk * n_params
    ntvp = n2 * k * (3.0 * n1 * fwd)
    plan.choose(min(n1, 256), min(n2, 256), k, full, float("inf"))
    structured = (1 + k) * n * fwd + plan.cost(n1, n2, k, full, fallback)
    structured += ((1 + 2 * k) * n * fwd + n * k * fallback) if fallback else 0.0
    return {"structured": structured, "jacobian": jac, "ntvp": ntvp}


def _compute(
    prep: Prepared,
    strategy: str,
    plan: Plan | None,
    a: Tensor,
    b: Tensor | None,
    k: int,
    full: bool,
    budget: int,
) -> Tensor:
    tune_allocator()  # large temporaries on every call: from the heap, not fresh pages
    item = torch.empty((), dtype=prep.dtype).element_size()
    n1 = a.shape[0]
    n2 = n1 if b is None else b.shape[0]
    pair = (k * k + 1.0) if full else 2.0  # temporaries per pair of examples
    if strategy == "ntvp":
        per_vector = 3.0 * (prep.n_params + 4.0 * n1 * max(a[0].numel(), 1))
        chunk = max(1, min(n2, int(budget / item / (k * per_vector))))
        return ntvp_kernel(prep, a, b, k, full, block=max(chunk, min(n2, 64)), chunk=chunk)
    if strategy == "jacobian":
        return jacobian_kernel(prep, a, b, k, full, budget)
    if plan is None:
        raise ValueError('the structured strategy needs its plan (see "_choose")')
    # activations, cotangents and features of a block: about 3x the features
    blk = block_size(max(n1, n2), 3.0 * plan.per_example_floats(k), pair, budget, item)
    plan.choose(blk, blk, k, full, budget / item / 4)
    fallback = sum(prep.params[n].numel() for n in plan.fallback)
    per_example = 3.0 * plan.per_example_floats(k) + 2.0 * k * fallback
    pair += max((s * s * (k * k if full else 2) for s in plan.positions.values()), default=0)
    blk = block_size(max(n1, n2), per_example, pair, budget, item)
    held = (n1 + (0 if b is None else n2)) * (plan.per_example_floats(k) + k * fallback) * item
    return assemble(
        lambda x: structured_features(prep, plan, x),
        a,
        b,
        k,
        full,
        blk,
        held <= budget / 2,
        prep.dtype,
    )


@locks_model
def empirical_nngp(
    model: Any,
    x1: Any,
    x2: Any = None,
    *,
    trace_outputs: bool | str = DEFAULT_TRACE,
    params: Any = None,
    memory_budget: int | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""The empirical NNGP: the covariance of the outputs, :math:`f_o(x_i) f_p(x'_j)`.

    One forward pass per block of examples (no derivatives). Reduced over outputs like
    :func:`empirical_ntk`: ``"mean"`` (default) the mean over the ``k`` outputs (Neural
    Tangents' traced ``empirical_nngp_fn``, the Monte Carlo estimate of one network),
    ``"sum"``/``True`` the trace :math:`\sum_o f_o(x_i) f_o(x'_j)` (``(n1, n2)``),
    ``"full"``/``False`` the ``(n1, n2, k, k)`` blocks. The model may have no parameters.

    Args:
        model: any ``torch.nn.Module`` mapping ``(n, *features)`` to ``(n, *outputs)``.
        x1: inputs ``(n1, *features)``.
        x2: inputs ``(n2, *features)``; ``None`` means ``x1`` (exactly symmetric result).
        trace_outputs: ``"mean"``, ``"sum"``/``True`` or ``"full"``/``False`` (see above).
        params: optional ``{name: tensor}`` overriding parameters.
        memory_budget: bytes for the outputs held at once (default 1 GiB).
        dtype: computation dtype (default: the parameters').

    Returns:
        A tensor ``(n1, n2)`` or ``(n1, n2, k, k)``.

    Raises:
        InputTypeError, ShapeError, NonFiniteError, ModelError, HyperparameterError: as
        :func:`empirical_ntk` (a model without parameters is fine here).

    """
    where = "empirical_nngp"
    mode = parse_trace(trace_outputs, where)
    budget = parse_budget(memory_budget, where)
    prep = prepare(model, params, dtype, where, need_params=False)
    prep.where = where
    a, b = _inputs(prep, x1, x2)
    check_modules(prep.model, where)
    k = probe(prep, probe_batch(a, b))
    item = torch.empty((), dtype=prep.dtype).element_size()
    step = max(1, int(budget / item / (4 * k + 4 * max(a[0].numel(), 1))))
    with torch.no_grad():
        f1 = _outputs(prep, a, step)
        f2 = f1 if b is None else _outputs(prep, b, step)
        if mode == "full":
            out = f1[:, None, :, None] * f2[None, :, None, :]
        else:
            out = f1 @ f2.T
            if b is None:
                out = 0.5 * (out + out.T)
            if mode == "mean":
                out = out / k
    return check_finite(out, where)


def _outputs(prep: Prepared, x: Tensor, step: int) -> Tensor:
    parts = [prep.flat(prep.params, x[i : i + step]) for i in range(0, x.shape[0], step)]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def ntk_strategy(
    model: Any, x1: Any, x2: Any = None, *, trace_outputs: bool | str = DEFAULT_TRACE
) -> str:
    """The strategy ``strategy="auto"`` picks for these arguments (for reports and benchmarks)."""
    where = "ntk_strategy"
    mode = parse_trace(trace_outputs, where)
    prep = prepare(model, None, None, where)
    a, b = _inputs(prep, x1, x2)
    check_modules(prep.model, where)
    probed = _probe(prep, "auto", a, b)
    with torch.no_grad():
        return _choose(prep, "auto", probed.plan, a, b, probed.k, mode == "full")[0]
