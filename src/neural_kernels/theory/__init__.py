"""Theory of wide networks beyond the leading order, each result checked by experiment.

- :func:`finite_width`: the order-``1/n`` corrections of the NNGP kernel (mean ``K1``,
  four-point vertex ``V``) and the NTK fluctuations, layer by layer;
  :func:`sample_gram_chain`: exact Monte Carlo of the same quantities.
- :func:`criticality`: critical ``(w_std, b_std)``, universality class, fixed point and
  susceptibilities of an activation; :func:`depth_profile`: corrections against ``L/n``.
"""

from .criticality import Criticality as Criticality
from .criticality import criticality as criticality
from .criticality import depth_profile as depth_profile
from .criticality import susceptibilities as susceptibilities
from .finite_width import FiniteWidth as FiniteWidth
from .finite_width import finite_width as finite_width
from .gram_chain import sample_gram_chain as sample_gram_chain

__all__ = [
    "Criticality",
    "FiniteWidth",
    "criticality",
    "depth_profile",
    "finite_width",
    "sample_gram_chain",
    "susceptibilities",
]
