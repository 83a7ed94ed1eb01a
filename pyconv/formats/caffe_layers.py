"""One function per Caffe layer type pyconv builds: the layer's parameters (checked, with
Caffe's defaults) become a pyconv layer entry with torch's names. Each returns ``(entry or
None, allowed numbers of bottoms)`` and reports what it cannot honour to ``problems``."""
from ..nn.fillers import FILLERS
from .caffe_schema import SCHEMA, Params
from .prototxt import Message

__all__ = ["HANDLERS", "IGNORED", "check_common", "data_input_shape"]

IGNORED = ("SoftmaxWithLoss", "Accuracy", "Silence")
_PARAM_OF = {"Convolution": "convolution_param", "Pooling": "pooling_param", "InnerProduct": "inner_product_param",
             "ReLU": "relu_param", "Sigmoid": "sigmoid_param", "TanH": "tanh_param", "Dropout": "dropout_param",
             "LRN": "lrn_param", "BatchNorm": "batch_norm_param", "Scale": "scale_param",
             "Softmax": "softmax_param", "Concat": "concat_param", "Eltwise": "eltwise_param",
             "Flatten": "flatten_param"}


def _params(layer, problems):
    """The layer's own parameter message (an empty one when absent), checked against its schema."""
    field = _PARAM_OF[layer.type]
    p = layer.param(field)
    if p is None:
        kind = SCHEMA[layer.p.schema_name].get(field, "M")
        p = Params(Message(layer.line), kind[2:] if kind.startswith("M:") else "EngineOnly", problems, "")
    return p


def _unsupported(layer, p, problems, why=None):
    """Every field of the layer's parameters that its handler did not read."""
    field = _PARAM_OF[layer.type]
    for name in p.unread():
        problems.error(p.line(name), f"{layer.label}: {field}.{name} is not supported"
                                     + (f" ({why[name]})" if why and name in why else ""))


def _pair(layer, p, problems, field, hw, default):
    """(h, w) from Caffe's ``field`` (one value, or for convolutions 1 or 2) or ``hw``_h and
    ``hw``_w (both required, except a convolution's pad_h / pad_w, which default to 0)."""
    conv = p.schema_name == "ConvolutionParameter"
    values = p.list(field) if conv else ([p.get(field)] if p.has(field) else [])
    hn, wn = f"{hw}_h", f"{hw}_w"
    has_h, has_w = p.has(hn), p.has(wn)
    h, w = p.get(hn), p.get(wn)
    param = _PARAM_OF[layer.type]
    if values and (has_h or has_w):
        problems.error(p.line(field), f"{layer.label}: {param}.{field} OR {hn} and {wn}; not both")
        return None
    if values:
        if len(values) > 2:
            problems.error(p.line(field), f"{layer.label}: {param}.{field} has {len(values)} values: pyconv works on "
                                          "2-D images (N-D convolution is not supported)")
            return None
        return (values[0], values[-1])
    if has_h or has_w:
        if has_h != has_w and not (conv and hw == "pad"):
            problems.error(p.line(hn if has_h else wn), f"{layer.label}: {param}: give both {hn} and {wn}")
            return None
        return (h if has_h else default, w if has_w else default)
    return (default, default)


def _kernel(layer, p, problems):
    k = _pair(layer, p, problems, "kernel_size", "kernel", None)
    if k is not None and k[0] is None:
        problems.error(layer.line, f"{layer.label}: {_PARAM_OF[layer.type]}.kernel_size (or kernel_h and kernel_w) "
                                   "is required")
        return None
    return k


