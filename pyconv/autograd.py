"""The layer ops' :class:`~pyconv.tensor.Function` s: one per op of ``pyconv.functional``.

Each op's passes are the numpy API in ``pyconv.functional`` (and so the C++ kernels); backward
computes only the gradients whose inputs require them (``needs_input_grad``). Importing this
module registers the tensor layer with ``pyconv.functional`` (:func:`register_tensor_layer`), so
that ``functional.conv2d(tensor, ...)`` records :class:`Conv2d` without functional importing
anything above it. The arithmetic and shape ops of Tensor's own methods live in pyconv.tensor.
"""
import sys

from . import functional as F
from .functional.loss import _cross_entropy_bwd, _cross_entropy_fwd
from .functional.norm import _batch_norm_bwd, _batch_norm_fwd
from .functional.pool import _adaptive_avg_pool2d_bwd, _adaptive_avg_pool2d_fwd
from .tensor import Function, Tensor


# --------------------------------------------------------------------------- layer ops


class Conv2d(Function):
    def forward(self, x, w, b, *, stride, padding, dilation, groups, padding_mode, algo):
        self.x, self.w, self.has_b = x, w, b is not None
        self.kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                       padding_mode=padding_mode, algo=algo)
        return F.conv2d(x, w, b, precision="float32", **self.kw)  # training stays float32

    def backward(self, g):
        gx = F.conv2d_grad_input(g, self.w, self.x.shape, **self.kw) if self.needs_input_grad[0] else None
        gw = F.conv2d_grad_weight(self.x, g, self.w.shape, **self.kw) if self.needs_input_grad[1] else None
        gb = F.conv2d_grad_bias(g) if self.has_b and self.needs_input_grad[2] else None
        return gx, gw, gb


class MaxPool2d(Function):
    def forward(self, x, *, kernel_size, stride, padding, dilation, ceil_mode):
        self.x = x
        self.args = (kernel_size, stride, padding, dilation, ceil_mode)
        out, self.indices = F.max_pool2d(x, *self.args, return_indices=True)
        return out

    def backward(self, g):
        return F.max_pool2d_grad(g, self.x, *self.args, indices=self.indices)


class ReLUMaxPool2d(Function):
    # max_pool2d(relu(x)) computed as relu(max_pool2d(x)): the same values, and the same gradient
    # (a window whose maximum is <= 0 passes none; NaN passes, as in relu_grad), with the ReLU over
    # the pooled output only and no full-size mask pass in backward. Only for geometries where
    # every window holds an input pixel (no dilation, floor mode), so no window is all padding.
    def forward(self, x, *, kernel_size, stride, padding):
        self.x = x
        self.args = (kernel_size, stride, padding)
        out, self.indices = F.max_pool2d(x, kernel_size, stride, padding, return_indices=True)
        self.y = F.relu(out)
        return self.y

    def backward(self, g):
        return F.max_pool2d_grad(F.relu_grad(g, self.y), self.x, *self.args, indices=self.indices)


class AvgPool2d(Function):
    def forward(self, x, *, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        self.shape = x.shape
        self.args = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        return F.avg_pool2d(x, *self.args)

    def backward(self, g):
        return F.avg_pool2d_grad(g, self.shape, *self.args)


class ReLU(Function):
    # Saves the output, not the input: the same mask (y <= 0 exactly where x <= 0, NaN stays NaN),
    # and the next layer (pooling) usually keeps y alive anyway, so x can be freed.
    def forward(self, x):
        self.y = F.relu(x)
        return self.y

    def backward(self, g):
        return F.relu_grad(g, self.y)


class Linear(Function):
    def forward(self, x, w, b):
        self.x, self.w, self.has_b = x, w, b is not None
        return F.linear(x, w, b)

    def backward(self, g):
        gx = F.linear_grad_input(g, self.w) if self.needs_input_grad[0] else None
        gw = F.linear_grad_weight(self.x, g) if self.needs_input_grad[1] else None
        gb = F.linear_grad_bias(g) if self.has_b and self.needs_input_grad[2] else None
        return gx, gw, gb


class AdaptiveAvgPool2d(Function):
    """Average over PyTorch's adaptive windows [floor(i*H/out), ceil((i+1)*H/out))."""

    def forward(self, x, *, output_size):
        self.shape, self.output_size = x.shape, output_size
        return _adaptive_avg_pool2d_fwd(x, output_size)

    def backward(self, g):
        return _adaptive_avg_pool2d_bwd(g, self.shape, self.output_size)


class BatchNorm2d(Function):
    """Per-channel normalisation over (N, H, W); updates the running statistics in training."""

    def forward(self, x, weight, bias, **kwargs):
        y, self.xhat, self.invstd = _batch_norm_fwd(x, weight, bias, **kwargs)
        self.weight, self.training = weight, kwargs["training"]
        return y

    def backward(self, g):
        return _batch_norm_bwd(g, self.xhat, self.invstd, self.weight, self.training, self.needs_input_grad)


class CrossEntropy(Function):
    """Softmax cross-entropy of logits (N, C) against class indices (N,)."""

    def forward(self, logits, target, **kwargs):
        loss, self.saved = _cross_entropy_fwd(logits, target, **kwargs)
        return loss

    def backward(self, g):
        return _cross_entropy_bwd(g, self.saved), None


# functional records these Functions for Tensor arguments (the inverted dependency: see the docstring)
F.register_tensor_layer(Tensor, sys.modules[__name__])
