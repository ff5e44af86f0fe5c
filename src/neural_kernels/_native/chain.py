r"""The whole layer chain of a chunk of example pairs in one compiled call.

Between the layers of a convolutional network's kernel, each chunk of example pairs
used to come back to Python: a dozen interpreter steps per layer, all holding the GIL,
so that worker threads waited on each other. Here the chain is described once per
kernel as a list of :class:`ChainOp` (each layer that can says how with
``chain_op``), and ``nk_chain_*`` of ``kernels.c`` runs it on one example pair after
another, from the Gram product of the inputs to the output entries, without the GIL.

Ops (on the full layout; ``S`` the window sum of a convolution, see ``kernels.c``):

* ``conv``: :math:`K' = a_{nn} S(K) + b_{nn}`, :math:`\Theta' = a_{tt} S(\Theta) +
  a_{tn} S(K) + c_t`, optionally followed by the arc-cosine dual (fused);
* ``act``: the dual of :math:`a \min(x, 0) + b \max(x, 0)` with
  :math:`\sqrt{q_1 q_2}` from the recorded variances;
* ``pool``: window sums on each axis of a pair separately, times ``scale``;
* ``global``: ``scale`` times the sum of all entries of a pair;
* ``diag``: ``scale`` times the sum of its same-position entries;
* ``affine``: the ``conv`` maps without the window sum (``Dense`` after a collapse).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._numerics import snap_factor

__all__ = ["Chain", "ChainOp", "compile_chain"]

_KINDS = {"conv": 0, "act": 1, "pool": 2, "global": 3, "diag": 4, "affine": 5}
_OPI = 21
_OPD = 8
_IDENTITY = (1.0, 0.0, 0.0, 1.0, 0.0)


def _pad3(values: Sequence[int], fill: int) -> list[int]:
    return [fill] * (3 - len(values)) + [int(v) for v in values]


@dataclass(frozen=True)
class ChainOp:
    """One op of the compiled chain (see the module docstring).

    Attributes:
        kind: ``"conv"``, ``"act"``, ``"pool"``, ``"global"``, ``"diag"``, ``"affine"``
            or ``"skip"`` (the layer changes nothing on the full layout).
        n: input spatial sizes (``()`` for flat features).
        m: output spatial sizes (``()`` after a collapse).
        taps: window size per axis (``conv``, ``pool``).
        stride: stride per axis.
        dilation: dilation per axis.
        before: zero padding before the first position, per axis.
        coef: ``(a_nn, b_nn, a_tn, a_tt, c_t)`` (``conv``, ``affine``).
        slopes: ``(a, b)`` of the dual (``act``).
        scale: factor of the sums (``pool``, ``global``, ``diag``).

    """

    kind: str
    n: tuple[int, ...] = ()
    m: tuple[int, ...] = ()
    taps: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    before: tuple[int, ...] = ()
    coef: tuple[float, float, float, float, float] = _IDENTITY
    slopes: tuple[float, float] = (0.0, 1.0)
    scale: float = 1.0

    def ints(self, fused: bool, positions: int) -> list[int]:
        """The op's ``NK_OPI`` integers (see ``kernels.c``)."""
        m = self.n if self.kind in ("act", "affine") else self.m
        return [
            _KINDS[self.kind],
            int(fused),
            *_pad3(self.n, 1),
            *_pad3(m, 1),
            *_pad3(self.taps, 1),
            *_pad3(self.stride, 1),
            *_pad3(self.dilation, 1),
            *_pad3(self.before, 0),
            positions,
        ]


