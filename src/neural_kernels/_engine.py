r"""Evaluation of a network's kernel over all example pairs, in blocks.

Every layer acts on each example pair independently (given the two inputs'
variances), so the ``n1 x n2`` kernel is computed block by block:

1. the network is checked once on its static facts (shapes, Gaussianity);
2. for each block of rows and columns the input kernel
   :math:`K_0(x, x') = x \cdot x' / d` is one matrix product;
3. the block is cut into chunks of about ``_CHUNK_ELEMENTS`` entries and the whole
   layer chain runs on one chunk while it sits in cache;
4. with ``x2=None`` only the upper triangle is computed and then mirrored.

Working memory is one block of the input kernel plus a few chunks, whatever ``n``.
Under autograd (inputs or hyperparameters that require grad) blocks are joined with
``torch.cat`` instead of written into a preallocated output, and symmetry is not used.
"""

from __future__ import annotations

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
#: Largest default block side: square blocks this size let the symmetric path skip the
#: Gram products below the diagonal while keeping each product efficient.
_MAX_BLOCK = 512
#: Default working memory besides the output.
DEFAULT_MEMORY_BUDGET = 512 * 2**20


def _prepare(layer: Layer, x: Any, name: str, where: str) -> Tensor:
    t = as_tensor(x, name, where)
    check_batch(t, name, where)
    return t


def _check_network(layer: Layer, feature_shape: tuple[int, ...], where: str) -> Facts:
    out = layer.infer(Facts(feature_shape))
    if isinstance(out, tuple):
        raise LayerCompatibilityError(
            describe(
                where,
                f"the network ends with {len(out)} branches",
                "End it with FanInSum, FanInProduct or FanInConcat.",
            )
        )
    if len(feature_shape) != 1:
        raise ShapeError(
            describe(
                where,
                f"inputs have feature shape {feature_shape}",
                "Kernels of spatial inputs are not available yet: pass inputs of shape "
                "(n, features), e.g. x.flatten(1).",
            )
        )
    return out


def _wants_grad(layer: Layer, *xs: Tensor) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(x.requires_grad for x in xs) or any(h.requires_grad for h in layer.hyperparameters())


def _input_kernel(
    gram: Tensor, c1: Tensor, c2: Tensor, shape: tuple[int, ...], ntk: bool
) -> Kernel:
    return Kernel(
        nngp=gram,
        ntk=torch.zeros_like(gram) if ntk else None,
        cov1=c1,
        cov2=c2,
        shape1=shape,
        shape2=shape,
    )


