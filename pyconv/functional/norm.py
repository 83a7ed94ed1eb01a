"""Batch normalisation: the checked public op and the numpy passes its autograd Function runs."""
import numpy as np

from ._args import _array, _ndim, data, recorder

_AXES = (0, 2, 3)
_CHANNELS = (1, -1, 1, 1)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation over (N, H, W) per channel, as ``F.batch_norm`` (4-D input).

    In training, batch statistics normalise and ``running_mean``/``running_var`` (arrays) are
    updated in place; otherwise the running statistics are used.
    """
    fn = "batch_norm"
    x = input.data if recorder(input) is not None else _array(fn, "input", input)
    _ndim(fn, "input", x, (4,))
    c = x.shape[1]
    for name, a in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if a is not None and np.shape(data(a)) != (c,):
            raise ValueError(f"{fn}: {name} must have shape ({c},) (channels), got {np.shape(a)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{fn}: running_mean and running_var are required when training=False")
    if (weight is None) != (bias is None):
        raise ValueError(f"{fn}: pass both weight and bias, or neither")
    rm = None if running_mean is None else np.asarray(running_mean)
    rv = None if running_var is None else np.asarray(running_var)
    kwargs = dict(running_mean=rm, running_var=rv, training=bool(training), momentum=float(momentum), eps=float(eps))
    ops = recorder(input, weight, bias)
    if ops is not None:
        return ops.BatchNorm2d.apply(input, weight, bias, **kwargs)
    return _batch_norm_fwd(x, weight, bias, **kwargs)[0]


def _batch_norm_fwd(x, weight, bias, *, running_mean, running_var, training, momentum, eps):
    """(y, xhat, invstd); updates the running statistics in training."""
    if training:
        count = x.size // x.shape[1]
        if count <= 1:
            raise ValueError(f"batch_norm: training needs more than 1 value per channel, got input shape {x.shape}")
        mean = x.mean(axis=_AXES)
        var = x.var(axis=_AXES)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * var * count / (count - 1)
    else:
        mean, var = running_mean, running_var
    invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xhat = (x - mean.reshape(_CHANNELS)) * invstd.reshape(_CHANNELS)
    y = xhat
    if weight is not None:
        y = y * weight.reshape(_CHANNELS) + bias.reshape(_CHANNELS)
    return y, xhat, invstd


def _batch_norm_bwd(g, xhat, invstd, weight, training, needs_input_grad):
    """(grad input, grad weight, grad bias), each None where not needed (or without weight)."""
    has_affine = weight is not None
    dxhat = g * weight.reshape(_CHANNELS) if has_affine else g
    gx = gw = gb = None
    if needs_input_grad[0]:
        if training:
            n = g.size // g.shape[1]
            gx = (invstd.reshape(_CHANNELS) / n) * (
                n * dxhat - dxhat.sum(axis=_AXES).reshape(_CHANNELS)
                - xhat * (dxhat * xhat).sum(axis=_AXES).reshape(_CHANNELS)
            )
        else:
            gx = dxhat * invstd.reshape(_CHANNELS)
    if has_affine and needs_input_grad[1]:
        gw = (g * xhat).sum(axis=_AXES)
    if has_affine and needs_input_grad[2]:
        gb = g.sum(axis=_AXES)
    return gx, gw, gb
