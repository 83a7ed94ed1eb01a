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
"""
import math
import numbers
import operator
import os

import numpy as np

from . import _core
from .tensor import Tensor

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

#: Accepted values of ``algo=`` (the C++ registry, cpp/include/pyconv/registry.def); "auto" picks
#: one per shape (cpp/src/conv2d/selection.cpp).
CONV_ALGORITHMS = tuple(_core.algorithms())
#: Accepted values of ``padding_mode=``: zero, mirror (reflect), extend (replicate), wrap (circular).
PADDING_MODES = tuple(_core.padding_modes())

_ALGO_CODE = {a: i for i, a in enumerate(CONV_ALGORITHMS)}
_MODE_CODE = {m: i for i, m in enumerate(PADDING_MODES)}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_MAX_NUMEL = 1 << 59  # the C++ core's limit: byte sizes stay far from int64 overflow


# --------------------------------------------------------------------------- argument helpers


def _has_tensor(*args):
    return any(isinstance(a, Tensor) for a in args)


def _is_int(v):
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)))


def _int(fn, name, v, minimum):
    if not _is_int(v):
        raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__} {v!r}")
    v = int(v)
    if v < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {v}")
    return v


def _pair(fn, name, v, minimum):
    """An int, or a tuple/list of one or two ints -> (a, b), each >= minimum.

    The forms torch accepts: ``1``, ``(1,)`` and ``[1]`` all mean ``(1, 1)``; numpy integers and
    other integer scalars (anything with ``__index__`` except bools) count as ints.
    """
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
    if min(out) < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {v!r}")
    return out


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


def _array(fn, name, a):
    """A float32/float64 ndarray view of `a` (no copy; contiguity is handled by _contig)."""
    if not isinstance(a, np.ndarray):
        if a is None or isinstance(a, (str, bytes, dict, set)):
            raise TypeError(f"{fn}: {name} must be a float32 or float64 array, got {type(a).__name__}")
        a = np.asarray(a)
    if a.dtype not in _FLOATS:
        raise TypeError(f"{fn}: {name} must be float32 or float64, got dtype {a.dtype}")
    return a


def _same_dtype(fn, first_name, first, *others):
    for name, a in others:
        if a is not None and a.dtype != first.dtype:
            raise TypeError(
                f"{fn}: {name} has dtype {a.dtype} but {first_name} has dtype {first.dtype}; "
                "pass arrays of one float dtype"
            )


def _ndim(fn, name, a, allowed):
    if a.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{fn}: {name} must be {want}, got {a.ndim}-D array of shape {a.shape}")


def _contig(a):
    """C-contiguous, aligned, native-endian; a no-op for arrays that already are."""
    f = a.flags
    if f.c_contiguous and f.aligned and a.dtype.isnative:
        return a
    return np.require(a, dtype=a.dtype.newbyteorder("="), requirements=["C", "A"])


def _check_numel(fn, name, shape):
    if math.prod(shape) > _MAX_NUMEL or max(shape) > _MAX_NUMEL:
        raise ValueError(f"{fn}: {name} {tuple(shape)} is too large: its size overflows (limit {_MAX_NUMEL} elements)")


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: let the allocator decide
        return None


_PHYS_MEM = _physical_memory()


def _check_alloc(fn, what, shape, dtype, extra_bytes=0):
    """MemoryError (before allocating) for a result larger than this machine's memory: with
    overcommit the allocation would succeed and the process be killed when it is filled.
    ``extra_bytes`` per element count companions allocated with it (max-pool indices)."""
    nbytes = math.prod(shape) * (np.dtype(dtype).itemsize + extra_bytes)
    if _PHYS_MEM is not None and nbytes > _PHYS_MEM:
        raise MemoryError(f"{fn}: the {what} of shape {tuple(shape)} ({np.dtype(dtype).name}) needs "
                          f"{nbytes / 2**30:.1f} GiB, more than this machine's {_PHYS_MEM / 2**30:.1f} GiB of memory")


def _shape(fn, name, shape, allowed_ndims):
    """A user-given shape tuple: ints, batch >= 0, every other dimension >= 1."""
    if isinstance(shape, np.ndarray):
        shape = shape.tolist()
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{fn}: {name} must be a tuple of ints, got {type(shape).__name__} {shape!r}")
    if len(shape) not in allowed_ndims:
        want = " or ".join(str(d) for d in allowed_ndims)
        raise ValueError(f"{fn}: {name} must have {want} entries, got {tuple(shape)!r}")
    if not all(_is_int(d) for d in shape):
        raise TypeError(f"{fn}: {name} must be a tuple of ints, got {tuple(shape)!r}")
    shape = tuple(int(d) for d in shape)
    batched = len(shape) == max(allowed_ndims)
    for i, d in enumerate(shape):
        if d < (0 if (batched and i == 0) else 1):
            raise ValueError(f"{fn}: {name} entries must be >= 1 (batch >= 0), got {shape!r}")
    _check_numel(fn, name, shape)
    return shape


def _batched(shape):
    return shape if len(shape) == 4 else (1,) + tuple(shape)


def _unbatch(a, was_3d):
    return a[0] if was_3d else a


def _choice(fn, name, v, choices):
    if not isinstance(v, str) or v not in choices:
        raise ValueError(f"{fn}: {name} must be one of {', '.join(map(repr, choices))}; got {v!r}")
    return v


# --------------------------------------------------------------------------- convolution


def _key(args):
    # Values plus their types, so that True and 1 (equal hashes) never share an entry.
    return args, tuple(tuple(map(type, a)) if type(a) in (tuple, list) else type(a) for a in args)


_SPECS = {}


def _spec(cls, *args):
    """cls(*args), memoised per distinct argument values: a layer called in a loop validates once.
    Invalid arguments raise every time (exceptions are not cached)."""
    try:
        key = (cls, _key(args))
        spec = _SPECS.get(key)  # lists among the args make this raise TypeError
    except TypeError:  # unhashable argument: validate without the cache (and report it)
        return cls(*args)
    if spec is None:
        spec = cls(*args)
        if len(_SPECS) > 4096:
            _SPECS.clear()
        _SPECS[key] = spec
    return spec


class _ConvSpec:
    """Validated convolution geometry shared by the forward pass and both gradients."""

    def __init__(self, fn, input_shape, weight_shape, stride, padding, dilation, groups, padding_mode="zeros"):
        self.fn = fn
        if len(input_shape) not in (3, 4):
            raise ValueError(
                f"{fn}: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {tuple(input_shape)}"
            )
        if len(weight_shape) != 4:
            raise ValueError(
                f"{fn}: weight must be 4-D (out_channels, in_channels/groups, kH, kW), got shape {tuple(weight_shape)}"
            )
        self.unbatched = len(input_shape) == 3
        n, c, h, w = _batched(tuple(input_shape))
        k, cg, r, s = weight_shape
        if c < 1 or h < 1 or w < 1:
            raise ValueError(f"{fn}: input channels, height and width must be >= 1, got input shape {tuple(input_shape)}")
        if min(weight_shape) < 1:
            raise ValueError(f"{fn}: weight dimensions must be >= 1, got weight shape {tuple(weight_shape)}")
        self.stride = _pair(fn, "stride", stride, 1)
        self.dilation = _pair(fn, "dilation", dilation, 1)
        self.groups = _int(fn, "groups", groups, 1)
        self.mode = _choice(fn, "padding_mode", padding_mode, PADDING_MODES)
        if c % self.groups or k % self.groups:
            raise ValueError(
                f"{fn}: groups={self.groups} must divide both in_channels={c} and out_channels={k} "
                f"(weight.shape[0])"
            )
        if cg * self.groups != c:
            raise ValueError(
                f"{fn}: input has {c} channels but weight expects {cg * self.groups} "
                f"(weight.shape[1] * groups = {cg} * {self.groups})"
            )
        (sh, sw), (dh, dw) = self.stride, self.dilation
        if isinstance(padding, str):
            padding = _choice(fn, "padding", padding, ("valid", "same"))
            if padding == "valid":
                pads = (0, 0, 0, 0)
            else:
                if (sh, sw) != (1, 1):
                    raise ValueError(f"{fn}: padding='same' is not supported for strided convolutions (stride={self.stride})")
                th, tw = dh * (r - 1), dw * (s - 1)
                pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)  # extra pixel bottom/right
        else:
            ph, pw = _pair(fn, "padding", padding, 0)
            pads = (ph, ph, pw, pw)
        self.pads = pads  # (top, bottom, left, right)
        pt, pb, pl, pr = pads
        if self.mode == "reflect" and (max(pt, pb) >= h or max(pl, pr) >= w):
            raise ValueError(
                f"{fn}: padding_mode='reflect' needs padding smaller than the input: padding (top, bottom, left, "
                f"right) = {pads} for input height {h}, width {w}"
            )
        if self.mode == "circular" and (max(pt, pb) > h or max(pl, pr) > w):
            raise ValueError(
                f"{fn}: padding_mode='circular' needs padding <= the input size: padding (top, bottom, left, "
                f"right) = {pads} for input height {h}, width {w}"
            )
        oh = (h + pt + pb - dh * (r - 1) - 1) // sh + 1
        ow = (w + pl + pr - dw * (s - 1) - 1) // sw + 1
        if h + pt + pb < dh * (r - 1) + 1 or w + pl + pr < dw * (s - 1) + 1:
            raise ValueError(
                f"{fn}: kernel ({dh * (r - 1) + 1}, {dw * (s - 1) + 1}) (weight {r}x{s}, dilation {self.dilation}) "
                f"is larger than the padded input ({h + pt + pb}, {w + pl + pr}): output height = "
                f"(H + pad_top + pad_bottom - dilation*(kH-1) - 1) / stride + 1 = "
                f"({h} + {pt} + {pb} - {dh}*{r - 1} - 1) / {sh} + 1 = {oh}, output width = "
                f"({w} + {pl} + {pr} - {dw}*{s - 1} - 1) / {sw} + 1 = {ow}"
            )
        self.input_shape = (n, c, h, w)
        self.weight_shape = (k, cg, r, s)
        self.output_shape = (n, k, oh, ow)
        for name, shp in (("input", self.input_shape), ("weight", self.weight_shape), ("output", self.output_shape)):
            _check_numel(fn, name, shp)

    def out_shape(self):
        return self.output_shape[1:] if self.unbatched else self.output_shape

    def core_args(self, algo):
        algo = _choice(self.fn, "algo", algo, CONV_ALGORITHMS)
        return (self.stride, self.pads, self.dilation, self.groups, _MODE_CODE[self.mode], _ALGO_CODE[algo])


def conv2d_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1):
    """Output shape of :func:`conv2d` for these shapes, without computing anything.

    ``conv2d_output_shape((1, 3, 32, 32), (10, 3, 5, 5), padding=2) == (1, 10, 32, 32)``.
    Unbatched ``(C, H, W)`` input shapes give ``(K, OH, OW)``.
    """
    fn = "conv2d_output_shape"
    input_shape = _shape(fn, "input_shape", input_shape, (3, 4))
    weight_shape = _shape(fn, "weight_shape", weight_shape, (4,))
    c = input_shape[-3]
    groups = c // weight_shape[1] if weight_shape[1] and c % weight_shape[1] == 0 else 1
    return _spec(_ConvSpec, fn, input_shape, weight_shape, stride, padding, dilation, groups).out_shape()


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros", algo="auto"):
    """2-D convolution (cross-correlation) of ``input`` with ``weight`` plus ``bias``.

    Args:
        input: ``(N, C, H, W)`` or unbatched ``(C, H, W)``, float32 or float64.
        weight: ``(out_channels, C / groups, kH, kW)``: one filter per output channel, spanning
            the full input depth of its group.
        bias: ``(out_channels,)`` or None. Default: None.
        stride: int or (sH, sW). Default: 1.
        padding: int, (pH, pW), ``"valid"`` (no padding) or ``"same"`` (output size = input
            size; stride 1 only; for even kernels the extra pixel goes bottom/right). Default: 0.
        dilation: int or (dH, dW): spacing between filter taps. Default: 1.
        groups: split channels into this many independent groups (``groups == C`` is a depthwise
            convolution). Default: 1.
        padding_mode: ``"zeros"``, ``"reflect"`` (mirror), ``"replicate"`` (extend) or
            ``"circular"``, as ``torch.nn.Conv2d``. Default: ``"zeros"``.
        algo: ``"auto"``, ``"direct"``, ``"im2col"`` or ``"winograd"`` (F(4x4, 3x3): 3x3 kernels,
            stride 1, dilation 1, or dilated 3x3 and strided kernels spanning 3 strides each way,
            run over the input's phases; about 1e-5 * max|output| float32 error instead of 5e-7; other
            shapes silently run ``"im2col"``). Default: ``"auto"``.

    Returns:
        ``(N, out_channels, OH, OW)`` with ``OH = floor((H + 2*pH - dH*(kH-1) - 1) / sH) + 1``.
    """
    y = _core.conv2d_fwd_fast(input, weight, bias, stride, padding, dilation, groups, padding_mode, algo)
    if y is not None:
        return y
    if _has_tensor(input, weight, bias):
        return _ag.Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation,
                                groups=groups, padding_mode=padding_mode, algo=algo)
    fn = "conv2d"
    x = _array(fn, "input", input)
    w = _array(fn, "weight", weight)
    b = None if bias is None else _array(fn, "bias", bias)
    _same_dtype(fn, "input", x, ("weight", w), ("bias", b))
    _ndim(fn, "input", x, (3, 4))
    _ndim(fn, "weight", w, (4,))
    spec = _spec(_ConvSpec, fn, x.shape, w.shape, stride, padding, dilation, groups, padding_mode)
    if b is not None and b.shape != (spec.weight_shape[0],):
        raise ValueError(f"{fn}: bias must have shape ({spec.weight_shape[0]},) (out_channels), got {b.shape}")
    args = spec.core_args(algo)
    _check_alloc(fn, "output", spec.output_shape, x.dtype)
    xb = _contig(x.reshape(spec.input_shape))
    y = _core.conv2d_fwd(xb, _contig(w), None if b is None else _contig(b), *args)
    return _unbatch(y, spec.unbatched)


def _grad_output(fn, spec, grad_output, dtype_ref_name=None, dtype_ref=None):
    """grad_output checked against the op's output shape (and the dtype of another argument)."""
    g = _array(fn, "grad_output", grad_output)
    if dtype_ref is not None:
        _same_dtype(fn, dtype_ref_name, dtype_ref, ("grad_output", g))
    want = spec.out_shape()
    if tuple(g.shape) != tuple(want):
        raise ValueError(f"{fn}: grad_output must have the output shape {tuple(want)}, got {g.shape}")
    return _contig(g.reshape(spec.output_shape))


