r"""Input masking: ``net.kernel(x1, x2, mask_constant=c)``, as Neural Tangents' masking.

Entries of the inputs equal to ``c`` (``NaN`` matches ``NaN``) are *masked*: they are
replaced by zeros before the input kernel is formed, and a position (one spatial site,
or the whole example for flat inputs) whose every channel equals ``c`` is a masked
position. Typical use: sequences of different lengths padded to one length with ``c``.

Masks travel through the network beside the kernel, one boolean ``(n, *spatial)`` per
side (``True``: masked):

* elementwise layers, ``Dense``, ``Identity``, ``ChannelsLast``, ``ChannelsFirst`` and
  ``GlobalSelfAttention`` keep the positions, so they keep the mask;
* ``Sequential`` (and ``Residual``) run their layers in turn, ``FanOut`` copies the mask
  to every branch, ``Parallel`` moves each branch's own, and ``FanInSum`` masks a
  position only when every branch masks it;
* ``Conv``, ``AvgPool`` and ``SumPool`` give output position ``o`` the mask of the
  centre of its window, input position :math:`o s - \text{pad}_{lo} + \lfloor (w-1)/2
  \rfloor` (stride :math:`s`, window :math:`w`); the window itself pools the zeros of
  masked positions like any value (no renormalisation);
* ``Flatten``, ``GlobalAvgPool`` and ``GlobalSumPool`` end the spatial axes: an example
  is masked when all its positions are.

After every layer the kernel entries that involve a masked position are set to zero
(:math:`K_{pp'} = 0` when :math:`p` or :math:`p'` is masked): masked positions hold
zero in the network. (Neural Tangents skips this after a few layers; the only place it
differs is an elementwise layer with :math:`\phi(0) \ne 0` that it does not re-mask,
such as ``Polynomial`` with a constant term.) Two layers read the masks themselves:

* ``GlobalAvgPool`` averages over the unmasked positions only,
  :math:`K' = \sum_{pp'} K_{pp'} / (|U|\,|U'|)` with :math:`U, U'` the unmasked positions
  of the two inputs;
* ``GlobalSelfAttention`` never attends to a masked key: its logits there are
  :math:`-\infty` for softmax and zero for the other mechanisms.

For a network whose convolutions pad with zeros (``padding="same"``, stride 1) and whose
padding with ``c`` trails each sequence, the kernel of padded inputs equals the kernel of
the unpadded sequences, whatever their lengths: this is what the tests check, besides
Neural Tangents' values.

Other layers (``FanInProduct``, ``FanInConcat``, ``LayerNorm``, ``Dropout``, graphs,
resizing, indexing, ``repeat``, ...) refuse masks with
:class:`~neural_kernels.errors.LayerCompatibilityError`. The masked kernel is computed
block by block of example pairs like the unmasked one (``memory_budget``,
``block_size``, ``progress``), without the symmetry and fusion shortcuts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._validation import check_pair, parse_get
from ..core import engine, tiling
from ..core.block import KernelBlock
from ..core.inputs import features, gram, input_block, self_cov
from ..errors import HyperparameterError, LayerCompatibilityError, ShapeError, describe
from ._spatial import expand, out_size, pads

if TYPE_CHECKING:  # pragma: no cover
    from ..kernel import Kernel
    from .base import Layer

__all__ = ["compute_masked_kernel", "global_mean_counts", "remask", "supports_masks"]


def _kinds() -> dict[str, tuple[type, ...]]:
    """Layer classes by how they move masks (imported late: they import this module)."""
    from ._elementwise import Elementwise
    from .attention import GlobalSelfAttention
    from .channels import ChannelsFirst, ChannelsLast
    from .combinators import Identity
    from .conv import Conv, Flatten
    from .dense import Dense
    from .pooling import AvgPool, GlobalAvgPool, GlobalSumPool, SumPool

    return {
        "keep": (Elementwise, Dense, Identity, GlobalSelfAttention, ChannelsLast, ChannelsFirst),
        "window": (Conv, AvgPool, SumPool),
        "collapse": (Flatten, GlobalAvgPool, GlobalSumPool),
    }


def supports_masks(layer: object) -> bool:
    """Whether ``layer`` (a leaf step of a plan) accepts masked inputs."""
    return any(isinstance(layer, kinds) for kinds in _kinds().values())


def _refuse(where: object, layer: object, why: str, fix: str) -> LayerCompatibilityError:
    return LayerCompatibilityError(describe(where, f"mask_constant with {layer!r}: {why}", fix))


def _check_step(where: object, layer: Any) -> None:
    kinds = _kinds()
    if not supports_masks(layer):
        raise _refuse(
            where,
            layer,
            "this layer does not support input masking",
            "Masks work with elementwise layers, Dense, Conv, AvgPool, SumPool, Flatten, "
            "GlobalAvgPool, GlobalSumPool, GlobalSelfAttention, ChannelsLast, ChannelsFirst "
            "and Identity, combined by Sequential, Residual or FanOut/Parallel/FanInSum; "
            "compute the kernels of the unpadded inputs instead.",
        )
    if isinstance(layer, kinds["window"]):
        if getattr(layer, "padding", "valid") == "circular":
            raise _refuse(
                where, layer, "padding='circular'", "Use padding='same' or 'valid' with masks."
            )
        dilation = getattr(layer, "dilation", 1)
        if any(d != 1 for d in (dilation if isinstance(dilation, tuple) else (dilation,))):
            raise _refuse(where, layer, "a dilation other than 1", "Use dilation=1 with masks.")
    if getattr(layer, "pos_emb_type", "none") != "none":
        raise _refuse(where, layer, "positional embeddings", "Use pos_emb_type='none' with masks.")
    if getattr(layer, "linear_scaling", True) is False:
        raise _refuse(
            where,
            layer,
            "linear_scaling=False",
            "Use linear_scaling=True for masked inputs.",
        )


def _window_mask(layer: Any, mask: Tensor, spatial: tuple[int, ...]) -> Tensor:
    """The mask of each output position: that of the centre of its window."""
    from .pooling import _Pool

    if isinstance(layer, _Pool):  # pooling: (window, stride) per axis
        window, strides = layer._geometry(len(spatial))
    else:
        window = expand(layer.kernel_size, len(spatial))
        strides = expand(layer.stride, len(spatial))
    for axis, (n, w, s) in enumerate(zip(spatial, window, strides, strict=True)):
        lo, _ = pads(n, w, s, 1, layer.padding)
        count = out_size(n, w, s, 1, layer.padding)
        idx = torch.arange(count, device=mask.device) * s + (w - 1) // 2 - lo
        if count and (int(idx[0]) < 0 or int(idx[-1]) >= n):  # pragma: no cover
            raise _refuse(
                repr(layer),
                layer,
                f"a window centre outside the input on spatial axis {axis}",
                "Use stride 1 or padding='valid' with masks.",
            )
        mask = mask.index_select(axis + 1, idx)
    return mask


def propagate(layer: Any, mask: Tensor, spatial: tuple[int, ...]) -> Tensor:
    """The output mask of ``layer`` for input mask ``mask`` ``(n, *spatial)``."""
    kinds = _kinds()
    if isinstance(layer, kinds["window"]):
        return _window_mask(layer, mask, spatial)
    if isinstance(layer, kinds["collapse"]):
        return mask.reshape(mask.shape[0], -1).all(dim=1)
    return mask


def remask(k: KernelBlock) -> KernelBlock:
    """Zero every entry of ``k`` that involves a masked position (``k.mask1``/``k.mask2``)."""
    if k.mask1 is None or k.mask2 is None:
        return k
    m1, m2 = k.place(k.mask1, k.mask2)
    pair = m1 | m2
    zero = k.nngp.new_zeros(())
    s1a, s1b = k.place_self(k.mask1)
    cov1 = torch.where(s1a | s1b, zero, k.cov1)
    if k.same_inputs:
        cov2 = cov1
    else:
        s2a, s2b = k.place_self(k.mask2)
        cov2 = torch.where(s2a | s2b, zero, k.cov2)
    return k.replace(
        nngp=torch.where(pair, zero, k.nngp),
        ntk=None if k.ntk is None else torch.where(pair, zero, k.ntk),
        cov1=cov1,
        cov2=cov2,
    )


def global_mean_counts(layer: object, k: KernelBlock) -> tuple[Tensor, Tensor, Tensor]:
    """Divisors of a masked global mean: ``|U||U'|`` for pairs, ``|U|^2``, ``|U'|^2``.

    ``|U|`` counts the unmasked positions of an example; one with none is refused.
    """
    assert k.mask1 is not None and k.mask2 is not None
    counts = []
    for m in (k.mask1, k.mask2):
        c = (~m).reshape(m.shape[0], -1).sum(dim=1).to(k.dtype)
        if bool((c == 0).any()):
            bad = int((c == 0).nonzero()[0, 0])
            raise ShapeError(
                describe(
                    repr(layer),
                    f"masked inputs whose example {bad} has every position masked",
                    "An average over no positions is undefined: drop that example or leave "
                    "at least one position unmasked.",
                )
            )
        counts.append(c)
    c1, c2 = counts
    pair = c1 * c1 if k.self_pairs else c1[:, None] * c2[None, :]
    return pair, c1 * c1, c2 * c2


def attention_mask(layer: object, mask: Tensor | None, positions: int) -> Tensor | None:
    """Keys masked for each example, ``(n, 1, P)`` (broadcast over queries), or ``None``."""
    if mask is None:
        return None
    flat = mask.reshape(mask.shape[0], positions)
    if bool(flat.all(dim=1).any()):
        bad = int(flat.all(dim=1).nonzero()[0, 0])
        raise ShapeError(
            describe(
                repr(layer),
                f"masked inputs whose example {bad} has every position masked",
                "Attention over no keys is undefined: leave at least one position unmasked.",
            )
        )
    return flat[:, None, :]


def _zeroed(x: Any, c: float) -> tuple[Any, Tensor | None]:
    """The inputs with entries equal to ``c`` zeroed, and where those entries were.

    ``None`` for inputs that are not numeric (the usual validation reports them).
    """
    try:
        t = x if isinstance(x, Tensor) else torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        return x, None
    if t.dtype == torch.bool or t.is_complex():
        return x, None
    hit = torch.isnan(t) if math.isnan(c) else t == c
    return torch.where(hit, t.new_zeros(()), t), hit


def _position_mask(hit: Tensor | None, n: int, geo: Any, device: Any) -> Tensor:
    """Masked positions ``(n, *spatial)``: every channel of the position equals ``c``."""
    if hit is None:  # pragma: no cover (validation has refused such inputs)
        return torch.zeros(n, *geo.spatial, dtype=torch.bool, device=device)
    return features(hit, geo).all(dim=-1).reshape(n, *geo.spatial)


def _constant(where: object, value: Any) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HyperparameterError(
            describe(
                where,
                f"mask_constant of type {type(value).__name__}",
                "Give a number (the padding value, e.g. 0.0, -1e9 or float('nan')) or None.",
            )
        )
    return float(value)


def _check_tree(where: object, layer: Any) -> None:
    """Refuse, before any arithmetic, a network with a layer that cannot take masks."""
    from .combinators import FanInSum, FanOut, Parallel, Sequential

    if isinstance(layer, (Sequential, Parallel)):
        for child in layer.children():
            _check_tree(where, child)
    elif not isinstance(layer, (FanOut, FanInSum)):
        _check_step(where, layer)


def _leaf(where: object, layer: Any, k: KernelBlock) -> KernelBlock:
    assert k.mask1 is not None and k.mask2 is not None
    spatial = k.spatial_shape
    m1 = propagate(layer, k.mask1, spatial)
    m2 = m1 if k.mask2 is k.mask1 else propagate(layer, k.mask2, spatial)
    out = layer.transform(k)
    if not isinstance(out, KernelBlock):  # pragma: no cover (leaves map one block)
        raise TypeError("a leaf returned branches")
    return remask(out.replace(mask1=m1, mask2=m2))


def _fan_in_sum(layer: Any, flow: tuple[KernelBlock, ...]) -> KernelBlock:
    """A sum of branches is masked where every branch is (masked entries are zero)."""
    out = layer.transform(flow)
    m1, m2 = flow[0].mask1, flow[0].mask2
    assert m1 is not None and m2 is not None
    same = m2 is m1
    for b in flow[1:]:
        assert b.mask1 is not None and b.mask2 is not None
        m1 = m1 & b.mask1
        m2 = m1 if same else m2 & b.mask2
    return remask(out.replace(mask1=m1, mask2=m2))


def _apply(where: object, layer: Any, flow: Any) -> Any:
    """Run ``layer`` on ``flow`` moving the masks and re-masking after every leaf."""
    from .combinators import FanInSum, FanOut, Parallel, Sequential

    if isinstance(layer, Sequential):  # also Residual
        for child in layer.children():
            flow = _apply(where, child, flow)
        return flow
    if isinstance(layer, FanOut):
        return layer.transform(flow)
    if isinstance(layer, Parallel):
        return tuple(
            _apply(where, child, b) for child, b in zip(layer.children(), flow, strict=True)
        )
    if isinstance(layer, FanInSum):
        return _fan_in_sum(layer, flow)
    if isinstance(flow, tuple):
        raise _refuse(
            where,
            layer,
            "it combines branches",
            "Masked branches can be combined by FanInSum only.",
        )
    return _leaf(where, layer, flow)


def _self_pairs(where: object, layer: Any, f: Tensor, m: Tensor, geo: Any, ntk: bool) -> Any:
    """The network on the pairs ``(x_i, x_i)`` of masked inputs."""
    c = self_cov(f, geo)
    k0 = input_block(c, c, c, geo, ntk, self_pairs=True).replace(mask1=m, mask2=m)
    return _apply(where, layer, remask(k0))


def compute_masked_kernel(
    layer: Layer,
    x1: Any,
    x2: Any,
    get: Any,
    mask_constant: Any,
    *,
    layout: str | None = None,
    diagonal: bool = False,
    memory_budget: int | None = None,
    block_size: Any = None,
    progress: Any = None,
) -> Kernel:
    """``layer.kernel(x1, x2, mask_constant=c)`` (or ``kernel_diag`` with ``diagonal``).

    Blocks of example pairs are sized by ``memory_budget``/``block_size`` as in the
    unmasked engine; each block runs the whole network with its rows' and columns' masks.
    """
    where = engine._Where(layer, "kernel_diag" if diagonal else "kernel")
    c = _constant(where, mask_constant)
    names = parse_get(get, where)
    want_ntk = "ntk" in names
    z1, hit1 = _zeroed(x1, c)
    a = engine._prepare(z1, "x1" if not diagonal else "x", where)
    symmetric = x2 is None
    hit2 = hit1
    if symmetric:
        b = a
    else:
        z2, hit2 = _zeroed(x2, c)
        b = engine._prepare(z2, "x2", where)
        a, b = check_pair(a, b, where)
    plan = engine._plan(layer, tuple(a.shape[1:]), where, layout)
    _check_tree(where, layer)
    geo = engine._geometry(plan, tuple(a.shape[1:]), layout)
    m1 = _position_mask(hit1, a.shape[0], geo, a.device)
    fa = features(a, geo)
    d1 = _self_pairs(where, layer, fa, m1, geo, want_ntk)
    if diagonal:
        engine._check_output([d1.nngp] + ([d1.ntk] if want_ntk else []), where)
        result = engine._result(d1, d1.nngp, d1.ntk, d1.nngp, d1.nngp, plan)
        return engine._as_layout(result, layout)
    m2, fb, d2 = m1, fa, d1
    if not symmetric:
        m2 = _position_mask(hit2, b.shape[0], geo, b.device)
        fb = features(b, geo)
        d2 = _self_pairs(where, layer, fb, m2, geo, want_ntk)
    c1 = self_cov(fa, geo)
    c2 = c1 if symmetric else self_cov(fb, geo)
    n1, n2 = a.shape[0], b.shape[0]
    rows, cols = tiling.block_shape(
        block_size, memory_budget, n1, n2, geo.pair_elements * a.element_size()
    )
    parts: list[list[KernelBlock]] = []
    for i0 in range(0, n1, rows):
        i1 = min(n1, i0 + rows)
        parts.append([])
        for j0 in range(0, n2, cols):
            j1 = min(n2, j0 + cols)
            same = symmetric and (i0, i1) == (j0, j1)
            r1, r2 = c1[i0:i1], c2[j0:j1]
            k0 = input_block(gram(fa[i0:i1], fb[j0:j1], geo), r1, r1 if same else r2, geo, want_ntk)
            k1 = m1[i0:i1]
            k0 = k0.replace(mask1=k1, mask2=k1 if same else m2[j0:j1])
            parts[-1].append(_apply(where, layer, remask(k0)))
            if progress is not None:
                progress(i1 * n2 - (i1 - i0) * (n2 - j1), n1 * n2)
    nngp = torch.cat([torch.cat([k.nngp for k in r], 1) for r in parts], 0)
    ntk = None
    if want_ntk:
        ntk = torch.cat([torch.cat([given(k.ntk) for k in r], 1) for r in parts], 0)
    if symmetric:  # an example with itself: exactly its self pass, as kernel_diag
        nngp = engine._with_self_pairs(nngp, d1.nngp)
        if ntk is not None:
            ntk = engine._with_self_pairs(ntk, given(d1.ntk))
    engine._check_output([nngp] + ([ntk] if ntk is not None else []), where)
    result = engine._result(parts[0][0], nngp, ntk, d1.nngp, d2.nngp, plan)
    return engine._as_layout(result.replace(self_pairs=False), layout)


def given(t: Tensor | None) -> Tensor:
    """``t``, known not to be ``None`` (the NTK when it was asked for)."""
    assert t is not None
    return t
