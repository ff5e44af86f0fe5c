r"""The NTK-vector-product strategy: columns of the NTK without contracting Jacobians.

Column :math:`(j, p)` of :math:`\Theta = J_1 J_2^\top` is :math:`J_1 (J_2^\top e_{jp})`:
a vector-Jacobian product of the outputs on ``x2`` (``torch.func.vjp``) followed by a
Jacobian-vector product of the outputs on ``x1`` (``torch.func.jvp``), both vectorised
over a chunk of basis vectors with ``vmap``. Only a chunk of parameter-sized vectors is
held at a time; for ``x2 = None`` the rows below each column block are skipped and the
result mirrored. This is Neural Tangents' ``NTK_VECTOR_PRODUCTS``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import jvp, vjp, vmap

from ._features import iter_chunks
from ._model import Prepared, forward_ad_ready


def ntvp_kernel(
    prep: Prepared,
    x1: Tensor,
    x2: Tensor | None,
    k: int,
    full: bool,
    block: int,
    chunk: int,
) -> Tensor:
    """The NTK between ``x1`` and ``x2`` (``None``: ``x1``), ``(n1, n2)`` or ``(n1, n2, k, k)``.

    ``block``: examples of ``x2`` per vector-Jacobian product; ``chunk``: examples whose
    ``k`` basis vectors are pushed through at once (``chunk * k`` parameter vectors).
    """
    forward_ad_ready()
    sym = x2 is None
    cols_x = x1 if x2 is None else x2
    n1, n2 = x1.shape[0], cols_x.shape[0]
    out = x1.new_zeros((n1, n2, k, k) if full else (n1, n2), dtype=prep.dtype)
    params = prep.params
    for c0, c1 in iter_chunks(n2, block):
        xc = cols_x[c0:c1]
        _, pullback = vjp(lambda p, xc=xc: prep.flat(p, xc), params)  # type: ignore[misc]
        b = c1 - c0
        basis = torch.eye(b * k, dtype=prep.dtype, device=x1.device).view(b * k, b, k)
        for e0, e1 in iter_chunks(b, chunk):
            rows = x1[: c0 + e1] if sym else x1  # the upper triangle is enough
            cot = vmap(pullback)(basis[e0 * k : e1 * k])[0]

            def push(t: dict[str, Tensor], rows: Tensor = rows) -> Tensor:
                return jvp(lambda p: prep.flat(p, rows), (params,), (t,))[1]

            cols = vmap(push)(cot).view(e1 - e0, k, rows.shape[0], k)  # (j, p, i, o)
            j0, j1 = c0 + e0, c0 + e1
            if full:
                out[: rows.shape[0], j0:j1] = cols.permute(2, 0, 3, 1)
            else:
                out[: rows.shape[0], j0:j1] = cols.diagonal(dim1=1, dim2=3).sum(-1).T
    if sym:
        out = _mirror(out, full)
    return out


def _mirror(out: Tensor, full: bool) -> Tensor:
    """Fill ``i > j`` from ``j < i`` (the computed upper triangle); symmetrise the diagonal."""
    n = out.shape[0]
    lower = torch.ones(n, n, dtype=torch.bool, device=out.device).tril(-1)
    if full:
        t = out.permute(1, 0, 3, 2)
        res = torch.where(lower[:, :, None, None], t, out)
        idx = torch.arange(n, device=out.device)
        diag = res[idx, idx]
        res[idx, idx] = 0.5 * (diag + diag.transpose(1, 2))
        return res
    return torch.where(lower, out.T, out)
