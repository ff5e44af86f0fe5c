r"""``Kernel``: the state that flows through the layers of an infinitely wide network.

A layer maps a :class:`Kernel` to a new :class:`Kernel`; nothing is mutated in place.
For a block of ``n1`` rows and ``n2`` columns of example pairs the fields are

* ``nngp``: the NNGP kernel :math:`K(x_i, x'_j)`, shape ``(n1, n2)``;
* ``ntk``: the neural tangent kernel :math:`\Theta(x_i, x'_j)`, shape ``(n1, n2)``,
  or ``None`` when only the NNGP was asked for;
* ``cov1``: the variances :math:`K(x_i, x_i)`, shape ``(n1,)``;
* ``cov2``: the variances :math:`K(x'_j, x'_j)`, shape ``(n2,)``.

With ``diagonal=True`` the kernel holds only the pairs :math:`(x_i, x_i)`: ``nngp`` and
``ntk`` have shape ``(n,)`` and equal ``cov1`` (for the NNGP) on every entry.

The static facts are those layers need to check their input and to compute their
finite-width corrections: ``shape1``/``shape2`` are the feature shapes (without the
batch axis) of the *finite* network at this point, and ``is_gaussian`` says whether
the current outputs are Gaussian (the output of a random affine map is; the output
of an activation is not).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Kernel"]


@dataclass(frozen=True)
class Kernel:
    """Kernels of a block of example pairs, with the static facts layers need.

    Attributes:
        nngp: NNGP kernel, shape ``(n1, n2)`` (or ``(n,)`` when ``diagonal``).
        ntk: NTK, same shape as ``nngp``, or ``None`` when it is not computed.
        cov1: variances of the first inputs, shape ``(n1,)``.
        cov2: variances of the second inputs, shape ``(n2,)``.
        shape1: feature shape of the first inputs in the finite network.
        shape2: feature shape of the second inputs in the finite network.
        is_gaussian: whether the outputs at this point are Gaussian.
        diagonal: whether only the pairs ``(x_i, x_i)`` are held.

    """

    nngp: Tensor
    ntk: Tensor | None
    cov1: Tensor
    cov2: Tensor
    shape1: tuple[int, ...]
    shape2: tuple[int, ...]
    is_gaussian: bool = False
    diagonal: bool = False

    def replace(self, **changes: object) -> Kernel:
        """Return a copy with the given fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def marginals(self) -> tuple[Tensor, Tensor]:
        """The variances ``(q1, q2)`` broadcast against ``nngp``.

        Returns:
            ``cov1[:, None]`` and ``cov2[None, :]`` for a full block; ``cov1`` twice for a
            diagonal one.

        """
        if self.diagonal:
            return self.cov1, self.cov1
        return self.cov1.unsqueeze(-1), self.cov2.unsqueeze(-2)

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
            f"Kernel(nngp={tuple(self.nngp.shape)}, ntk={ntk}, dtype={self.nngp.dtype}, "
            f"shape1={self.shape1}, shape2={self.shape2}, is_gaussian={self.is_gaussian}, "
            f"diagonal={self.diagonal})"
        )
