r"""Evaluation of a network's kernel over all example pairs, in blocks.

Every layer acts on each example pair independently (given each input's covariance
with itself), so the ``n1 x n2`` kernel is computed block by block:

1. the network is folded once on its static facts (:func:`~.plan.plan_network`), which
   checks it and fixes the inputs' channel axis and the spatial layout;
2. the self-covariances of every input go through the network once (the *self pass*),
   checked for overflow at every step (compiled where the whole chain compiles);
3. for each block of rows and columns the input kernel
   :math:`K_0(x, x')_{pp'} = \sum_c x_{cp} x'_{cp'} / C` is one matrix product;
4. the block is cut into chunks and the whole step loop (:mod:`.steps`) runs on one
   chunk while it sits in cache, or one compiled call per chunk (:mod:`.chain`);
5. with ``x2=None`` only the upper triangle is computed and then mirrored, and the
   pairs of an example with itself are taken from the self pass.

Working memory is one block of the input kernel plus a few chunks, whatever ``n``.
Under autograd (inputs or hyperparameters that require grad) blocks are joined with
``torch.cat`` instead of written into a preallocated output, and symmetry is not used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from torch import Tensor

from .._validation import as_tensor, check_batch, check_pair, parse_get
from ..errors import HyperparameterError, NonFiniteError, describe
from ..kernel import Kernel
from . import tiling
from .block import KernelBlock
from .chain import native_chain, native_self_pass
from .inputs import (
    Geometry,
    features,
    gram,
    input_block,
    input_variances,
    patterns,
    self_cov,
)
from .plan import Plan, plan_network
from .protocol import Flow, KernelLayer
from .steps import check_finite, run_steps

__all__ = ["LAYOUTS", "compute_kernel", "compute_kernel_diag"]

Get = Union[str, Sequence[str]]  # noqa: UP007 (runtime alias, Python 3.10)
Progress = Callable[[int, int], None]

LAYOUTS = (None, "full", "diagonal")
#: Longest network ``repr`` that error messages quote in full.
_NAME_LENGTH = 240


class _Where:
    """The name errors give a call, formatted only when an error is raised."""

    def __init__(self, layer: KernelLayer, method: str) -> None:
        self.layer, self.method = layer, method

    def __str__(self) -> str:
        name = repr(self.layer)
        if len(name) > _NAME_LENGTH:  # a deep network: its head and tail say enough
            half = _NAME_LENGTH // 2
            name = f"{name[:half]} ... {name[-half:]}"
        return f"{name}.{self.method}"

    def __call__(self) -> str:
        return str(self)


def _prepare(x: Any, name: str, where: object) -> Tensor:
    t = as_tensor(x, name, where)
    check_batch(t, name, where)
    return t


def _geometry(plan: Plan, feature_shape: tuple[int, ...], layout: str | None) -> Geometry:
    axis = plan.input_channel_axis
    spatial = feature_shape[1:] if axis == 0 else feature_shape[:-1]
    spatial_output = not isinstance(plan.out, tuple) and len(plan.out.shape) > 1
    full = plan.mixing or (layout == "full" and spatial_output)
    return Geometry(feature_shape, axis, tuple(spatial), "full" if spatial and full else "diagonal")


def _plan(layer: KernelLayer, feature_shape: tuple[int, ...], where: _Where, layout: Any) -> Plan:
    if layout not in LAYOUTS:
        raise HyperparameterError(
            describe(
                where,
                f"layout={layout!r}",
                "Use None (the cheapest exact layout), 'full' or 'diagonal'.",
            )
        )
    return plan_network(layer, feature_shape, where)


def _wants_grad(plan: Plan, *xs: Tensor) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(x.requires_grad for x in xs) or any(t.requires_grad for t in plan.tensors)


def _result(
    block: KernelBlock, nngp: Tensor, ntk: Tensor | None, c1: Tensor, c2: Tensor, plan: Plan
) -> Kernel:
    out = plan.out
    shape = () if isinstance(out, tuple) else out.shape
    gaussian = not isinstance(out, tuple) and out.is_gaussian
    return Kernel(
        nngp=nngp,
        ntk=ntk,
        cov1=c1,
        cov2=c2,
        shape1=shape,
        shape2=shape,
        is_gaussian=gaussian,
        self_pairs=block.self_pairs,
        layout=block.layout,
        channel_axis=block.channel_axis,
    )


def _as_layout(k: Kernel, layout: str | None) -> Kernel:
    """The output in the asked layout: ``"diagonal"`` keeps same-position entries only."""
    if layout == "diagonal" and k.layout == "full" and k.spatial_ndim:
        return k.to_diagonal_layout()
    return k


def _self_pass(
    plan: Plan,
    geo: Geometry,
    f: Tensor,
    want_ntk: bool,
    memory_budget: int | None,
    where: _Where,
    pattern: Tensor | None = None,
    steps: list[Tensor | None] | None = None,
) -> KernelBlock:
    """The network on the pairs ``(x_i, x_i)``, in batches of examples.

    Where the whole chain compiles (spatial inputs, full layout, CPU, no autograd, no
    graph patterns), all but the first example go through
    the compiled chain's self mode (:func:`~.chain.native_self_pass`); otherwise layer by
    layer. Large passes run in :data:`~.tiling.SELF_BATCHES` batches, side by side on the
    caller's torch threads (each batch single-threaded, so the numbers do not depend on
    the thread count).
    Every step's output is checked for overflow (the compiled pass checks every recorded
    variance and output, and leaves a failure to the per-layer pass, which names the
    layer). With ``steps`` (an empty list), the
    per-position variances of every input after each step are appended to it, one
    ``(n, *spatial)`` tensor per step (``None`` where branches are in flight).
    """
    threads = torch.get_num_threads()
    with tiling.single_threaded():
        if pattern is None and f.shape[0] > 1:
            # the first example by layers gives the block's fields, then all compiled

            def first() -> tuple[KernelBlock, list[Tensor | None]]:
                seen: list[Tensor | None] = []
                block = _self_pass_batches(plan, geo, f[:1], want_ntk, None, where, None, seen)
                return block, seen

            fast = native_self_pass(plan, geo, f, first, memory_budget, threads)
            if fast is not None:
                if steps is not None:
                    steps.extend(fast[1])
                return fast[0]
        return _self_pass_batches(
            plan, geo, f, want_ntk, memory_budget, where, pattern, steps, threads
        )


def _self_pass_batches(
    plan: Plan,
    geo: Geometry,
    f: Tensor,
    want_ntk: bool,
    memory_budget: int | None,
    where: _Where,
    pattern: Tensor | None,
    steps: list[Tensor | None] | None,
    threads: int = 1,
) -> KernelBlock:
    n = f.shape[0]
    per_example = 4 * geo.pair_elements * f.element_size()
    fits = tiling.budget(memory_budget) // per_example  # examples in the budget
    batch = max(1, min(n, fits))
    large = n * geo.pair_elements >= tiling.SELF_PARALLEL_ENTRIES
    if large:
        # SELF_BATCHES batches whatever the thread count, so that one and several threads
        # compute the same batches (identical numbers); workers share the memory budget
        batch = max(1, min(fits // tiling.SELF_BATCHES, -(-n // tiling.SELF_BATCHES)))
    starts = list(range(0, n, batch))

    def one(i0: int) -> tuple[KernelBlock, list[Tensor | None]]:
        c = self_cov(f[i0 : i0 + batch], geo)
        p = None if pattern is None else pattern[i0 : i0 + batch]
        record: list[Tensor | None] = []

        def observe(i: int, k: Flow) -> None:
            check_finite(i, plan.steps[i].layer, k, where)
            if steps is not None:
                record.append(k.variances(k.cov1) if isinstance(k, KernelBlock) else None)

        k = run_steps(
            plan,
            input_block(c, c, c, geo, want_ntk, self_pairs=True, pattern1=p, pattern2=p),
            observe=observe,
        )
        if not isinstance(k, KernelBlock):  # pragma: no cover (plan_network refuses it)
            raise TypeError("the network ends with branches")
        return k, record

    done = tiling.map_ordered(one, starts, threads if large and f.device.type == "cpu" else 1)
    parts = [k for k, _ in done]
    records = [r for _, r in done]
    if steps is not None:
        for ts in zip(*records, strict=True):
            steps.append(None if ts[0] is None else torch.cat(ts) if len(ts) > 1 else ts[0])
    if len(parts) == 1:
        return parts[0]
    ntk = torch.cat([p.ntk for p in parts if p.ntk is not None]) if want_ntk else None
    return parts[0].replace(nngp=torch.cat([p.nngp for p in parts]), ntk=ntk)


def _replayed(
    v1: Tensor | None, v2: Tensor | None, r0: int, r1: int, s0: int, s1: int
) -> tuple[Tensor, Tensor] | None:
    """A chunk's rows and columns of one step's recorded variances (``None``: branches)."""
    if v1 is None or v2 is None:
        return None
    return v1[r0:r1], v2[s0:s1]


def _with_self_pairs(m: Tensor, d: Tensor) -> Tensor:
    """``m`` ``(n, n, *pairs)`` with its pairs ``(i, i)`` set to ``d`` ``(n, *pairs)``."""
    idx = torch.arange(m.shape[0], device=m.device)
    if m.requires_grad or d.requires_grad:
        return m.index_put((idx, idx), d.to(m.dtype))
    m[idx, idx] = d.to(m.dtype)
    return m


def _check_output(out: list[Tensor], where: _Where) -> None:
    for name, t in zip(("NNGP", "NTK"), out, strict=False):
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise NonFiniteError(
                describe(
                    where,
                    f"the {name} has {bad} non-finite entries although every variance is finite",
                    "Check the inputs' scale (an entry overflowed in a product) or use "
                    "float64; please report the network if the inputs are moderate.",
                )
            )


def compute_kernel(
    layer: KernelLayer,
    x1: Any,
    x2: Any,
    get: Get,
    *,
    memory_budget: int | None,
    block_size: Any,
    progress: Progress | None,
    pattern: Any = None,
    layout: str | None = None,
) -> Kernel:
    """Compute ``layer.kernel(x1, x2)`` block by block (see the module docstring)."""
    where = _Where(layer, "kernel")
    names = parse_get(get, where)
    want_ntk = "ntk" in names
    a = _prepare(x1, "x1", where)
    symmetric = x2 is None
    b = a if symmetric else _prepare(x2, "x2", where)
    if not symmetric:
        a, b = check_pair(a, b, where)
    plan = _plan(layer, tuple(a.shape[1:]), where, layout)
    geo = _geometry(plan, tuple(a.shape[1:]), layout)
    grad = _wants_grad(plan, a, b)
    fa = features(a, geo)
    fb = fa if symmetric else features(b, geo)
    n1, n2 = a.shape[0], b.shape[0]
    p1, p2 = patterns(pattern, a, None if symmetric else b, where)
    rows, cols = tiling.block_shape(
        block_size, memory_budget, n1, n2, geo.pair_elements * a.element_size()
    )
    use_symmetry = symmetric and not grad
    total = n1 * (n1 + 1) // 2 if use_symmetry else n1 * n2
    blocks = [
        (i0, min(n1, i0 + rows), j0, min(n2, j0 + cols))
        for i0 in range(0, n1, rows)
        for j0 in range(0, n2, cols)
        if not (use_symmetry and min(n2, j0 + cols) <= i0)
    ]

    # Each example's own covariance goes through the network once (the self pass); with
    # a full layout, chunks of pairs then carry only the variances that pass recorded.
    replay = not grad and geo.layout == "full" and plan.replays
    steps1: list[Tensor | None] = []
    steps2: list[Tensor | None] = []
    # With the NTK, the self pass checks it for overflow too (and gives the self-pairs).
    d1 = _self_pass(plan, geo, fa, want_ntk, memory_budget, where, p1, steps1 if replay else None)
    if symmetric:
        d2, steps2 = d1, steps1
    else:
        d2 = _self_pass(
            plan, geo, fb, want_ntk, memory_budget, where, p2, steps2 if replay else None
        )
    own = input_variances if replay else self_cov
    c1 = own(fa, geo)
    c2 = c1 if symmetric else own(fb, geo)

    def chunk(r0: int, r1: int, s0: int, s1: int, g: Tensor, i0: int, j0: int) -> KernelBlock:
        k0 = input_block(
            g[r0 - i0 : r1 - i0, s0 - j0 : s1 - j0],
            c1[r0:r1],
            c2[s0:s1],
            geo,
            want_ntk,
            pattern1=None if p1 is None else p1[r0:r1],
            pattern2=None if p2 is None else p2[s0:s1],
            origin=(r0, s0) if symmetric else None,
            cov_variance=replay,
        )
        k = run_steps(
            plan,
            k0,
            replay=(lambda i: _replayed(steps1[i], steps2[i], r0, r1, s0, s1)) if replay else None,
            pin=symmetric,
        )
        if not isinstance(k, KernelBlock):  # pragma: no cover (plan_network refuses it)
            raise TypeError("the network ends with branches")
        return k

    if grad:
        row_parts: list[list[KernelBlock]] = []
        done = 0
        for i0, i1, j0, j1 in blocks:
            if j0 == 0:
                row_parts.append([])
            row_parts[-1].append(chunk(i0, i1, j0, j1, gram(fa[i0:i1], fb[j0:j1], geo), i0, j0))
            done += (i1 - i0) * (j1 - j0)
            if progress is not None and j1 == n2:
                progress(done, total)
        out = [torch.cat([torch.cat([k.nngp for k in r], 1) for r in row_parts], 0)]
        if want_ntk:
            ntks = [[k.ntk for k in r if k.ntk is not None] for r in row_parts]
            out.append(torch.cat([torch.cat(r, 1) for r in ntks], 0))
    else:
        trailing = tuple(d1.nngp.shape[1:])  # the output layout, as the self pass ends
        out = [d1.nngp.new_empty((n1, n2, *trailing)) for _ in range(1 + want_ntk)]
        chunk_rows, chunk_cols = tiling.chunk_shape(rows, cols, geo.pair_elements)

        def pairs(r0: int, r1: int, s0: int, s1: int) -> int:
            """The example pairs a chunk computes (its upper triangle on the diagonal)."""
            if use_symmetry and r0 == s0:
                return (r1 - r0) * (r1 - r0 + 1) // 2
            return (r1 - r0) * (s1 - s0)

        @torch.no_grad()  # nothing here needs autograd; workers do not inherit the mode
        def run_chunk(r0: int, r1: int, s0: int, s1: int, g: Tensor, i0: int, j0: int) -> int:
            k = chunk(r0, r1, s0, s1, g, i0, j0)
            out[0][r0:r1, s0:s1] = k.nngp
            if k.ntk is not None:
                out[1][r0:r1, s0:s1] = k.ntk
            return pairs(r0, r1, s0, s1)

        if geo.spatial:
            # Spatial chunks are the unit of work: each makes its own input kernel (the
            # interleaving copy is cheap while a chunk is in cache), and many similar
            # chunks keep every worker busy. Where the whole chain compiles, a chunk is
            # one Gram product and one compiled call, both without the GIL.
            compiled = (
                native_chain(plan, geo, fa, fb, steps1, steps2, out, upper=use_symmetry)
                if replay
                else None
            )

            def run_task(r0: int, r1: int, s0: int, s1: int) -> int:
                if compiled is None:
                    return run_chunk(r0, r1, s0, s1, gram(fa[r0:r1], fb[s0:s1], geo), r0, s0)
                compiled(r0, r1, s0, s1)
                return pairs(r0, r1, s0, s1)

            expensive = geo.pair_elements >= tiling.SPLIT_PAIR_ELEMENTS
            tasks = tiling.chunk_tasks(n1, n2, chunk_rows, chunk_cols, use_symmetry, expensive)
            work = total * geo.pair_elements
            tiling.run_blocks(
                run_task, tasks, total, progress, parallel=work >= tiling.PARALLEL_ENTRIES
            )
        else:

            def run_block(i0: int, i1: int, j0: int, j1: int) -> int:
                g = gram(fa[i0:i1], fb[j0:j1], geo)
                count = 0
                for r0 in range(i0, i1, chunk_rows):
                    r1 = min(i1, r0 + chunk_rows)
                    for s0 in range(j0, j1, chunk_cols):
                        s1 = min(j1, s0 + chunk_cols)
                        if use_symmetry:
                            s0 = max(s0, r0)
                            if s0 >= s1:
                                continue
                        count += run_chunk(r0, r1, s0, s1, g, i0, j0)
                return count

            tiling.run_blocks(run_block, blocks, total, progress)
        if use_symmetry:
            swap = tiling.output_swap(out[0], d1.layout, d1.spatial_ndim)
            for m in out:
                tiling.mirror_upper(m, rows, swap)
    if symmetric:  # an example with itself: exactly its self-covariance
        out[0] = _with_self_pairs(out[0], d1.nngp)
        if want_ntk and d1.ntk is not None:
            out[1] = _with_self_pairs(out[1], d1.ntk)
    _check_output(out, where)
    result = _result(d1, out[0], out[1] if want_ntk else None, d1.nngp, d2.nngp, plan)
    return _as_layout(result.replace(self_pairs=False), layout)


def compute_kernel_diag(
    layer: KernelLayer, x: Any, get: Get, pattern: Any = None, layout: str | None = None
) -> Kernel:
    """Compute ``layer.kernel_diag(x)``: the kernels of the pairs ``(x_i, x_i)``."""
    where = _Where(layer, "kernel_diag")
    names = parse_get(get, where)
    t = _prepare(x, "x", where)
    plan = _plan(layer, tuple(t.shape[1:]), where, layout)
    geo = _geometry(plan, tuple(t.shape[1:]), layout)
    p, _ = patterns(pattern, t, None, where)
    k = _self_pass(plan, geo, features(t, geo), "ntk" in names, None, where, p)
    result = _result(k, k.nngp, k.ntk, k.nngp, k.nngp, plan)
    return _as_layout(result, layout)
