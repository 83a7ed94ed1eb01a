"""Ops beyond :mod:`pyconv.functional`'s conv/pool/linear core: activations, softmax,
concatenation, elementwise maximum, local response normalisation and maxout.

Each function takes numpy arrays (and returns one) or :class:`~pyconv.tensor.Tensor` s (and then
records itself for ``backward()``), with ``torch.nn.functional``'s names and semantics:
``sigmoid``, ``tanh``, ``leaky_relu``, ``softmax``, ``local_response_norm``, and ``cat`` as
``torch.cat``. ``eltwise_max`` (Caffe's Eltwise MAX) and ``maxout`` (ConvNetJS's) have no torch
namesake; ``adaptive_max_pool2d`` is torch's (without ``return_indices``). All of them are plain
numpy: these layers are cheap next to the convolutions.
"""
import numbers

import numpy as np

from .tensor import Function, Tensor

__all__ = ["sigmoid", "tanh", "leaky_relu", "softmax", "cat", "eltwise_max", "local_response_norm", "maxout",
           "adaptive_max_pool2d"]


def _data(fn, name, x):
    a = x.data if isinstance(x, Tensor) else np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError(f"{fn}: {name} must be a floating-point array, got dtype {a.dtype}")
    return a


def _positive_int(fn, name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")
    return int(v)


def _run(cls, inputs, **kwargs):
    """Records ``cls`` when a Tensor input is given, else runs its forward on the arrays."""
    if any(isinstance(t, Tensor) for t in inputs):
        return cls.apply(*inputs, **kwargs)
    return cls().forward(*inputs, **kwargs)


# --------------------------------------------------------------------------- activations


class _Sigmoid(Function):
    def forward(self, x):
        # exp of a non-positive number only: no overflow warnings for large |x|
        e = np.exp(-np.abs(x))
        self.y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.y

    def backward(self, g):
        return g * self.y * (1 - self.y)


class _Tanh(Function):
    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, g):
        return g * (1 - self.y * self.y)


class _LeakyReLU(Function):
    def forward(self, x, negative_slope):
        self.mask = x > 0
        self.slope = x.dtype.type(negative_slope)
        return np.where(self.mask, x, x * self.slope)

    def backward(self, g):
        return np.where(self.mask, g, g * self.slope)


def sigmoid(input):
    """1 / (1 + exp(-input)), elementwise."""
    _data("sigmoid", "input", input)
    return _run(_Sigmoid, (input,))


def tanh(input):
    """tanh(input), elementwise."""
    _data("tanh", "input", input)
    return _run(_Tanh, (input,))


def leaky_relu(input, negative_slope=0.01):
    """``input`` where positive, ``negative_slope * input`` elsewhere (the gradient likewise:
    slope 1 for input > 0, else ``negative_slope``, as torch and Caffe's ReLU with negative_slope)."""
    if not isinstance(negative_slope, numbers.Real) or isinstance(negative_slope, bool):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {negative_slope!r}")
    _data("leaky_relu", "input", input)
    return _run(_LeakyReLU, (input,), negative_slope=float(negative_slope))


def _dim(fn, dim, ndim):
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or not -ndim <= dim < ndim:
        raise ValueError(f"{fn}: dim must be an int in [{-ndim}, {ndim - 1}] for a {ndim}-D input, got {dim!r}")
    return int(dim) % ndim


class _Softmax(Function):
    def forward(self, x, dim):
        z = np.exp(x - x.max(axis=dim, keepdims=True))
        self.y = z / z.sum(axis=dim, keepdims=True)
        self.dim = dim
        return self.y

    def backward(self, g):
        return self.y * (g - (g * self.y).sum(axis=self.dim, keepdims=True))


def softmax(input, dim=None):
    """exp(x) / sum(exp(x)) along ``dim`` (None: torch's legacy choice, 0 for 0-, 1- and 3-D
    inputs, else 1)."""
    x = _data("softmax", "input", input)
    if dim is None:
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return _run(_Softmax, (input,), dim=_dim("softmax", dim, max(x.ndim, 1)))


# --------------------------------------------------------------------------- joining


class _Cat(Function):
    def forward(self, *xs, dim):
        self.dim = dim
        self.sizes = np.cumsum([x.shape[dim] for x in xs])[:-1]
        return np.concatenate(xs, axis=dim)

    def backward(self, g):
        parts = np.split(g, self.sizes, axis=self.dim)
        return tuple(np.ascontiguousarray(p) if need else None for p, need in zip(parts, self.needs_input_grad))


