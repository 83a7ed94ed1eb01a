"""Max and average pooling (forward, gradient, output shape) and adaptive average pooling."""
import numpy as np

from .. import _core
from .._utils import _is_int, _pair
from ._args import (_array, _batched, _check_alloc, _check_numel, _contig, _grad_output, _ndim, _shape, _spec,
                    _unbatch, recorder)
from .activation import relu


class _PoolSpec:
    def __init__(self, fn, input_shape, kernel_size, stride, padding, dilation, ceil_mode):
        if len(input_shape) not in (3, 4):
            raise ValueError(f"{fn}: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {tuple(input_shape)}")
        self.unbatched = len(input_shape) == 3
        n, c, h, w = _batched(tuple(input_shape))
        if c < 1 or h < 1 or w < 1:
            raise ValueError(f"{fn}: input channels, height and width must be >= 1, got input shape {tuple(input_shape)}")
        self.kernel = _pair(kernel_size, fn, "kernel_size", 1)
        if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
            self.stride = self.kernel
        else:
            self.stride = _pair(stride, fn, "stride", 1)
        self.padding = _pair(padding, fn, "padding", 0)
        self.dilation = _pair(dilation, fn, "dilation", 1)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"{fn}: ceil_mode must be a bool, got {type(ceil_mode).__name__} {ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)
        (kh, kw), (ph, pw) = self.kernel, self.padding
        if 2 * ph > kh or 2 * pw > kw:
            raise ValueError(
                f"{fn}: padding should be at most half of kernel_size, got padding={self.padding}, "
                f"kernel_size={self.kernel}"
            )
        oh = _core.pool2d_out_size(h, kh, self.stride[0], ph, self.dilation[0], self.ceil_mode)
        ow = _core.pool2d_out_size(w, kw, self.stride[1], pw, self.dilation[1], self.ceil_mode)
        if oh < 1 or ow < 1:
            rnd = "ceil" if self.ceil_mode else "floor"
            raise ValueError(
                f"{fn}: output size ({oh}, {ow}) is too small for input ({h}, {w}) with kernel_size={self.kernel}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}: output height = "
                f"{rnd}((H + 2*padding - dilation*(kernel_size-1) - 1) / stride) + 1 = "
                f"{rnd}(({h} + 2*{ph} - {self.dilation[0]}*{kh - 1} - 1) / {self.stride[0]}) + 1"
            )
        self.input_shape = (n, c, h, w)
        self.output_shape = (n, c, oh, ow)
        _check_numel(fn, "input", self.input_shape)

    def out_shape(self):
        return self.output_shape[1:] if self.unbatched else self.output_shape

    def core_args(self):
        return (self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)


