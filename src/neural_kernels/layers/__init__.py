"""Layers: each one a kernel transform plus a finite ``torch.nn.Module``."""

from ._elementwise import Elementwise as Elementwise
from .activations import GELU as GELU
from .activations import RBF as RBF
from .activations import ABReLU as ABReLU
from .activations import Abs as Abs
from .activations import Cos as Cos
from .activations import Erf as Erf
from .activations import Exp as Exp
from .activations import Gaussian as Gaussian
from .activations import LeakyReLU as LeakyReLU
from .activations import ReLU as ReLU
from .activations import Sign as Sign
from .activations import Sin as Sin
from .attention import GlobalSelfAttention as GlobalSelfAttention
from .base import Facts as Facts
from .base import Layer as Layer
from .base import ModuleContext as ModuleContext
from .base import Requirements as Requirements
from .channels import ChannelsFirst as ChannelsFirst
from .channels import ChannelsLast as ChannelsLast
from .combinators import FanInConcat as FanInConcat
from .combinators import FanInProduct as FanInProduct
from .combinators import FanInSum as FanInSum
from .combinators import FanOut as FanOut
from .combinators import Identity as Identity
from .combinators import Parallel as Parallel
from .combinators import Residual as Residual
from .combinators import Sequential as Sequential
from .conv import Conv as Conv
from .conv import Flatten as Flatten
from .conv_local import ConvLocal as ConvLocal
from .conv_transpose import ConvTranspose as ConvTranspose
from .dense import Dense as Dense
from .dot_general import DotGeneral as DotGeneral
from .dropout import Dropout as Dropout
from .exp_normalized import ExpNormalized as ExpNormalized
from .graph import Aggregate as Aggregate
from .graph import graph_pattern as graph_pattern
from .indexing import Index as Index
from .indexing import Slice as Slice
from .monomials import Hermite as Hermite
from .monomials import Monomial as Monomial
from .monomials import Polynomial as Polynomial
from .monomials import RectifiedMonomial as RectifiedMonomial
from .normalization import LayerNorm as LayerNorm
from .pooling import AvgPool as AvgPool
from .pooling import GlobalAvgPool as GlobalAvgPool
from .pooling import GlobalSumPool as GlobalSumPool
from .pooling import SumPool as SumPool
from .quadrature import ELU as ELU
from .quadrature import Activation as Activation
from .quadrature import Sigmoid as Sigmoid
from .quadrature import SiLU as SiLU
from .quadrature import Softplus as Softplus
from .quadrature import Tanh as Tanh
from .repeat import Repeat as Repeat
from .repeat import repeat as repeat
from .resize import ImageResize as ImageResize

__all__ = [
    "ELU",
    "GELU",
    "RBF",
    "ABReLU",
    "Abs",
    "Activation",
    "Aggregate",
    "AvgPool",
    "ChannelsFirst",
    "ChannelsLast",
    "Conv",
    "ConvLocal",
    "ConvTranspose",
    "Cos",
    "Dense",
    "DotGeneral",
    "Dropout",
    "Elementwise",
    "Erf",
    "Exp",
    "ExpNormalized",
    "Facts",
    "FanInConcat",
    "FanInProduct",
    "FanInSum",
    "FanOut",
    "Flatten",
    "Gaussian",
    "GlobalAvgPool",
    "GlobalSelfAttention",
    "GlobalSumPool",
    "Hermite",
    "Identity",
    "ImageResize",
    "Index",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "ModuleContext",
    "Monomial",
    "Parallel",
    "Polynomial",
    "ReLU",
    "RectifiedMonomial",
    "Repeat",
    "Requirements",
    "Residual",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Sign",
    "Sin",
    "Slice",
    "Softplus",
    "SumPool",
    "Tanh",
    "graph_pattern",
    "repeat",
]
