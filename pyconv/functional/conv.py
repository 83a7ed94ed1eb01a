"""Convolution: the forward pass, both gradients and the output shape (validated by :class:`_ConvSpec`)."""
import numpy as np

from .. import _core
from .._utils import _pair, conv_out_size, same_pads
from ._args import (_array, _batched, _check_alloc, _check_numel, _choice, _contig, _grad_output, _int, _ndim,
                    _same_dtype, _shape, _spec, _unbatch, recorder)

#: Accepted values of ``algo=`` (the C++ registry, cpp/include/pyconv/registry.def); "auto" picks
#: one per shape (cpp/src/conv2d/selection.cpp).
CONV_ALGORITHMS = tuple(_core.algorithms())
#: Accepted values of ``padding_mode=``: zero, mirror (reflect), extend (replicate), wrap (circular).
PADDING_MODES = tuple(_core.padding_modes())

_ALGO_CODE = {a: i for i, a in enumerate(CONV_ALGORITHMS)}
_MODE_CODE = {m: i for i, m in enumerate(PADDING_MODES)}
#: Accepted values of ``precision=`` of :func:`conv2d`.
PRECISIONS = ("float32", "bfloat16")


def _round_bf16(a):
    """float32 `a` rounded to the nearest bfloat16 (ties to even), as float32 (a new array)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) & np.uint32(0xFFFF0000)).view(np.float32)
    # A NaN whose payload sits in the dropped bits would otherwise round to infinity.
    return np.where(np.isnan(a), np.float32(np.nan), r).astype(np.float32, copy=False)


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
        self.stride = _pair(stride, fn, "stride", 1)
        self.dilation = _pair(dilation, fn, "dilation", 1)
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
                pads = same_pads(r, dh) + same_pads(s, dw)
        else:
            ph, pw = _pair(padding, fn, "padding", 0)
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
        oh = conv_out_size(h, r, sh, pt, pb, dh)
        ow = conv_out_size(w, s, sw, pl, pr, dw)
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


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros", algo="auto",
           precision=None):
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
        precision: ``"float32"`` or ``"bfloat16"``: float32 input and weight rounded to bfloat16
            (round to nearest even) before the convolution, products accumulated in float32, float32
            output, bias added unrounded; at most 2**-7 error relative to sum|w||x| (two
            roundings of 2**-8). Runs on AMX tiles where the CPU has them
            (``pyconv.get_max_isa() == "amx"``), else with AVX512-BF16's vdpbf16ps (level
            ``"avx512_bf16"``; subnormal operands count as zero on both), else through the
            float32 kernels on the rounded operands, as does any ``algo`` other than
            ``"auto"``. float64 inputs raise ValueError with
            ``"bfloat16"``. Forward only: not for recorded (autograd) tensors. Default (None): the
            process default, :func:`pyconv.set_float32_precision`, for float32 arrays (recorded
            tensors and float64 always run in their own precision).

    Returns:
        ``(N, out_channels, OH, OW)`` with ``OH = floor((H + 2*pH - dH*(kH-1) - 1) / sH) + 1``.
    """
    if precision is not None and precision != "float32":
        return _conv2d_bf16(input, weight, bias, stride, padding, dilation, groups, padding_mode, algo, precision)
    y = _core.conv2d_fwd_fast(input, weight, bias, stride, padding, dilation, groups, padding_mode, algo)
    if y is not None:
        return y
    ops = recorder(input, weight, bias)
    if ops is not None:
        return ops.Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation,
                                groups=groups, padding_mode=padding_mode, algo=algo)
    fn = "conv2d"
    x, w, b, spec = _conv_operands(fn, input, weight, bias, stride, padding, dilation, groups, padding_mode)
    args = spec.core_args(algo)
    if precision is None and x.dtype == np.float32 and _core.get_float32_precision() == "bfloat16":
        return _conv2d_bf16(x, w, b, stride, padding, dilation, groups, padding_mode, algo, "bfloat16")
    _check_alloc(fn, "output", spec.output_shape, x.dtype)
    xb = _contig(x.reshape(spec.input_shape))
    y = _core.conv2d_fwd(xb, _contig(w), None if b is None else _contig(b), *args)
    return _unbatch(y, spec.unbatched)


