"""The operators of the inference graph: shape inference and the kernel each node runs.

``OPS[op] = (infer, build)``. ``infer(node, ins)`` gets one :class:`Info` per input (shape,
dtype, constant value or None) and returns ``(shape, dtype)`` per output, raising
:class:`GraphError` naming the node and the shapes when they do not fit. ``build(node, ins,
inplace)`` returns the function the executor calls with the input arrays; ``inplace`` says the
function may overwrite input 0 (its buffer dies there). Semantics are ONNX's (newest opset; the
front-end rewrites older forms). Convolutions and pooling call pyconv's C++ core; the rest is
numpy.
"""

import numpy as np

from .. import _core
from .. import functional as F
from ._common import _F32, Info, _axis, _const, _err  # noqa: F401  (Info: re-exported)
from .shape_ops import SHAPE_OPS

__all__ = ["Info", "OPS", "ACTIVATIONS", "POOLS_NCHWC", "conv_geometry", "pool_geometry"]

# --------------------------------------------------------------------------- activations (in place)


def _leaky(y, alpha):
    t = np.minimum(y, 0)
    t *= alpha - 1
    y += t
    return y


def _sigmoid(y):
    with np.errstate(over="ignore"):
        np.negative(y, out=y)
        np.exp(y, out=y)
    y += 1
    return np.reciprocal(y, out=y)


def _hardsigmoid(y, alpha, beta):
    y *= alpha
    y += beta
    return np.clip(y, 0, 1, out=y)


def _hardswish(y):
    t = y * np.float32(1 / 6)
    t += np.float32(0.5)
    np.clip(t, 0, 1, out=t)
    y *= t
    return y


def _elu(y, alpha, gamma=1.0):
    t = np.expm1(np.minimum(y, 0))
    t *= alpha
    np.maximum(y, 0, out=y)
    y += t
    if gamma != 1.0:
        y *= gamma
    return y


def _clip(y, lo, hi):
    return np.clip(y, -np.inf if lo is None else lo, np.inf if hi is None else hi, out=y)


#: In-place activations: op -> f(y, *params). The conv epilogue and the standalone ops share them.
ACTIVATIONS = {
    "Relu": lambda y: np.maximum(y, 0, out=y),
    "LeakyRelu": _leaky,
    "Sigmoid": _sigmoid,
    "HardSigmoid": _hardsigmoid,
    "HardSwish": _hardswish,
    "Tanh": lambda y: np.tanh(y, out=y),
    "Elu": _elu,
    "Selu": _elu,
    "Clip": _clip,
}


def activation_params(node, ins):
    """The parameters ACTIVATIONS[node.op] takes (float32 scalars), from attributes or constants."""
    a, op = node.attrs, node.op
    f = np.float32
    if op == "LeakyRelu":
        return (f(a.get("alpha", 0.01)),)
    if op == "HardSigmoid":
        return (f(a.get("alpha", 0.2)), f(a.get("beta", 0.5)))
    if op == "Elu":
        return (f(a.get("alpha", 1.0)),)
    if op == "Selu":
        return (f(a.get("alpha", 1.6732632423543772)), f(a.get("gamma", 1.0507009873554805)))
    if op == "Clip":
        lo, hi = _const(node, ins, 1, "min"), _const(node, ins, 2, "max")
        return (None if lo is None else f(lo), None if hi is None else f(hi))
    return ()


def _infer_same(node, ins):
    return [(ins[0].shape, ins[0].dtype)]


def _build_act(node, ins, inplace):
    fn, params = ACTIVATIONS[node.op], activation_params(node, ins)
    if node.op == "Relu" and not inplace:
        return lambda x: np.maximum(x, 0)
    if inplace:
        return lambda x, *_: fn(x, *params)
    return lambda x, *_: fn(np.array(x, copy=True), *params)


# --------------------------------------------------------------------------- convolution


def _same_pads(mode, size, k_eff, stride):
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + k_eff - size)
    small = total // 2
    return (small, total - small) if mode == "SAME_UPPER" else (total - small, small)


def conv_geometry(node, x_shape, kernel):
    """(strides, dilations, pads (top, bottom, left, right)) of a Conv or pool node on a 4-D input."""
    a = node.attrs
    strides = tuple(a.get("strides", (1, 1)))
    dil = tuple(a.get("dilations", (1, 1)))
    mode = a.get("auto_pad", "NOTSET")
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        ph = _same_pads(mode, x_shape[2], dil[0] * (kernel[0] - 1) + 1, strides[0])
        pw = _same_pads(mode, x_shape[3], dil[1] * (kernel[1] - 1) + 1, strides[1])
        pads = (ph[0], ph[1], pw[0], pw[1])
    elif mode == "VALID":
        pads = (0, 0, 0, 0)
    else:
        p = tuple(a.get("pads", (0, 0, 0, 0)))  # ONNX order: top, left, bottom, right
        pads = (p[0], p[2], p[1], p[3])
    return strides, dil, pads


