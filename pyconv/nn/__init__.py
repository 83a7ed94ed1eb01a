"""Layers with torch.nn's API: ``Module``, ``Conv2d``, ``MaxPool2d``, ..., ``Sequential``."""
from . import init
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

__all__ = [
    "init", "Module", "Parameter", "Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "ReLU",
    "Flatten", "Dropout", "BatchNorm2d", "Sequential", "CrossEntropyLoss",
]