def _conv_operands(fn, input, weight, bias, stride, padding, dilation, groups, padding_mode, float32_only=False):
    """(x, w, b, spec): conv2d's arrays checked against each other and the geometry."""
    x = _array(fn, "input", input)
    w = _array(fn, "weight", weight)
    b = None if bias is None else _array(fn, "bias", bias)
    if float32_only and (x.dtype != np.float32 or w.dtype != np.float32):
        raise ValueError(f"{fn}: precision='bfloat16' needs float32 input and weight, got {x.dtype} and {w.dtype}")
    _same_dtype(fn, "input", x, ("weight", w), ("bias", b))
    _ndim(fn, "input", x, (3, 4))
    _ndim(fn, "weight", w, (4,))
    spec = _spec(_ConvSpec, fn, x.shape, w.shape, stride, padding, dilation, groups, padding_mode)
    if b is not None and b.shape != (spec.weight_shape[0],):
        raise ValueError(f"{fn}: bias must have shape ({spec.weight_shape[0]},) (out_channels), got {b.shape}")
    return x, w, b, spec


def _conv2d_bf16(input, weight, bias, stride, padding, dilation, groups, padding_mode, algo, precision):
    fn = "conv2d"
    _choice(fn, "precision", precision, PRECISIONS)
    if recorder(input, weight, bias) is not None:
        raise ValueError(f"{fn}: precision='bfloat16' is forward-only; pass arrays, not recorded Tensors")
    x, w, b, spec = _conv_operands(fn, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                                   float32_only=True)
    stride, pads, dil, g, mode, algo_code = spec.core_args(algo)
    _check_alloc(fn, "output", spec.output_shape, x.dtype)
    xb = _contig(x.reshape(spec.input_shape))
    if algo_code != _ALGO_CODE["auto"]:  # that algorithm's float32 kernels on the rounded operands
        y = _core.conv2d_fwd(_round_bf16(xb), _round_bf16(w), None if b is None else _contig(b), stride, pads, dil, g,
                             mode, algo_code)
    else:
        y = _core.conv2d_fwd_bf16(xb, _contig(w), None if b is None else _contig(b), stride, pads, dil, g, mode)
    return _unbatch(y, spec.unbatched)


def conv2d_grad_input(grad_output, weight, input_shape, stride=1, padding=0, dilation=1, groups=1, *,
                      padding_mode="zeros", algo="auto", precision="float32"):
    """Gradient of :func:`conv2d` with respect to its input, of shape ``input_shape``.

    ``input_shape`` disambiguates the input size when a stride > 1 maps several sizes to one
    output size. With a non-zero ``padding_mode`` the gradient of the padded border is folded back
    onto the input pixels it was copied from. ``algo="winograd"`` applies to zero-padded 3x3
    stride-1 layers, dilated 3x3 layers and strided kernels spanning 3 strides each way (groups 1;
    over the input's phases), and runs ``"im2col"`` otherwise. ``precision="bfloat16"`` rounds
    float32 ``grad_output`` and ``weight`` to bfloat16 and accumulates in float32 (as
    :func:`conv2d`'s; zero-padded stride-1 layers run on AMX tiles as the forward convolution of
    ``grad_output`` with the flipped, transposed weight).
    """
    if precision != "float32":
        return _conv2d_grad_input_bf16(grad_output, weight, input_shape, stride, padding, dilation, groups,
                                       padding_mode, algo, precision)
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
                       padding_mode="zeros", algo="auto", precision="float32"):
    """Gradient of :func:`conv2d` with respect to its weight, of shape ``weight_shape``.

    ``algo="winograd"`` (3x3, stride 1, dilation 1; every padding mode) sums the products of
    transformed 4x4 tiles of ``grad_output`` and 6x6 tiles of ``input`` (F(3x3, 4x4)); dilated 3x3
    layers and strided layers whose kernel spans 3 strides each way run it over the input's phases;
    elsewhere it runs ``"im2col"``. ``precision="bfloat16"`` rounds float32 ``input`` and
    ``grad_output`` to bfloat16 and accumulates in float32 (through the float32 kernels).
    """
    if precision != "float32":
        return _conv2d_grad_weight_bf16(input, grad_output, weight_shape, stride, padding, dilation, groups,
                                        padding_mode, algo, precision)
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