def _need_4d(node, ins, what="input"):
    if len(ins[0].shape) != 4:
        raise _err(node, f"{what} must be 4-D (N, C, H, W), got shape {ins[0].shape}")


def _infer_conv(node, ins):
    _need_4d(node, ins)
    x, w = ins[0].shape, ins[1].shape
    if len(w) != 4:
        raise _err(node, f"weight must be 4-D, got shape {w}")
    g = node.attrs.get("group", 1)
    if x[1] != w[1] * g:
        raise _err(node, f"input {x} has {x[1]} channels but weight {w} with group={g} expects {w[1] * g}")
    if w[0] % g:
        raise _err(node, f"group={g} does not divide the {w[0]} filters of weight {w}")
    if len(ins) > 2 and ins[2] is not None and ins[2].shape != (w[0],):
        raise _err(node, f"bias must have shape ({w[0]},), got {ins[2].shape}")
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = conv_geometry(node, x, w[2:])
    oh = (x[2] + pt + pb - dh * (w[2] - 1) - 1) // sh + 1
    ow = (x[3] + pl + pr - dw * (w[3] - 1) - 1) // sw + 1
    if oh < 1 or ow < 1:
        raise _err(node, f"kernel {w[2:]} (dilation {(dh, dw)}) is larger than the padded input {x[2:]} "
                         f"(pads {(pt, pb, pl, pr)})")
    out = (x[0], w[0], oh, ow)
    for e in node.epilogue:
        if e[0] == "add" and ins[e[1]].shape != out:
            raise _err(node, f"the fused residual {node.inputs[e[1]]!r} has shape {ins[e[1]].shape}, not the "
                             f"conv output's {out}")
    return [(out, _F32)]


def _epilogue(node, ins):
    """The epilogue as a list of (function, extra input index or None, params)."""
    steps = []
    for e in node.epilogue:
        if e[0] == "add":
            steps.append((None, e[1], ()))
        else:
            steps.append((ACTIVATIONS[e[0]], None, tuple(e[1])))
    return steps


def conv_core_args(node, ins):
    w = ins[1].shape
    strides, dil, pads = conv_geometry(node, ins[0].shape, w[2:])
    return strides, pads, dil, int(node.attrs.get("group", 1))


ALGO_CODES = {"auto": 0, "direct": 1, "im2col": 2, "winograd": 3}


def conv_algorithm(node, ins):
    """The algorithm the inference graph runs for this conv (what `summary` shows): "auto"'s
    choice, except that single images on planes of at most 14x14 that "auto" gives the direct
    kernel run im2col on weights packed once. The selection table counts im2col's packing of the
    weights in every call; without it im2col is 1.0-1.7x faster there (batch 1, 3x3: 48->192 and
    64->256 at 13x13, 256->256 at 14x14; RESULTS.md section 10)."""
    strides, pads, dil, g = conv_core_args(node, ins)
    algo = _core.conv2d_choose_algo(ins[0].shape, ins[1].shape, strides, pads, dil, g, 0, 0)
    x, out = ins[0].shape, _infer_conv(node, ins)[0][0]
    if (algo == "direct" and g == 1 and x[0] == 1 and out[2] * out[3] <= 196 and ins[1].const is not None
            and ins[1].dtype == np.float32):
        return "im2col"
    return algo


def _fused_clamp(node):
    """(residual input index or None, lo, hi) when the epilogue is [Add]? then [Relu | Clip]?, the
    form the C++ fused conv computes; None otherwise."""
    ep, k, lo, hi = list(node.epilogue), None, -np.inf, np.inf
    if ep and ep[0][0] == "add":
        k = ep.pop(0)[1]
    if ep and ep[0][0] == "Relu":
        lo = 0.0
        ep.pop(0)
    elif ep and ep[0][0] == "Clip":
        a, b = ep.pop(0)[1]
        if any(v is not None and np.size(v) != 1 for v in (a, b)):
            return None
        lo = -np.inf if a is None else float(np.ravel(a)[0])
        hi = np.inf if b is None else float(np.ravel(b)[0])
    return None if ep or lo > hi else (k, lo, hi)


def channel_concat(node, infos):
    """A Concat of distinct values along the channels of 4-D ones (what the blocked layout, the
    arena's in-place slices and passes.split_concats act on)."""
    return (node.op == "Concat" and node.outputs and len(infos[node.outputs[0]].shape) == 4
            and int(node.attrs.get("axis", 0)) % 4 == 1 and all(node.inputs)
            and len(set(node.inputs)) == len(node.inputs))