def _filler(layer, p, field, problems):
    """A pyconv filler dict from a FillerParameter (or None when absent / unsupported)."""
    f = p.get(field)
    if f is None:
        return None
    kind = f.get("type", "constant")
    if kind not in FILLERS or kind == "lecun":
        problems.error(f.line(), f"{layer.label}: {field} type {kind!r} is not supported (supported: constant, "
                                 "uniform, gaussian, xavier, msra)")
        return None
    if f.get("sparse", -1) != -1:
        problems.error(f.line("sparse"), f"{layer.label}: {field}.sparse (sparse gaussian) is not supported")
    out = {"type": kind}
    for key in FILLERS[kind]:
        if f.has(key):
            out[key] = f.get(key)
    for key in ("value", "min", "max", "mean", "std", "variance_norm"):
        f.get(key)  # given but meaningless for this type: Caffe ignores them too
    return out


def _compact(pair):
    """3 for (3, 3), [3, 5] otherwise: how the layer entry (and its repr) writes a size."""
    return pair[0] if pair[0] == pair[1] else list(pair)


def _positive(layer, problems, line, name, values):
    if values is not None and min(values) < 1:
        problems.error(line, f"{layer.label}: {name} must be > 0, got {list(values)}")
        return False
    return values is not None


def convolution(layer, problems):
    p = _params(layer, problems)
    n = p.get("num_output")
    if n is None:
        problems.error(layer.line, f"{layer.label}: convolution_param.num_output is required")
    kernel = _kernel(layer, p, problems)
    stride = _pair(layer, p, problems, "stride", "stride", 1)
    pad = _pair(layer, p, problems, "pad", "pad", 0)
    dilation = p.list("dilation")
    if len(dilation) > 2:
        problems.error(p.line("dilation"), f"{layer.label}: convolution_param.dilation has {len(dilation)} values")
        dilation = []
    dilation = (dilation[0], dilation[-1]) if dilation else (1, 1)
    group, bias = p.get("group", 1), p.get("bias_term", True)
    weight, bias_init = _filler(layer, p, "weight_filler", problems), _filler(layer, p, "bias_filler", problems)
    p.get("engine"), p.get("force_nd_im2col")
    if p.get("axis", 1) != 1:
        problems.error(p.line("axis"), f"{layer.label}: convolution_param.axis {p.get('axis')} is not supported (the "
                                       "channels are axis 1)")
    _unsupported(layer, p, problems)
    ok = all([n is not None, _positive(layer, problems, p.line("stride"), "stride", stride),
              _positive(layer, problems, layer.line, "kernel size", kernel),
              _positive(layer, problems, p.line("dilation"), "dilation", dilation), pad is not None])
    if not ok:
        return None, (1,)
    entry = {"type": "Conv2d", "out_channels": n, "kernel_size": _compact(kernel), "stride": _compact(stride),
             "padding": _compact(pad), "dilation": _compact(dilation), "groups": group, "bias": bias}
    if weight:
        entry["weight_init"] = weight
    else:
        problems.group("layers without a weight_filler ({}) start from torch's default initialisation (Caffe's "
                       "default filler, constant 0, would not train)", layer.name)
    if bias and bias_init:
        entry["bias_init"] = bias_init
    elif bias:
        entry["bias_init"] = {"type": "constant"}  # Caffe's default bias filler
    return entry, (1,)