class Chain:
    """A compiled chain, ready to run on chunks (build it with :func:`compile_chain`).

    Holds the op arrays and the square-root variances every dual reads, for all first
    and all second inputs; the C side reads them only.
    """

    def __init__(
        self,
        lib: ctypes.CDLL,
        dtype: torch.dtype,
        in_spatial: tuple[int, ...],
        ints: list[int],
        floats: list[float],
        roots: list[Tensor | None],
        out_entries: int,
        self_mode: bool = False,
        steps: Sequence[tuple[int, int]] = (),
        sizes: Sequence[int] = (),
    ) -> None:
        self.fn = lib.nk_chain_f64 if dtype == torch.float64 else lib.nk_chain_f32
        self.nops = len(ints) // _OPI
        self.ops = (ctypes.c_int64 * len(ints))(*ints)
        self.vals = (ctypes.c_double * len(floats))(*floats)
        self.roots = roots  # kept alive: the C side reads their memory
        self.ptrs = (ctypes.c_void_p * len(roots))(
            *[None if r is None else r.data_ptr() for r in roots]
        )
        self.in_spatial = (ctypes.c_int64 * 3)(*_pad3(in_spatial, 1))
        self.positions = math.prod(in_spatial)
        self.out_entries = out_entries
        self.snap = snap_factor(dtype)
        self.self_mode = self_mode
        #: per layer, where run_self records its variances: ``(op, 0)`` after the
        #: convolution of compiled op ``op``, ``(op, 1)`` after the op, ``(-1, 1)`` the input
        self.steps = list(steps)
        #: per compiled op, its output positions (after its convolution as after a fused dual)
        self.sizes = list(sizes)

    def run(
        self,
        g: Tensor | tuple[Tensor, Tensor],
        r0: int,
        rows: int,
        s0: int,
        cols: int,
        outs: Sequence[Tensor],
        upper: bool = False,
    ) -> None:
        """Run the chain on the pairs ``[r0, r0 + rows) x [s0, s0 + cols)``.

        Args:
            g: the chunk's Gram product ``(rows P, cols P)`` (unit stride along a row),
                or the features of all first and all second inputs as
                :func:`input_features` gives them, from which each pair's input entries
                are formed in the compiled call.
            r0: the chunk's first row (index into the first inputs).
            rows: its number of rows.
            s0: its first column.
            cols: its number of columns.
            outs: the output NNGP and, when wanted, NTK: contiguous ``(n1, n2, ...)``
                with ``out_entries`` entries per pair; the chunk's pairs are written.
            upper: compute only the pairs ``(r0 + i, s0 + j)`` with ``r0 + i < s0 + j``
                (the others are left unwritten).

        """
        n2 = outs[0].shape[1]
        e = self.out_entries
        offset = (r0 * n2 + s0) * e * outs[0].element_size()
        on = outs[0].data_ptr() + offset
        ot = outs[1].data_ptr() + offset if len(outs) > 1 else None
        if isinstance(g, tuple):
            xa, xb = g
            gp, ld, pa, pb, c = None, 0, xa.data_ptr(), xb.data_ptr(), xa.shape[1]
        else:
            gp, ld, pa, pb, c = g.data_ptr(), g.stride(0), None, None, 0
        status = self.fn(
            self.nops, self.ops, self.vals, self.ptrs, rows, cols, r0, s0, self.in_spatial,
            gp, ld, on, ot, n2 * e, e, self.snap, 0, None, int(upper), pa, pb, c,
        )  # fmt: skip
        if status:
            raise MemoryError("the compiled layer chain could not allocate its scratch")

    def run_self(self, cov: Tensor, outs: Sequence[Tensor], recs: Sequence[Tensor | None]) -> None:
        """Run the chain on the pairs ``(x_i, x_i)`` of a batch, in self mode.

        Each dual takes its norms from the pair's own same-position entries (compile the
        chain with ``self_mode=True``).

        Args:
            cov: the examples' own input covariances, contiguous ``(b, P, P)``.
            outs: the output NNGP (and NTK), contiguous ``(b, out_entries)``.
            recs: two per compiled op (:attr:`ops`), each ``None`` or a contiguous
                ``(b, M)`` that receives the same-position entries of every pair: after
                the op's convolution (before a fused dual), then after the op.

        """
        if not self.self_mode:
            raise ValueError("compile the chain with self_mode=True")
        b, p = cov.shape[0], self.positions
        ptrs = (ctypes.c_void_p * len(recs))(*[None if r is None else r.data_ptr() for r in recs])
        on = outs[0].data_ptr()
        ot = outs[1].data_ptr() if len(outs) > 1 else None
        e = self.out_entries
        status = self.fn(
            self.nops, self.ops, self.vals, self.ptrs, b, 1, 0, 0, self.in_spatial,
            cov.data_ptr(), p, on, ot, e, e, self.snap, 1, ptrs, 0, None, None, 0,
        )  # fmt: skip
        if status:
            raise MemoryError("the compiled layer chain could not allocate its scratch")


