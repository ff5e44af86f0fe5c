r"""Predictions of infinitely wide networks: Bayesian inference and gradient-descent training.

The functions follow Neural Tangents' ``predict`` module so that users can migrate, and
its conventions exactly (the reference values in ``shared/reference`` come from it).
Notation: ``n`` training points, targets ``y`` of shape ``(n, k)`` (or ``(n,)``, read as
``k = 1``), ``N = y.numel() = n k``; ``K`` is the NNGP kernel and ``T`` the NTK, with
subscripts ``d`` (train, "data") and ``t`` (test), so ``T_td`` is test x train, shape
``(m, n)``. One kernel is shared by the ``k`` output columns: pass the per-output kernel
(``net.kernel``, or :func:`~neural_kernels.empirical_ntk` with its default
``trace_outputs="mean"``).

Modules: :mod:`.gp` (:func:`gp_inference`), :mod:`.mse` (:func:`gradient_descent_mse`,
:func:`gradient_descent_mse_ensemble`, :func:`max_learning_rate`), :mod:`.ode` (any loss,
momentum: :func:`gradient_descent`); the closed-form predictor they share, the input
checks and the result types live in private modules.

**Regularisation.** The train-train kernel that is inverted or diagonalised is

.. math:: \tilde A = A + \mathrm{diag\_reg} \cdot \frac{\mathrm{tr}(A)}{n} I

(``diag_reg`` is relative to the mean diagonal), or :math:`A + \mathrm{diag\_reg}\, I`
with ``diag_reg_absolute=True``. Each kernel is regularised with its own trace.

**Training time.** Gradient flow on :math:`L = \frac{1}{2N} \sum (f - y)^2` with
learning rate :math:`\eta` runs in absolute time :math:`\tau = \eta t` (``t`` counts
steps of size ``learning_rate``):

.. math:: \frac{df}{d\tau} = -\frac{1}{N} T (f - y).

With :math:`\tilde T = V \operatorname{diag}(\lambda) V^\top` and
:math:`M(\tau) = V \operatorname{diag}\big((1 - e^{-\lambda \tau / N}) / \lambda\big) V^\top`
(the entry is :math:`\tau / N` where :math:`\lambda = 0`), an infinite ensemble of
infinitely wide networks (initial outputs :math:`\mathcal{N}(0, K)`) trained for time
:math:`\tau` outputs a Gaussian with

* NTK test mean :math:`T_{td} M y`; NNGP: the same with ``K`` for ``T``;
* NTK test covariance
  :math:`K_{tt} + T_{td} M K_{dd} M T_{dt} - (T_{td} M K_{dt} + \mathrm{transpose})`
  (``K_dd`` unregularised); NNGP test covariance
  :math:`K_{tt} - K_{td} V \operatorname{diag}\big((1 - e^{-2\lambda\tau/N})/\lambda\big)
  V^\top K_{dt}`;
* train mean :math:`V \operatorname{diag}(1 - e^{-\lambda\tau/N}) V^\top y`; NTK train
  covariance :math:`E K_{dd} E` with :math:`E = V \operatorname{diag}(e^{-\lambda\tau/N})
  V^\top`; NNGP train covariance :math:`V \operatorname{diag}(\lambda e^{-2\lambda\tau/N})
  V^\top` (eigen-pairs of the regularised ``K``).

``t = None`` (or ``inf``) is the limit, computed by a Cholesky solve: the GP posteriors of
:func:`gp_inference` (train outputs: ``y`` with zero covariance). Finite times use one
eigendecomposition per kernel, made on first use and reused for every later call.

The arrays of one prediction are :class:`Gaussian` ``(mean, cov)``; with several times
``t`` (a 1-D tensor) they gain a leading time axis: mean ``(len(t), m, k)``, cov
``(len(t), m, m)``. Several kernels at once (``get=("nngp", "ntk")``) give
:class:`Predictions`, a named tuple of Gaussians in the order asked.

**Arguments.** The predictors of :func:`gradient_descent_mse` and
:func:`gradient_descent` take ``t`` and then keywords only: their Neural Tangents
counterparts take ``(t, fx_train_0, fx_test_0, k_test_train)`` positionally, so a
positional call would be ambiguous. The predictors of :func:`gp_inference` and
:func:`gradient_descent_mse_ensemble` accept Neural Tangents' positional order.
"""

from ..errors import SingularKernelError as SingularKernelError
from ..errors import SolverError as SolverError
from ._inputs import GD_NAMES as GD_NAMES
from ._inputs import GP_NAMES as GP_NAMES
from ._results import Gaussian as Gaussian
from ._results import Outputs as Outputs
from ._results import Predictions as Predictions
from .gp import gp_inference as gp_inference
from .mse import gradient_descent_mse as gradient_descent_mse
from .mse import gradient_descent_mse_ensemble as gradient_descent_mse_ensemble
from .mse import max_learning_rate as max_learning_rate
from .ode import gradient_descent as gradient_descent

__all__ = [
    "GD_NAMES",
    "GP_NAMES",
    "Gaussian",
    "Outputs",
    "Predictions",
    "SingularKernelError",
    "SolverError",
    "gp_inference",
    "gradient_descent",
    "gradient_descent_mse",
    "gradient_descent_mse_ensemble",
    "max_learning_rate",
]