def cat(tensors, dim=0):
    """Concatenate along ``dim`` (as ``torch.cat``); every other size must agree."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of arrays")
    arrays = [_data("cat", f"tensors[{i}]", t) for i, t in enumerate(tensors)]
    first = arrays[0]
    d = _dim("cat", dim, max(first.ndim, 1))
    for i, a in enumerate(arrays[1:], 1):
        if a.ndim != first.ndim or a.shape[:d] + a.shape[d + 1:] != first.shape[:d] + first.shape[d + 1:]:
            raise ValueError(f"cat: tensors[{i}] has shape {a.shape}, which does not match tensors[0]'s {first.shape} "
                             f"except along dim {d}")
        if a.dtype != first.dtype:
            raise TypeError(f"cat: tensors[{i}] has dtype {a.dtype} but tensors[0] has {first.dtype}")
    return _run(_Cat, tensors, dim=d)


class _EltwiseMax(Function):
    def forward(self, *xs):
        a, b = xs[0], xs[1]
        self.mask = np.where(a > b, 0, 1).astype(np.int8 if len(xs) < 128 else np.int64)
        out = np.where(a > b, a, b)
        for i, x in enumerate(xs[2:], 2):
            bigger = x > out
            self.mask[bigger] = i
            out = np.where(bigger, x, out)
        return out

    def backward(self, g):
        return tuple(np.where(self.mask == i, g, 0).astype(g.dtype, copy=False) if need else None
                     for i, need in enumerate(self.needs_input_grad))


def eltwise_max(tensors):
    """Elementwise maximum of two or more arrays of one shape, with Caffe's Eltwise MAX rule: of
    the first two, the first wins only when strictly greater; each later one only when strictly
    greater than the maximum so far. The gradient goes to the winner alone."""
    tensors = list(tensors)
    if len(tensors) < 2:
        raise ValueError(f"eltwise_max: expected at least 2 arrays, got {len(tensors)}")
    arrays = [_data("eltwise_max", f"tensors[{i}]", t) for i, t in enumerate(tensors)]
    for i, a in enumerate(arrays[1:], 1):
        if a.shape != arrays[0].shape or a.dtype != arrays[0].dtype:
            raise ValueError(f"eltwise_max: tensors[{i}] is {a.dtype} {a.shape} but tensors[0] is {arrays[0].dtype} "
                             f"{arrays[0].shape}: the shapes and dtypes must be equal")
    return _run(_EltwiseMax, tensors)


# --------------------------------------------------------------------------- normalisation


def _window_sum(a, before, after):
    """s[:, c] = sum of a[:, c - before : c + after + 1] along axis 1 (zeros past the ends)."""
    c = a.shape[1]
    s = np.zeros_like(a)
    for off in range(-before, after + 1):
        lo, hi = max(0, -off), min(c, c - off)
        if lo < hi:
            s[:, lo:hi] += a[:, lo + off:hi + off]
    return s


class _LRN(Function):
    def forward(self, x, size, alpha, beta, k):
        t = x.dtype.type
        self.x, self.size, self.alpha, self.beta = x, size, t(alpha), t(beta)
        # torch's window: size // 2 channels before, (size - 1) // 2 after
        self.scale = t(k) + (self.alpha / t(size)) * _window_sum(x * x, size // 2, (size - 1) // 2)
        self.y = x * self.scale ** -self.beta
        return self.y

    def backward(self, g):
        # dx_j = g_j s_j^-b - (2 a b / n) x_j sum over the windows c holding j of g_c y_c / s_c
        size = self.size
        t = _window_sum(g * self.y / self.scale, (size - 1) // 2, size // 2)
        return g * self.scale ** -self.beta - (2 * self.alpha * self.beta / g.dtype.type(size)) * self.x * t


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels, as ``torch.nn.functional.local_response_norm``:
    ``b_c = a_c / (k + alpha / size * sum of a_j^2 over the size channels around c)^beta``
    (``size // 2`` channels before c, ``(size - 1) // 2`` after, zeros past the ends). The alpha /
    size convention is also Caffe's (LRN ACROSS_CHANNELS, which requires an odd size) and
    ConvNetJS's. Input (N, C, ...) with at least 3 dimensions."""
    fn = "local_response_norm"
    x = _data(fn, "input", input)
    if x.ndim < 3:
        raise ValueError(f"{fn}: input must have at least 3 dimensions (N, C, ...), got shape {x.shape}")
    size = _positive_int(fn, "size", size)
    for name, v in (("alpha", alpha), ("beta", beta), ("k", k)):
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not np.isfinite(v):
            raise ValueError(f"{fn}: {name} must be a finite number, got {v!r}")
    return _run(_LRN, (input,), size=size, alpha=float(alpha), beta=float(beta), k=float(k))


