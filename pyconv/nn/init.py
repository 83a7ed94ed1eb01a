"""Weight initialisation, as torch.nn.init (the subset the layers use)."""
import math

import numpy as np

from ..random import default_generator
from ..tensor import no_grad


def _fan_in(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive if len(shape) > 1 else shape[0]


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    gen = generator or default_generator()
    with no_grad():
        tensor.data[...] = gen.uniform(a, b, tensor.shape)
    return tensor


def kaiming_uniform_(tensor, a=0.0, generator=None):
    """He-uniform for leaky-ReLU slope ``a`` over fan_in: U(-bound, bound), bound = gain*sqrt(3/fan_in)."""
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / _fan_in(tensor.shape))
    return uniform_(tensor, -bound, bound, generator)


def zeros_(tensor):
    tensor.data[...] = 0
    return tensor


def ones_(tensor):
    tensor.data[...] = 1
    return tensor


def default_layer_init_(weight, bias):
    """torch's reset_parameters for Conv and Linear: kaiming_uniform(a=sqrt(5)), bias U(+-1/sqrt(fan_in))."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(_fan_in(weight.shape)) if _fan_in(weight.shape) > 0 else 0
        uniform_(bias, -bound, bound)
