"""The engine's compiled path: a network's whole layer chain in one call per chunk.

When every step of the network says how it maps the full layout as a compiled op
(:meth:`~neural_kernels.core.protocol.KernelLayer.chain_op`: convolutions, ReLU-like
activations, pooling, global pooling, ``Flatten`` and ``Dense`` after it), a chunk of
example pairs goes from the inputs' Gram product to its output entries in one call of
``nk_chain_*`` (``neural_kernels._native``), which holds no GIL: worker threads then
run side by side. The activations' norms come from the variances the self pass
recorded, as on the per-layer path with replay.

Anything else (another layer, hyperparameters that are tensors, autograd, a device
other than the CPU, no compiler) keeps the per-layer path, which gives the same
numbers to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .. import _native
from .._native.chain import ChainOp, compile_chain, input_features
from . import tiling
from .block import KernelBlock
from .inputs import Geometry
from .plan import Plan
from .protocol import Facts

__all__ = ["chain_ops", "native_chain", "native_self_pass"]

#: Most input channels for which the compiled call forms each pair's input entries itself
#: (``C`` multiply-adds per entry, no Gram product of the chunk in memory).
FEW_CHANNELS = 16

#: Runs the chain on one chunk ``(r0, r1, s0, s1)``, writing its pairs of the outputs.
ChunkRunner = Callable[[int, int, int, int], None]


def chain_ops(plan: Plan, geo: Geometry) -> list[ChainOp] | None:
    """One op per step, or ``None`` when some step has none.

    Also ``None`` when a spatial step follows the plan's switch to same-position
    entries: the per-layer path runs it on those alone, far cheaper than the full layout.
    """
    facts = Facts(geo.feature_shape, False, geo.channel_axis)
    ops = []
    switch = plan.switch_after
    for i, step in enumerate(plan.steps):
        op = step.layer.chain_op(facts)
        if op is None:
            return None
        if switch is not None and i > switch and op.kind in ("conv", "act", "pool") and op.n:
            return None
        ops.append(op)
        nxt = step.layer.infer_facts(facts)
        if not isinstance(nxt, Facts):  # branches: not a chain
            return None
        facts = nxt
    return ops


def native_chain(
    plan: Plan,
    geo: Geometry,
    fa: Tensor,
    fb: Tensor,
    steps1: Sequence[Tensor | None],
    steps2: Sequence[Tensor | None],
    outs: Sequence[Tensor],
    upper: bool = False,
) -> ChunkRunner | None:
    """A runner of the compiled chain for this kernel, or ``None`` where it does not apply.

    With at most :data:`FEW_CHANNELS` input channels, each pair's input entries are formed
    inside the compiled call from the two examples' features; with more, each chunk's
    Gram product is one matrix product.

    Args:
        plan: the folded network (its steps all replay their variances).
        geo: the inputs' geometry (full layout, spatial inputs).
        fa: the first inputs as features ``(n1, P, C)``.
        fb: the second inputs ``(n2, P, C)``.
        steps1: the per-position variances of the first inputs after each step.
        steps2: the same for the second inputs.
        outs: the preallocated contiguous NNGP (and NTK) ``(n1, n2, *trailing)``.
        upper: compute only the pairs ``(i, j)`` with ``i < j`` (with ``x2 = None`` the
            mirror gives those below the diagonal and the self pass those on it, so the
            chunks on the diagonal skip them).

    """
    if geo.layout != "full" or not geo.spatial or fa.requires_grad or fb.requires_grad:
        return None
    if any(not t.is_contiguous() for t in outs) or outs[0].dtype != fa.dtype:
        return None
    lib = _native.library_for(fa, fb, *outs)
    if lib is None:
        return None
    ops = chain_ops(plan, geo)
    if ops is None:
        return None
    variances: list[tuple[Tensor, Tensor] | None] = []
    for i, op in enumerate(ops):
        if op.kind != "act":
            variances.append(None)
            continue
        v1, v2 = (steps1[i - 1], steps2[i - 1]) if i > 0 else (None, None)
        if v1 is None or v2 is None:
            return None
        variances.append((v1, v2))
    with tiling.single_threaded():  # small operations (see there)
        chain = compile_chain(lib, fa.dtype, geo.spatial, ops, variances)
    trailing = outs[0].shape[2:]
    if math.prod(trailing) != chain.out_entries:  # pragma: no cover (a layout mismatch)
        return None
    p, c = geo.positions, fa.shape[-1]
    if c <= FEW_CHANNELS:  # each pair's input entries formed in the compiled call
        with tiling.single_threaded():
            xa, xb = input_features(fa, scale=True), input_features(fb, scale=False)

        def run_few(r0: int, r1: int, s0: int, s1: int) -> None:
            chain.run((xa, xb), r0, r1 - r0, s0, s1 - s0, outs, upper)

        return run_few
    left = fa.reshape(fa.shape[0] * p, c) / c  # as the per-layer path's Gram product
    right = fb.reshape(fb.shape[0] * p, c)

    def run(r0: int, r1: int, s0: int, s1: int) -> None:
        g = torch.mm(left[r0 * p : r1 * p], right[s0 * p : s1 * p].T)
        chain.run(g, r0, r1 - r0, s0, s1 - s0, outs, upper)

    return run


def native_self_pass(
    plan: Plan,
    geo: Geometry,
    f: Tensor,
    first: Callable[[], tuple[KernelBlock, Sequence[Tensor | None]]],
    memory_budget: int | None,
    threads: int,
) -> tuple[KernelBlock, list[Tensor]] | None:
    """The self pass (pairs ``(x_i, x_i)``) as one compiled call per batch, or ``None``.

    Each dual takes its norms from the pair's own same-position entries, and every
    layer's per-position variances are read off the pairs as the chain goes (see
    ``nk_chain_*``'s self mode), so that no layer runs in Python.

    Args:
        plan: the folded network.
        geo: the inputs' geometry (full layout, spatial inputs).
        f: the inputs as features ``(n, P, C)``.
        first: gives the per-layer self pass of the first example (whose fields but its
            kernels the result keeps) and its per-layer variances ``(1, *spatial)``;
            called only where the compiled path applies.
        memory_budget: bytes of the batches' input covariances in flight.
        threads: workers for the batches.

    Returns:
        The block of all ``n`` self-pairs and the per-layer variances ``(n, *spatial)``;
        ``None`` where the compiled path does not apply or a value is not finite (the
        per-layer pass then says where).

    """
    if geo.layout != "full" or not geo.spatial or f.requires_grad:
        return None
    lib = _native.library_for(f)
    ops = chain_ops(plan, geo) if lib is not None else None
    if lib is None or ops is None:
        return None
    template, template_steps = first()
    own = template.cov1  # an example's own covariance: its self-pair, for the layers here
    if own.shape != template.nngp.shape or not torch.equal(own, template.nngp):
        return None
    with tiling.single_threaded():
        chain = compile_chain(lib, f.dtype, geo.spatial, ops, [None] * len(ops), self_mode=True)
    trailing = tuple(template.nngp.shape[1:])
    if math.prod(trailing) != chain.out_entries or any(op < 0 for op, _ in chain.steps):
        return None
    n, p, c = f.shape
    outs = [f.new_empty((n, *trailing))]
    if template.ntk is not None:
        outs.append(f.new_empty((n, *trailing)))
    recs: list[Tensor | None] = [None] * (2 * len(chain.sizes))
    for op, which in chain.steps:
        if recs[2 * op + which] is None:
            recs[2 * op + which] = f.new_empty((n, chain.sizes[op]))
    # the workers' input covariances in flight share the budget
    fits = tiling.budget(memory_budget) // (p * p * f.element_size() * max(1, threads))
    batch = max(1, min(-(-n // tiling.SELF_BATCHES), fits))

    def one(i0: int) -> None:
        i1 = min(n, i0 + batch)
        part = f[i0:i1]
        cov = torch.bmm(part / c, part.transpose(1, 2))  # as the chunks' Gram product
        chain.run_self(cov, [o[i0:i1] for o in outs], [r if r is None else r[i0:i1] for r in recs])

    tiling.map_ordered(one, list(range(0, n, batch)), threads)
    steps: list[Tensor] = []
    for (op, which), seen in zip(chain.steps, template_steps, strict=True):
        rec = recs[2 * op + which]
        if seen is None or rec is None or rec.shape[1] != seen[0].numel():
            return None
        steps.append(rec.reshape(n, *seen.shape[1:]))
    if not all(bool(torch.isfinite(t).all()) for t in (*outs, *steps)):
        return None
    ntk = outs[1] if len(outs) > 1 else None
    return template.replace(nngp=outs[0], ntk=ntk, cov1=outs[0], cov2=outs[0]), steps