def _takes_out(fn):
    """Marks a step function that accepts ``out=``: an arena array of its output's shape and dtype
    that the executor owns and reuses across runs (``executor.Plan``)."""
    fn.takes_out = True
    return fn


def _contig(a):
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _build_conv(node, ins, inplace):
    strides, pads, dil, g = conv_core_args(node, ins)
    conv = _core.conv2d_fwd_fused
    fused = _fused_clamp(node)
    k, lo, hi = fused if fused is not None else (None, -np.inf, np.inf)
    steps = [] if fused is not None else _epilogue(node, ins)
    w_const = ins[1].const is not None
    c = _contig
    # im2col's GEMM reads weights packed once here instead of packing them on every call
    packed, algo = None, 0
    if w_const and ins[1].dtype == np.float32 and conv_algorithm(node, ins) == "im2col":
        packed = _core.Im2colWeights(np.ascontiguousarray(ins[1].const, np.float32), g)
        algo = ALGO_CODES["im2col"]

    def run(x, w, b=None, *extra, out=None):
        y = conv(c(x), w if w_const else c(w), None if b is None else c(b), strides, pads, dil, g, algo,
                 None if k is None else c(extra[k - 3]), lo, hi, out=out, packed=packed)
        return _apply_steps(y, steps, extra) if steps else y
    return _takes_out(run)


def nchwc_eligible(node, ins):
    """Whether the blocked-layout kernel runs this conv when its input or output is kept blocked
    (NCHW16c, inference.nchwc): float32 constant weights, an epilogue the kernel fuses, and a
    shape where it is at least as fast as the NCHW algorithms (RESULTS.md section 11): depthwise,
    1x1, strided, fewer than 16 input channels, or one image on a plane of at most 14x14 that the
    graph would not give Winograd. Other stride-1 convs stay NCHW (Winograd)."""
    if node.op != "Conv" or len(ins[0].shape) != 4 or ins[1].const is None or ins[1].dtype != _F32:
        return False
    if len(ins) > 2 and ins[2] is not None and ins[2].const is None:
        return False
    if _fused_clamp(node) is None:
        return False
    k, cg, r, s = ins[1].shape
    g, c = int(node.attrs.get("group", 1)), ins[0].shape[1]
    (sh, sw), _, _ = conv_geometry(node, ins[0].shape, (r, s))
    if g == c == k and cg == 1:
        return True
    if g != 1:
        return False
    if (r == 1 and s == 1) or sh > 1 or sw > 1 or c < 16:
        return True
    out = _infer_conv(node, ins)[0][0]
    return ins[0].shape[0] == 1 and out[2] * out[3] <= 196 and conv_algorithm(node, ins) != "winograd"


def build_conv_nchwc(node, ins, x_blocked, y_blocked):
    """The conv on the blocked layout: x read blocked (5-D) or NCHW, y written blocked or NCHW,
    the residual (if fused) in y's layout. An NCHW input is reordered first for depthwise convs
    and from 16 channels on (the kernel would broadcast from 16 planes at once: 8x512->1000@13
    1x1 14.1 ms from NCHW, 8.6 blocked plus 0.6 to reorder)."""
    from . import nchwc

    strides, pads, dil, g = conv_core_args(node, ins)
    w = np.asarray(ins[1].const, np.float32)
    k, c = w.shape[0], ins[0].shape[1]
    dw = g > 1
    wp = nchwc.pack_weight(w, depthwise=dw)
    bp = nchwc.pack_bias(None if len(ins) < 3 or ins[2] is None else ins[2].const, k)
    kres, lo, hi = _fused_clamp(node)
    conv = _core.conv2d_fwd_nchwc
    reorder = (dw or c >= nchwc.B) and not x_blocked

    def run(x, w_, b=None, *extra, out=None):
        if reorder:
            x = _core.nchw_to_blocked(_contig(x))
        return conv(_contig(x), c, wp, k, bp, strides, pads, dil, y_blocked,
                    None if kres is None else _contig(extra[kres - 3]), lo, hi, out=out)
    return _takes_out(run)


