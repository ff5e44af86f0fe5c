r"""abc-parametrizations (Yang & Hu, Tensor Programs IV): muP, mean field, NTK, standard.

The parametrization decides what an infinitely wide network learns: the standard and NTK
ones converge to kernel machines with frozen features, muP (the maximal-update
parametrization) to a limit that learns features. This package builds finite networks in
any abc-parametrization and trains them with the right per-layer learning rates:

* :class:`ABC`: the exponents ``a``, ``b``, ``c`` of the input, hidden and output layers;
  in weight space :math:`\operatorname{Var}(W^l) = n^{-2(a_l+b_l)}` and the SGD learning
  rate on :math:`W^l` is :math:`\eta n^{-(c + 2a_l)}`.
* ``net.module(in_shape, width=n, parametrization="mup", base_width=n0)``: the finite twin
  (``"standard"``, ``"ntk"``, ``"mup"``, ``"mean_field"`` or an :class:`ABC`), equal to the
  standard twin at ``base_width``.
* :func:`param_groups`: per-layer learning rates for any ``torch.optim`` optimizer;
  :func:`scaled_lrs` and :func:`check_scaling` keep schedulers from undoing them.
* :func:`classify`: stable, nontrivial, feature learning or kernel regime, per layer
  maximal or not (exact rational arithmetic).
* :func:`coord_check`: activation sizes after a few steps against width.

Example::

    import neural_kernels as nk

    net = nk.Sequential(nk.Dense(64), nk.Tanh(), nk.Dense(64), nk.Tanh(), nk.Dense(10))
    model = net.module((64,), width=1024, parametrization="mup", base_width=64)
    opt = torch.optim.SGD(nk.abc.param_groups(model, lr=0.1))
    nk.abc.classify("mup", depth=2).regime      # 'feature learning'
"""

from ._spec import ABC as ABC
from ._spec import NAMES as NAMES
from ._spec import as_abc as as_abc
from ._twin import AbcScale as AbcScale
from ._twin import TwinInfo as TwinInfo
from .classify import Classification as Classification
from .classify import LayerRegime as LayerRegime
from .classify import classify as classify
from .coord_check import CoordCheck as CoordCheck
from .coord_check import coord_check as coord_check
from .optim import check_scaling as check_scaling
from .optim import param_groups as param_groups
from .optim import scaled_lrs as scaled_lrs

__all__ = [
    "ABC",
    "NAMES",
    "AbcScale",
    "Classification",
    "CoordCheck",
    "LayerRegime",
    "TwinInfo",
    "as_abc",
    "check_scaling",
    "classify",
    "coord_check",
    "param_groups",
    "scaled_lrs",
]
