r"""The sections of the demo report, one module each, in the order of :data:`SECTIONS`.

1. :mod:`.infinite_width`: NNGP and NTK spectra, posteriors and gradient-descent
   predictions of a fully connected network and a small CNN.
2. :mod:`.finite_vs_infinite`: finite twins of growing width trained by gradient descent
   against the kernel prediction from the same initial outputs.
3. :mod:`.gaussian_picture`: outputs of random finite networks against the NNGP Gaussian.
4. :mod:`.kernel_movement`: how far the empirical NTK moves during training.
5. :mod:`.applications`: the scikit-learn classifier and exact permutation learning.
6. :mod:`.deep_kernel_machines`: deep kernel machines against the NNGP for several nu.
7. :mod:`.theory`: the results of :mod:`neural_kernels.theory` against experiments.
8. :mod:`.feature_learning`: abc-parametrizations, muP's coordinate check and learning-rate
   transfer, the exact linear muP limit against width.
9. :mod:`.feature_learning_nonlinear`: nonlinear muP networks against the kernel limit.
10. :mod:`.ntk_limits`: where the NTK picture stops describing trained networks.

**Adding a section.** Write a module ``<name>.py`` here with a function
``build(ctx: Context) -> Section`` that returns a :class:`~neural_kernels.report.Section`
named ``<name>`` (its key in ``results.json``; every number it plots goes in its
``data``), keeps to about 20 s at the default sizes (fewer with ``ctx.quick``), reports
long steps through ``ctx.progress(label)``, and shares expensive work with other sections
through ``ctx.shared(key, compute)``; then add ``("<name>", <name>.build)`` to
:data:`SECTIONS`. A section imports the library (``import neural_kernels as nk``) and the
report's model, never the command line.

Conventions (those of :mod:`neural_kernels.predict`): loss
:math:`\frac{1}{2N}\sum (f - y)^2` with :math:`N` the targets' size, time
:math:`\tau` = steps x learning rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..model import Section
from . import (
    applications,
    deep_kernel_machines,
    feature_learning,
    feature_learning_nonlinear,
    finite_vs_infinite,
    gaussian_picture,
    infinite_width,
    kernel_movement,
    more_layers,
    ntk_limits,
    theory,
)
from ._common import Context, Sizes, sizes_for

__all__ = ["SECTIONS", "Context", "Sizes", "add_sections", "sizes_for"]

#: The demo's sections in report order: ``(name in results.json, build)``.
SECTIONS: tuple[tuple[str, Callable[[Context], Section]], ...] = (
    ("infinite_width", infinite_width.build),
    ("finite_vs_infinite", finite_vs_infinite.build),
    ("gaussian_picture", gaussian_picture.build),
    ("kernel_movement", kernel_movement.build),
    ("more_layers", more_layers.build),
    ("applications", applications.build),
    ("deep_kernel_machines", deep_kernel_machines.build),
    ("theory", theory.build),
    ("feature_learning", feature_learning.build),
    ("feature_learning_nonlinear", feature_learning_nonlinear.build),
    ("ntk_limits", ntk_limits.build),
)


def add_sections(report: Any, ctx: Context) -> None:
    """Append every section of :data:`SECTIONS` to ``report``, in order."""
    for name, build in SECTIONS:
        section = build(ctx)
        if section.name != name:
            raise ValueError(f"section {name!r} built a section named {section.name!r}")
        report.add(section)