def build_expand_dw(a, a_ins, e_info, node, ins, y_blocked):
    """A 1x1 expansion conv `a` (output info e_info) and the depthwise conv `node` that alone
    reads its output, in one call (inference.executor.fuse_expansions): the step reads a's input."""
    from . import nchwc

    we = np.asarray(a_ins[1].const, np.float32)
    ke, c = we.shape[0], a_ins[0].shape[1]
    pe = nchwc.pack_weight(we)
    be = nchwc.pack_bias(None if len(a_ins) < 3 or a_ins[2] is None else a_ins[2].const, ke)
    _, lo_e, hi_e = _fused_clamp(a)
    strides, pads, dil, _ = conv_core_args(node, [e_info] + ins[1:])
    pd = nchwc.pack_weight(np.asarray(ins[1].const, np.float32), depthwise=True)
    bd = nchwc.pack_bias(None if len(ins) < 3 or ins[2] is None else ins[2].const, ke)
    kres, lo, hi = _fused_clamp(node)
    conv = _core.conv2d_fwd_nchwc_expand_dw

    def run(x, w_, b=None, *extra, out=None):
        return conv(_contig(x), c, pe, ke, be, lo_e, hi_e, pd, bd, strides, pads, dil, y_blocked,
                    None if kres is None else _contig(extra[kres - 3]), lo, hi, out=out)
    return _takes_out(run)


#: Pools with a blocked-layout kernel, reading a blocked input (_core.global_avg_pool2d_nchwc).
POOLS_NCHWC = ("GlobalAveragePool",)


def build_pool_nchwc(node, ins, y_blocked):
    """GlobalAveragePool of a blocked input, to a blocked or NCHW output."""
    c = ins[0].shape[1]
    pool = _core.global_avg_pool2d_nchwc
    return _takes_out(lambda x, out=None: pool(x, c, y_blocked, out=out))


def _apply_steps(y, steps, extra):
    """The epilogue steps in place on the conv output y (extra: the node's inputs after the bias)."""
    for fn, k, params in steps:
        if fn is None:
            np.add(y, extra[k - 3], out=y)
        else:
            fn(y, *params)
    return y


def bf16_native(node, ins):
    """Whether the graph runs this conv on a bfloat16 kernel at precision="bfloat16": one applies
    (not depthwise or thin groups, a CPU with AMX or AVX512-BF16), and float32 would not run it
    with Winograd, which is faster than bfloat16 direct on the 3x3 stride-1 layers it gets
    (RESULTS.md section 9). Elsewhere float32 is both faster and more accurate."""
    k, cg, r, s = ins[1].shape
    return (_core.conv2d_bf16_native(k, cg, r, s, int(node.attrs.get("group", 1)))
            and conv_algorithm(node, ins) != "winograd")


def bf16_preferred(node, ins):
    """At precision="bfloat16", a conv the blocked layout gives up for the bfloat16 kernel: a
    dense spatial kernel over 64 or more channels (ResNet's 3x3 layers at batch 1 and strided,
    1.5-2.9x faster than float32). 1x1 and depthwise convs keep the float32 blocked chain, whose
    fused expansion + depthwise step the bfloat16 kernel cannot join."""
    k, cg, r, s = ins[1].shape
    return r * s > 1 and cg >= 64 and int(node.attrs.get("group", 1)) == 1 and bf16_native(node, ins)


def _build_conv_bf16(node, ins, inplace):
    """The conv at precision="bfloat16": weights rounded and packed once, epilogue as above. A
    conv that bf16_native leaves out stays float32."""
    strides, pads, dil, g = conv_core_args(node, ins)
    if not bf16_native(node, ins):
        return _build_conv(node, ins, inplace)
    conv = _core.conv2d_fwd_bf16
    w_const = ins[1].const
    packed = None if w_const is None else _core.Bf16ConvWeights(np.ascontiguousarray(w_const, np.float32), g)
    c = _contig
    fused = _fused_clamp(node)
    k, lo, hi = fused if fused is not None else (None, -np.inf, np.inf)
    steps = [] if fused is not None else _epilogue(node, ins)

    def run(x, w, b=None, *extra, out=None):
        y = conv(c(x), c(w) if packed is None else packed, None if b is None else c(b), strides, pads, dil, g, 0,
                 None if k is None else c(extra[k - 3]), lo, hi, out=out)
        return _apply_steps(y, steps, extra) if steps else y
    return _takes_out(run)


def _build_gemm_bf16(node, ins, inplace):
    """A fully-connected layer (x @ W.T + c, W constant) at precision="bfloat16": the 1x1 conv of
    the (features, batch) transpose of x with W packed once for the bfloat16 kernels; other Gemms as float32."""
    a = node.attrs
    o, i = ins[1].shape if len(ins[1].shape) == 2 else (0, 0)
    has_c = len(ins) > 2 and ins[2] is not None
    linear = (a.get("transB", 0) and not a.get("transA", 0) and a.get("alpha", 1.0) == 1 and ins[1].const is not None
              and (not has_c or (a.get("beta", 1.0) == 1 and ins[2].shape == (o,))))
    if not linear or not _core.conv2d_bf16_native(o, i, 1, 1, 1):
        return _build_gemm(node, ins, inplace)
    packed = _core.Bf16ConvWeights(np.ascontiguousarray(ins[1].const, np.float32).reshape(o, i, 1, 1), 1)
    conv = _core.conv2d_fwd_bf16

    def run(x, w, c=None):
        n = x.shape[0]
        y = conv(np.ascontiguousarray(x.T).reshape(1, i, 1, n), packed, c, (1, 1), (0, 0, 0, 0), (1, 1), 1, 0)
        return np.ascontiguousarray(y.reshape(o, n).T)
    return run


