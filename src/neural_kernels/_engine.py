r"""Evaluation of a network's kernel over all example pairs, in blocks.

Every layer acts on each example pair independently (given each input's covariance
with itself), so the ``n1 x n2`` kernel is computed block by block:

1. the network is checked once on its static facts (shapes, Gaussianity), which also
   fix the input's channel axis and the spatial layout (full or diagonal);
2. the same-example covariances of every input go through the network once;
3. for each block of rows and columns the input kernel
   :math:`K_0(x, x')_{pp'} = \sum_c x_{cp} x'_{cp'} / C` is one matrix product;
4. the block is cut into chunks of about ``_CHUNK_ELEMENTS`` entries and the whole
   layer chain runs on one chunk while it sits in cache;
5. with ``x2=None`` only the upper triangle is computed and then mirrored.

Working memory is one block of the input kernel plus a few chunks, whatever ``n``.
Under autograd (inputs or hyperparameters that require grad) blocks are joined with
``torch.cat`` instead of written into a preallocated output, and symmetry is not used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ._validation import as_tensor, check_batch, check_pair, parse_get
from .errors import HyperparameterError, LayerCompatibilityError, ShapeError, describe
from .kernel import Kernel
from .layers.base import Facts

if TYPE_CHECKING:  # pragma: no cover
    from .layers.base import Get, Layer, Progress

#: Entries of a chunk on which the layer chain runs at once (512 KiB in float64: the
#: chain's few live temporaries stay in a 2 MiB L2 cache).
_CHUNK_ELEMENTS = 1 << 16
#: Entries of a chunk of spatial kernels (several example pairs of position pairs).
_SPATIAL_CHUNK_ELEMENTS = 1 << 18
#: Largest default block side: square blocks this size let the symmetric path skip the
#: Gram products below the diagonal while keeping each product efficient.
_MAX_BLOCK = 512
#: Pairs with at least this many entries are expensive enough to cut the chunks on the
#: diagonal of a symmetric kernel finer (fewer pairs below the diagonal are computed).
_SPLIT_PAIR_ELEMENTS = 1024
#: Below this many input-kernel entries, chunks run in the calling thread (a pool of
#: workers costs more than it saves).
_PARALLEL_ENTRIES = 1 << 20
#: Default working memory besides the output.
DEFAULT_MEMORY_BUDGET = 512 * 2**20


def _prepare(layer: Layer, x: Any, name: str, where: str) -> Tensor:
    t = as_tensor(x, name, where)
    check_batch(t, name, where)
    return t


@dataclass(frozen=True)
class _Plan:
    """What the engine needs to know about a network before any arithmetic."""

    feature_shape: tuple[int, ...]
    channel_axis: int
    spatial: tuple[int, ...]
    layout: str
    facts: Facts

    @property
    def positions(self) -> int:
        return math.prod(self.spatial)

    @property
    def pair_elements(self) -> int:
        """Entries per example pair of the input kernel."""
        p = self.positions
        return p * p if self.layout == "full" and self.spatial else p


LAYOUTS = (None, "full", "diagonal")


def _plan(
    layer: Layer, feature_shape: tuple[int, ...], where: str, layout: str | None = None
) -> _Plan:
    if layout not in LAYOUTS:
        raise HyperparameterError(
            describe(
                where,
                f"layout={layout!r}",
                "Use None (the cheapest exact layout), 'full' or 'diagonal'.",
            )
        )
    out = layer.infer(Facts(feature_shape))
    if isinstance(out, tuple):
        raise LayerCompatibilityError(
            describe(
                where,
                f"the network ends with {len(out)} branches",
                "End it with FanInSum, FanInProduct or FanInConcat.",
            )
        )
    axis = layer.first_channel_axis()
    axis = -1 if axis is None else axis
    spatial = feature_shape[1:] if axis == 0 else feature_shape[:-1]
    spatial_output = len(out.shape) > 1
    full = layer.needs_full_spatial() or (layout == "full" and spatial_output)
    return _Plan(
        feature_shape, axis, tuple(spatial), "full" if spatial and full else "diagonal", out
    )


def _as_layout(k: Kernel, layout: str | None) -> Kernel:
    """The output in the asked layout: ``"diagonal"`` keeps same-position entries only."""
    if layout == "diagonal" and k.layout == "full" and k.spatial_ndim:
        return k.to_diagonal_layout()
    return k


def _wants_grad(layer: Layer, *xs: Tensor) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(x.requires_grad for x in xs) or any(h.requires_grad for h in layer.hyperparameters())


def _features(x: Tensor, plan: _Plan) -> Tensor:
    """Inputs as ``(n, positions, channels)``."""
    if plan.channel_axis == 0 and plan.spatial:
        x = x.movedim(1, -1)
    return x.reshape(x.shape[0], plan.positions, x.shape[-1])


def _interleave(t: Tensor, lead: int, spatial: tuple[int, ...]) -> Tensor:
    """``(*lead, P, P')`` to the interleaved pair layout ``(*lead, S1, S1', S2, S2', ...)``."""
    s = len(spatial)
    t = t.reshape(*t.shape[:lead], *spatial, *spatial)
    perm = list(range(lead)) + [lead + i + j * s for i in range(s) for j in (0, 1)]
    return t.permute(perm)


def _gram(fa: Tensor, fb: Tensor, plan: _Plan) -> Tensor:
    """Input kernel of a block: ``(na, nb, *pairs)``."""
    na, nb, c = fa.shape[0], fb.shape[0], fa.shape[-1]
    if not plan.spatial:
        return (fa[:, 0] @ fb[:, 0].T) / c
    p = plan.positions
    if plan.layout == "full":
        g = torch.mm(fa.reshape(na * p, c) / c, fb.reshape(nb * p, c).T)
        g = g.reshape(na, p, nb, p).transpose(1, 2)
        return _interleave(g, 2, plan.spatial).contiguous()
    g = torch.bmm(fa.transpose(0, 1), fb.permute(1, 2, 0)) / c  # (P, na, nb)
    return g.permute(1, 2, 0).reshape(na, nb, *plan.spatial)


def _self_cov(fa: Tensor, plan: _Plan) -> Tensor:
    """Covariance of each input with itself: ``(n, *pairs)`` (``(n,)`` without space)."""
    if plan.layout == "full" and plan.spatial:
        g = torch.bmm(fa, fa.transpose(1, 2)) / fa.shape[-1]
        return _interleave(g, 1, plan.spatial).contiguous()
    return _input_variances(fa, plan)


def _input_variances(f: Tensor, plan: _Plan) -> Tensor:
    """Per-position variances of the inputs, ``(n, *spatial)`` (``(n,)`` without space)."""
    return ((f * f).sum(-1) / f.shape[-1]).reshape(f.shape[0], *plan.spatial)


def _input_kernel(
    gram: Tensor,
    c1: Tensor,
    c2: Tensor,
    plan: _Plan,
    ntk: bool,
    diagonal: bool = False,
    pattern1: Tensor | None = None,
    pattern2: Tensor | None = None,
    origin: tuple[int, int] | None = None,
) -> Kernel:
    return Kernel(
        nngp=gram,
        ntk=gram.new_zeros(()).expand(gram.shape) if ntk else None,  # zero, no memory
        cov1=c1,
        cov2=c2,
        shape1=plan.feature_shape,
        shape2=plan.feature_shape,
        diagonal=diagonal,
        layout=plan.layout,
        channel_axis=plan.channel_axis,
        pattern1=pattern1,
        pattern2=pattern2,
        origin=origin,
    )


def _patterns(
    pattern: Any, a: Tensor, b: Tensor | None, where: str
) -> tuple[Tensor | None, Tensor | None]:
    """Check graph adjacency ``pattern`` against the inputs; one per batch."""
    if pattern is None:
        return None, None
    if b is None:
        pair = (pattern, pattern) if not isinstance(pattern, (tuple, list)) else tuple(pattern)
    else:
        if not isinstance(pattern, (tuple, list)) or len(pattern) != 2:
            raise ShapeError(
                describe(
                    where,
                    "one adjacency pattern for two input batches",
                    "Pass pattern=(pattern1, pattern2), one (n, L, L) tensor per batch.",
                )
            )
        pair = tuple(pattern)
    out = []
    for name, p, x in (("pattern1", pair[0], a), ("pattern2", pair[1], a if b is None else b)):
        t = as_tensor(p, name, where).to(x.dtype)
        n = x.shape[0]
        if t.ndim != 3 or t.shape[0] != n or t.shape[1] != t.shape[2]:
            raise ShapeError(
                describe(
                    where,
                    f"{name} has shape {tuple(t.shape)} for {n} inputs",
                    f"Pass one square adjacency matrix per example: shape ({n}, L, L).",
                )
            )
        out.append(t)
    return out[0], out[1]


def _budget(memory_budget: int | None) -> int:
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    if budget <= 0:
        raise HyperparameterError(
            describe(
                "kernel", f"memory_budget={memory_budget!r}", "Give a positive number of bytes."
            )
        )
    return budget


def _block_shape(
    block_size: Any, memory_budget: int | None, n1: int, n2: int, pair_bytes: int
) -> tuple[int, int]:
    if block_size is not None:
        rows, cols = (block_size, block_size) if isinstance(block_size, int) else block_size
        if int(rows) < 1 or int(cols) < 1:
            raise HyperparameterError(
                describe(
                    "kernel",
                    f"block_size={block_size!r}",
                    "Use a positive number of rows (or (rows, cols)).",
                )
            )
        return min(int(rows), n1), min(int(cols), n2)
    budget = _budget(memory_budget)
    # One block of the input kernel, four times over (Gram product, chunk temporaries).
    pairs = max(1, budget // (4 * pair_bytes))
    cols = min(n2, _MAX_BLOCK, max(1, math.isqrt(pairs)))
    rows = min(n1, _MAX_BLOCK, max(1, pairs // cols))
    return rows, cols


def _chunk_shape(rows: int, cols: int, pair_elements: int) -> tuple[int, int]:
    """Sub-block of a block on which the layer chain runs at once.

    Fully connected chunks stay in cache; spatial ones are larger, so that Python's
    per-operation overhead is spread over enough entries.
    """
    budget = _CHUNK_ELEMENTS if pair_elements == 1 else _SPATIAL_CHUNK_ELEMENTS
    pairs = max(1, budget // pair_elements)
    # square-ish: each chunk also carries its rows' and columns' own variances
    c = min(cols, pairs) if pair_elements == 1 else min(cols, max(1, math.isqrt(pairs)))
    r = min(rows, max(1, pairs // c))
    return r, c


def _diagonal_tasks(a: int, b: int, side: int) -> list[tuple[int, int, int, int]]:
    """Cover the upper triangle of the square ``[a, b)^2`` by rectangles.

    Halving the square (two diagonal halves and one off-diagonal quarter) until its side
    is at most ``side`` computes few pairs below the diagonal.
    """
    if b - a <= side:
        return [(a, b, a, b)]
    h = a + (b - a) // 2
    return [*_diagonal_tasks(a, h, side), (a, h, h, b), *_diagonal_tasks(h, b, side)]


def _chunk_tasks(
    n1: int, n2: int, rows: int, cols: int, symmetric: bool, split: bool = True
) -> list[tuple[int, int, int, int]]:
    """Chunks ``(r0, r1, s0, s1)`` covering the kernel (its upper triangle if symmetric).

    Largest first, so that the last chunks to finish are small ones. ``split``: cut the
    squares on the diagonal further (worth it when a pair is expensive).
    """
    tasks = []
    if symmetric:
        side = min(rows, cols)
        for a in range(0, n1, side):
            b = min(n1, a + side)
            tasks += _diagonal_tasks(a, b, max(2, side // 4) if split else side)
            for s0 in range(b, n2, cols):
                tasks += [
                    (r0, min(b, r0 + rows), s0, min(n2, s0 + cols)) for r0 in range(a, b, rows)
                ]
    else:
        tasks = [
            (r0, min(n1, r0 + rows), s0, min(n2, s0 + cols))
            for r0 in range(0, n1, rows)
            for s0 in range(0, n2, cols)
        ]
    return sorted(tasks, key=lambda t: -(t[1] - t[0]) * (t[3] - t[2]))


def compute_kernel(
    layer: Layer,
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
    where = f"{layer!r}.kernel"
    names = parse_get(get, where)
    want_ntk = "ntk" in names
    a = _prepare(layer, x1, "x1", where)
    symmetric = x2 is None
    b = a if symmetric else _prepare(layer, x2, "x2", where)
    if not symmetric:
        a, b = check_pair(a, b, where)
    plan = _plan(layer, tuple(a.shape[1:]), where, layout)
    grad = _wants_grad(layer, a, b)
    fa = _features(a, plan)
    fb = fa if symmetric else _features(b, plan)
    n1, n2 = a.shape[0], b.shape[0]
    p1, p2 = _patterns(pattern, a, None if symmetric else b, where)
    rows, cols = _block_shape(
        block_size, memory_budget, n1, n2, plan.pair_elements * a.element_size()
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
    replay = not grad and plan.layout == "full" and layer.replays_variances()
    steps1: list[Tensor | None] = []
    steps2: list[Tensor | None] = []
    d1 = _self_pass(layer, fa, plan, False, memory_budget, p1, steps1 if replay else None)
    if symmetric:
        d2, steps2 = d1, steps1
    else:
        d2 = _self_pass(layer, fb, plan, False, memory_budget, p2, steps2 if replay else None)
    own = _input_variances if replay else _self_cov
    c1 = own(fa, plan)
    c2 = c1 if symmetric else own(fb, plan)

    def chunk(r0: int, r1: int, s0: int, s1: int, gram: Tensor, i0: int, j0: int) -> Kernel:
        k0 = _input_kernel(
            gram[r0 - i0 : r1 - i0, s0 - j0 : s1 - j0],
            c1[r0:r1],
            c2[s0:s1],
            plan,
            want_ntk,
            pattern1=None if p1 is None else p1[r0:r1],
            pattern2=None if p2 is None else p2[s0:s1],
            origin=(r0, s0) if symmetric else None,
        )
        if not replay:
            k = layer.transform_network(k0)
        else:
            k = layer.transform_network(
                k0.replace(cov_variance=True),
                replay=lambda i: _replayed(steps1[i], steps2[i], r0, r1, s0, s1),
            )
        assert isinstance(k, Kernel)
        return k

    if grad:
        out: list[Tensor] = []
        row_parts: list[list[Kernel]] = []
        done = 0
        for i0, i1, j0, j1 in blocks:
            if j0 == 0:
                row_parts.append([])
            row_parts[-1].append(chunk(i0, i1, j0, j1, _gram(fa[i0:i1], fb[j0:j1], plan), i0, j0))
            done += (i1 - i0) * (j1 - j0)
            if progress is not None and j1 == n2:
                progress(done, total)
        out = [torch.cat([torch.cat([k.nngp for k in r], 1) for r in row_parts], 0)]
        if want_ntk:
            out.append(
                torch.cat([torch.cat([k.ntk for k in r], 1) for r in row_parts], 0)  # type: ignore[misc]
            )
    else:
        probe = chunk(0, 1, 0, 1, _gram(fa[:1], fb[:1], plan), 0, 0)
        trailing = tuple(probe.nngp.shape[2:])
        out = [probe.nngp.new_empty((n1, n2, *trailing)) for _ in range(1 + want_ntk)]
        chunk_rows, chunk_cols = _chunk_shape(rows, cols, plan.pair_elements)

        @torch.no_grad()  # nothing here needs autograd; workers do not inherit the mode
        def run_chunk(r0: int, r1: int, s0: int, s1: int, gram: Tensor, i0: int, j0: int) -> int:
            k = chunk(r0, r1, s0, s1, gram, i0, j0)
            out[0][r0:r1, s0:s1] = k.nngp
            if k.ntk is not None:
                out[1][r0:r1, s0:s1] = k.ntk
            if use_symmetry and r0 == s0:
                return (r1 - r0) * (r1 - r0 + 1) // 2
            return (r1 - r0) * (s1 - s0)

        if plan.spatial:
            # Spatial chunks are the unit of work: each makes its own input kernel (the
            # interleaving copy is cheap while a chunk is in cache), and many similar
            # chunks keep every worker busy.
            def run_task(r0: int, r1: int, s0: int, s1: int) -> int:
                return run_chunk(r0, r1, s0, s1, _gram(fa[r0:r1], fb[s0:s1], plan), r0, s0)

            expensive = plan.pair_elements >= _SPLIT_PAIR_ELEMENTS
            tasks = _chunk_tasks(n1, n2, chunk_rows, chunk_cols, use_symmetry, expensive)
            work = total * plan.pair_elements
            _run_blocks(run_task, tasks, total, progress, parallel=work >= _PARALLEL_ENTRIES)
        else:

            def run_block(i0: int, i1: int, j0: int, j1: int) -> int:
                gram = _gram(fa[i0:i1], fb[j0:j1], plan)
                count = 0
                for r0 in range(i0, i1, chunk_rows):
                    r1 = min(i1, r0 + chunk_rows)
                    for s0 in range(j0, j1, chunk_cols):
                        s1 = min(j1, s0 + chunk_cols)
                        if use_symmetry:
                            s0 = max(s0, r0)
                            if s0 >= s1:
                                continue
                        count += run_chunk(r0, r1, s0, s1, gram, i0, j0)
                return count

            _run_blocks(run_block, blocks, total, progress)
        if use_symmetry:
            swap = _output_swap(probe)
            for m in out:
                _mirror_upper(m, rows, swap)

    result = Kernel(
        nngp=out[0],
        ntk=out[1] if want_ntk else None,
        cov1=d1.nngp,
        cov2=d2.nngp,
        shape1=plan.facts.shape,
        shape2=plan.facts.shape,
        is_gaussian=plan.facts.is_gaussian,
        layout=d1.layout,
        channel_axis=d1.channel_axis,
    )
    return _as_layout(result, layout)


def _run_blocks(
    run_block: Callable[[int, int, int, int], int],
    blocks: list[tuple[int, int, int, int]],
    total: int,
    progress: Progress | None,
    parallel: bool = True,
) -> None:
    """Run the blocks, several at once when torch may use several threads.

    Each worker runs its block's operations on one thread: many small multi-threaded
    operations stall on their barriers whenever another process holds a core, while
    independent single-threaded blocks keep going. Blocks write disjoint output slices.
    """
    threads = torch.get_num_threads()
    workers = min(threads, len(blocks)) if parallel else 1
    done = 0
    if workers <= 1:
        for block in blocks:
            done += run_block(*block)
            if progress is not None:
                progress(min(done, total), total)
        return
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            futures = [pool.submit(run_block, *block) for block in blocks]
            for future in as_completed(futures):
                done += future.result()
                if progress is not None:
                    progress(min(done, total), total)
    finally:
        torch.set_num_threads(threads)


def _output_swap(k: Kernel) -> tuple[int, ...]:
    """Trailing-axis permutation that maps ``k(x, x')`` to ``k(x', x)`` for ``k``'s layout.

    Interleaved position pairs of the full layout swap; same-position entries stay.
    """
    trailing = k.nngp.ndim - 2
    if k.layout == "full" and k.spatial_ndim and trailing == 2 * k.spatial_ndim:
        return tuple(i ^ 1 for i in range(trailing))
    return tuple(range(trailing))


def _mirror_upper(m: Tensor, block: int, swap: tuple[int, ...]) -> None:
    """Fill the strict lower triangle of ``m`` (``(n, n, ...)``) from its upper one, in place.

    ``k(x_j, x_i)`` is ``k(x_i, x_j)`` with its axis pairs swapped (``swap``).
    """
    n = m.shape[0]
    perm = (1, 0, *(2 + i for i in swap))
    block = max(block, 256)
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        diag = m[i0:i1, i0:i1]
        upper = torch.ones(i1 - i0, i1 - i0, dtype=torch.bool, device=m.device).triu()
        upper = upper.reshape(*upper.shape, *([1] * (m.ndim - 2)))
        diag.copy_(torch.where(upper, diag, diag.permute(perm)))
        if i1 < n:
            m[i1:, i0:i1] = m[i0:i1, i1:].permute(perm)


def _self_pass(
    layer: Layer,
    f: Tensor,
    plan: _Plan,
    want_ntk: bool,
    memory_budget: int | None,
    pattern: Tensor | None = None,
    steps: list[Tensor | None] | None = None,
) -> Kernel:
    """The network on the pairs ``(x_i, x_i)``, in batches of examples.

    With ``steps`` (an empty list), the per-position variances of every input after each
    step of the network are appended to it, one ``(n, *spatial)`` tensor per step.
    """
    budget = _budget(memory_budget)
    per_example = 4 * plan.pair_elements * f.element_size()
    batch = max(1, min(f.shape[0], budget // per_example))
    parts: list[Kernel] = []
    records: list[list[Tensor | None]] = []
    for i0 in range(0, f.shape[0], batch):
        c = _self_cov(f[i0 : i0 + batch], plan)
        p = None if pattern is None else pattern[i0 : i0 + batch]
        record: list[Tensor | None] | None = None if steps is None else []
        k = layer.transform_network(
            _input_kernel(c, c, c, plan, want_ntk, diagonal=True, pattern1=p, pattern2=p),
            record=record,
        )
        assert isinstance(k, Kernel)
        parts.append(k)
        if record is not None:
            records.append(record)
    if steps is not None:
        for ts in zip(*records, strict=True):
            steps.append(None if ts[0] is None else torch.cat(ts) if len(ts) > 1 else ts[0])
    if len(parts) == 1:
        return parts[0]
    ntk = torch.cat([p.ntk for p in parts]) if want_ntk else None  # type: ignore[misc]
    return parts[0].replace(nngp=torch.cat([p.nngp for p in parts]), ntk=ntk)


def _replayed(
    v1: Tensor | None, v2: Tensor | None, r0: int, r1: int, s0: int, s1: int
) -> tuple[Tensor, Tensor] | None:
    """A chunk's rows and columns of one step's recorded variances (``None``: branches)."""
    if v1 is None or v2 is None:
        return None
    return v1[r0:r1], v2[s0:s1]


def compute_kernel_diag(
    layer: Layer, x: Any, get: Get, pattern: Any = None, layout: str | None = None
) -> Kernel:
    """Compute ``layer.kernel_diag(x)``: the kernels of the pairs ``(x_i, x_i)``."""
    where = f"{layer!r}.kernel_diag"
    names = parse_get(get, where)
    t = _prepare(layer, x, "x", where)
    plan = _plan(layer, tuple(t.shape[1:]), where, layout)
    p, _ = _patterns(pattern, t, None, where)
    k = _self_pass(layer, _features(t, plan), plan, "ntk" in names, None, p)
    return _as_layout(k.replace(cov1=k.nngp, cov2=k.nngp), layout)
