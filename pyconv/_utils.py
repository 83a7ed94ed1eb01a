"""Rules every layer shares: int pairs, the convolution output-size rule, direction names.

No pyconv imports: functional, the float64 reference, the layers and the torch front-end all
read these, so each rule is written once.
"""
import numbers
import operator

import numpy as np

#: A convolution's three directions: the output, the input gradient, the weight gradient.
#: (The public functions keep torch's names: conv2d, conv2d_grad_input, conv2d_grad_weight.)
DIRECTIONS = ("fwd", "bwd_data", "bwd_weight")


def _is_int(v):
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)))


def _index_pair(v):
    """(i, i) for an integer scalar object (a 0-d integer array or tensor: ``__index__``), else None."""
    if isinstance(v, (bool, np.bool_, float, str, bytes)) or not hasattr(type(v), "__index__"):
        return None
    if getattr(v, "dtype", None) is not None and str(v.dtype).split(".")[-1] == "bool":
        return None
    try:
        i = operator.index(v)
    except (TypeError, ValueError, RuntimeError):
        return None
    return (i, i)


def _pair(v, fn=None, name=None, minimum=None):
    """An int, or a tuple/list of one or two ints -> (a, b).

    The forms torch accepts: ``1``, ``(1,)`` and ``[1]`` all mean ``(1, 1)``; numpy integers and
    other integer scalars (anything with ``__index__`` except bools) count as ints. With ``fn``
    and ``name`` anything else raises a TypeError naming them, and with ``minimum`` a value below
    it a ValueError; without ``fn`` the value is only spread to a pair (layers keep what they were
    given, other lengths included, and leave the checking to the functional call).
    """
    if fn is None:
        if isinstance(v, (tuple, list)):
            return (v[0], v[-1]) if len(v) in (1, 2) else tuple(v)
        return (v, v)
    if isinstance(v, (tuple, list)):
        if len(v) not in (1, 2):
            raise ValueError(f"{fn}: {name} must be an int or a tuple of one or two ints, got {len(v)} values "
                             f"{tuple(v)!r}")
        if not all(_is_int(e) for e in v):
            raise TypeError(f"{fn}: {name} must be an int or a tuple of one or two ints, got {tuple(v)!r}")
        out = (int(v[0]), int(v[-1]))
    elif _is_int(v):
        out = (int(v), int(v))
    else:
        out = _index_pair(v)
        if out is None:
            raise TypeError(f"{fn}: {name} must be an int or a tuple of one or two ints, got {type(v).__name__} {v!r}")
    if minimum is not None and min(out) < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {v!r}")
    return out


def conv_out_size(size, kernel, stride, pad_before, pad_after, dilation):
    """One side of a convolution's output: floor((in + pads - dilation*(kernel-1) - 1) / stride) + 1.

    Plain arithmetic, so torch's symbolic sizes go through it too. Below 1 means the dilated
    kernel is larger than the padded input.
    """
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def same_pads(kernel, dilation):
    """padding='same' for one side (stride 1): (before, after), the extra pixel after (bottom/right)."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2