def conv2d_grad_input(grad_output, weight, input_shape, stride=1, padding=0, dilation=1, groups=1, *,
                      padding_mode="zeros", algo="auto"):
    """Gradient of :func:`conv2d` with respect to its input, of shape ``input_shape``.

    ``input_shape`` disambiguates the input size when a stride > 1 maps several sizes to one
    output size. With a non-zero ``padding_mode`` the gradient of the padded border is folded back
    onto the input pixels it was copied from. ``algo="winograd"`` applies to zero-padded 3x3
    stride-1 layers, dilated 3x3 layers and strided kernels spanning 3 strides each way (groups 1;
    over the input's phases), and runs ``"im2col"`` otherwise.
    """
    dx = _core.conv2d_bwd_data_fast(grad_output, weight, input_shape, stride, padding, dilation, groups, padding_mode,
                                    algo)
    if dx is not None:
        return dx
    fn = "conv2d_grad_input"
    w = _array(fn, "weight", weight)
    _ndim(fn, "weight", w, (4,))
    input_shape = _shape(fn, "input_shape", input_shape, (3, 4))
    spec = _spec(_ConvSpec, fn, input_shape, w.shape, stride, padding, dilation, groups, padding_mode)
    g = _grad_output(fn, spec, grad_output, "weight", w)
    _check_alloc(fn, "input gradient", spec.input_shape, w.dtype)
    dx = _core.conv2d_bwd_data(g, _contig(w), spec.input_shape, *spec.core_args(algo))
    return _unbatch(dx, spec.unbatched)