def pooling(layer, problems):
    p = _params(layer, problems)
    method = p.get("pool", "MAX")
    global_pool = p.get("global_pooling", False)
    p.get("engine")
    rounding = p.get("round_mode", "CEIL")
    stride, pad = _pair(layer, p, problems, "stride", "stride", 1), _pair(layer, p, problems, "pad", "pad", 0)
    if method == "STOCHASTIC":
        problems.error(p.line("pool"), f"{layer.label}: pooling_param.pool STOCHASTIC is not supported (MAX, AVE)")
        method = None
    if global_pool:
        if p.has("kernel_size") or p.has("kernel_h") or p.has("kernel_w"):
            problems.error(p.line("global_pooling"), f"{layer.label}: with global_pooling: true the kernel size "
                                                     "cannot be given")
        if stride not in ((1, 1), None) or pad not in ((0, 0), None):
            problems.error(p.line("global_pooling"), f"{layer.label}: with global_pooling: true only pad 0 and stride "
                                                     "1 are allowed")
        p.get("kernel_size"), p.get("kernel_h"), p.get("kernel_w")
        _unsupported(layer, p, problems)
        if method is None:
            return None, (1,)
        return {"type": "AdaptiveMaxPool2d" if method == "MAX" else "AdaptiveAvgPool2d", "output_size": 1}, (1,)
    kernel = _kernel(layer, p, problems)
    _unsupported(layer, p, problems)
    ok = all([method is not None, _positive(layer, problems, layer.line, "kernel size", kernel),
              _positive(layer, problems, p.line("stride"), "stride", stride), pad is not None])
    if not ok:
        return None, (1,)
    for axis, (k, s, q) in enumerate(zip(kernel, stride, pad)):
        if q >= k:
            problems.error(p.line("pad"), f"{layer.label}: pad {q} must be smaller than the kernel size {k} (Caffe's "
                                          "check)")
            return None, (1,)
        if 2 * q > k:
            problems.error(p.line("pad"), f"{layer.label}: pad {q} with kernel size {k}: pyconv's pooling (torch's) "
                                          "takes at most half the kernel as padding")
            return None, (1,)
        if rounding == "CEIL" and q == 0 and s > k:
            problems.note(f'{layer.label}: kernel size {k} < stride {s} without pad: where Caffe\'s CEIL rounding '
                          "would add a last window lying wholly past the input (Caffe fills it with -FLT_MAX or a "
                          "meaningless average), pyconv leaves it out (torch's ceil_mode)")
    entry = {"type": "MaxPool2d" if method == "MAX" else "AvgPool2d", "kernel_size": _compact(kernel),
             "stride": _compact(stride), "padding": _compact(pad), "ceil_mode": rounding == "CEIL"}
    if method == "AVE":
        entry["count_include_pad"] = True  # Caffe divides by the window clipped to the padded input, as torch
    return entry, (1,)


def inner_product(layer, problems):
    p = _params(layer, problems)
    n = p.get("num_output")
    if n is None:
        problems.error(layer.line, f"{layer.label}: inner_product_param.num_output is required")
    bias = p.get("bias_term", True)
    weight, bias_init = _filler(layer, p, "weight_filler", problems), _filler(layer, p, "bias_filler", problems)
    p.get("transpose")  # how Caffe stores the weights; the layer computes the same
    if p.get("axis", 1) != 1:
        problems.error(p.line("axis"), f"{layer.label}: inner_product_param.axis {p.get('axis')} is not supported "
                                       "(pyconv flattens everything after the batch axis, Caffe's axis 1)")
    _unsupported(layer, p, problems)
    if n is None:
        return None, (1,)
    entry = {"type": "Linear", "out_features": n, "bias": bias}
    if weight:
        entry["weight_init"] = weight
    else:
        problems.group("layers without a weight_filler ({}) start from torch's default initialisation (Caffe's "
                       "default filler, constant 0, would not train)", layer.name)
    if bias:
        entry["bias_init"] = bias_init or {"type": "constant"}
    return entry, (1,)


def relu(layer, problems):
    p = _params(layer, problems)
    slope = p.get("negative_slope", 0.0)
    p.get("engine")
    _unsupported(layer, p, problems)
    return ({"type": "ReLU"} if slope == 0 else {"type": "LeakyReLU", "negative_slope": slope}), (1,)


def _simple(kind):
    def handler(layer, problems):
        p = _params(layer, problems)
        p.get("engine")
        _unsupported(layer, p, problems)
        return {"type": kind}, (1,)
    return handler


def dropout(layer, problems):
    p = _params(layer, problems)
    ratio = p.get("dropout_ratio", 0.5)
    _unsupported(layer, p, problems)
    return {"type": "Dropout", "p": ratio}, (1,)