def input_features(f: Tensor, scale: bool) -> Tensor:
    """Features ``(n, P, C)`` as :meth:`Chain.run` reads them: ``(n, C, P)``, contiguous.

    ``scale``: divided by ``C`` (the first inputs, as the Gram product's left factor).
    """
    t = f / f.shape[-1] if scale else f
    return t.transpose(1, 2).contiguous()


def _roots(var: tuple[Tensor, Tensor], dtype: torch.dtype) -> list[Tensor | None]:
    """``sqrt(q1)``, ``sqrt(q2)``, ``snap / sqrt(q1)``, ``1 / sqrt(q2)`` as the eager dual has them.

    Rows of positions, ``(n, M)``; zero variances give a zero root and a finite
    reciprocal (of the smallest normal number).
    """
    tiny = torch.finfo(dtype).tiny
    q1, q2 = (v.reshape(v.shape[0], -1).to(dtype) for v in var)
    return [
        q1.clamp_min(0.0).sqrt().contiguous(),
        q2.clamp_min(0.0).sqrt().contiguous(),
        (q1.clamp_min(tiny).rsqrt() * snap_factor(dtype)).contiguous(),
        q2.clamp_min(tiny).rsqrt().contiguous(),
    ]


def compile_chain(
    lib: ctypes.CDLL,
    dtype: torch.dtype,
    in_spatial: tuple[int, ...],
    ops: Sequence[ChainOp],
    variances: Sequence[tuple[Tensor, Tensor] | None],
    self_mode: bool = False,
) -> Chain:
    """The chain of ``ops`` (a ``conv`` followed by an ``act`` is fused into one op).

    Args:
        lib: the compiled library.
        dtype: float32 or float64.
        in_spatial: the inputs' spatial sizes.
        ops: one op per layer (``"skip"`` ops are left out).
        variances: per op, the per-position variances of all first and all second inputs
            at the op's input, ``(n1, *spatial)`` and ``(n2, *spatial)``, where it is an
            ``act`` (else ``None``); unused in self mode.
        self_mode: a chain for :meth:`Chain.run_self` (norms from each pair itself).

    """
    ints: list[int] = []
    floats: list[float] = []
    roots: list[Tensor | None] = []
    last: ChainOp | None = None
    out_entries = math.prod(in_spatial) ** 2
    steps: list[tuple[int, int]] = []  # per layer: where its variances are recorded
    sizes: list[int] = []  # per compiled op: its output positions
    for op, var in zip(ops, variances, strict=True):
        if op.kind == "skip":
            steps.append(steps[-1] if steps else (-1, 1))
            continue
        pair: list[Tensor | None] = [None] * 4
        if op.kind == "act" and not self_mode:
            if var is None:
                raise ValueError("an act op needs the variances at its input")
            pair = _roots(var, dtype)
        positions = math.prod(op.n) if op.kind == "act" else 0
        if op.kind == "act" and last is not None and last.kind == "conv" and not ints[-_OPI + 1]:
            # fuse into the convolution just before: its dual flag, slopes and variances
            ints[-_OPI + 1] = 1
            ints[-1] = positions
            floats[-_OPD + 5], floats[-_OPD + 6] = (float(s) for s in op.slopes)
            roots[-4:] = pair
            last = op
            # the convolution's layer (and skipped ones after it) before the dual
            j, conv = len(steps) - 1, (len(sizes) - 1, 1)
            while j >= 0 and steps[j] == conv:
                steps[j] = (conv[0], 0)
                j -= 1
            steps.append(conv)
            continue
        ints += op.ints(False, positions)
        floats += [*map(float, op.coef), *map(float, op.slopes), float(op.scale)]
        roots += pair
        last = op
        m = op.n if op.kind in ("act", "affine") else op.m
        out_entries = math.prod(m) ** 2
        sizes.append(math.prod(m))
        steps.append((len(sizes) - 1, 1))
    return Chain(lib, dtype, in_spatial, ints, floats, roots, out_entries, self_mode, steps, sizes)
