"""Layers with torch.nn's API: ``Module``, ``Conv2d``, ``MaxPool2d``, ..., ``Sequential``, and
``Graph`` for nets that branch and join."""
from . import fillers, init
from .activations import LeakyReLU, Maxout, Sigmoid, Softmax, Tanh
from .graph import Concat, Eltwise, Graph
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from .module import Module, Parameter
from .normalization import CaffeBatchNorm2d, LocalResponseNorm, Scale
from .pooling import AdaptiveMaxPool2d

__all__ = [
    "init", "fillers", "Module", "Parameter", "Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Maxout", "Flatten", "Dropout",
    "BatchNorm2d",
    "CaffeBatchNorm2d", "LocalResponseNorm", "Scale", "Sequential", "Graph", "Concat", "Eltwise", "CrossEntropyLoss",
]
