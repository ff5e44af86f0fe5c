r"""``ChannelsLast`` and ``ChannelsFirst``: move the channel axis in the middle of a network.

Convolutions and pooling read channels first, ``(n, C, *spatial)`` as torch; ``Dense``
and attention act on the last axis, ``(n, *spatial, C)``. These layers move the channel
axis between the two, so that a convolution stack can feed attention (as in Neural
Tangents' IMDB example) or channels-last images (NHWC) can feed a ``Conv``.

The kernel holds covariances between positions only (the channel axis has infinite
width), so it is unchanged; only the layout of the finite network changes:
``x.movedim(1, -1)`` or ``x.movedim(-1, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from .._native.chain import ChainOp
from ..core.protocol import Facts, FactsFlow, Flow, ModuleContext, Requirements, Variances
from ..errors import ShapeError, describe
from .base import Layer, one_block, one_facts

__all__ = ["ChannelsFirst", "ChannelsLast", "MoveChannels"]


@dataclass(frozen=True)
class _Move(Layer):
    #: the channel axis of the output: ``-1`` (last) or ``0`` (first)
    target: ClassVar[int] = -1

    def _permute(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.target == -1:
            return (*shape[1:], shape[0])
        return (shape[-1], *shape[:-1])

    def infer_facts(self, facts: FactsFlow) -> FactsFlow:
        facts = one_facts(self, facts)
        if len(facts.shape) < 2:
            raise ShapeError(
                describe(
                    repr(self),
                    f"inputs of feature shape {facts.shape}, with no spatial axis",
                    "Move the channel axis of spatial inputs (n, C, *spatial) or "
                    "(n, *spatial, C), before Flatten or global pooling.",
                )
            )
        if facts.channel_axis == self.target:
            return facts
        return facts.replace(shape=self._permute(facts.shape), channel_axis=self.target)

    def transform(self, k: Flow) -> Flow:
        k = one_block(self, k)
        if k.channel_axis == self.target:
            return k
        return k.replace(
            shape1=self._permute(k.shape1),
            shape2=self._permute(k.shape2),
            channel_axis=self.target,
        )

    def chain_op(self, facts: Facts) -> ChainOp | None:
        """The kernel is unchanged: a ``skip`` op of the compiled chain."""
        return ChainOp("skip")

    def make_module(self, in_shape: Any, ctx: ModuleContext) -> nn.Module:
        if ctx.channel_axis == self.target:
            return nn.Identity()
        return MoveChannels(self.target)


@dataclass(frozen=True)
class ChannelsLast(_Move):
    """Move the channel axis last: ``(n, C, *spatial)`` to ``(n, *spatial, C)``.

    Put it after convolutions to apply ``Dense`` per position or attention over the
    positions. A no-op on inputs that are channels last already. On raw inputs it reads
    them channels first.
    """

    target: ClassVar[int] = -1
    requirements: ClassVar[Requirements] = Requirements(channel_axis=0, variances=Variances.EXACT)


@dataclass(frozen=True)
class ChannelsFirst(_Move):
    """Move the channel axis first: ``(n, *spatial, C)`` to ``(n, C, *spatial)``.

    Put it after ``Dense`` or attention on sequences to continue with convolutions or
    pooling, or first in a network that takes channels-last images (NHWC, as Neural
    Tangents). A no-op on inputs that are channels first already.
    """

    target: ClassVar[int] = 0
    requirements: ClassVar[Requirements] = Requirements(channel_axis=-1, variances=Variances.EXACT)


class MoveChannels(nn.Module):
    """Finite twin of :class:`ChannelsLast` (``target=-1``) and :class:`ChannelsFirst`."""

    def __init__(self, target: int) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: Tensor) -> Tensor:
        """``x.movedim(1, -1)`` (channels last) or ``x.movedim(-1, 1)`` (channels first)."""
        return x.movedim(1, -1) if self.target == -1 else x.movedim(-1, 1)

    def extra_repr(self) -> str:
        return "channels last" if self.target == -1 else "channels first"