def _block_rows(
    block_size: Any, memory_budget: int | None, n1: int, n2: int, itemsize: int
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
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    if budget <= 0:
        raise HyperparameterError(
            describe(
                "kernel", f"memory_budget={memory_budget!r}", "Give a positive number of bytes."
            )
        )
    # One block of the input kernel, twice over (the Gram product and its chunks' outputs).
    cols = min(n2, _MAX_BLOCK, max(1, budget // (4 * itemsize)))
    rows = min(n1, _MAX_BLOCK, max(1, budget // (4 * itemsize * cols)))
    return rows, cols


def compute_kernel(
    layer: Layer,
    x1: Any,
    x2: Any,
    get: Get,
    *,
    memory_budget: int | None,
    block_size: Any,
    progress: Progress | None,
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
    feature_shape = tuple(a.shape[1:])
    facts = _check_network(layer, feature_shape, where)

    grad = _wants_grad(layer, a, b)
    d = a.shape[1]
    c1 = (a * a).sum(-1) / d
    c2 = c1 if symmetric else (b * b).sum(-1) / d
    n1, n2 = a.shape[0], b.shape[0]
    rows, cols = _block_rows(block_size, memory_budget, n1, n2, a.element_size())
    use_symmetry = symmetric and not grad

    total = n1 * (n1 + 1) // 2 if use_symmetry else n1 * n2
    done = 0
    out_nngp: Tensor | None = None
    out_ntk: Tensor | None = None
    row_parts: list[tuple[Tensor, Tensor | None]] = []
    for i0 in range(0, n1, rows):
        i1 = min(n1, i0 + rows)
        col_parts: list[tuple[Tensor, Tensor | None]] = []
        for j0 in range(0, n2, cols):
            j1 = min(n2, j0 + cols)
            if use_symmetry and j1 <= i0:
                continue
            gram = (a[i0:i1] @ b[j0:j1].T) / d
            step = max(1, _CHUNK_ELEMENTS // (j1 - j0))
            chunk_parts: list[tuple[Tensor, Tensor | None]] = []
            for r0 in range(0, i1 - i0, step):
                r1 = min(i1 - i0, r0 + step)
                s0 = max(j0, i0 + r0) if use_symmetry else j0
                if s0 >= j1:
                    continue
                k = layer.transform(
                    _input_kernel(
                        gram[r0:r1, s0 - j0 :],
                        c1[i0 + r0 : i0 + r1],
                        c2[s0:j1],
                        feature_shape,
                        want_ntk,
                    )
                )
                assert isinstance(k, Kernel)
                if grad:
                    chunk_parts.append((k.nngp, k.ntk))
                    continue
                if out_nngp is None:
                    out_nngp = k.nngp.new_empty((n1, n2))
                    out_ntk = k.nngp.new_empty((n1, n2)) if want_ntk else None
                out_nngp[i0 + r0 : i0 + r1, s0:j1] = k.nngp
                if out_ntk is not None:
                    out_ntk[i0 + r0 : i0 + r1, s0:j1] = k.ntk
                done += (r1 - r0) * (j1 - s0)
            if grad:
                col_parts.append(_cat(chunk_parts, 0))
                done += (i1 - i0) * (j1 - j0)
        if grad:
            row_parts.append(_cat(col_parts, 1))
        if progress is not None:
            progress(min(done, total), total)

    if grad:
        out_nngp, out_ntk = _cat(row_parts, 0)
    assert out_nngp is not None
    if use_symmetry:
        _mirror_upper(out_nngp, rows)
        if out_ntk is not None:
            _mirror_upper(out_ntk, rows)

    cov1, cov2 = _output_variances(layer, c1, None if symmetric else c2, feature_shape)
    return Kernel(
        nngp=out_nngp,
        ntk=out_ntk,
        cov1=cov1,
        cov2=cov2,
        shape1=facts.shape,
        shape2=facts.shape,
        is_gaussian=facts.is_gaussian,
    )


def _cat(parts: list[tuple[Tensor, Tensor | None]], dim: int) -> tuple[Tensor, Tensor | None]:
    nngp = torch.cat([p[0] for p in parts], dim)
    ntk = None if parts[0][1] is None else torch.cat([p[1] for p in parts], dim)  # type: ignore[misc]
    return nngp, ntk


def _mirror_upper(m: Tensor, block: int) -> None:
    """Fill the strict lower triangle of square ``m`` from its upper triangle, in place."""
    n = m.shape[0]
    block = max(block, 256)
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        diag = m[i0:i1, i0:i1]
        upper = torch.ones(i1 - i0, i1 - i0, dtype=torch.bool, device=m.device).triu()
        diag.copy_(torch.where(upper, diag, diag.T))
        if i1 < n:
            m[i1:, i0:i1] = m[i0:i1, i1:].T


def _output_variances(
    layer: Layer, c1: Tensor, c2: Tensor | None, shape: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    def run(c: Tensor) -> Tensor:
        k = layer.transform(
            Kernel(nngp=c, ntk=None, cov1=c, cov2=c, shape1=shape, shape2=shape, diagonal=True)
        )
        assert isinstance(k, Kernel)
        return k.nngp

    v1 = run(c1)
    return v1, v1 if c2 is None else run(c2)


def compute_kernel_diag(layer: Layer, x: Any, get: Get) -> Kernel:
    """Compute ``layer.kernel_diag(x)``: the kernels of the pairs ``(x_i, x_i)``."""
    where = f"{layer!r}.kernel_diag"
    names = parse_get(get, where)
    t = _prepare(layer, x, "x", where)
    shape = tuple(t.shape[1:])
    _check_network(layer, shape, where)
    c = (t * t).sum(-1) / t.shape[1]
    k = layer.transform(
        Kernel(
            nngp=c,
            ntk=torch.zeros_like(c) if "ntk" in names else None,
            cov1=c,
            cov2=c,
            shape1=shape,
            shape2=shape,
            diagonal=True,
        )
    )
    assert isinstance(k, Kernel)
    return k.replace(cov2=k.cov1)
