"""Layers: each one a kernel transform plus a finite ``torch.nn.Module``."""

from ._elementwise import Elementwise as Elementwise
from .activations import ABReLU as ABReLU
from .activations import Abs as Abs
from .activations import LeakyReLU as LeakyReLU
from .activations import ReLU as ReLU
from .base import Facts as Facts
from .base import FanInConcat as FanInConcat
from .base import FanInProduct as FanInProduct
from .base import FanInSum as FanInSum
from .base import FanOut as FanOut
from .base import Identity as Identity
from .base import Layer as Layer
from .base import ModuleContext as ModuleContext
from .base import Parallel as Parallel
from .base import Requirements as Requirements
from .base import Residual as Residual
from .base import Sequential as Sequential
from .dense import Dense as Dense
from .normalization import LayerNorm as LayerNorm

__all__ = [
    "ABReLU",
    "Abs",
    "Dense",
    "Elementwise",
    "Facts",
    "FanInConcat",
    "FanInProduct",
    "FanInSum",
    "FanOut",
    "Identity",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "ModuleContext",
    "Parallel",
    "ReLU",
    "Requirements",
    "Residual",
    "Sequential",
]
