"""The fully-connected layer and its three gradients."""
import math

from .. import _core
from ._args import _array, _contig, _ndim, _same_dtype, recorder


def _linear_shapes(fn, x, w):
    _ndim(fn, "weight", w, (2,))
    if x.ndim < 1:
        raise ValueError(f"{fn}: input must have at least 1 dimension (..., in_features), got a scalar")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"{fn}: input has {x.shape[-1]} features (input.shape[-1]) but weight expects {w.shape[1]} "
            f"(weight.shape[1]); weight is (out_features, in_features) = {w.shape}"
        )


def _rows(a):
    """(..., features) as a 2-D (rows, features) view (a copy only where reshape must)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def linear(input, weight, bias=None):
    """Fully-connected layer ``input @ weight.T + bias``; weight is ``(out_features, in_features)``."""
    ops = recorder(input, weight, bias)
    if ops is not None:
        return ops.Linear.apply(input, weight, bias)
    fn = "linear"
    x = _array(fn, "input", input)
    w = _array(fn, "weight", weight)
    b = None if bias is None else _array(fn, "bias", bias)
    _same_dtype(fn, "input", x, ("weight", w), ("bias", b))
    _linear_shapes(fn, x, w)
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"{fn}: bias must have shape ({w.shape[0]},) (out_features), got {b.shape}")
    lead = x.shape[:-1]
    y = _core.linear_fwd(_contig(_rows(x)), _contig(w), None if b is None else _contig(b))
    return y.reshape(lead + (w.shape[0],))


def linear_grad_input(grad_output, weight):
    """Gradient of :func:`linear` with respect to its input: ``grad_output @ weight``."""
    fn = "linear_grad_input"
    g = _array(fn, "grad_output", grad_output)
    w = _array(fn, "weight", weight)
    _same_dtype(fn, "weight", w, ("grad_output", g))
    _ndim(fn, "weight", w, (2,))
    if g.ndim < 1 or g.shape[-1] != w.shape[0]:
        raise ValueError(f"{fn}: grad_output must have shape (..., {w.shape[0]}) (out_features), got {g.shape}")
    dx = _core.linear_bwd_data(_contig(_rows(g)), _contig(w))
    return dx.reshape(g.shape[:-1] + (w.shape[1],))


def linear_grad_weight(input, grad_output):
    """Gradient of :func:`linear` with respect to its weight: ``grad_output.T @ input`` over all leading dims."""
    fn = "linear_grad_weight"
    x = _array(fn, "input", input)
    g = _array(fn, "grad_output", grad_output)
    _same_dtype(fn, "input", x, ("grad_output", g))
    if x.ndim < 1 or g.ndim != x.ndim or g.shape[:-1] != x.shape[:-1]:
        raise ValueError(
            f"{fn}: grad_output shape {g.shape} must match input shape {x.shape} in all but the last dimension"
        )
    return _core.linear_bwd_weight(_contig(_rows(x)), _contig(_rows(g)))


def linear_grad_bias(grad_output):
    """Gradient of :func:`linear` with respect to its bias: ``grad_output`` summed over leading dims."""
    g = _array("linear_grad_bias", "grad_output", grad_output)
    if g.ndim < 1:
        raise ValueError("linear_grad_bias: grad_output must have at least 1 dimension, got a scalar")
    return _rows(g).sum(axis=0)