def lrn(layer, problems):
    p = _params(layer, problems)
    size, alpha, beta, k = p.get("local_size", 5), p.get("alpha", 1.0), p.get("beta", 0.75), p.get("k", 1.0)
    region = p.get("norm_region", "ACROSS_CHANNELS")
    p.get("engine")
    _unsupported(layer, p, problems)
    if size % 2 == 0:
        problems.error(p.line("local_size"), f"{layer.label}: lrn_param.local_size {size}: Caffe's LRN supports odd "
                                             "sizes only")
        return None, (1,)
    entry = {"type": "LocalResponseNorm", "size": size, "alpha": alpha, "beta": beta, "k": k}
    if region == "WITHIN_CHANNEL":
        if p.has("k") and k != 1:
            problems.note(f"{layer.label}: Caffe's WITHIN_CHANNEL LRN ignores k ({k}) and uses 1; so does pyconv")
        entry.update(k=1.0, region="within_channel")
    return entry, (1,)


def batch_norm(layer, problems):
    p = _params(layer, problems)
    entry = {"type": "CaffeBatchNorm2d", "eps": p.get("eps", 1e-5),
             "moving_average_fraction": p.get("moving_average_fraction", 0.999)}
    if p.has("use_global_stats"):
        entry["use_global_stats"] = p.get("use_global_stats")
        if entry["use_global_stats"]:
            problems.note(f"{layer.label}: use_global_stats: true keeps the stored statistics (mean 0, variance 1 in "
                          "a new net) in training too, as Caffe does")
    _unsupported(layer, p, problems)
    return entry, (1,)


def scale(layer, problems):
    p = _params(layer, problems)
    if len(layer.bottoms) > 1:
        problems.error(layer.line, f"{layer.label}: a Scale with a second bottom (the scale from another blob) is not "
                                   "supported")
        return None, (1, 2)
    bias = p.get("bias_term", False)
    for field, want in (("axis", 1), ("num_axes", 1)):
        if p.get(field, 1) != want:
            problems.error(p.line(field), f"{layer.label}: scale_param.{field} {p.get(field)} is not supported "
                                          "(pyconv scales per channel: axis 1, num_axes 1)")
    weight, bias_init = _filler(layer, p, "filler", problems), _filler(layer, p, "bias_filler", problems)
    _unsupported(layer, p, problems)
    entry = {"type": "Scale", "bias": bias}
    if weight:
        entry["weight_init"] = weight
    if bias and bias_init:
        entry["bias_init"] = bias_init
    return entry, (1,)


def softmax(layer, problems):
    p = _params(layer, problems)
    p.get("engine")
    axis = p.get("axis", 1)
    _unsupported(layer, p, problems)
    return {"type": "Softmax", "dim": axis}, (1,)


def concat(layer, problems):
    p = _params(layer, problems)
    axis = p.get("axis", p.get("concat_dim", 1)) if p.has("axis") else p.get("concat_dim", 1)
    p.get("axis")
    _unsupported(layer, p, problems)
    if axis == 0:
        problems.error(p.line("axis") if p.has("axis") else p.line("concat_dim"),
                       f"{layer.label}: concatenating along axis 0 (the batch) is not supported")
        return None, range(1, 1 << 16)
    return {"type": "Concat", "dim": axis}, range(1, 1 << 16)


def eltwise(layer, problems):
    p = _params(layer, problems)
    op = p.get("operation", "SUM")
    coeffs = p.list("coeff")
    p.get("stable_prod_grad")  # both ways give the same gradient
    _unsupported(layer, p, problems)
    if coeffs and op != "SUM":
        problems.error(p.line("coeff"), f"{layer.label}: eltwise_param.coeff applies to SUM only (Caffe's check)")
        return None, range(2, 1 << 16)
    if coeffs and len(coeffs) != len(layer.bottoms):
        problems.error(p.line("coeff"), f"{layer.label}: {len(coeffs)} coeff for {len(layer.bottoms)} bottoms (one "
                                        "per bottom)")
        return None, range(2, 1 << 16)
    entry = {"type": "Eltwise", "operation": op.lower()}
    if coeffs:
        entry["coeffs"] = coeffs
    return entry, range(2, 1 << 16)