def pool2d_output_shape(input_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Output shape of :func:`max_pool2d` / :func:`avg_pool2d` (avg: dilation 1), PyTorch's rules.

    ``pool2d_output_shape((1, 64, 224, 224), 2, 2) == (1, 64, 112, 112)``.
    """
    fn = "pool2d_output_shape"
    input_shape = _shape(fn, "input_shape", input_shape, (3, 4))
    return _spec(_PoolSpec, fn, input_shape, kernel_size, stride, padding, dilation, ceil_mode).out_shape()


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling over ``kernel_size`` windows (padding counts as -inf), as ``F.max_pool2d``.

    Ties keep the first maximum in row-major window order; NaN propagates (a window with NaN
    outputs NaN, indexed at its last NaN, as PyTorch). With ``return_indices=True`` also returns
    int64 indices ``ih * W + iw`` of each maximum within its ``(n, c)`` plane; a window that covers
    no input pixel at all (possible only with dilation) gives -inf and index -1, which
    :func:`max_pool2d_grad` skips.
    """
    y = _core.max_pool2d_fast(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)
    if y is not None:
        return y
    ops = recorder(input)
    if ops is not None:
        out, ctx = ops.MaxPool2d.apply_with_ctx(input, kernel_size=kernel_size, stride=stride, padding=padding,
                                                dilation=dilation, ceil_mode=ceil_mode)
        return (out, ctx.indices) if return_indices else out
    fn = "max_pool2d"
    x = _array(fn, "input", input)
    _ndim(fn, "input", x, (3, 4))
    spec = _spec(_PoolSpec, fn, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    _check_alloc(fn, "output and its int64 indices" if return_indices else "output", spec.output_shape, x.dtype,
                 extra_bytes=8 if return_indices else 0)
    y, idx = _core.max_pool2d_fwd(_contig(x.reshape(spec.input_shape)), *spec.core_args(), bool(return_indices))
    y = _unbatch(y, spec.unbatched)
    return (y, _unbatch(idx, spec.unbatched)) if return_indices else y


def _relu_max_pool2d(input, kernel_size, stride=None, padding=0):
    """max_pool2d(relu(input)) as one op: pooled first, ReLU on the pooled output (nn.Sequential
    uses it for ReLU followed by MaxPool2d; same values and gradients)."""
    ops = recorder(input)
    if ops is not None:
        return ops.ReLUMaxPool2d.apply(input, kernel_size=kernel_size, stride=stride, padding=padding)
    return relu(max_pool2d(input, kernel_size, stride, padding))


def max_pool2d_grad(grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
                    indices=None):
    """Gradient of :func:`max_pool2d` with respect to its input.

    Routes each output gradient to its window's maximum; uses ``indices`` from
    ``max_pool2d(..., return_indices=True)`` when given, else recomputes the maxima from ``input``.
    """
    dx = _core.max_pool2d_grad_fast(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices)
    if dx is not None:
        return dx
    fn = "max_pool2d_grad"
    x = _array(fn, "input", input)
    _ndim(fn, "input", x, (3, 4))
    spec = _spec(_PoolSpec, fn, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    g = _grad_output(fn, spec, grad_output, "input", x)
    idx = None
    if indices is not None:
        idx = indices if isinstance(indices, np.ndarray) else np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"{fn}: indices must be an integer array (from return_indices=True), got dtype {idx.dtype}")
        if tuple(idx.shape) != tuple(spec.out_shape()):
            raise ValueError(f"{fn}: indices must have the output shape {tuple(spec.out_shape())}, got {idx.shape}")
        idx = np.require(idx.reshape(spec.output_shape), dtype=np.int64, requirements=["C", "A"])
    dx = _core.max_pool2d_bwd(g, _contig(x.reshape(spec.input_shape)), idx, *spec.core_args())
    return _unbatch(dx, spec.unbatched)


def _avg_args(fn, count_include_pad, divisor_override):
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"{fn}: count_include_pad must be a bool, got {type(count_include_pad).__name__}")
    if divisor_override is None:
        return bool(count_include_pad), 0
    if not _is_int(divisor_override):
        raise TypeError(f"{fn}: divisor_override must be an int or None, got {type(divisor_override).__name__} "
                        f"{divisor_override!r}")
    if divisor_override == 0 or abs(int(divisor_override)) > 2**62:
        raise ValueError(f"{fn}: divisor_override must be non-zero (and fit in int64), got {divisor_override}")
    if divisor_override < 0:
        raise ValueError(f"{fn}: divisor_override must be positive, got {divisor_override}: torch accepts a negative "
                         "divisor only because it never checks the sign (the average comes out negated), so pyconv "
                         "refuses it as a mistake")
    return bool(count_include_pad), int(divisor_override)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Average pooling, as ``F.avg_pool2d``.

    The divisor is the window size including zero padding (``count_include_pad=True``) but never
    the part of a ceil_mode window that hangs past the padding; ``count_include_pad=False``
    divides by the number of input pixels in the window; ``divisor_override`` replaces both.
    """
    if divisor_override is not None:  # the fast path takes any non-zero divisor; the sign is checked here
        _avg_args("avg_pool2d", count_include_pad, divisor_override)
    y = _core.avg_pool2d_fast(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    if y is not None:
        return y
    ops = recorder(input)
    if ops is not None:
        return ops.AvgPool2d.apply(input, kernel_size=kernel_size, stride=stride, padding=padding,
                                   ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                                   divisor_override=divisor_override)
    fn = "avg_pool2d"
    x = _array(fn, "input", input)
    _ndim(fn, "input", x, (3, 4))
    spec = _spec(_PoolSpec, fn, x.shape, kernel_size, stride, padding, 1, ceil_mode)
    cip, div = _avg_args(fn, count_include_pad, divisor_override)
    k, s, p, _, c = spec.core_args()
    y = _core.avg_pool2d_fwd(_contig(x.reshape(spec.input_shape)), k, s, p, c, cip, div)
    return _unbatch(y, spec.unbatched)


def avg_pool2d_grad(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                    count_include_pad=True, divisor_override=None):
    """Gradient of :func:`avg_pool2d` with respect to its input (of shape ``input_shape``)."""
    if divisor_override is not None:
        _avg_args("avg_pool2d_grad", count_include_pad, divisor_override)
    dx = _core.avg_pool2d_grad_fast(grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                    divisor_override)
    if dx is not None:
        return dx
    fn = "avg_pool2d_grad"
    input_shape = _shape(fn, "input_shape", input_shape, (3, 4))
    spec = _spec(_PoolSpec, fn, input_shape, kernel_size, stride, padding, 1, ceil_mode)
    cip, div = _avg_args(fn, count_include_pad, divisor_override)
    g = _grad_output(fn, spec, grad_output)
    k, s, p, _, c = spec.core_args()
    _check_alloc(fn, "input gradient", spec.input_shape, g.dtype)
    dx = _core.avg_pool2d_bwd(g, spec.input_shape, k, s, p, c, cip, div)
    return _unbatch(dx, spec.unbatched)



def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed ``output_size`` (int or pair; None keeps that side), as PyTorch."""
    fn = "adaptive_avg_pool2d"
    ops = recorder(input)
    x = input.data if ops is not None else _array(fn, "input", input)
    _ndim(fn, "input", x, (3, 4))
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(x.shape[-2 + i] if v is None else v for i, v in enumerate(output_size))
    size = _pair(output_size, fn, "output_size", 1)
    if ops is not None:
        return ops.AdaptiveAvgPool2d.apply(input, output_size=size)
    return _adaptive_avg_pool2d_fwd(x, size)


def _adaptive_windows(size, out):
    """PyTorch's adaptive windows [floor(i*size/out), ceil((i+1)*size/out)) along one side."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive_avg_pool2d_fwd(x, output_size):
    oh, ow = output_size
    rows, cols = _adaptive_windows(x.shape[-2], oh), _adaptive_windows(x.shape[-1], ow)
    out = np.empty(x.shape[:-2] + (oh, ow), x.dtype)
    for i, (h0, h1) in enumerate(rows):
        for j, (w0, w1) in enumerate(cols):
            out[..., i, j] = x[..., h0:h1, w0:w1].mean(axis=(-2, -1))
    return out


def _adaptive_avg_pool2d_bwd(g, input_shape, output_size):
    oh, ow = output_size
    rows, cols = _adaptive_windows(input_shape[-2], oh), _adaptive_windows(input_shape[-1], ow)
    dx = np.zeros(input_shape, g.dtype)
    for i, (h0, h1) in enumerate(rows):
        for j, (w0, w1) in enumerate(cols):
            dx[..., h0:h1, w0:w1] += g[..., i, j, None, None] / ((h1 - h0) * (w1 - w0))
    return dx
