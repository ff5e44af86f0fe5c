"""Deep kernel machines: Bayesian representation learning at infinite width.

``nk.dkm.DKM(net, nu=..., likelihood=..., noise_var=..., inducing=...)`` turns a fully
connected ``nk`` network into a deep kernel machine (Yang et al., ICML 2023): the Gram
matrix of every hidden layer is learned by maximising the NNGP's log-likelihood minus
``nu`` times the KL divergence of each Gram from its NNGP prior. ``nu -> inf`` recovers
the NNGP. Full (``inducing=None``) and sparse (inducing points, minibatches) versions.

Modules: :mod:`.architecture` (which Grams are learned), :mod:`.gram` (Cholesky-form
Grams, KL divergences), :mod:`.sparse` (conditionals, variational output),
:mod:`.likelihoods`, :mod:`.model` (``DKM``), :mod:`.training` (``fit``).
"""

from __future__ import annotations

from .architecture import Architecture as Architecture
from .architecture import GramMap as GramMap
from .architecture import parse_network as parse_network
from .gram import GramLayer as GramLayer
from .gram import gaussian_kl as gaussian_kl
from .likelihoods import Categorical as Categorical
from .likelihoods import Gaussian as Gaussian
from .model import DKM as DKM
from .model import DKMPrediction as DKMPrediction
from .sparse import VariationalOutput as VariationalOutput
from .training import fit as fit

__all__ = [
    "DKM",
    "Architecture",
    "Categorical",
    "DKMPrediction",
    "Gaussian",
    "GramLayer",
    "GramMap",
    "VariationalOutput",
    "fit",
    "gaussian_kl",
    "parse_network",
]
