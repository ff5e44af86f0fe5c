r"""Theory of wide networks beyond the leading order, each result checked by experiment.

- :func:`finite_width`: the order-``1/n`` corrections of the NNGP kernel (mean ``K1``,
  four-point vertex ``V``) and the NTK fluctuations, layer by layer;
  :func:`sample_gram_chain`: exact Monte Carlo of the same quantities.
- :func:`criticality`: critical ``(w_std, b_std)``, universality class, fixed point and
  susceptibilities of an activation; :func:`depth_profile`: corrections against ``L/n``.
- :func:`deep_kernel`, :func:`deep_predict`, :func:`dual`: infinitely deep networks on the
  sphere and the classifier each activation leads to (majority vote, 1-nearest neighbour,
  singular kernel); :func:`optimal_activation`, :func:`sinh_activation`: activations whose
  deep classifier is Bayes-consistent; :mod:`~neural_kernels.theory.sphere`: a test law.
- :func:`krr_risk`, :func:`rf_risk`, :func:`optimal_ridge`: test risk of kernel ridge and
  random-feature regression from the eigenframework; :func:`kernel_eigensystem` feeds
  them from any kernel on a data set; :mod:`~neural_kernels.theory.risk_experiments`
  checks them against ridge regressions (Gaussian data, finite twins' features).
- :func:`eigendirection_dynamics`: the training residual along the NTK's eigenvectors,
  trained twins against :math:`e^{-\lambda t / N}`.
"""

from .criticality import Criticality as Criticality
from .criticality import criticality as criticality
from .criticality import depth_profile as depth_profile
from .criticality import susceptibilities as susceptibilities
from .eigen_dynamics import EigenDynamics as EigenDynamics
from .eigen_dynamics import eigendirection_dynamics as eigendirection_dynamics
from .finite_width import FiniteWidth as FiniteWidth
from .finite_width import finite_width as finite_width
from .gram_chain import sample_gram_chain as sample_gram_chain
from .infinite_depth import NormalizedDual as NormalizedDual
from .infinite_depth import deep_kernel as deep_kernel
from .infinite_depth import deep_predict as deep_predict
from .infinite_depth import dual as dual
from .infinite_depth import hermite_mixture as hermite_mixture
from .infinite_depth import optimal_activation as optimal_activation
from .infinite_depth import sinh_activation as sinh_activation
from .risk import RiskPrediction as RiskPrediction
from .risk import krr_risk as krr_risk
from .risk import optimal_ridge as optimal_ridge
from .risk import rf_risk as rf_risk
from .risk_experiments import kernel_eigensystem as kernel_eigensystem

__all__ = [
    "Criticality",
    "EigenDynamics",
    "FiniteWidth",
    "NormalizedDual",
    "RiskPrediction",
    "criticality",
    "deep_kernel",
    "deep_predict",
    "depth_profile",
    "dual",
    "eigendirection_dynamics",
    "finite_width",
    "hermite_mixture",
    "kernel_eigensystem",
    "krr_risk",
    "optimal_activation",
    "optimal_ridge",
    "rf_risk",
    "sample_gram_chain",
    "sinh_activation",
    "susceptibilities",
]