def conv2d_grad_weight(input, grad_output, weight_shape, stride=1, padding=0, dilation=1, groups=1, *,
                       padding_mode="zeros", algo="auto"):
    """Gradient of :func:`conv2d` with respect to its weight, of shape ``weight_shape``.

    ``algo="winograd"`` (3x3, stride 1, dilation 1; every padding mode) sums the products of
    transformed 4x4 tiles of ``grad_output`` and 6x6 tiles of ``input`` (F(3x3, 4x4)); dilated 3x3
    layers and strided layers whose kernel spans 3 strides each way run it over the input's phases;
    elsewhere it runs ``"im2col"``.
    """
    dw = _core.conv2d_bwd_weight_fast(input, grad_output, weight_shape, stride, padding, dilation, groups, padding_mode,
                                      algo)
    if dw is not None:
        return dw
    fn = "conv2d_grad_weight"
    x = _array(fn, "input", input)
    _ndim(fn, "input", x, (3, 4))
    weight_shape = _shape(fn, "weight_shape", weight_shape, (4,))
    spec = _spec(_ConvSpec, fn, x.shape, weight_shape, stride, padding, dilation, groups, padding_mode)
    g = _grad_output(fn, spec, grad_output, "input", x)
    _check_alloc(fn, "weight gradient", spec.weight_shape, x.dtype)
    return _core.conv2d_bwd_weight(_contig(x.reshape(spec.input_shape)), g, spec.weight_shape, *spec.core_args(algo))


