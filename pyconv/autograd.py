"""The differentiable ops: one :class:`~pyconv.tensor.Function` per op.

Layer ops call the numpy API in ``pyconv.functional`` (and so the C++ kernels) for both passes;
elementwise and shape ops are plain numpy. Backward computes only the gradients whose inputs
require them (``needs_input_grad``).
"""
import numpy as np

from . import functional as F
from .tensor import Function, Tensor


def _unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape`` (the inverse of numpy broadcasting)."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _shape(x):
    return np.shape(x)


# --------------------------------------------------------------------------- arithmetic


class Add(Function):
    def forward(self, a, b):
        self.shapes = (_shape(a), _shape(b))
        return np.add(a, b)

    def backward(self, g):
        return tuple(_unbroadcast(g, s) if need else None for s, need in zip(self.shapes, self.needs_input_grad))


class Sub(Function):
    def forward(self, a, b):
        self.shapes = (_shape(a), _shape(b))
        return np.subtract(a, b)

    def backward(self, g):
        ga = _unbroadcast(g, self.shapes[0]) if self.needs_input_grad[0] else None
        gb = _unbroadcast(-g, self.shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return np.multiply(a, b)

    def backward(self, g):
        ga = _unbroadcast(g * self.b, _shape(self.a)) if self.needs_input_grad[0] else None
        gb = _unbroadcast(g * self.a, _shape(self.b)) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return np.divide(a, b)

    def backward(self, g):
        ga = _unbroadcast(g / self.b, _shape(self.a)) if self.needs_input_grad[0] else None
        gb = _unbroadcast(-g * self.a / (self.b * self.b), _shape(self.b)) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return np.negative(a)

    def backward(self, g):
        return -g


class Pow(Function):
    def forward(self, a, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("Tensor ** Tensor is not supported; the exponent must be a number")
        self.a, self.p = a, exponent
        return np.power(a, exponent)

    def backward(self, g):
        return g * self.p * np.power(self.a, self.p - 1)


class Exp(Function):
    def forward(self, a):
        self.out = np.exp(a)
        return self.out

    def backward(self, g):
        return g * self.out


class Log(Function):
    def forward(self, a):
        self.a = a
        return np.log(a)

    def backward(self, g):
        return g / self.a


class MatMul(Function):
    def forward(self, a, b):
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim < 1 or b.ndim < 1:
            raise ValueError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        a, b = self.a, self.b
        # Promote 1-D operands to matrices as matmul does, then drop the added axes again.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = np.asarray(g)
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2 if b.ndim > 1 else 0)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = _unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            gb = _unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb


class Cast(Function):
    def forward(self, a, dtype):
        self.dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return g.astype(self.dtype)


# --------------------------------------------------------------------------- reductions and shapes


class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return np.asarray(a.sum(axis=axis, keepdims=keepdims))

    def backward(self, g):
        if self.axis is not None and not self.keepdims:
            g = np.expand_dims(g, self.axis)
        return np.broadcast_to(g, self.shape).copy()


class Mean(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        out = np.asarray(a.mean(axis=axis, keepdims=keepdims))
        self.count = a.size // max(out.size, 1) if a.size else 1
        return out

    def backward(self, g):
        if self.axis is not None and not self.keepdims:
            g = np.expand_dims(g, self.axis)
        return np.broadcast_to(g / self.count, self.shape).copy()


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return g.reshape(self.shape)


class Transpose(Function):
    def forward(self, a):
        return a.T

    def backward(self, g):
        return g.T


class GetItem(Function):
    def forward(self, a, index):
        self.shape, self.index, self.dtype = a.shape, index, a.dtype
        return np.asarray(a[index])

    def backward(self, g):
        out = np.zeros(self.shape, self.dtype)
        np.add.at(out, self.index, g)  # repeated indices accumulate
        return out


# --------------------------------------------------------------------------- layer ops


class Conv2d(Function):
    def forward(self, x, w, b, *, stride, padding, dilation, groups, padding_mode, algo):
        self.x, self.w, self.has_b = x, w, b is not None
        self.kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                       padding_mode=padding_mode, algo=algo)
        return F.conv2d(x, w, b, **self.kw)

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
        oh, ow = output_size
        h, w = x.shape[-2:]
        self.shape = x.shape
        self.rows = [(i * h // oh, -(-(i + 1) * h // oh)) for i in range(oh)]
        self.cols = [(j * w // ow, -(-(j + 1) * w // ow)) for j in range(ow)]
        out = np.empty(x.shape[:-2] + (oh, ow), x.dtype)
        for i, (h0, h1) in enumerate(self.rows):
            for j, (w0, w1) in enumerate(self.cols):
                out[..., i, j] = x[..., h0:h1, w0:w1].mean(axis=(-2, -1))
        return out

    def backward(self, g):
        dx = np.zeros(self.shape, g.dtype)
        for i, (h0, h1) in enumerate(self.rows):
            for j, (w0, w1) in enumerate(self.cols):
                dx[..., h0:h1, w0:w1] += g[..., i, j, None, None] / ((h1 - h0) * (w1 - w0))
        return dx


class BatchNorm2d(Function):
    """Per-channel normalisation over (N, H, W); updates the running statistics in training."""

    def forward(self, x, weight, bias, *, running_mean, running_var, training, momentum, eps):
        axes = (0, 2, 3)
        self.has_affine = weight is not None
        if training:
            count = x.size // x.shape[1]
            if count <= 1:
                raise ValueError(f"batch_norm: training needs more than 1 value per channel, got input shape {x.shape}")
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            if running_mean is not None:
                running_mean *= 1 - momentum
                running_mean += momentum * mean
                running_var *= 1 - momentum
                running_var += momentum * var * count / (count - 1)
        else:
            mean, var = running_mean, running_var
        self.training = training
        shape = (1, -1, 1, 1)
        self.invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
        self.xhat = (x - mean.reshape(shape)) * self.invstd.reshape(shape)
        self.weight = weight
        y = self.xhat
        if weight is not None:
            y = y * weight.reshape(shape) + bias.reshape(shape)
        return y

    def backward(self, g):
        shape = (1, -1, 1, 1)
        axes = (0, 2, 3)
        dxhat = g * self.weight.reshape(shape) if self.has_affine else g
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            if self.training:
                n = g.size // g.shape[1]
                gx = (self.invstd.reshape(shape) / n) * (
                    n * dxhat - dxhat.sum(axis=axes).reshape(shape)
                    - self.xhat * (dxhat * self.xhat).sum(axis=axes).reshape(shape)
                )
            else:
                gx = dxhat * self.invstd.reshape(shape)
        if self.has_affine and self.needs_input_grad[1]:
            gw = (g * self.xhat).sum(axis=axes)
        if self.has_affine and self.needs_input_grad[2]:
            gb = g.sum(axis=axes)
        return gx, gw, gb


class CrossEntropy(Function):
    """Softmax cross-entropy of logits (N, C) against class indices (N,)."""

    def forward(self, logits, target, *, weight, ignore_index, reduction, label_smoothing):
        z = logits - logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
        logp = z - lse
        n, c = logits.shape
        valid = target != ignore_index
        if weight is None and valid.all():  # the common case: unit weights, nothing ignored
            t, wi = target, np.ones(n, logits.dtype)
        else:
            t = np.where(valid, target, 0)
            w = np.ones(c, logits.dtype) if weight is None else weight
            wi = w[t] * valid
        nll = -logp[np.arange(n), t]
        loss = (1 - label_smoothing) * nll + label_smoothing * (-logp.mean(axis=1)) if label_smoothing else nll
        loss = loss * wi
        denom = wi.sum() if reduction == "mean" else 1
        self.saved = (logp, t, wi, denom, reduction, label_smoothing)
        if reduction == "none":
            return loss.astype(logits.dtype)
        total = loss.sum()
        return np.asarray(total / denom if reduction == "mean" else total, dtype=logits.dtype)

    def backward(self, g):
        logp, t, wi, denom, reduction, eps = self.saved
        n, c = logp.shape
        q = np.full((n, c), eps / c, logp.dtype) if eps else np.zeros((n, c), logp.dtype)
        q[np.arange(n), t] += 1 - eps
        scale = (wi / denom if reduction == "mean" else wi) * (g if reduction == "none" else g.reshape(()))
        return (np.exp(logp) - q) * scale[:, None], None