#: Builders that replace OPS' at precision="bfloat16" (inference.CompiledGraph).
BF16_BUILDERS = {"Conv": _build_conv_bf16, "Gemm": _build_gemm_bf16}


def _convt_geometry(node, ins):
    x, w = ins[0].shape, ins[1].shape
    a = node.attrs
    k = w[2:]
    strides = tuple(a.get("strides", (1, 1)))
    dil = tuple(a.get("dilations", (1, 1)))
    opad = tuple(a.get("output_padding", (0, 0)))
    eff = [dil[i] * (k[i] - 1) + 1 for i in range(2)]
    full = [strides[i] * (x[2 + i] - 1) + opad[i] + eff[i] for i in range(2)]
    mode = a.get("auto_pad", "NOTSET")
    out_shape = a.get("output_shape")
    if out_shape is not None or mode in ("SAME_UPPER", "SAME_LOWER"):
        target = list(out_shape)[-2:] if out_shape is not None else [x[2 + i] * strides[i] for i in range(2)]
        pads = []
        for i in range(2):
            total = full[i] - target[i]
            if total < 0:
                raise _err(node, f"output_shape {tuple(target)} is larger than the full transposed output "
                                 f"{tuple(full)}")
            if mode == "SAME_UPPER":  # the spec's rule: the odd pixel at the end for SAME_UPPER only
                pads.append((total // 2, total - total // 2))
            else:
                pads.append((total - total // 2, total // 2))
        pads = (pads[0][0], pads[0][1], pads[1][0], pads[1][1])
    elif mode == "VALID":
        pads = (0, 0, 0, 0)
    else:
        p = tuple(a.get("pads", (0, 0, 0, 0)))
        pads = (p[0], p[2], p[1], p[3])
    oh, ow = full[0] - pads[0] - pads[1], full[1] - pads[2] - pads[3]
    return strides, dil, pads, (oh, ow)


def _infer_convt(node, ins):
    _need_4d(node, ins)
    x, w = ins[0].shape, ins[1].shape
    g = node.attrs.get("group", 1)
    if len(w) != 4 or w[0] != x[1]:
        raise _err(node, f"weight {w} must be (C_in={x[1]}, C_out/group, kH, kW)")
    strides, dil, pads, (oh, ow) = _convt_geometry(node, ins)
    if oh < 1 or ow < 1:
        raise _err(node, f"the output would be {oh}x{ow} for input {x}, weight {w}, pads {pads}")
    out = (x[0], w[1] * g, oh, ow)
    # pyconv computes it as the input gradient of the conv from `out` to `x`: that conv must fit.
    ch = (oh + pads[0] + pads[1] - dil[0] * (w[2] - 1) - 1) // strides[0] + 1
    cw = (ow + pads[2] + pads[3] - dil[1] * (w[3] - 1) - 1) // strides[1] + 1
    if (ch, cw) != tuple(x[2:]):
        raise _err(node, f"output_padding {node.attrs.get('output_padding')} must be smaller than the stride "
                         f"{strides} (input {x}, output {out})")
    if len(ins) > 2 and ins[2] is not None and ins[2].shape != (out[1],):
        raise _err(node, f"bias must have shape ({out[1]},), got {ins[2].shape}")
    return [(out, _F32)]


def _build_convt(node, ins, inplace):
    strides, dil, pads, _ = _convt_geometry(node, ins)
    g = int(node.attrs.get("group", 1))
    (out, _), = _infer_convt(node, ins)
    grad = _core.conv2d_bwd_data

    def run(x, w, b=None):
        y = grad(np.ascontiguousarray(x), w, out, strides, pads, dil, g, 0, 0)
        if b is not None:
            y += b.reshape(-1, 1, 1)
        return y
    return run


# --------------------------------------------------------------------------- pooling


def pool_geometry(node, x_shape):
    """(kernel, strides, dilations, pads (t, b, l, r), output (oh, ow)) with ONNX's rules."""
    a = node.attrs
    k = tuple(a["kernel_shape"])
    strides, dil, pads = conv_geometry(node, x_shape, k)
    ceil = bool(a.get("ceil_mode", 0))
    out = []
    for i in range(2):
        size, p0, p1 = x_shape[2 + i], pads[2 * i], pads[2 * i + 1]
        eff = dil[i] * (k[i] - 1) + 1
        if a.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-size // strides[i])
        else:
            span = size + p0 + p1 - eff
            o = (-(-span // strides[i]) if ceil else span // strides[i]) + 1
            if ceil and (o - 1) * strides[i] >= size + p0:  # a last window starting in the end padding
                o -= 1
        out.append(o)
    return k, strides, dil, pads, tuple(out)


def _infer_pool(node, ins):
    _need_4d(node, ins)
    if node.outputs[1:] and any(node.outputs[1:]):
        raise _err(node, "the Indices output is not supported")
    x = ins[0].shape
    k, s, d, pads, (oh, ow) = pool_geometry(node, x)
    if oh < 1 or ow < 1:
        raise _err(node, f"kernel {k} (strides {s}, dilations {d}, pads {pads}) gives an empty output for input {x}")
    return [((x[0], x[1], oh, ow), ins[0].dtype)]


def _windows(xp, k, s, d, out):
    """(N, C, OH, OW, kH, kW) strided view of the padded input's pooling windows."""
    eff = [d[i] * (k[i] - 1) + 1 for i in range(2)]
    v = np.lib.stride_tricks.sliding_window_view(xp, eff, axis=(2, 3))
    return v[:, :, ::s[0], ::s[1], ::d[0], ::d[1]][:, :, :out[0], :out[1]]


def _pad_for_pool(x, pads, k, s, d, out, value):
    """x padded with `value`: the explicit pads, then up to the last window's end (ceil mode)."""
    need = [(out[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 for i in range(2)]
    pt, pl = pads[0], pads[2]
    pb = max(0, need[0] - x.shape[2] - pt)
    pr = max(0, need[1] - x.shape[3] - pl)
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def _torch_pool_ok(node, x_shape, k, s, d, pads, out, avg):
    """pyconv's (torch's) pooling computes the same thing: symmetric pads of at most half the kernel."""
    pt, pb, pl, pr = pads
    if pt != pb or pl != pr or 2 * pt > k[0] or 2 * pl > k[1] or (avg and d != (1, 1)):
        return False
    ceil = bool(node.attrs.get("ceil_mode", 0))
    tout = tuple(_core.pool2d_out_size(x_shape[2 + i], k[i], s[i], (pt, pl)[i], d[i], ceil) for i in range(2))
    return tout == tuple(out)


def _build_maxpool(node, ins, inplace):
    x_shape = ins[0].shape
    k, s, d, pads, out = pool_geometry(node, x_shape)
    ceil = bool(node.attrs.get("ceil_mode", 0))
    if _torch_pool_ok(node, x_shape, k, s, d, pads, out, False):
        p = (pads[0], pads[2])
        return lambda x: F.max_pool2d(x, k, s, p, d, ceil)
    return lambda x: _windows(_pad_for_pool(x, pads, k, s, d, out, -np.inf), k, s, d, out).max(axis=(4, 5))


def _build_avgpool(node, ins, inplace):
    x_shape = ins[0].shape
    k, s, d, pads, out = pool_geometry(node, x_shape)
    ceil = bool(node.attrs.get("ceil_mode", 0))
    cip = bool(node.attrs.get("count_include_pad", 0))
    if _torch_pool_ok(node, x_shape, k, s, d, pads, out, True):
        p = (pads[0], pads[2])
        return lambda x: F.avg_pool2d(x, k, s, p, ceil, cip)
    # Divisor per output pixel: the window's input pixels, plus its explicit padding if counted
    # (never the part past the padding that ceil mode adds).
    h, w = x_shape[2:]
    ones = np.ones((1, 1, h, w), np.float32)
    if cip:
        ones = np.pad(ones, ((0, 0), (0, 0), pads[:2], pads[2:]), constant_values=1)
        mask = _pad_for_pool(ones, (0, 0, 0, 0), k, s, d, out, 0)
    else:
        mask = _pad_for_pool(ones, pads, k, s, d, out, 0)
    div = _windows(mask, k, s, d, out).sum(axis=(4, 5))
    inv = (1 / np.maximum(div, 1)).astype(np.float32)

    def run(x):
        y = _windows(_pad_for_pool(x, pads, k, s, d, out, 0), k, s, d, out).sum(axis=(4, 5), dtype=np.float32)
        y *= inv
        return y
    return run


def _infer_global(node, ins):
    x = ins[0].shape
    if len(x) < 3:
        raise _err(node, f"input must have spatial axes (N, C, ...), got shape {x}")
    return [(x[:2] + (1,) * (len(x) - 2), ins[0].dtype)]


def _build_gap(node, ins, inplace):
    axes = tuple(range(2, len(ins[0].shape)))
    if len(axes) == 2 and ins[0].dtype == _F32:  # C++, 6x numpy's mean (8x1000x13x13: 0.07 vs 0.44 ms)
        c = ins[0].shape[1]
        return lambda x: _core.global_avg_pool2d_nchwc(_contig(x), c, False)
    return lambda x: x.mean(axis=axes, keepdims=True, dtype=np.float32)


def _build_gmp(node, ins, inplace):
    axes = tuple(range(2, len(ins[0].shape)))
    return lambda x: x.max(axis=axes, keepdims=True)


# --------------------------------------------------------------------------- normalisation


def _build_lrn(node, ins, inplace):
    a = node.attrs
    size = int(a["size"])
    alpha, beta, bias = float(a.get("alpha", 1e-4)), float(a.get("beta", 0.75)), float(a.get("bias", 1.0))
    before, after = (size - 1) // 2, -(-(size - 1) // 2)

    def run(x):
        c = x.shape[1]
        widths = [(0, 0)] * x.ndim
        widths[1] = (before, after)
        sq = np.pad(np.square(x, dtype=np.float32), widths)
        s = sq[:, 0:c].copy()
        for o in range(1, size):  # a plain sum over the window (a cumsum difference loses digits)
            s += sq[:, o:o + c]
        s *= alpha / size
        s += bias
        return x / s ** beta
    return run


def _channel_shape(ins):
    return (1, -1) + (1,) * (len(ins[0].shape) - 2)


def _infer_bn(node, ins):
    x = ins[0].shape
    if len(x) < 2:
        raise _err(node, f"input must be (N, C, ...), got shape {x}")
    for k, what in enumerate(("scale", "B", "input_mean", "input_var")[: len(ins) - 1], 1):
        if ins[k].shape != (x[1],):
            raise _err(node, f"{what} must have shape ({x[1]},) (channels of input {x}), got {ins[k].shape}")
    return [(x, ins[0].dtype)]


def bn_scale_shift(node, ins):
    scale, b, mean, var = (np.asarray(_const(node, ins, k, n), np.float64)
                           for k, n in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
    a = scale / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
    return a.astype(np.float32), (b - mean * a).astype(np.float32)


def _build_bn(node, ins, inplace):
    a, b = bn_scale_shift(node, ins)
    shp = _channel_shape(ins)
    a, b = a.reshape(shp), b.reshape(shp)

    def run(x, *_):
        y = np.multiply(x, a, out=x) if inplace else x * a
        y += b
        return y
    return run


def _build_instnorm(node, ins, inplace):
    eps = np.float32(node.attrs.get("epsilon", 1e-5))
    shp = _channel_shape(ins)
    axes = tuple(range(2, len(ins[0].shape)))

    def run(x, scale, b):
        m = x.mean(axis=axes, keepdims=True)
        v = x.var(axis=axes, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * scale.reshape(shp) + b.reshape(shp)
    return run


# --------------------------------------------------------------------------- elementwise


def _infer_broadcast(node, ins):
    try:
        shape = np.broadcast_shapes(*(i.shape for i in ins))
    except ValueError:
        raise _err(node, "the input shapes " + ", ".join(str(i.shape) for i in ins) + " do not broadcast") from None
    dtypes = {i.dtype for i in ins}
    if len(dtypes) > 1:
        raise _err(node, "the inputs have different dtypes: " + ", ".join(str(d) for d in sorted(dtypes, key=str)))
    return [(shape, ins[0].dtype)]


def _div(a, b):
    if a.dtype.kind in "iu":
        return np.trunc(a / b).astype(a.dtype)
    return np.divide(a, b)


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _div, "Pow": np.power,
           "Max": np.maximum, "Min": np.minimum, "Sum": np.add}


def _build_binary(node, ins, inplace):
    f = _BINARY[node.op]
    (out, _), = _infer_broadcast(node, ins)
    if len(ins) == 1:
        return lambda x: x
    if node.op == "Pow":
        return lambda a, b: np.power(a, b).astype(a.dtype, copy=False)
    if len(ins) == 2:
        if inplace and ins[0].shape == out and f is not _div:
            return lambda a, b: f(a, b, out=a)
        return f

    def run(*xs):  # variadic Sum / Max / Min
        y = f(xs[0], xs[1])
        for x in xs[2:]:
            y = f(y, x)
        return y
    return run


def _build_prelu(node, ins, inplace):
    return lambda x, slope: np.where(x < 0, x * slope, x).astype(x.dtype, copy=False)


def _softmax_axis(node, ins):
    return _axis(node, int(node.attrs.get("axis", -1)), len(ins[0].shape))


def _build_softmax(node, ins, inplace):
    axis = _softmax_axis(node, ins)
    log = node.op == "LogSoftmax"

    def run(x):
        y = x - x.max(axis=axis, keepdims=True)
        if log:
            return y - np.log(np.exp(y).sum(axis=axis, keepdims=True))
        np.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        return y
    return run


def _infer_cast(node, ins):
    return [(ins[0].shape, np.dtype(node.attrs["to"]))]


def _build_cast(node, ins, inplace):
    to = np.dtype(node.attrs["to"])
    return lambda x: x.astype(to)


# --------------------------------------------------------------------------- matrix products


def _infer_gemm(node, ins):
    a, b = ins[0].shape, ins[1].shape
    if len(a) != 2 or len(b) != 2:
        raise _err(node, f"A and B must be 2-D, got shapes {a} and {b}")
    ta, tb = node.attrs.get("transA", 0), node.attrs.get("transB", 0)
    m, ka = (a[1], a[0]) if ta else a
    kb, n = (b[1], b[0]) if tb else b
    if ka != kb:
        raise _err(node, f"A {a} (transA={ta}) and B {b} (transB={tb}) do not multiply: {ka} != {kb}")
    if len(ins) > 2 and ins[2] is not None:
        try:
            np.broadcast_shapes(ins[2].shape, (m, n))
        except ValueError:
            raise _err(node, f"C {ins[2].shape} does not broadcast to the output ({m}, {n})") from None
    return [((m, n), _F32)]


def _build_gemm(node, ins, inplace):
    a = node.attrs
    alpha, beta = np.float32(a.get("alpha", 1.0)), np.float32(a.get("beta", 1.0))
    ta, tb = a.get("transA", 0), a.get("transB", 0)
    has_c = len(ins) > 2 and ins[2] is not None
    (out, _), = _infer_gemm(node, ins)
    if tb and not ta and alpha == 1 and (not has_c or (beta == 1 and ins[2].shape == (out[1],))):
        lin = _core.linear_fwd
        return lambda x, w, c=None: lin(np.ascontiguousarray(x), np.ascontiguousarray(w), c)

    def run(x, w, c=None):
        y = (x.T if ta else x) @ (w.T if tb else w)
        if alpha != 1:
            y *= alpha
        if c is not None:
            y += c * beta if beta != 1 else c
        return y
    return run


def _infer_matmul(node, ins):
    a, b = ins[0].shape, ins[1].shape
    try:
        shape = _matmul_shape(a, b)
    except ValueError:
        raise _err(node, f"the shapes {a} and {b} do not multiply") from None
    return [(shape, ins[0].dtype)]


def _matmul_shape(a, b):
    """numpy's matmul rule: 1-D operands gain (and then lose) an axis, leading axes broadcast."""
    if not a or not b:
        raise ValueError
    a2, b2 = (1,) + a if len(a) == 1 else a, b + (1,) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ValueError
    shape = tuple(np.broadcast_shapes(a2[:-2], b2[:-2])) + (a2[-2], b2[-1])
    if len(a) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(b) == 1:
        shape = shape[:-1]
    return shape


def _build_matmul(node, ins, inplace):
    return np.matmul


OPS = {
    "Conv": (_infer_conv, _build_conv),
    "ConvTranspose": (_infer_convt, _build_convt),
    "MaxPool": (_infer_pool, _build_maxpool),
    "AveragePool": (_infer_pool, _build_avgpool),
    "GlobalAveragePool": (_infer_global, _build_gap),
    "GlobalMaxPool": (_infer_global, _build_gmp),
    "LRN": (_infer_same, _build_lrn),
    "BatchNormalization": (_infer_bn, _build_bn),
    "InstanceNormalization": (_infer_bn, _build_instnorm),
    "PRelu": (lambda n, i: [(i[0].shape, i[0].dtype)], _build_prelu),
    "Softmax": (_infer_same, _build_softmax),
    "LogSoftmax": (_infer_same, _build_softmax),
    "Cast": (_infer_cast, _build_cast),
    "Gemm": (_infer_gemm, _build_gemm),
    "MatMul": (_infer_matmul, _build_matmul),
}
OPS.update(SHAPE_OPS)
for _op in ACTIVATIONS:
    OPS[_op] = (_infer_same, _build_act)
for _op in _BINARY:
    OPS[_op] = (_infer_broadcast, _build_binary)

#: Ops whose output is a view of input 0 (the buffer plan keeps that buffer alive with them).
VIEWS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Slice", "Split"}
#: Ops whose output is always a new array (or the executor's out=), never a view of an input:
#: the arena's liveness (executor.Plan) treats every other op's output as possibly one.
FRESH = {"Conv", "ConvTranspose", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Gemm",
         "MatMul"}
#: Ops that may write their output into input 0's buffer when that buffer dies at the node.
INPLACE = set(ACTIVATIONS) | {"Add", "Sub", "Mul", "BatchNormalization"}
