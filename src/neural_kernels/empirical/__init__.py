r"""Empirical (finite-width) kernels of any ``torch.nn.Module``, linearised networks, diagnostics.

Modules:

* :mod:`.ntk`: :func:`empirical_ntk` and :func:`empirical_nngp` (and the strategy
  chooser); the strategies live in private modules (``_jacobian``, ``_ntvp``,
  ``_structured``) over shared machinery (``_model``: the model and options read once;
  ``_features``: per-example features and their contraction in blocks).
* :mod:`.taylor`: :func:`linearize` and :func:`taylor_expand`.
* :mod:`.diagnostics`: kernel distances and :class:`KernelTracker`.
* :mod:`.sweep`: :func:`width_sweep`.
* :mod:`.training`: :func:`train_mse`, the full-batch gradient descent that the width
  sweep and the demo report share.

Every function that reduces over the model's ``k`` outputs takes the **mean** by default
(``trace_outputs="mean"``): the per-output kernel that :mod:`neural_kernels.predict` and
the closed-form ``net.kernel`` describe (Neural Tangents' traced kernel).
"""

from .diagnostics import KernelSnapshot as KernelSnapshot
from .diagnostics import KernelTracker as KernelTracker
from .diagnostics import centered_kernel_alignment as centered_kernel_alignment
from .diagnostics import kernel_cosine_distance as kernel_cosine_distance
from .diagnostics import kernel_distance as kernel_distance
from .ntk import STRATEGIES as STRATEGIES
from .ntk import empirical_nngp as empirical_nngp
from .ntk import empirical_ntk as empirical_ntk
from .ntk import ntk_strategy as ntk_strategy
from .sweep import WidthSweep as WidthSweep
from .sweep import WidthSweepRow as WidthSweepRow
from .sweep import width_sweep as width_sweep
from .taylor import TaylorExpansion as TaylorExpansion
from .taylor import linearize as linearize
from .taylor import taylor_expand as taylor_expand
from .training import train_mse as train_mse

__all__ = [
    "STRATEGIES",
    "KernelSnapshot",
    "KernelTracker",
    "TaylorExpansion",
    "WidthSweep",
    "WidthSweepRow",
    "centered_kernel_alignment",
    "empirical_nngp",
    "empirical_ntk",
    "kernel_cosine_distance",
    "kernel_distance",
    "linearize",
    "ntk_strategy",
    "taylor_expand",
    "train_mse",
    "width_sweep",
]
