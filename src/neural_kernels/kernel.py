r"""``Kernel``: the NNGP and NTK of an infinitely wide network between two batches.

``net.kernel(x1, x2)`` returns a :class:`Kernel` whose fields are

* ``nngp``: the NNGP kernel :math:`K(x_i, x'_j)`, shape ``(n1, n2)``;
* ``ntk``: the neural tangent kernel :math:`\Theta(x_i, x'_j)`, shape ``(n1, n2)``,
  or ``None`` when only the NNGP was asked for;
* ``cov1``: the variances :math:`K(x_i, x_i)`, shape ``(n1,)``;
* ``cov2``: the variances :math:`K(x'_j, x'_j)`, shape ``(n2,)``;

plus static facts of the network's output (feature shapes, Gaussianity, layout).
``net.kernel_diag(x)`` returns one with ``self_pairs=True``: ``nngp`` and ``ntk`` of
shape ``(n,)``, the kernels of each example with itself.

Outputs that keep spatial axes add one axis pair per spatial axis: ``(n1, n2, H, H', W,
W')`` with ``layout="full"`` (every two positions), ``(n1, n2, H, W)`` with
``layout="diagonal"`` (same positions only).

A ``Kernel`` is a frozen dataclass of tensors: it pickles, and ``torch.save`` /
``torch.load`` (``weights_only=True``, torch's default) round-trip it.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .core.block import KernelBlock, same_position_equation

__all__ = ["Kernel"]

#: Names of the engine's working state that the public result no longer carries.
_MOVED = frozenset(
    {
        "variances",
        "place_self",
        "place",
        "self_marginals",
        "marginals",
        "cov_is_variance",
        "pairs_are_same_position",
        "pattern1",
        "pattern2",
        "origin",
        "cov_variance",
    }
)


@dataclass(frozen=True, init=False)
class Kernel:
    """NNGP and NTK of a network between two batches of inputs.

    Attributes:
        nngp: NNGP kernel, shape ``(n1, n2, *pairs)`` (``(n, *pairs)`` for self-pairs).
        ntk: NTK, same shape as ``nngp``, or ``None`` when it was not asked for.
        cov1: each first input's covariance with itself: ``(n1,)`` for flat outputs,
            ``(n1, *pairs)`` for spatial ones.
        cov2: the same for the second inputs.
        shape1: feature shape of the network's output for the first inputs (no batch).
        shape2: the same for the second inputs.
        is_gaussian: whether the network's outputs are Gaussian (they are after a
            ``Dense`` readout).
        self_pairs: whether only the pairs ``(x_i, x_i)`` are held (``kernel_diag``).
        layout: ``"full"`` or ``"diagonal"`` spatial covariance (spatial outputs only).
        channel_axis: the channel axis of ``shape1`` (``0`` channels first, ``-1`` last).

    """

    nngp: Tensor
    ntk: Tensor | None
    cov1: Tensor
    cov2: Tensor
    shape1: tuple[int, ...]
    shape2: tuple[int, ...]
    is_gaussian: bool
    self_pairs: bool
    layout: str
    channel_axis: int

    def __init__(
        self,
        nngp: Tensor,
        ntk: Tensor | None = None,
        cov1: Tensor | None = None,
        cov2: Tensor | None = None,
        shape1: tuple[int, ...] = (),
        shape2: tuple[int, ...] = (),
        is_gaussian: bool = False,
        self_pairs: bool = False,
        layout: str = "full",
        channel_axis: int = -1,
        **deprecated: Any,
    ) -> None:
        if "diagonal" in deprecated:
            warnings.warn(
                "Kernel(diagonal=...) is deprecated: use self_pairs=... (a kernel of each "
                "example with itself). 'diagonal' now only names the spatial layout.",
                DeprecationWarning,
                stacklevel=2,
            )
            self_pairs = bool(deprecated.pop("diagonal"))
        for name in ("pattern1", "pattern2", "origin", "cov_variance"):
            deprecated.pop(name, None)  # engine state: no longer part of the result
        if deprecated:
            raise TypeError(f"Kernel() got unexpected keyword arguments {sorted(deprecated)}")
        if cov1 is None:
            cov1 = nngp if self_pairs else torch.diagonal(nngp, dim1=0, dim2=1)
        values = {
            "nngp": nngp,
            "ntk": ntk,
            "cov1": cov1,
            "cov2": cov1 if cov2 is None else cov2,
            "shape1": tuple(shape1),
            "shape2": tuple(shape2 or shape1),
            "is_gaussian": bool(is_gaussian),
            "self_pairs": bool(self_pairs),
            "layout": layout,
            "channel_axis": int(channel_axis),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def replace(self, **changes: Any) -> Kernel:
        """Return a copy with the given fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def spatial_ndim(self) -> int:
        """Number of spatial axes of the output (``0`` for flat features)."""
        return max(len(self.shape1) - 1, 0)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Spatial sizes of the output for the first inputs, e.g. ``(H, W)``."""
        if self.spatial_ndim == 0:
            return ()
        return self.shape1[1:] if self.channel_axis == 0 else self.shape1[:-1]

    @property
    def diagonal(self) -> bool:
        """Deprecated name of :attr:`self_pairs`."""
        warnings.warn(
            "Kernel.diagonal is deprecated: use Kernel.self_pairs (the kernel of each example "
            "with itself); 'diagonal' now only names the spatial layout.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.self_pairs

    def to_diagonal_layout(self) -> Kernel:
        """The same kernel keeping only same-position covariances (``layout="diagonal"``)."""
        if self.spatial_ndim == 0 or self.layout == "diagonal":
            return self.replace(layout="diagonal")
        lead = 1 if self.self_pairs else 2
        eq = same_position_equation(lead, self.spatial_ndim)
        cov_eq = same_position_equation(1, self.spatial_ndim)
        cov1 = torch.einsum(cov_eq, self.cov1)
        return self.replace(
            nngp=torch.einsum(eq, self.nngp),
            ntk=None if self.ntk is None else torch.einsum(eq, self.ntk),
            cov1=cov1,
            cov2=cov1 if self.cov2 is self.cov1 else torch.einsum(cov_eq, self.cov2),
            layout="diagonal",
        )

    def to(self, *args: Any, **kwargs: Any) -> Kernel:
        """Move every tensor, as ``Tensor.to`` (device and/or dtype)."""
        same = self.cov2 is self.cov1
        cov1 = self.cov1.to(*args, **kwargs)
        return self.replace(
            nngp=self.nngp.to(*args, **kwargs),
            ntk=None if self.ntk is None else self.ntk.to(*args, **kwargs),
            cov1=cov1,
            cov2=cov1 if same else self.cov2.to(*args, **kwargs),
        )

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the kernel entries."""
        return self.nngp.dtype

    @property
    def device(self) -> torch.device:
        """The device of the kernel entries."""
        return self.nngp.device

    def __getattr__(self, name: str) -> Any:
        if name in _MOVED:
            warnings.warn(
                f"Kernel.{name} is deprecated: it is engine working state, now on the "
                "internal neural_kernels.core.KernelBlock.",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(self._block(), name)
        raise AttributeError(f"'Kernel' object has no attribute {name!r}")

    def _block(self) -> KernelBlock:
        return KernelBlock(
            nngp=self.nngp,
            ntk=self.ntk,
            cov1=self.cov1,
            cov2=self.cov2,
            shape1=self.shape1,
            shape2=self.shape2,
            is_gaussian=self.is_gaussian,
            self_pairs=self.self_pairs,
            layout=self.layout,
            channel_axis=self.channel_axis,
        )

    def __repr__(self) -> str:
        ntk = None if self.ntk is None else tuple(self.ntk.shape)
        return (
            f"Kernel(nngp={tuple(self.nngp.shape)}, ntk={ntk}, dtype={self.nngp.dtype}, "
            f"shape1={self.shape1}, shape2={self.shape2}, is_gaussian={self.is_gaussian}, "
            f"self_pairs={self.self_pairs}, layout={self.layout!r})"
        )


torch.serialization.add_safe_globals([Kernel])