def _bf16_operands(fn, precision, *named):
    _choice(fn, "precision", precision, PRECISIONS)
    for name, a in named:
        if a.dtype != np.float32:
            raise ValueError(f"{fn}: precision='bfloat16' needs float32 {name}, got {a.dtype}")


def _conv2d_grad_input_bf16(grad_output, weight, input_shape, stride, padding, dilation, groups, padding_mode, algo,
                            precision):
    fn = "conv2d_grad_input"
    w = _array(fn, "weight", weight)
    _bf16_operands(fn, precision, ("weight", w), ("grad_output", _array(fn, "grad_output", grad_output)))
    _ndim(fn, "weight", w, (4,))
    input_shape = _shape(fn, "input_shape", input_shape, (3, 4))
    spec = _spec(_ConvSpec, fn, input_shape, w.shape, stride, padding, dilation, groups, padding_mode)
    g = _grad_output(fn, spec, grad_output, "weight", w)
    _check_alloc(fn, "input gradient", spec.input_shape, w.dtype)
    stride, pads, dil, groups, mode, algo_code = spec.core_args(algo)
    k, c, r, s = w.shape
    flipped = (r - 1 - pads[0], r - 1 - pads[1], s - 1 - pads[2], s - 1 - pads[3])
    if (algo_code == _ALGO_CODE["auto"] and stride == (1, 1) and dil == (1, 1) and groups == 1 and mode == 0
            and min(flipped) >= 0 and _core.conv2d_bf16_native(c, k, r, s, 1)):
        # stride 1: the input gradient is the convolution of grad_output with the weight flipped
        # in space and transposed in channels, "full" padding less the forward's
        wt = np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
        dx = _core.conv2d_fwd_bf16(g, wt, None, (1, 1), flipped, (1, 1), 1, 0)
    else:
        dx = _core.conv2d_bwd_data(_round_bf16(g), _round_bf16(w), spec.input_shape, stride, pads, dil, groups, mode,
                                   algo_code)
    return _unbatch(dx, spec.unbatched)


def _conv2d_grad_weight_bf16(input, grad_output, weight_shape, stride, padding, dilation, groups, padding_mode, algo,
                             precision):
    fn = "conv2d_grad_weight"
    x = _array(fn, "input", input)
    _bf16_operands(fn, precision, ("input", x), ("grad_output", _array(fn, "grad_output", grad_output)))
    _ndim(fn, "input", x, (3, 4))
    weight_shape = _shape(fn, "weight_shape", weight_shape, (4,))
    spec = _spec(_ConvSpec, fn, x.shape, weight_shape, stride, padding, dilation, groups, padding_mode)
    g = _grad_output(fn, spec, grad_output, "input", x)
    _check_alloc(fn, "weight gradient", spec.weight_shape, x.dtype)
    return _core.conv2d_bwd_weight(_round_bf16(x.reshape(spec.input_shape)), _round_bf16(g), spec.weight_shape,
                                   *spec.core_args(algo))


def conv2d_grad_bias(grad_output):
    """Gradient of :func:`conv2d` with respect to its bias: ``grad_output`` summed over all but channels."""
    fn = "conv2d_grad_bias"
    g = _array(fn, "grad_output", grad_output)
    _ndim(fn, "grad_output", g, (3, 4))
    if min(g.shape[-3:]) < 1:
        raise ValueError(f"{fn}: grad_output channels, height and width must be >= 1, got shape {g.shape}")
    return _core.bias_grad(_contig(g.reshape((1,) + g.shape if g.ndim == 3 else g.shape)))

