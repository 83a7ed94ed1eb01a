"""``export()``: a pyconv.nn model -> an ONNX file (every pyconv.nn layer type).

The model is run once on zeros of ``input_shape`` (in eval mode) so that each layer's input and
output shapes are known; each layer becomes one or a few ONNX nodes. The batch dimension is
left free (``N``): reshapes keep it with ONNX's 0 ("copy this dimension").
"""
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import nn
from ..tensor import Tensor, no_grad

__all__ = ["export"]

DEFAULT_OPSET = 17


def _np(v):
    return np.asarray(v.data if isinstance(v, Tensor) else v)


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class _Builder:
    def __init__(self, opset):
        self.opset, self.nodes, self.inits, self.count = opset, [], [], {}

    def name(self, hint):
        k = self.count.get(hint, 0)
        self.count[hint] = k + 1
        return hint if k == 0 else f"{hint}_{k}"

    def const(self, value, hint):
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, hint, n_out=1, **attrs):
        name = self.name(hint)
        outs = [name] if n_out == 1 else [f"{name}:{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def reduce(self, op, x, axes, hint, keepdims):
        if self.opset >= 18:
            return self.node(op, [x, self.const(np.asarray(axes, np.int64), f"{hint}.axes")], hint, keepdims=keepdims)
        return self.node(op, [x], hint, axes=list(axes), keepdims=keepdims)

    def slice(self, x, starts, ends, axes, hint):
        if self.opset >= 10:
            ins = [x] + [self.const(np.asarray(v, np.int64), f"{hint}.{k}") for k, v in
                         (("starts", starts), ("ends", ends), ("axes", axes))]
            return self.node("Slice", ins, hint)
        return self.node("Slice", [x], hint, starts=list(starts), ends=list(ends), axes=list(axes))

    def reshape(self, x, shape, hint):
        return self.node("Reshape", [x, self.const(np.asarray(shape, np.int64), f"{hint}.shape")], hint)


def _where(hint, m):
    return f"layer {hint!r} ({type(m).__name__})"


class ExportError(ValueError):
    """A pyconv.nn model (or one of its layers) that ONNX cannot express at this opset."""


def _conv(b, m, x, xv, hint):
    kh, kw = m.kernel_size
    dil = _pair(m.dilation)
    if isinstance(m.padding, str):
        if m.padding == "valid":
            pads = (0, 0, 0, 0)
        else:
            th, tw = dil[0] * (kh - 1), dil[1] * (kw - 1)
            pads = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
    else:
        ph, pw = _pair(m.padding)
        pads = (ph, pw, ph, pw)
    if m.padding_mode != "zeros" and any(pads):
        mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[m.padding_mode]
        if mode == "wrap" and b.opset < 19:
            raise ExportError(f"{_where(hint, m)}: padding_mode='circular' needs opset >= 19 (Pad mode 'wrap'), got opset "
                              f"{b.opset}")
        full = [0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]
        if b.opset >= 11:
            x = b.node("Pad", [x, b.const(np.asarray(full, np.int64), f"{hint}.pads")], f"{hint}.pad", mode=mode)
        else:
            x = b.node("Pad", [x], f"{hint}.pad", mode=mode, pads=full)
        pads = (0, 0, 0, 0)
    ins = [x, b.const(_np(m.weight).astype(np.float32), f"{hint}.weight")]
    if m.bias is not None:
        ins.append(b.const(_np(m.bias).astype(np.float32), f"{hint}.bias"))
    return b.node("Conv", ins, hint, kernel_shape=[kh, kw], strides=list(_pair(m.stride)), pads=list(pads),
                  dilations=list(dil), group=m.groups)


def _pool_args(b, m, hint, kernel, stride, padding, dilation=(1, 1), ceil=False):
    ph, pw = _pair(padding)
    attrs = dict(kernel_shape=list(_pair(kernel)), strides=list(_pair(stride if stride is not None else kernel)),
                 pads=[ph, pw, ph, pw])
    if ceil:
        if b.opset < 10:
            raise ExportError(f"{_where(hint, m)}: ceil_mode needs opset >= 10")
        attrs["ceil_mode"] = 1
    if tuple(_pair(dilation)) != (1, 1):
        if b.opset < 10:
            raise ExportError(f"{_where(hint, m)}: pooling dilation needs opset >= 10")
        attrs["dilations"] = list(_pair(dilation))
    return attrs


def _adaptive(b, m, x, xv, hint, op):
    out = m.output_size
    h, w = xv.shape[-2:]
    oh, ow = (out if isinstance(out, (tuple, list)) else (out, out))
    oh, ow = oh or h, ow or w
    if (oh, ow) == (1, 1):
        return b.node("Global" + op, [x], hint)
    if h % oh or w % ow:  # windows of varying size: one reduction per output cell
        reduce = "ReduceMean" if op == "AveragePool" else "ReduceMax"
        rows = []
        for i in range(oh):
            cells = []
            for j in range(ow):
                box = [(i * h) // oh, (j * w) // ow], [-(-(i + 1) * h // oh), -(-(j + 1) * w // ow)]
                cell = b.slice(x, box[0], box[1], [2, 3], f"{hint}.cell{i}_{j}")
                cells.append(b.reduce(reduce, cell, [2, 3], f"{hint}.{reduce.lower()}{i}_{j}", keepdims=1))
            rows.append(b.node("Concat", cells, f"{hint}.row{i}", axis=3))
        return b.node("Concat", rows, hint, axis=2)
    k = (h // oh, w // ow)
    return b.node(op, [x], hint, kernel_shape=list(k), strides=list(k))


def _softmax_axis(m, xv):
    dim = m.dim if m.dim is not None else (0 if xv.ndim in (0, 1, 3) else 1)
    return dim % xv.ndim


def _emit(b, m, x, xv, hint):
    """ONNX nodes computing layer ``m`` on value ``x`` (whose example value is ``xv``): the output name."""
    t = type(m)
    if t is nn.Conv2d:
        return _conv(b, m, x, xv, hint)
    if t is nn.Linear:
        if xv.ndim == 2:
            ins = [x, b.const(_np(m.weight).astype(np.float32), f"{hint}.weight")] + ([b.const(_np(m.bias).astype(np.float32), f"{hint}.bias")] if m.bias is not None else [])
            return b.node("Gemm", ins, hint, transB=1)
        wt = b.const(_np(m.weight).T.astype(np.float32).copy(), f"{hint}.weight_t")
        y = b.node("MatMul", [x, wt], hint)
        if m.bias is not None:
            y = b.node("Add", [y, b.const(_np(m.bias).astype(np.float32), f"{hint}.bias")], f"{hint}.add")
        return y
    if t is nn.MaxPool2d:
        if m.return_indices:
            raise ExportError(f"{_where(hint, m)}: MaxPool2d(return_indices=True) is not exportable")
        return b.node("MaxPool", [x], hint, **_pool_args(b, m, hint, m.kernel_size, m.stride, m.padding, m.dilation,
                                                         m.ceil_mode))
    if t is nn.AvgPool2d:
        y = b.node("AveragePool", [x], hint, count_include_pad=int(bool(m.count_include_pad)),
                   **_pool_args(b, m, hint, m.kernel_size, m.stride, m.padding, (1, 1), m.ceil_mode))
        if m.divisor_override is not None:
            kh, kw = _pair(m.kernel_size)
            if m.ceil_mode or not m.count_include_pad:
                raise ExportError(f"{_where(hint, m)}: AvgPool2d divisor_override is exportable only with count_include_pad=True "
                                  "and ceil_mode=False (then every window has kH*kW places)")
            y = b.node("Mul", [y, b.const(np.float32(kh * kw / m.divisor_override), f"{hint}.rescale")],
                       f"{hint}.divisor")
        return y
    if t is nn.AdaptiveAvgPool2d:
        return _adaptive(b, m, x, xv, hint, "AveragePool")
    if t is nn.AdaptiveMaxPool2d:
        return _adaptive(b, m, x, xv, hint, "MaxPool")
    if t is nn.ReLU:
        return b.node("Relu", [x], hint)
    if t is nn.LeakyReLU:
        return b.node("LeakyRelu", [x], hint, alpha=float(m.negative_slope))
    if t is nn.Sigmoid:
        return b.node("Sigmoid", [x], hint)
    if t is nn.Tanh:
        return b.node("Tanh", [x], hint)
    if t is nn.Softmax:
        axis = _softmax_axis(m, xv)
        if b.opset < 13 and axis != xv.ndim - 1:
            raise ExportError(f"{_where(hint, m)}: Softmax over axis {axis} of a {xv.ndim}-D input needs opset >= 13")
        return b.node("Softmax", [x], hint, axis=axis)
    if t is nn.Maxout:
        g, c = m.group_size, xv.shape[1]
        if c % g:
            raise ExportError(f"{_where(hint, m)}: Maxout needs channels ({c}) divisible by group_size {g}")
        r = b.reshape(x, [0, c // g, g] + list(xv.shape[2:]), f"{hint}.groups")
        return b.reduce("ReduceMax", r, [2], hint, keepdims=0)
    if t is nn.Flatten:
        s, e = m.start_dim % xv.ndim, m.end_dim % xv.ndim
        if s == 1 and e == xv.ndim - 1:
            return b.node("Flatten", [x], hint, axis=1)
        if s == 0:
            raise ExportError(f"{_where(hint, m)}: Flatten(start_dim=0) would merge the batch dimension")
        shape = [0] * s + [-1] + list(xv.shape[e + 1:])
        return b.reshape(x, shape, hint)
    if t is nn.Dropout:
        return b.node("Identity", [x], hint)
    if t in (nn.BatchNorm2d, nn.CaffeBatchNorm2d):
        if not m.track_running_stats or (t is nn.CaffeBatchNorm2d and m.use_global_stats is False):
            raise ExportError(f"{_where(hint, m)}: {t.__name__} normalising by batch statistics in eval mode is not exportable "
                              "(ONNX's BatchNormalization uses stored statistics)")
        c = m.num_features
        scale = _np(m.weight) if m.weight is not None else np.ones(c, np.float32)
        bias = _np(m.bias) if m.bias is not None else np.zeros(c, np.float32)
        ins = [x] + [b.const(np.asarray(v, np.float32), f"{hint}.{k}") for k, v in
                     (("scale", scale), ("bias", bias), ("mean", m._buffers["running_mean"]),
                      ("var", m._buffers["running_var"]))]
        return b.node("BatchNormalization", ins, hint, epsilon=float(m.eps))
    if t is nn.LocalResponseNorm:
        if m.region == "across_channels":
            if m.size % 2 == 0:
                raise ExportError(f"{_where(hint, m)}: LocalResponseNorm with an even size ({m.size}) centres its window "
                                  "differently from ONNX's LRN")
            return b.node("LRN", [x], hint, size=m.size, alpha=m.alpha, beta=m.beta, bias=m.k)
        p = (m.size - 1) // 2
        sq = b.node("Mul", [x, x], f"{hint}.square")
        mean = b.node("AveragePool", [sq], f"{hint}.mean", kernel_shape=[m.size, m.size], strides=[1, 1],
                      pads=[p, p, p, p], count_include_pad=1)
        d = b.node("Mul", [mean, b.const(np.float32(m.alpha), f"{hint}.alpha")], f"{hint}.scaled")
        d = b.node("Add", [d, b.const(np.float32(m.k), f"{hint}.k")], f"{hint}.shifted")
        d = b.node("Pow", [d, b.const(np.float32(-m.beta), f"{hint}.beta")], f"{hint}.pow")
        return b.node("Mul", [x, d], hint)
    if t is nn.Scale:
        shape = (1, -1) + (1,) * (xv.ndim - 2)
        y = b.node("Mul", [x, b.const(_np(m.weight).reshape(shape[1:]).astype(np.float32), f"{hint}.weight")], hint)
        if m.bias is not None:
            y = b.node("Add", [y, b.const(_np(m.bias).reshape(shape[1:]).astype(np.float32), f"{hint}.bias")],
                       f"{hint}.add")
        return y
    raise ExportError(f"{_where(hint, m)}: pyconv.onnx.export does not know the layer type {t.__name__}")


def _join(b, m, xs, hint):
    if type(m) is nn.Concat:
        return b.node("Concat", xs, hint, axis=int(m.dim))
    if m.operation == "sum":
        if m.coeffs is not None:
            xs = [x if c == 1 else b.node("Mul", [x, b.const(np.float32(c), f"{hint}.coeff{i}")], f"{hint}.scaled{i}")
                  for i, (x, c) in enumerate(zip(xs, m.coeffs))]
        return b.node("Sum", xs, hint)
    if m.operation == "max":
        return b.node("Max", xs, hint)
    y = xs[0]
    for i, x in enumerate(xs[1:]):
        y = b.node("Mul", [y, x], hint if i == len(xs) - 2 else f"{hint}.mul{i}")
    return y


def _walk(b, m, x, xv, hint):
    """Emit ``m`` applied to ``(x, xv)``; returns (output name, output value)."""
    if type(m) is nn.Sequential:
        for name, child in m._modules.items():
            x, xv = _walk(b, child, x, xv, f"{hint}.{name}" if hint else name)
        return x, xv
    if isinstance(m, nn.Graph):
        if len(m.inputs) != 1:
            raise ExportError(f"{hint or 'graph'}: a Graph with {len(m.inputs)} inputs; export takes one")
        names, vals = dict(zip(m.inputs, [x])), dict(zip(m.inputs, [xv]))
        for name in m.order:
            child, ins = m[name], m.node_inputs(name)
            h = f"{hint}.{name}" if hint else name
            if type(child) in (nn.Concat, nn.Eltwise):
                names[name] = _join(b, child, [names[i] for i in ins], h)
                vals[name] = _value(child, *[vals[i] for i in ins])
            else:
                names[name], vals[name] = _walk(b, child, names[ins[0]], vals[ins[0]], h)
        if len(m.outputs) != 1:
            raise ExportError(f"{hint or 'graph'}: a Graph with {len(m.outputs)} outputs; export takes one")
        return names[m.outputs[0]], vals[m.outputs[0]]
    if type(m) in (nn.Concat, nn.Eltwise):
        raise ExportError(f"{_where(hint, m)}: {type(m).__name__} joins several inputs; use it inside an nn.Graph")
    if isinstance(m, nn.CrossEntropyLoss):
        raise ExportError(f"{_where(hint, m)}: CrossEntropyLoss is a loss, not an inference layer")
    y = _emit(b, m, x, xv, hint or type(m).__name__.lower())
    return y, _value(m, xv)


def _value(m, *xs):
    with no_grad():
        out = m(*[Tensor(v) for v in xs])
    return np.asarray(out.data if isinstance(out, Tensor) else out)


def export(model, path, input_shape, opset=DEFAULT_OPSET, *, input_name="input", output_name="output"):
    """Write ``model`` (a pyconv.nn Module, evaluated in eval mode) as an ONNX file.

    Args:
        model: a pyconv.nn layer, ``Sequential`` or ``Graph`` (one input, one output).
        path: the .onnx file to write (or None: only return the ModelProto).
        input_shape: ``(N, C, H, W)`` (or ``(C, H, W)``: N = 1); N stays free in the file.
        opset: the ONNX opset to target (7 .. the installed onnx's newest). Default 17.

    Returns the ``onnx.ModelProto`` (checked with ``onnx.checker.check_model``). Raises
    ``ValueError`` (``ExportError``) naming the layer that ONNX cannot express at that opset.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"export: model must be a pyconv.nn Module, got {type(model).__name__}")
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or isinstance(opset, bool) or not 7 <= opset <= newest:
        raise ValueError(f"export: opset must be an int in 7..{newest} (the installed onnx {onnx.__version__}), "
                         f"got {opset!r}")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"export: input_shape must be (N, C, H, W) or (C, H, W) with sizes >= 1, got {input_shape!r}")
    was_training = model.training
    model.eval()
    try:
        b = _Builder(opset)
        xv = np.zeros(shape, np.float32)
        y, yv = _walk(b, model, input_name, xv, "")
    finally:
        model.train(was_training)
    b.nodes.append(helper.make_node("Identity", [y], [output_name], name="output"))
    dims_in = ["N"] + list(shape[1:])
    dims_out = ["N"] + list(yv.shape[1:])
    ir = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    inputs = [helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, dims_in)]
    if ir < 4:  # before IR 4 every initializer is also listed as a graph input
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in b.inits]
    graph = helper.make_graph(b.nodes, type(model).__name__, inputs,
                              [helper.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, dims_out)],
                              initializer=b.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pyconv",
                              ir_version=ir)
    onnx.checker.check_model(proto)
    if path is not None:
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
        os.replace(tmp, path)
    return proto
