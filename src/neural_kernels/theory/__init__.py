"""Theory of wide networks beyond the leading order, each result checked by experiment.

- :func:`finite_width`: the order-``1/n`` corrections of the NNGP kernel (mean ``K1``,
  four-point vertex ``V``) and the NTK fluctuations, layer by layer;
  :func:`sample_gram_chain`: exact Monte Carlo of the same quantities.
- :func:`criticality`: critical ``(w_std, b_std)``, universality class, fixed point and
  susceptibilities of an activation; :func:`depth_profile`: corrections against ``L/n``.
- :func:`deep_kernel`, :func:`deep_predict`, :func:`dual`: infinitely deep networks on the
  sphere and the classifier each activation leads to (majority vote, 1-nearest neighbour,
  singular kernel); :func:`optimal_activation`, :func:`sinh_activation`: activations whose
  deep classifier is Bayes-consistent; :mod:`~neural_kernels.theory.sphere`: a test law.
"""

from .criticality import Criticality as Criticality
from .criticality import criticality as criticality
from .criticality import depth_profile as depth_profile
from .criticality import susceptibilities as susceptibilities
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

__all__ = [
    "Criticality",
    "FiniteWidth",
    "NormalizedDual",
    "criticality",
    "deep_kernel",
    "deep_predict",
    "depth_profile",
    "dual",
    "finite_width",
    "hermite_mixture",
    "optimal_activation",
    "sample_gram_chain",
    "sinh_activation",
    "susceptibilities",
]
