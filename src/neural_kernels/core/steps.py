"""The engine's step loop: one network, one block of example pairs.

The loop runs the plan's steps in turn. Around each step it can

* **record** each input's per-position variances (the self pass does this once per
  example) and **replay** them into blocks of pairs, which then carry only variances;
* **fuse** a step with the next when both know every variance they need (a
  convolution followed by a ReLU-like activation has a compiled fused kernel);
* **pin** the pairs of an example with itself to its exact self-covariance, so that
  rounding never lets a self-pair drift from its variance (a layer map whose slope
  exceeds one, the chaotic phase, would amplify it without bound);
* **check** that the self-covariances are finite, naming the step that overflowed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor

from ..errors import NonFiniteError, describe
from .block import KernelBlock
from .plan import Plan
from .protocol import Flow

__all__ = ["check_finite", "pin_self_pairs", "run_steps"]

Replay = Callable[[int], "tuple[Tensor, Tensor] | None"]
Observe = Callable[[int, Flow], None]


def _same_position_view(t: Tensor, lead: int, spatial: int) -> Tensor:
    """A view of the same-position entries of a full layout: ``(*lead axes, *spatial)``."""
    for _ in range(spatial):
        t = t.diagonal(0, lead, lead + 1)
    return t


def pin_self_pairs(k: KernelBlock) -> KernelBlock:
    """Set the pairs ``(x_i, x_i)`` of a block of a symmetric kernel to ``cov1``'s values.

    A block knows its place in the kernel through ``origin``; blocks away from the
    diagonal, and blocks of two independent batches, are returned unchanged. Under
    autograd the block is copied rather than written in place.
    """
    if k.origin is None or k.self_pairs:
        return k
    r0, s0 = k.origin
    n1, n2 = k.nngp.shape[0], k.nngp.shape[1]
    lo, hi = max(r0, s0), min(r0 + n1, s0 + n2)
    if lo >= hi:
        return k
    idx = torch.arange(lo, hi, device=k.device)
    rows, cols = idx - r0, idx - s0
    values = k.cov1[rows]
    nngp = k.nngp
    if nngp.requires_grad or values.requires_grad:
        nngp = nngp.clone()
    if k.cov_is_variance and not k.pairs_are_same_position:
        sub = nngp[rows, cols]
        _same_position_view(sub, 1, k.spatial_ndim).copy_(values)
        values = sub
    nngp.index_put_((rows, cols), values.to(nngp.dtype))
    return k if nngp is k.nngp else k.replace(nngp=nngp)


def _all_finite(t: Tensor) -> bool:
    """Whether every entry is finite: one pass (the extremes; a NaN makes both NaN)."""
    if t.numel() == 0 or not t.is_floating_point():
        return True
    lo, hi = torch.aminmax(t.detach())
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def check_finite(step: int, layer: object, k: Flow, where: object) -> None:
    """Raise :class:`NonFiniteError` if the self-covariances after ``step`` overflowed.

    Every entry of a kernel is bounded by the geometric mean of two self-covariances
    (Cauchy-Schwarz), so checking the variances catches an overflow where it happens.
    """
    blocks = k if isinstance(k, tuple) else (k,)
    for block in blocks:
        for name, t in (("NNGP", block.nngp), ("NTK", block.ntk)):
            if t is None or _all_finite(t):
                continue
            bad = int((~torch.isfinite(t)).sum())
            raise NonFiniteError(
                describe(
                    where,
                    f"the {name} variance of {bad} input(s) overflowed to inf/NaN in step "
                    f"{step} of the network, {layer!r}",
                    "The kernel grows with depth here: use a smaller w_std (or b_std), fewer "
                    "layers, or float64 inputs if these are float32.",
                )
            )


def _switches(k: Flow, i: int, last_full: int | None) -> bool:
    return (
        last_full is not None
        and i >= last_full
        and isinstance(k, KernelBlock)
        and k.layout == "full"
        and k.spatial_ndim > 0
    )


def run_steps(
    plan: Plan,
    k: Flow,
    *,
    observe: Observe | None = None,
    replay: Replay | None = None,
    pin: bool = False,
) -> Flow:
    """Run the plan's steps on ``k`` (see the module docstring).

    Args:
        plan: the folded network.
        k: the input kernel block.
        observe: called as ``observe(i, k)`` after step ``i`` (record or check).
        replay: ``replay(i)`` returns the exact per-position variances ``(v1, v2)``
            after step ``i``, which replace the block's own (``None``: branches).
        pin: whether to pin self-pairs after every step (blocks of ``x2=None``).

    """
    steps = plan.steps
    last_full = plan.switch_after
    i = 0
    while i < len(steps):
        layer = steps[i].layer
        if (
            replay is not None
            and isinstance(k, KernelBlock)
            and i + 1 < len(steps)
            and last_full not in (i, i + 1)
        ):
            mid, after = replay(i), replay(i + 1)
            fused = None if mid is None else layer.fuse_next(k, steps[i + 1].layer, mid)
            if fused is not None and after is not None:
                k = fused.replace(cov1=after[0], cov2=after[1], cov_variance=True)
                if pin:
                    k = pin_self_pairs(k)
                i += 2
                continue
        k = layer.transform(k)
        if _switches(k, i, last_full):  # the first single block after the last mixing step
            k = cast(KernelBlock, k).to_diagonal_layout()
        if observe is not None:
            observe(i, k)
        if isinstance(k, KernelBlock):
            if replay is not None:
                exact = replay(i)
                if exact is not None:
                    k = k.replace(cov1=exact[0], cov2=exact[1], cov_variance=True)
            if pin:
                k = pin_self_pairs(k)
        i += 1
    return k
