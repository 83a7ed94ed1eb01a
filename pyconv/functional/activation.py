"""ReLU (forward and gradient) and dropout."""
import numbers

import numpy as np

from .. import _core
from ..random import default_generator
from ._args import _array, _contig, _same_dtype, recorder


def relu(input):
    """max(input, 0) elementwise; NaN propagates (-0 gives +0)."""
    if type(input) is not np.ndarray:  # the hook only for what may be a Tensor (relu is called per layer)
        ops = recorder(input)
        if ops is not None:
            return ops.ReLU.apply(input)
    return _core.relu_fwd(_contig(_array("relu", "input", input)))


def relu_grad(grad_output, input):
    """Gradient of :func:`relu`: ``grad_output`` where ``input > 0`` (and where input is NaN), else 0."""
    fn = "relu_grad"
    g = _array(fn, "grad_output", grad_output)
    x = _array(fn, "input", input)
    _same_dtype(fn, "input", x, ("grad_output", g))
    if g.shape != x.shape:
        raise ValueError(f"{fn}: grad_output shape {g.shape} must equal input shape {x.shape}")
    return _core.relu_bwd(_contig(g), _contig(x))



def dropout(input, p=0.5, training=True, generator=None):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (identity when not training)."""
    fn = "dropout"
    if not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"{fn}: p must be a probability in [0, 1], got {p!r}")
    if not training or p == 0:
        return input
    x = input.data if recorder(input) is not None else _array(fn, "input", input)
    keep = (generator or default_generator()).random(x.shape) >= p
    mask = keep.astype(x.dtype) / x.dtype.type(1 - p) if p < 1 else np.zeros_like(x)
    return input * mask

