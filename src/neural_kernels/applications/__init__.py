"""Applications of infinite-width kernels.

Modules: :mod:`.permutations` (exact learning of permutations by ensembles of wide
two-layer ReLU networks: the task, the closed-form infinite ensemble, the number of models
needed, finite ensembles trained by gradient descent).
"""

from . import permutations as permutations

__all__ = ["permutations"]
