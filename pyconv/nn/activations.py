"""Activation layers beyond ReLU: Sigmoid, Tanh, LeakyReLU, Softmax (torch.nn's names and
arguments) and Maxout (ConvNetJS's)."""
import numbers

import numpy as np

from .. import ops
from .module import Module


def _elementwise(shape):
    return int(np.prod(shape))


class _Elementwise(Module):
    """A layer applied elementwise: the output has the input's shape; ``_FLOPS`` per element."""

    _FLOPS = 1

    def output_shape(self, shape):
        return tuple(shape)

    def flops(self, input_shapes, output_shape):
        return self._FLOPS * _elementwise(output_shape)


class Sigmoid(_Elementwise):
    _FLOPS = 4

    def forward(self, input):
        return ops.sigmoid(input)


class Tanh(_Elementwise):
    _FLOPS = 4

    def forward(self, input):
        return ops.tanh(input)


class LeakyReLU(_Elementwise):
    """``x`` where positive, ``negative_slope * x`` elsewhere (Caffe's ReLU with negative_slope)."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        if not isinstance(negative_slope, numbers.Real) or isinstance(negative_slope, bool):
            raise ValueError(f"LeakyReLU: negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope, self.inplace = float(negative_slope), inplace

    def forward(self, input):
        return ops.leaky_relu(input, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Softmax(_Elementwise):
    """Softmax along ``dim`` (torch's ``nn.Softmax``; Caffe's Softmax has axis 1)."""

    _FLOPS = 3

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return ops.softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Maxout(Module):
    """The maximum over each group of ``group_size`` consecutive channels: C channels become
    C // group_size (ConvNetJS's ``maxout`` activation). No parameters."""

    def __init__(self, group_size=2):
        super().__init__()
        if not isinstance(group_size, (int, np.integer)) or isinstance(group_size, bool) or group_size < 1:
            raise ValueError(f"Maxout: group_size must be a positive int, got {group_size!r}")
        self.group_size = int(group_size)

    def forward(self, input):
        return ops.maxout(input, self.group_size)

    def output_shape(self, shape):
        if shape[0] < self.group_size:
            raise ValueError(f"Maxout: the input has {shape[0]} channels, fewer than group_size={self.group_size}")
        return (shape[0] // self.group_size,) + tuple(shape[1:])

    def flops(self, input_shapes, output_shape):
        return _elementwise(output_shape) * self.group_size

    def extra_repr(self):
        return f"group_size={self.group_size}"
