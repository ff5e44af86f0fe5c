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
from .._native.chain import ChainOp, compile_chain
from . import tiling
from .inputs import Geometry
from .plan import Plan
from .protocol import Facts

__all__ = ["chain_ops", "native_chain"]

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
) -> ChunkRunner | None:
    """A runner of the compiled chain for this kernel, or ``None`` where it does not apply.

    Args:
        plan: the folded network (its steps all replay their variances).
        geo: the inputs' geometry (full layout, spatial inputs).
        fa: the first inputs as features ``(n1, P, C)``.
        fb: the second inputs ``(n2, P, C)``.
        steps1: the per-position variances of the first inputs after each step.
        steps2: the same for the second inputs.
        outs: the preallocated contiguous NNGP (and NTK) ``(n1, n2, *trailing)``.

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
    left = fa.reshape(fa.shape[0] * p, c) / c  # as the per-layer path's Gram product
    right = fb.reshape(fb.shape[0] * p, c)

    def run(r0: int, r1: int, s0: int, s1: int) -> None:
        g = torch.mm(left[r0 * p : r1 * p], right[s0 * p : s1 * p].T)
        chain.run(g, r0, r1 - r0, s0, s1 - s0, outs)

    return run
