r"""``KernelBlock``: the working state that flows through the layers inside the engine.

A layer maps a :class:`KernelBlock` to a new one; nothing is mutated in place. For a
block of ``n1`` rows and ``n2`` columns of example pairs the fields are

* ``nngp``: the NNGP kernel :math:`K(x_i, x'_j)`, shape ``(n1, n2, *pairs)``;
* ``ntk``: the neural tangent kernel :math:`\Theta(x_i, x'_j)`, same shape, or ``None``;
* ``cov1``: each first input's covariance with itself, ``(n1, *pairs)``;
* ``cov2``: the same for the second inputs, ``(n2, *pairs)``.

With ``self_pairs=True`` the block holds only the pairs :math:`(x_i, x_i)`: ``nngp``
and ``ntk`` have shape ``(n, *pairs)``.

Spatial kernels keep one axis pair per spatial axis. With ``layout="full"`` the entries
of a pair of examples are the covariances between every two positions, interleaved:
``(n1, n2, H, H', W, W')`` for images. With ``layout="diagonal"`` only same-position
entries are kept: ``(n1, n2, H, W)``.

The public result of ``net.kernel`` is the leaner :class:`neural_kernels.kernel.Kernel`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["KernelBlock", "same_position_equation"]

_LETTERS = "abcdefgh"


def same_position_equation(lead: int, spatial: int) -> str:
    """The einsum taking same-position entries of a full layout.

    ``lead`` leading (example) axes, ``spatial`` axis pairs: ``"yzaabb->yzab"`` for
    ``lead=2, spatial=2``.
    """
    letters = _LETTERS[:spatial]
    head = "xyz"[3 - lead :]
    return head + "".join(c + c for c in letters) + "->" + head + letters


@dataclass(frozen=True)
class KernelBlock:
    """Kernels of a block of example pairs, with the static facts layers need.

    Attributes:
        nngp: NNGP kernel, shape ``(n1, n2, *pairs)`` (``(n, *pairs)`` for self-pairs).
        ntk: NTK, same shape as ``nngp``, or ``None`` when it is not computed.
        cov1: covariances of each first input with itself, shape ``(n1, *pairs)``
            (variances ``(n1,)`` for fully connected kernels).
        cov2: the same for the second inputs, shape ``(n2, *pairs)``.
        shape1: feature shape of the first inputs in the finite network (no batch axis).
        shape2: feature shape of the second inputs in the finite network.
        is_gaussian: whether the outputs at this point are Gaussian.
        self_pairs: whether only the pairs ``(x_i, x_i)`` are held.
        layout: ``"full"`` or ``"diagonal"`` spatial covariance.
        channel_axis: the channel axis of ``shape1`` (``0``: channels first as in
            ``Conv``; ``-1``: channels last as in ``Dense``).
        pattern1: per-example graph adjacency of the first inputs ``(n1, L, L)`` for
            ``Aggregate``, or ``None``.
        pattern2: the same for the second inputs ``(n2, L, L)``.
        origin: when both inputs are the same batch (``x2=None``), the indices
            ``(row, col)`` of this block's first entry, so that a layer can tell pairs of
            an example with itself (``row + a == col + b``); ``None`` otherwise.
        cov_variance: whether ``cov1``/``cov2`` hold per-position variances
            ``(n, *spatial)`` even though the layout is full (the engine then supplies
            each step's exact variances; see :class:`~neural_kernels.core.Variances`).
        mask1: with input masking (``mask_constant``), the masked positions of the
            first inputs, boolean ``(n1, *spatial)`` (``(n1,)`` for flat features;
            ``True``: masked), or ``None``; see :mod:`neural_kernels.layers.masking`.
        mask2: the same for the second inputs.

    """

    nngp: Tensor
    ntk: Tensor | None
    cov1: Tensor
    cov2: Tensor
    shape1: tuple[int, ...]
    shape2: tuple[int, ...]
    is_gaussian: bool = False
    self_pairs: bool = False
    layout: str = "full"
    channel_axis: int = -1
    pattern1: Tensor | None = None
    pattern2: Tensor | None = None
    origin: tuple[int, int] | None = None
    cov_variance: bool = False
    mask1: Tensor | None = None
    mask2: Tensor | None = None

    def replace(self, **changes: object) -> KernelBlock:
        """Return a copy with the given fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def spatial_ndim(self) -> int:
        """Number of spatial axes (``0`` for fully connected features)."""
        return max(len(self.shape1) - 1, 0)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Spatial sizes of the first inputs, e.g. ``(H, W)``."""
        if self.spatial_ndim == 0:
            return ()
        return self.shape1[1:] if self.channel_axis == 0 else self.shape1[:-1]

    @property
    def lead(self) -> int:
        """Number of leading example axes of ``nngp``: ``1`` for self-pairs, else ``2``."""
        return 1 if self.self_pairs else 2

    @property
    def cov_is_variance(self) -> bool:
        """Whether ``cov1``/``cov2`` hold per-position variances only."""
        return self.spatial_ndim == 0 or self.layout == "diagonal" or self.cov_variance

    @property
    def pairs_are_same_position(self) -> bool:
        """Whether ``nngp`` holds only same-position entries (no axis pairs)."""
        return self.spatial_ndim == 0 or self.layout == "diagonal"

    @property
    def same_inputs(self) -> bool:
        """Whether the second inputs are the first ones (``cov2`` is ``cov1``)."""
        return self.cov2 is self.cov1

    def variances(self, cov: Tensor) -> Tensor:
        """Per-position variances ``(n, *spatial)`` of a ``cov1``/``cov2`` tensor."""
        if self.cov_is_variance:
            return cov
        return torch.einsum(same_position_equation(1, self.spatial_ndim), cov)

    def place_self(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """Per-position values ``v`` ``(n, *spatial)`` broadcast against a self-covariance.

        Returns the values placed on the first and on the second position of each pair.
        """
        if self.cov_is_variance:
            return v, v
        n = v.shape[0]
        a = v.reshape(n, *[d for size in v.shape[1:] for d in (size, 1)])
        b = v.reshape(n, *[d for size in v.shape[1:] for d in (1, size)])
        return a, b

    def place(self, v1: Tensor, v2: Tensor) -> tuple[Tensor, Tensor]:
        """Per-position values of the first and second inputs broadcast against ``nngp``."""
        if self.self_pairs:
            return self.place_self(v1)
        if self.pairs_are_same_position:
            return v1.unsqueeze(1), v2.unsqueeze(0)
        a = v1.reshape(v1.shape[0], 1, *[d for size in v1.shape[1:] for d in (size, 1)])
        b = v2.reshape(1, v2.shape[0], *[d for size in v2.shape[1:] for d in (1, size)])
        return a, b

    def self_marginals(self, cov: Tensor) -> tuple[Tensor, Tensor]:
        """Variances ``(q_a, q_b)`` broadcast against a same-example covariance ``cov``."""
        return self.place_self(self.variances(cov))

    def marginals(self) -> tuple[Tensor, Tensor]:
        """The variances ``(q1, q2)`` broadcast against ``nngp``.

        Returns:
            For a fully connected block ``cov1[:, None]`` and ``cov2[None, :]``; for spatial
            kernels the per-position variances placed on their axes of the pair layout; for
            self-pairs the marginals of ``nngp`` itself.

        """
        return self.place(self.variances(self.cov1), self.variances(self.cov2))

    def map_covs(self, fn: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """``(fn(cov1), fn(cov2))``, computed once when both inputs are the same."""
        cov1 = fn(self.cov1)
        return cov1, cov1 if self.same_inputs else fn(self.cov2)

    def to_diagonal_layout(self) -> KernelBlock:
        """The same kernel keeping only same-position covariances (``layout="diagonal"``).

        Exact for every later layer that needs no covariance between two positions.
        """
        if self.pairs_are_same_position:
            return self.replace(layout="diagonal")
        eq = same_position_equation(self.lead, self.spatial_ndim)
        ntk = None if self.ntk is None else torch.einsum(eq, self.ntk)
        cov1, cov2 = self.map_covs(self.variances)
        return self.replace(
            nngp=torch.einsum(eq, self.nngp), ntk=ntk, cov1=cov1, cov2=cov2, layout="diagonal"
        )

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the kernel entries."""
        return self.nngp.dtype

    @property
    def device(self) -> torch.device:
        """The device of the kernel entries."""
        return self.nngp.device

    def __repr__(self) -> str:
        ntk = None if self.ntk is None else tuple(self.ntk.shape)
        return (
            f"KernelBlock(nngp={tuple(self.nngp.shape)}, ntk={ntk}, dtype={self.nngp.dtype}, "
            f"shape1={self.shape1}, shape2={self.shape2}, is_gaussian={self.is_gaussian}, "
            f"self_pairs={self.self_pairs}, layout={self.layout!r})"
        )
