r"""``Dropout(p)``: random masking of units, as ``torch.nn.Dropout`` in training mode.

Each unit (channel and position) is kept with probability :math:`1 - p` and scaled by
:math:`1/(1-p)`, with masks drawn independently for every unit and every example. At
infinite width the masks average out over channels, so only the covariance of a unit
with itself changes: for :math:`y = m x / (1-p)`, :math:`E[m m'] = (1-p)^2` for two
different masks and :math:`1-p` for the same mask, hence

.. math::
    K'(x_a, x_b)_{pp'} = K(x_a, x_b)_{pp'} \cdot
        \begin{cases} 1/(1-p) & a = b \text{ (same example) and } p = p' \\
        1 & \text{otherwise,} \end{cases}

and the same factor for the NTK (the gradient with respect to earlier parameters
passes through the same mask). The output is not Gaussian (a mixture with an atom at
zero), so an activation needs a ``Dense`` or ``Conv`` after it. This is Neural Tangents'
``stax.Dropout(rate=1 - p, mode="train")``; note that NT's ``rate`` is the *keep* rate
while ``p`` here is the *drop* probability, as in PyTorch.

**Same example** means the same row of the same batch. ``net.kernel(x)`` (``x2=None``)
pairs every example with itself on the diagonal and scales it; ``net.kernel(x, x)``
treats the two batches as independent draws of the masks (two forward passes), so its
diagonal is *not* scaled and differs from ``net.kernel(x)``'s. ``kernel_diag`` and the
variances ``cov1``/``cov2`` are those of an example with itself (scaled).

``mode="test"`` is the identity (``model.eval()``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core.block import KernelBlock
from ..core.protocol import Facts, FactsFlow, Flow, ModuleContext
from ..errors import HyperparameterError, LayerCompatibilityError, describe
from .base import Layer, one_block, one_facts

__all__ = ["Dropout"]

MODES = ("train", "test")


def _same_position(k: KernelBlock, device: torch.device) -> Tensor | None:
    """Boolean mask of same-position entries of one pair (``None``: every entry is)."""
    if k.cov_is_variance:
        return None
    mask: Tensor | None = None
    for size in k.spatial_shape:
        eye = torch.eye(size, dtype=torch.bool, device=device)
        mask = eye if mask is None else (mask[..., None, None] & eye)
    return mask


def _scale(t: Tensor, mask: Tensor | None, factor: float) -> Tensor:
    """``t`` times ``factor`` where ``mask`` holds (everywhere when ``mask`` is ``None``)."""
    if mask is None:
        return t * factor
    return torch.where(mask, t * factor, t)


@dataclass(frozen=True)
class Dropout(Layer):
    r"""Dropout with drop probability ``p`` (``torch.nn.Dropout(p)``), in training mode.

    Args:
        p: probability of zeroing a unit, ``0 <= p < 1``.
        mode: ``"train"`` (default: the kernel of a network that drops units) or
            ``"test"`` (the identity, as ``model.eval()``).

    Kernel (training mode): the covariance of each example with itself at the same
    position is multiplied by :math:`1/(1-p)`; every other entry is unchanged. Self-pairs
    are the diagonal of ``net.kernel(x)`` (``x2=None``), ``kernel_diag`` and the
    variances; ``net.kernel(x1, x2)`` pairs two independent batches, so even
    ``net.kernel(x, x)`` keeps its diagonal unscaled.

    Finite twin: ``torch.nn.Dropout(p)`` (``nn.Identity`` for ``mode="test"``); it drops
    units only while the module is in training mode (``model.train()``, torch's default).

    Shapes: the output has the input's shape.

    """

    p: float = 0.5
    mode: str = "train"

    def __post_init__(self) -> None:
        ok = isinstance(self.p, numbers.Real) and not isinstance(self.p, bool)
        if not ok or not 0.0 <= float(self.p) < 1.0:
            raise HyperparameterError(
                describe(
                    repr(self),
                    f"p={self.p!r}",
                    "p is the drop probability, as in torch.nn.Dropout: use 0 <= p < 1 "
                    "(Neural Tangents' Dropout(rate) takes the keep rate, rate = 1 - p).",
                )
            )
        if self.mode not in MODES:
            raise HyperparameterError(
                describe(repr(self), f"mode={self.mode!r}", "Use mode='train' or mode='test'.")
            )

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        if self.mode == "test":
            return facts
        if facts.channel_axis is None:
            raise LayerCompatibilityError(
                describe(
                    repr(self),
                    "it acts on the raw inputs",
                    "Dropout needs infinitely many units to average its masks over: put it "
                    "after a Dense or Conv layer (or an activation), not first.",
                )
            )
        return Facts(facts.shape, False, facts.channel_axis)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        if self.mode == "test":
            return k
        factor = 1.0 / (1.0 - float(self.p))
        pos = _same_position(k, k.device)
        same = k.cov2 is k.cov1
        cov1 = _scale(k.cov1, pos, factor)
        cov2 = cov1 if same else _scale(k.cov2, pos, factor)
        nngp, ntk = k.nngp, k.ntk
        if k.self_pairs:
            nngp = _scale(nngp, pos, factor)
            ntk = None if ntk is None else _scale(ntk, pos, factor)
        elif k.origin is not None:
            n1, n2 = nngp.shape[:2]
            r0, s0 = k.origin
            rows = torch.arange(r0, r0 + n1, device=k.device)
            cols = torch.arange(s0, s0 + n2, device=k.device)
            if r0 < s0 + n2 and s0 < r0 + n1:  # the block meets the diagonal
                selfpair = rows[:, None] == cols[None, :]
                mask = selfpair.reshape(n1, n2, *([1] * (nngp.ndim - 2)))
                if pos is not None:
                    mask = mask & pos
                nngp = torch.where(mask, nngp * factor, nngp)
                ntk = None if ntk is None else torch.where(mask, ntk * factor, ntk)
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False)

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        if self.mode == "test":
            return nn.Identity()
        return nn.Dropout(float(self.p))
