r"""Feature learning beyond the kernel regime: exact infinite-width limits that learn features.

* :class:`LinearMuPLimit`: the exact muP limit of the one-hidden-layer linear network
  (Tensor Programs IV, Cor 6.2), with ``.step``, logits, ``.features``,
  ``.feature_kernel`` and ``.sample(width)`` for finite networks that follow it;
  :class:`LinearNTKLimit`, its NTK counterpart (a linear model with frozen features).
* :func:`linear_limit_sweep`: finite networks against both limits across widths.
* :func:`lr_transfer`: final loss against learning rate per width (muP transfers).
* :func:`nonlinear_sweep`: tanh/ReLU MLPs across width: muP nets converge to a
  width-independent trained function, NTK-parametrized ones to the kernel prediction.
* :func:`ntk_limits_sweep`, :func:`ntk_gp_vs_ensemble`, :func:`split_digits_forgetting`,
  :func:`forgetting_sweep`:
  where the NTK picture stops describing trained networks (conditioning of the empirical
  NTK, the stable-Jacobian constant, kernel movement, linearisation gap, calibration of the
  NTK-GP against a trained ensemble, forgetting on split digits).

The finite networks in any abc-parametrization are in :mod:`neural_kernels.abc`.
"""

from .linear import LinearMuPLimit as LinearMuPLimit
from .linear import LinearMuPNetwork as LinearMuPNetwork
from .linear import LinearNTKLimit as LinearNTKLimit
from .linear import LinearNTKNetwork as LinearNTKNetwork
from .linear_sweep import LinearSweep as LinearSweep
from .linear_sweep import linear_limit_sweep as linear_limit_sweep
from .linear_sweep import relative_change as relative_change
from .transfer import Transfer as Transfer
from .transfer import lr_transfer as lr_transfer
from .transfer import transfer_study as transfer_study

__all__ = [
    "LinearMuPLimit",
    "LinearMuPNetwork",
    "LinearNTKLimit",
    "LinearNTKNetwork",
    "LinearSweep",
    "Transfer",
    "linear_limit_sweep",
    "lr_transfer",
    "relative_change",
    "transfer_study",
]

# Nonlinear networks across width and the limits of the NTK perspective (issue 11, items 7-8).
from .forgetting import Forgetting as Forgetting
from .forgetting import ForgettingSweep as ForgettingSweep
from .forgetting import forgetting_sweep as forgetting_sweep
from .forgetting import split_digits_forgetting as split_digits_forgetting
from .nonlinear import NonlinearSweep as NonlinearSweep
from .nonlinear import nonlinear_sweep as nonlinear_sweep
from .ntk_limits import GPvsEnsemble as GPvsEnsemble
from .ntk_limits import NTKLimits as NTKLimits
from .ntk_limits import ntk_gp_vs_ensemble as ntk_gp_vs_ensemble
from .ntk_limits import ntk_limits_sweep as ntk_limits_sweep

__all__ += [
    "Forgetting",
    "ForgettingSweep",
    "GPvsEnsemble",
    "NTKLimits",
    "NonlinearSweep",
    "forgetting_sweep",
    "nonlinear_sweep",
    "ntk_gp_vs_ensemble",
    "ntk_limits_sweep",
    "split_digits_forgetting",
]
