"""Per-example features of the empirical NTK, their contraction, and blocks of examples.

* A kernel is assembled from per-example *features* (:class:`Dot`, :class:`Kron`,
  :class:`Pos`) in blocks of examples (:func:`assemble`), so that no block needs more than
  a memory budget; for ``x2 = None`` only the upper triangle is computed and mirrored.
* :func:`jacobian_features` are the per-example Jacobians of the Jacobian-contraction
  strategy (and of the structured strategy's fallback).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor
from torch.func import jacrev, vmap

from ..errors import ModelError, describe
from ._model import Prepared

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
    if out is None:
        raise ValueError("contract needs at least one feature")
    return out


def _outputs_first(a: Tensor) -> bool:
    """Whether ``a`` (logical ``(k, b, ...)``) is stored outputs-first (else examples-first)."""
    return not a.transpose(0, 1).is_contiguous() or a.is_contiguous()


def _gram_sum(a: Tensor, b: Tensor) -> Tensor:
    """``sum_o a[o] b[o]^T`` for ``a (k, b1, D)``, ``b (k, b2, D)``: ``(b1, b2)``.

    Stored examples-first, ``(b, k, D)`` (the structured cotangents, the Jacobians), it
    is one GEMM of width ``k D``; stored outputs-first (position-pair cotangents, summed
    bias cotangents), ``k`` GEMMs summed in place (``addbmm``): no ``(k, b1, b2)``
    temporary and no copy into the other layout.
    """
    if not _outputs_first(a) and not _outputs_first(b):  # stored (b, k, D): one GEMM
        return (
            a.transpose(0, 1).reshape(a.shape[1], -1) @ b.transpose(0, 1).reshape(b.shape[1], -1).T
        )
    return a.new_empty(a.shape[1], b.shape[1]).addbmm_(a, b.transpose(1, 2), beta=0)


def _gram_full(a: Tensor, b: Tensor) -> Tensor:
    """``a[o, i] . b[p, j]`` for ``a (ka, b1, D)``, ``b (kb, b2, D)``: ``(b1, ka, b2, kb)``."""
    ka, b1, kb, b2 = a.shape[0], a.shape[1], b.shape[0], b.shape[1]
    if not _outputs_first(a) and not _outputs_first(b):
        h = a.transpose(0, 1).reshape(b1 * ka, -1) @ b.transpose(0, 1).reshape(b2 * kb, -1).T
        return h.view(b1, ka, b2, kb)
    h = a.reshape(ka * b1, -1) @ b.reshape(kb * b2, -1).T
    return h.view(ka, b1, kb, b2).permute(1, 0, 3, 2)


def _term(a: Feature, b: Feature, full: bool) -> Tensor:
    if isinstance(a, Dot) and isinstance(b, Dot):
        return _gram_full(a.t, b.t) if full else _gram_sum(a.t, b.t)
    if isinstance(a, Kron) and isinstance(b, Kron):
        c = a.p @ b.p.T
        if full:
            return _gram_full(a.g, b.g).mul_(c[:, None, :, None])
        return _gram_sum(a.g, b.g).mul_(c)
    if not (isinstance(a, Pos) and isinstance(b, Pos)):
        raise TypeError(f"features of different kinds: {type(a).__name__}, {type(b).__name__}")
    k, b1, s1 = a.g.shape[:3]
    b2, s2 = b.g.shape[1:3]
    c = a.p.reshape(b1 * s1, -1) @ b.p.reshape(b2 * s2, -1).T
    if full:
        h = a.g.reshape(k * b1 * s1, -1) @ b.g.reshape(k * b2 * s2, -1).T
        h = h.view(k, b1, s1, k, b2, s2).mul_(c.view(1, b1, s1, 1, b2, s2))
        return h.sum(dim=(2, 5)).permute(1, 0, 3, 2)
    h = _gram_sum(a.g.reshape(k, b1 * s1, -1), b.g.reshape(k, b2 * s2, -1)).mul_(c)
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


def iter_chunks(n: int, step: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of ``step``."""
    yield from _ranges(n, step)
