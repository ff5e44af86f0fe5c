"""The layer protocol and the engine that evaluates networks block by block.

:mod:`.protocol` declares what a layer states about itself (``Facts``,
``Requirements``) and what the engine needs from it (``KernelLayer``); :mod:`.plan`
folds a network once before any arithmetic; :mod:`.block` is the working state that
flows through the layers; :mod:`.engine` runs blocks of example pairs through the
plan's steps (:mod:`.steps`), cut and scheduled by :mod:`.tiling`.
"""

from .block import KernelBlock as KernelBlock
from .plan import Plan as Plan
from .plan import Step as Step
from .protocol import Composition as Composition
from .protocol import Facts as Facts
from .protocol import FactsFlow as FactsFlow
from .protocol import Flow as Flow
from .protocol import KernelLayer as KernelLayer
from .protocol import ModuleContext as ModuleContext
from .protocol import Requirements as Requirements
from .protocol import Spatial as Spatial
from .protocol import Variances as Variances

__all__ = [
    "Composition",
    "Facts",
    "FactsFlow",
    "Flow",
    "KernelBlock",
    "KernelLayer",
    "ModuleContext",
    "Plan",
    "Requirements",
    "Spatial",
    "Step",
    "Variances",
]
