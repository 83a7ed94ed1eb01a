"""Convolution, pooling, ReLU and linear layers on numpy arrays, with PyTorch's semantics.

Every function mirrors its ``torch.nn.functional`` namesake: same argument names, order, defaults,
output sizes and ceil_mode rules. Gradients are separate functions (``*_grad*``) so that any
training loop can call them. pyconv-only knobs are keyword-only and come last (``algo=``).

Vocabulary (CS231n): a convolution slides ``out_channels`` *filters* of size ``kH x kW`` that
span the full input depth (``in_channels / groups``) over the input with a *stride*, after
*zero padding* (or mirror/extend/wrap padding via ``padding_mode``). Each output side is::

    out = floor((in + pad_before + pad_after - dilation * (kernel - 1) - 1) / stride) + 1

which for dilation 1 and symmetric padding P is the lecture's (N - F + 2P) / S + 1. A layer
has (F * F * C + 1) * K parameters (weights plus one bias per filter).

All argument checking happens here: bad input raises ``ValueError`` or ``TypeError`` naming the
argument and the values; the C++ core re-checks cheaply. Inputs are never modified.

Each conv/pool function first tries its ``_core.*_fast`` entry point, which runs the whole call in
C++ when the arguments are already canonical and valid (exact float ndarrays, C-contiguous; ints,
tuples, bools, strings) and otherwise returns None; the validating path below it then converts
what it may or raises the error. Lecture-sized calls thus cost one C++ call, not ~20 Python ones.

One module per op family (conv, pool, fully_connected, activation, norm, loss), all re-exported here.
This layer imports only ``_core`` and ``_utils``: Tensors are recognised through the hook that
the tensor layer registers (``_args.register_tensor_layer``), not by importing it.
"""
from ._args import register_tensor_layer  # noqa: F401  (called by pyconv.autograd)
from .activation import dropout, relu, relu_grad
from .conv import (_ALGO_CODE, _MODE_CODE, CONV_ALGORITHMS, PADDING_MODES, _ConvSpec, conv2d, conv2d_grad_bias,  # noqa: F401
                   conv2d_grad_input, conv2d_grad_weight, conv2d_output_shape)
from .fully_connected import linear, linear_grad_bias, linear_grad_input, linear_grad_weight
from .loss import cross_entropy
from .norm import batch_norm
from .pool import (_relu_max_pool2d, adaptive_avg_pool2d, avg_pool2d, avg_pool2d_grad, max_pool2d,  # noqa: F401
                   max_pool2d_grad, pool2d_output_shape)

__all__ = [
    "CONV_ALGORITHMS",
    "PADDING_MODES",
    "conv2d",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv2d_grad_bias",
    "conv2d_output_shape",
    "max_pool2d",
    "max_pool2d_grad",
    "avg_pool2d",
    "avg_pool2d_grad",
    "pool2d_output_shape",
    "relu",
    "relu_grad",
    "linear",
    "linear_grad_input",
    "linear_grad_weight",
    "linear_grad_bias",
    "adaptive_avg_pool2d",
    "batch_norm",
    "dropout",
    "cross_entropy",
]