class _Maxout(Function):
    def forward(self, x, group_size):
        n, c = x.shape[:2]
        groups = c // group_size
        self.shape, self.group_size = x.shape, group_size
        v = x[:, :groups * group_size].reshape((n, groups, group_size) + x.shape[2:])
        self.idx = v.argmax(axis=2)
        return np.take_along_axis(v, self.idx[:, :, None], axis=2)[:, :, 0]

    def backward(self, g):
        n, c = self.shape[:2]
        groups = c // self.group_size
        dv = np.zeros((n, groups, self.group_size) + self.shape[2:], g.dtype)
        np.put_along_axis(dv, self.idx[:, :, None], g[:, :, None], axis=2)
        dx = np.zeros(self.shape, g.dtype)
        dx[:, :groups * self.group_size] = dv.reshape((n, groups * self.group_size) + self.shape[2:])
        return dx


def maxout(input, group_size=2):
    """The maximum of each group of ``group_size`` consecutive channels (axis 1): C channels give
    C // group_size (ConvNetJS's maxout; leftover channels are dropped, as there)."""
    fn = "maxout"
    x = _data(fn, "input", input)
    if x.ndim < 2:
        raise ValueError(f"{fn}: input must have at least 2 dimensions (N, C, ...), got shape {x.shape}")
    group_size = _positive_int(fn, "group_size", group_size)
    if x.shape[1] < group_size:
        raise ValueError(f"{fn}: input has {x.shape[1]} channels, fewer than group_size={group_size}")
    return _run(_Maxout, (input,), group_size=group_size)



class _AdaptiveMaxPool2d(Function):
    """Maximum over PyTorch's adaptive windows [floor(i*H/out), ceil((i+1)*H/out)); the gradient
    goes to each window's first maximum (NaN propagates, as a maximum)."""

    def forward(self, x, output_size):
        oh, ow = output_size
        h, w = x.shape[-2:]
        self.shape = x.shape
        self.cells = []
        out = np.empty(x.shape[:-2] + (oh, ow), x.dtype)
        for i in range(oh):
            h0, h1 = i * h // oh, -(-(i + 1) * h // oh)
            for j in range(ow):
                w0, w1 = j * w // ow, -(-(j + 1) * w // ow)
                win = x[..., h0:h1, w0:w1].reshape(x.shape[:-2] + (-1,))
                nan = np.isnan(win)
                arg = np.where(nan.any(axis=-1), nan.argmax(axis=-1), win.argmax(axis=-1))
                out[..., i, j] = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
                self.cells.append((i, j, h0, w0, w1 - w0, arg))
        return out

    def backward(self, g):
        dx = np.zeros(self.shape, g.dtype)
        lead = np.indices(self.shape[:-2])
        for i, j, h0, w0, width, arg in self.cells:
            np.add.at(dx, tuple(lead) + (h0 + arg // width, w0 + arg % width), g[..., i, j])
        return dx


def adaptive_max_pool2d(input, output_size):
    """Max pooling to a fixed ``output_size`` (int or pair; None keeps that side), as torch's
    ``adaptive_max_pool2d``: ``output_size=1`` is global max pooling."""
    fn = "adaptive_max_pool2d"
    x = _data(fn, "input", input)
    if x.ndim not in (3, 4):
        raise ValueError(f"{fn}: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {x.shape}")
    size = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(size) != 2:
        raise ValueError(f"{fn}: output_size must be an int or a pair, got {output_size!r}")
    size = tuple(x.shape[-2 + i] if v is None else v for i, v in enumerate(size))
    size = tuple(_positive_int(fn, "output_size", v) for v in size)
    return _run(_AdaptiveMaxPool2d, (input,), output_size=size)