def flatten(layer, problems):
    p = _params(layer, problems)
    entry = {"type": "Flatten", "start_dim": p.get("axis", 1), "end_dim": p.get("end_axis", -1)}
    _unsupported(layer, p, problems)
    return entry, (1,)


HANDLERS = {"Convolution": convolution, "Pooling": pooling, "InnerProduct": inner_product, "ReLU": relu,
            "Sigmoid": _simple("Sigmoid"), "TanH": _simple("Tanh"), "Dropout": dropout, "LRN": lrn,
            "BatchNorm": batch_norm, "Scale": scale, "Softmax": softmax, "Concat": concat, "Eltwise": eltwise,
            "Flatten": flatten}


def check_common(layer, problems):
    """The fields every layer has: learning-rate multipliers (noted, not applied), weight sharing,
    stored weights, propagate_down and loss weights (not supported)."""
    p = layer.p
    if p.list("blobs"):
        problems.error(p.line("blobs"), f"{layer.label}: holds weights (blobs); pyconv reads no weights from Caffe "
                                        "files and trains from scratch")
    if layer.v1:
        if p.list("param"):
            problems.error(p.line("param"), f"{layer.label}: named parameters (param) share weights between layers, "
                                            "which pyconv does not do")
        p.list("blob_share_mode")
        if p.list("blobs_lr") or p.list("weight_decay"):
            problems.group("blobs_lr / weight_decay multipliers ({}) are not applied: pyconv's optimisers use one "
                           "learning rate and weight decay for every parameter", layer.name)
    else:
        specs = p.list("param")
        for spec in specs:
            if spec.get("name"):
                problems.error(spec.line("name"), f"{layer.label}: param {{ name: {spec.get('name')!r} }} shares "
                                                  "weights between layers, which pyconv does not do")
            spec.get("share_mode")
            lr, decay = spec.get("lr_mult"), spec.get("decay_mult")
            if layer.type == "BatchNorm":
                if lr not in (None, 0):
                    problems.error(spec.line("lr_mult"), f"{layer.label}: a BatchNorm's statistics are not parameters "
                                                         "(Caffe requires lr_mult: 0)")
            elif lr is not None or decay is not None:
                problems.group("lr_mult / decay_mult ({}) are not applied: pyconv's optimisers use one learning rate "
                               "and weight decay for every parameter", layer.name)
    if any(v is False for v in p.list("propagate_down")):
        problems.error(p.line("propagate_down"), f"{layer.label}: propagate_down: false (stopping the gradient) is not "
                                                 "supported")
    if p.list("loss_weight") and layer.type not in ("SoftmaxWithLoss",):
        problems.error(p.line("loss_weight"), f"{layer.label}: loss_weight on a {layer.type} layer is not supported "
                                              "(pyconv's only loss is the softmax cross-entropy of the net's output)")


def data_input_shape(layer):
    """The (C, H, W) a data layer's parameters fix, when they do (MemoryData; ImageData with a
    size; DummyData), else None."""
    p = layer.p
    if layer.type == "MemoryData" and p.get("memory_data_param") is not None:
        m = p.get("memory_data_param")
        dims = (m.get("channels"), m.get("height"), m.get("width"))
        return tuple(dims) if all(dims) else None
    if layer.type == "ImageData" and p.get("image_data_param") is not None:
        m = p.get("image_data_param")
        c = 3 if m.get("is_color", True) else 1
        crop = m.get("crop_size", 0)
        if crop:
            return (c, crop, crop)
        if m.get("new_height") and m.get("new_width"):
            return (c, m.get("new_height"), m.get("new_width"))
    if layer.type == "DummyData" and p.get("dummy_data_param") is not None:
        shapes = p.get("dummy_data_param").list("shape")
        if shapes and len(shapes[0].list("dim")) == 4:
            return tuple(shapes[0].list("dim")[1:])
    return None