def conv2d_grad_bias(grad_output):
    """Gradient of :func:`conv2d` with respect to its bias: ``grad_output`` summed over all but channels."""
    fn = "conv2d_grad_bias"
    g = _array(fn, "grad_output", grad_output)
    _ndim(fn, "grad_output", g, (3, 4))
    if min(g.shape[-3:]) < 1:
        raise ValueError(f"{fn}: grad_output channels, height and width must be >= 1, got shape {g.shape}")
    return _core.bias_grad(_contig(g.reshape((1,) + g.shape if g.ndim == 3 else g.shape)))


# --------------------------------------------------------------------------- pooling


class _PoolSpec:
    def __init__(self, fn, input_shape, kernel_size, stride, padding, dilation, ceil_mode):
        if len(input_shape) not in (3, 4):
            raise ValueError(f"{fn}: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {tuple(input_shape)}")
        self.unbatched = len(input_shape) == 3
        n, c, h, w = _batched(tuple(input_shape))
        if c < 1 or h < 1 or w < 1:
            raise ValueError(f"{fn}: input channels, height and width must be >= 1, got input shape {tuple(input_shape)}")
        self.kernel = _pair(fn, "kernel_size", kernel_size, 1)
        if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
            self.stride = self.kernel
        else:
            self.stride = _pair(fn, "stride", stride, 1)
        self.padding = _pair(fn, "padding", padding, 0)
        self.dilation = _pair(fn, "dilation", dilation, 1)
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
    if isinstance(input, Tensor):
        out, ctx = _ag.MaxPool2d.apply_with_ctx(input, kernel_size=kernel_size, stride=stride, padding=padding,
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
    if isinstance(input, Tensor):
        return _ag.ReLUMaxPool2d.apply(input, kernel_size=kernel_size, stride=stride, padding=padding)
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
    if isinstance(input, Tensor):
        return _ag.AvgPool2d.apply(input, kernel_size=kernel_size, stride=stride, padding=padding,
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


# --------------------------------------------------------------------------- ReLU and linear


def relu(input):
    """max(input, 0) elementwise; NaN propagates (-0 gives +0)."""
    if isinstance(input, Tensor):
        return _ag.ReLU.apply(input)
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
    if _has_tensor(input, weight, bias):
        return _ag.Linear.apply(input, weight, bias)
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


# --------------------------------------------------------------------------- training-time ops
# Forward-only on arrays (their gradients live in pyconv.autograd); with Tensors they record.


def _apply(fn_cls, tensors, **kwargs):
    if _has_tensor(*tensors):
        return fn_cls.apply(*tensors, **kwargs)
    return fn_cls().forward(*tensors, **kwargs)


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed ``output_size`` (int or pair; None keeps that side), as PyTorch."""
    fn = "adaptive_avg_pool2d"
    x = input.data if isinstance(input, Tensor) else _array(fn, "input", input)
    _ndim(fn, "input", x, (3, 4))
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(x.shape[-2 + i] if v is None else v for i, v in enumerate(output_size))
    size = _pair(fn, "output_size", output_size, 1)
    return _apply(_ag.AdaptiveAvgPool2d, (input,), output_size=size)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation over (N, H, W) per channel, as ``F.batch_norm`` (4-D input).

    In training, batch statistics normalise and ``running_mean``/``running_var`` (arrays) are
    updated in place; otherwise the running statistics are used.
    """
    fn = "batch_norm"
    x = input.data if isinstance(input, Tensor) else _array(fn, "input", input)
    _ndim(fn, "input", x, (4,))
    c = x.shape[1]
    for name, a in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if a is not None and np.shape(a.data if isinstance(a, Tensor) else a) != (c,):
            raise ValueError(f"{fn}: {name} must have shape ({c},) (channels), got {np.shape(a)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{fn}: running_mean and running_var are required when training=False")
    if (weight is None) != (bias is None):
        raise ValueError(f"{fn}: pass both weight and bias, or neither")
    rm = None if running_mean is None else np.asarray(running_mean)
    rv = None if running_var is None else np.asarray(running_var)
    return _apply(_ag.BatchNorm2d, (input, weight, bias), running_mean=rm, running_var=rv,
                  training=bool(training), momentum=float(momentum), eps=float(eps))


def dropout(input, p=0.5, training=True, generator=None):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (identity when not training)."""
    fn = "dropout"
    if not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"{fn}: p must be a probability in [0, 1], got {p!r}")
    if not training or p == 0:
        return input
    from .random import default_generator

    x = input.data if isinstance(input, Tensor) else _array(fn, "input", input)
    keep = (generator or default_generator()).random(x.shape) >= p
    mask = keep.astype(x.dtype) / x.dtype.type(1 - p) if p < 1 else np.zeros_like(x)
    return input * mask


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of logits ``(N, C)`` against integer class indices ``(N,)``, as PyTorch."""
    fn = "cross_entropy"
    x = input.data if isinstance(input, Tensor) else _array(fn, "input", input)
    t = np.asarray(target.data if isinstance(target, Tensor) else target)
    if x.ndim == 1:
        x, t = x[None], t.reshape(1)
        if isinstance(input, Tensor):
            input = input.reshape(1, -1)
        else:
            input = x
    _ndim(fn, "input", x, (2,))
    if t.dtype.kind not in "iu":
        raise TypeError(f"{fn}: target must hold integer class indices, got dtype {t.dtype}")
    if t.shape != (x.shape[0],):
        raise ValueError(f"{fn}: target must have shape ({x.shape[0]},) for input {x.shape}, got {t.shape}")
    # Common case first: every target is a class index (then ignore_index needs no mask).
    if t.size and not (0 <= t.min() and t.max() < x.shape[1]):
        valid = t != ignore_index
        if valid.any() and (t[valid].min() < 0 or t[valid].max() >= x.shape[1]):
            raise ValueError(f"{fn}: target values must be in [0, {x.shape[1]}), got range "
                             f"[{t[valid].min()}, {t[valid].max()}]")
    _choice(fn, "reduction", reduction, ("mean", "sum", "none"))
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing}")
    w = None
    if weight is not None:
        w = np.asarray(weight.data if isinstance(weight, Tensor) else weight, dtype=x.dtype)
        if w.shape != (x.shape[1],):
            raise ValueError(f"{fn}: weight must have shape ({x.shape[1]},) (classes), got {w.shape}")
        if label_smoothing:
            raise NotImplementedError(f"{fn}: weight together with label_smoothing is not supported")
    return _apply(_ag.CrossEntropy, (input, t), weight=w, ignore_index=ignore_index, reduction=reduction,
                  label_smoothing=float(label_smoothing))


from . import autograd as _ag  # noqa: E402  (autograd builds on the functions above)
