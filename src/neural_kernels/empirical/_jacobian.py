r"""The Jacobian-contraction strategy: per-example Jacobians, contracted per parameter tensor.

:math:`\Theta = \sum_\theta J_\theta(x_1) J_\theta(x_2)^\top` with
:math:`J_\theta(x)` of shape ``(n, k, numel(theta))`` from ``vmap(jacrev(...))`` over single
examples. The Jacobians are what costs memory (``n k n_params`` numbers), so the
parameter tensors are grouped so that a group's Jacobians on every example fit in half
the budget. A larger tensor is split over outputs instead (the traced kernel only pairs
an output with itself, so each output's Jacobians are computed once; the full blocks pair
chunks of outputs, the later chunks recomputed), and, when even one output does not fit,
over examples (large row blocks, small recomputed column blocks).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._features import assemble, block_size, contract, iter_chunks
from ._features import jacobian_features as features_of
from ._model import Prepared


def jacobian_kernel(
    prep: Prepared, a: Tensor, b: Tensor | None, k: int, full: bool, budget: int
) -> Tensor:
    """The NTK between ``a`` and ``b`` (``None``: ``a``) by Jacobian contraction."""
    item = torch.empty((), dtype=prep.dtype).element_size()
    n1 = a.shape[0]
    n2 = n1 if b is None else b.shape[0]
    n_total = n1 + (0 if b is None else n2)
    pair = (k * k + 1.0) if full else 2.0
    room = budget / (2.0 * item * k * n_total)  # parameters per group held for every example
    groups: list[list[str]] = []
    size = 0.0
    for name in sorted(prep.names, key=lambda n: prep.params[n].numel()):
        numel = prep.params[name].numel()
        if groups and size + numel <= room:
            groups[-1].append(name)
            size += numel
        else:
            groups.append([name])
            size = numel
    out: Tensor | None = None
    for group in groups:
        numel = sum(prep.params[n].numel() for n in group)
        per_example = 2.0 * k * numel  # the Jacobians and a transient copy

        def features(x: Tensor, group: list[str] = group) -> list:
            return features_of(prep, group, x)

        if numel <= room:  # every example at once, computed once
            blk = block_size(max(n1, n2), per_example, pair, budget, item)
            out = assemble(features, a, b, k, full, blk, True, prep.dtype, out)
            continue
        # one chunk of outputs held (traced) or two (full), and the transients of
        # computing one (about half a chunk, more with the pairs of the full blocks)
        per_output = (3.0 if full else 1.5) * n_total * numel * item
        q = int(budget // per_output)
        if q >= 1:
            out = _by_outputs(prep, group, a, b, k, full, q, out)
            continue
        fit = max(2, int(budget / item / per_example))  # large row blocks, small columns
        cols = max(1, fit // 8)
        blk = min(max(n1, n2), fit - cols)
        out = assemble(features, a, b, k, full, blk, False, prep.dtype, out, cols)
    if out is None:
        raise ValueError("jacobian_kernel needs at least one trainable parameter")
    return out


def _by_outputs(
    prep: Prepared,
    group: list[str],
    a: Tensor,
    b: Tensor | None,
    k: int,
    full: bool,
    q: int,
    out: Tensor | None,
) -> Tensor:
    """One group's term, ``q`` outputs of every example at a time (added to ``out``)."""
    n1 = a.shape[0]
    n2 = n1 if b is None else b.shape[0]
    chunks = list(iter_chunks(k, q))
    if not full:  # only an output with itself: each chunk once
        for o0, o1 in chunks:

            def features(x: Tensor, o0: int = o0, o1: int = o1) -> list:
                return features_of(prep, group, x, (o0, o1))

            out = assemble(features, a, b, k, False, max(n1, n2), True, prep.dtype, out)
        if out is None:
            raise ValueError("no chunk of outputs")
        return out
    if out is None:
        out = torch.zeros((n1, n2, k, k), dtype=prep.dtype, device=a.device)
    other = a if b is None else b
    for i, (a0, a1) in enumerate(chunks):
        rows = features_of(prep, group, a, (a0, a1))
        cols_a = rows if b is None else features_of(prep, group, other, (a0, a1))
        for b0, b1 in chunks[i:] if b is None else chunks:
            same = (b0, b1) == (a0, a1)
            cols = cols_a if same else features_of(prep, group, other, (b0, b1))
            blk = contract(rows, cols, True)  # (n1, qa, n2, qb)
            if b is None and same:
                blk = 0.5 * (blk + blk.permute(2, 3, 0, 1))
            out[:, :, a0:a1, b0:b1] += blk.permute(0, 2, 1, 3)
            if b is None and not same:
                out[:, :, b0:b1, a0:a1] += blk.permute(2, 0, 3, 1)
    return out
