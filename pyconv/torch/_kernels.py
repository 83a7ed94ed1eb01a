"""The CPU kernels behind the ``pyconv::*`` torch ops: torch tensors in, pyconv.functional on
zero-copy numpy views, torch tensors out.

This is the only file of pyconv.torch that calls pyconv's compute functions; it uses the public
numpy API (``pyconv.functional``), whose argument checks give the error messages.

Memory: a contiguous CPU float32/float64 tensor is handed to pyconv as ``t.detach().numpy()``
(the same memory), and pyconv's result array becomes the output tensor through
``torch.from_numpy`` (the same memory again). An input that is not contiguous in NCHW order
(``channels_last``, a transposed or sliced view, the expanded gradient of ``y.sum()``) is
copied once to NCHW with ``Tensor.contiguous()``, counted in ``pyconv.torch.stats()["copies"]``
under "<op> <argument>" (the modules and the backward formulas make that copy before calling
the ops, so that the forward and the backward share it). Outputs are always NCHW-contiguous.
Inputs are never modified.
"""
import torch

from .. import functional as F
from ._stats import count_copy

_FLOATS = (torch.float32, torch.float64)


def contiguous(t, what):
    """``t`` in NCHW-contiguous order: ``t`` itself, or one copy counted under ``what``."""
    if t.is_contiguous():
        return t
    if not torch.compiler.is_compiling():
        count_copy(what)
    return t.contiguous()


def _array(t, fn, name):
    """A numpy array sharing ``t``'s memory (one counted copy if ``t`` is not NCHW-contiguous)."""
    if t.dtype not in _FLOATS:
        raise TypeError(f"{fn}: {name} must be float32 or float64, got dtype {str(t.dtype).replace('torch.', '')}")
    t = contiguous(t, f"{fn} {name}")
    if t.is_neg():
        t = t.resolve_neg()
    return t.detach().numpy()


def _pad(padding, same):
    return "same" if same else tuple(padding)


def conv2d(input, weight, bias, stride, padding, dilation, groups, padding_mode, algo, same):
    fn = "conv2d"
    x = _array(input, fn, "input")
    w = _array(weight, fn, "weight")
    b = None if bias is None else _array(bias, fn, "bias")
    y = F.conv2d(x, w, b, tuple(stride), _pad(padding, same), tuple(dilation), groups,
                 padding_mode=padding_mode, algo=algo)
    return torch.from_numpy(y)


def conv2d_grad_input(grad_output, weight, input_size, stride, padding, dilation, groups, padding_mode, algo, same):
    fn = "conv2d_grad_input"
    g = _array(grad_output, fn, "grad_output")
    w = _array(weight, fn, "weight")
    dx = F.conv2d_grad_input(g, w, tuple(input_size), tuple(stride), _pad(padding, same), tuple(dilation), groups,
                             padding_mode=padding_mode, algo=algo)
    return torch.from_numpy(dx)


def conv2d_grad_weight(input, grad_output, weight_size, stride, padding, dilation, groups, padding_mode, algo, same):
    fn = "conv2d_grad_weight"
    x = _array(input, fn, "input")
    g = _array(grad_output, fn, "grad_output")
    dw = F.conv2d_grad_weight(x, g, tuple(weight_size), tuple(stride), _pad(padding, same), tuple(dilation), groups,
                              padding_mode=padding_mode, algo=algo)
    return torch.from_numpy(dw)


def max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode):
    x = _array(input, "max_pool2d", "input")
    y, idx = F.max_pool2d(x, tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation), ceil_mode,
                          return_indices=True)
    return torch.from_numpy(y), torch.from_numpy(idx)


def max_pool2d_backward(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    fn = "max_pool2d_grad"
    g = _array(grad_output, fn, "grad_output")
    x = _array(input, fn, "input")
    if indices.dtype != torch.int64:
        raise TypeError(f"{fn}: indices must be int64 (from max_pool2d), got dtype {indices.dtype}")
    idx = indices.contiguous().numpy()
    dx = F.max_pool2d_grad(g, x, tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation), ceil_mode,
                           indices=idx)
    return torch.from_numpy(dx)


def avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x = _array(input, "avg_pool2d", "input")
    y = F.avg_pool2d(x, tuple(kernel_size), tuple(stride), tuple(padding), ceil_mode, count_include_pad,
                     divisor_override)
    return torch.from_numpy(y)


def avg_pool2d_backward(grad_output, input_size, kernel_size, stride, padding, ceil_mode, count_include_pad,
                        divisor_override):
    g = _array(grad_output, "avg_pool2d_grad", "grad_output")
    dx = F.avg_pool2d_grad(g, tuple(input_size), tuple(kernel_size), tuple(stride), tuple(padding), ceil_mode,
                           count_include_pad, divisor_override)
    return torch.from_numpy(dx)
