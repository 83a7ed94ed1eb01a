"""Pooling layers beyond functional's: ``AdaptiveMaxPool2d`` (torch's; ``output_size=1`` is
global max pooling, Caffe's ``global_pooling`` with MAX)."""
from .. import ops
from .module import Module


class AdaptiveMaxPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return ops.adaptive_max_pool2d(input, self.output_size)

    def output_shape(self, shape):
        if len(shape) != 3:
            raise ValueError(f"AdaptiveMaxPool2d needs an image input (C, H, W), got {tuple(shape)}")
        oh, ow = self.output_size if isinstance(self.output_size, (tuple, list)) else (self.output_size,) * 2
        return (shape[0], oh or shape[1], ow or shape[2])

    def flops(self, input_shapes, output_shape):
        c, h, w = input_shapes[0]
        return c * h * w

    def extra_repr(self):
        return f"output_size={self.output_size}"
