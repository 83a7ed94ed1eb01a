"""ONNX ModelProto -> pyconv.inference Graph: every node rewritten to its newest-opset form, every
unsupported operator, dtype and attribute value collected and reported at once."""
import os

import numpy as np
import onnx
from onnx import numpy_helper

from ..inference.graph import Graph, GraphError, Node, UnsupportedError

MIN_OPSET = 7
_DTYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32,
           onnx.TensorProto.BOOL: np.bool_}
_AUTO_PAD = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
_CONV_ATTRS = {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}
_POOL_ATTRS = {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides"}
# op -> the attributes pyconv honours (any other attribute is reported)
KNOWN_ATTRS = {
    "Conv": _CONV_ATTRS, "ConvTranspose": _CONV_ATTRS | {"output_padding", "output_shape"},
    "MaxPool": _POOL_ATTRS | {"storage_order"}, "AveragePool": _POOL_ATTRS | {"count_include_pad"},
    "GlobalAveragePool": set(), "GlobalMaxPool": set(), "LRN": {"alpha", "beta", "bias", "size"},
    "BatchNormalization": {"epsilon", "momentum", "spatial", "training_mode", "is_test"},
    "InstanceNormalization": {"epsilon"}, "Relu": set(), "LeakyRelu": {"alpha"}, "PRelu": set(),
    "Clip": {"min", "max"}, "Sigmoid": set(), "HardSigmoid": {"alpha", "beta"}, "HardSwish": set(), "Tanh": set(),
    "Elu": {"alpha"}, "Selu": {"alpha", "gamma"}, "Softmax": {"axis"}, "LogSoftmax": {"axis"},
    "Add": set(), "Sum": set(), "Sub": set(), "Mul": set(), "Div": set(), "Pow": set(), "Max": set(), "Min": set(),
    "Concat": {"axis"}, "Split": {"axis", "split", "num_outputs"}, "Slice": {"starts", "ends", "axes"},
    "Reshape": {"shape", "allowzero"}, "Flatten": {"axis"}, "Transpose": {"perm"}, "Squeeze": {"axes"},
    "Unsqueeze": {"axes"}, "Gather": {"axis"}, "Shape": {"start", "end"},
    "Constant": {"value", "value_float", "value_floats", "value_int", "value_ints"},
    "ConstantOfShape": {"value"}, "Identity": set(), "Dropout": {"ratio", "is_test", "seed"},
    "Gemm": {"alpha", "beta", "transA", "transB"}, "MatMul": set(), "Pad": {"mode", "pads", "value"},
    "ReduceMean": {"axes", "keepdims", "noop_with_empty_axes"}, "ReduceMax": {"axes", "keepdims", "noop_with_empty_axes"},
    "Resize": {"mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
               "extrapolation_value", "antialias", "keep_aspect_ratio_policy", "axes"},
    "Cast": {"to", "saturate"},
}
# Attribute values older opsets took that the newest form passes as constant inputs:
# op -> (last opset with attributes, [(attribute, input position)])
_ATTR_TO_INPUT = {
    "Reshape": (4, [("shape", 1)]), "Slice": (9, [("starts", 1), ("ends", 2), ("axes", 3)]),
    "Squeeze": (12, [("axes", 1)]), "Unsqueeze": (12, [("axes", 1)]), "Split": (12, [("split", 1)]),
    "Pad": (10, [("pads", 1), ("value", 2)]), "ReduceMean": (17, [("axes", 1)]), "ReduceMax": (17, [("axes", 1)]),
    "Clip": (10, [("min", 1), ("max", 2)]),
}
_FLOAT_INPUTS = {"Clip": {1, 2}, "Pad": {2}}


def read_model(source):
    """A ModelProto from a path or bytes, its external data read only from the model's folder."""
    if isinstance(source, onnx.ModelProto):
        return source, None
    base = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no ONNX model at {path!r}")
        with open(path, "rb") as f:
            raw = f.read()
        base = os.path.dirname(os.path.realpath(path))
    else:
        raise TypeError(f"pyconv.onnx.load: expected a path, bytes or onnx.ModelProto, got {type(source).__name__}")
    try:
        proto = onnx.load_model_from_string(raw)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise GraphError(f"not a readable ONNX model ({len(raw)} bytes): {type(exc).__name__}: {exc}") from None
    if not proto.HasField("graph") or not (proto.graph.node or proto.graph.output):
        raise GraphError("not an ONNX model: the file holds no graph (is it an ONNX file?)")
    return proto, base


def _external(t, base):
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    if base is None:
        raise GraphError(f"initializer {t.name!r} keeps its data in the external file {loc!r}: load the model from "
                         "its path, not from bytes")
    path = os.path.realpath(os.path.join(base, loc))
    if os.path.isabs(loc) or os.path.commonpath([base, path]) != base:
        raise GraphError(f"initializer {t.name!r}: external data {loc!r} lies outside the model's directory "
                         f"{base!r}; pyconv reads external data only from there")
    if not os.path.isfile(path):
        raise GraphError(f"initializer {t.name!r}: its external data file {loc!r} does not exist in {base!r}")
    offset, length = int(info.get("offset", 0)), info.get("length")
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(int(length) if length is not None else -1)
    t2 = onnx.TensorProto()
    t2.CopyFrom(t)
    del t2.external_data[:]
    t2.data_location = onnx.TensorProto.DEFAULT
    t2.raw_data = data
    return t2


def _tensor(t, base, where):
    if t.data_location == onnx.TensorProto.EXTERNAL:
        t = _external(t, base)
    if t.data_type not in _DTYPES:
        name = onnx.TensorProto.DataType.Name(t.data_type) if t.data_type in onnx.TensorProto.DataType.values() \
            else str(t.data_type)
        raise _Problem(f"{where}: dtype {name} is not supported (float32, and int64/int32/bool for shapes)")
    try:
        return np.asarray(numpy_helper.to_array(t), dtype=_DTYPES[t.data_type])  # no copy of raw data
    except Exception as exc:
        raise GraphError(f"{where}: malformed tensor data: {exc}") from None


class _Problem(Exception):
    pass


def _attrs(node, base):
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = _tensor(a.t, base, f"node {node.name!r} ({node.op_type}) attribute {a.name}")
        elif a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS, onnx.AttributeProto.SPARSE_TENSOR):
            raise _Problem(f"node {node.name!r} ({node.op_type}): attribute {a.name} holds a "
                           f"{onnx.AttributeProto.AttributeType.Name(a.type)}, which is not supported")
        else:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [s.decode("utf-8", "replace") for s in v]
            out[a.name] = v
    return out


def _check_values(op, where, a, problems):
    def bad(what):
        problems.append(f"{where}: {what}")
    if "auto_pad" in a and a["auto_pad"] not in _AUTO_PAD:
        bad(f"auto_pad={a['auto_pad']!r} is not one of {', '.join(_AUTO_PAD)}")
    if op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool"):
        for k in ("kernel_shape", "strides", "dilations"):
            if k in a and len(a[k]) != 2:
                bad(f"{k}={a[k]}: only 2-D (NCHW) operators are supported")
        if "pads" in a and len(a["pads"]) != 4:
            bad(f"pads={a['pads']}: only 2-D (NCHW) operators are supported")
        if "pads" in a and min(a["pads"], default=0) < 0:
            bad(f"pads={a['pads']}: negative pads are not supported")
    if op in ("MaxPool", "AveragePool") and "kernel_shape" not in a:
        bad("kernel_shape is required")
    if op == "MaxPool" and a.get("storage_order", 0) != 0:
        bad(f"storage_order={a['storage_order']} (column-major indices) is not supported")
    if op == "BatchNormalization":
        if a.get("training_mode", 0):
            bad("training_mode=1 is not supported (inference only)")
        if a.get("spatial", 1) != 1:
            bad("spatial=0 is not supported")
    if op == "Pad" and a.get("mode", "constant") not in ("constant", "reflect", "edge", "wrap"):
        bad(f"mode={a['mode']!r} is not supported (constant, reflect, edge, wrap)")
    if op == "Resize":
        if a.get("mode", "nearest") != "nearest":
            bad(f"mode={a['mode']!r} is not supported (nearest only)")
        from ..inference.shape_ops import _RESIZE_COORD
        if a.get("coordinate_transformation_mode", "half_pixel") not in _RESIZE_COORD:
            bad(f"coordinate_transformation_mode={a['coordinate_transformation_mode']!r} is not supported")
        if a.get("nearest_mode", "round_prefer_floor") not in ("round_prefer_floor", "round_prefer_ceil", "floor",
                                                               "ceil"):
            bad(f"nearest_mode={a['nearest_mode']!r} is not supported")
        if a.get("antialias", 0) or "axes" in a or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            bad("antialias, axes and keep_aspect_ratio_policy other than their defaults are not supported")
    if op == "Cast" and a.get("to") not in _DTYPES:
        bad(f"to={a.get('to')} is not a supported dtype (float32, int64, int32, bool)")


def to_graph(proto, base, input_shapes=None):
    """(Graph, declared input shapes) of a ModelProto; UnsupportedError lists every problem."""
    opset = None
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            opset = o.version
    problems = []
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        problems.append("the model imports no default-domain (ai.onnx) opset")
        opset = newest
    elif not MIN_OPSET <= opset <= newest:
        problems.append(f"opset {opset} is outside the supported range {MIN_OPSET}..{newest} (the installed onnx "
                        f"{onnx.__version__} knows up to {newest})")
    g = proto.graph
    init = {}
    for t in g.initializer:
        try:
            init[t.name] = _tensor(t, base, f"initializer {t.name!r}")
        except _Problem as p:
            problems.append(str(p))
    if g.sparse_initializer:
        problems.append("sparse initializers are not supported")
    inputs, declared = {}, {}
    for v in g.input:
        if v.name in init:
            continue
        tt = v.type.tensor_type
        if not v.type.HasField("tensor_type") or tt.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"graph input {v.name!r}: only float32 tensors are supported, got "
                            f"{onnx.TensorProto.DataType.Name(tt.elem_type) if v.type.HasField('tensor_type') else v.type}")
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
        declared[v.name] = tuple(dims)
        inputs[v.name] = (tuple(dims), np.dtype(np.float32))
    shapes = _input_shapes(declared, input_shapes, problems)
    nodes, counter = [], [0]

    def const(value, hint):
        counter[0] += 1
        name = f"{hint}__const{counter[0]}"
        init[name] = np.asarray(value)
        return name

    for k, n in enumerate(g.node):
        where = f"node {n.name or f'#{k}'!r} ({n.op_type})"
        if n.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: operator domain {n.domain!r} is not supported")
            continue
        if n.op_type not in KNOWN_ATTRS:
            problems.append(f"{where}: operator {n.op_type} is not supported")
            continue
        try:
            a = _attrs(n, base)
        except _Problem as p:
            problems.append(str(p))
            continue
        unknown = sorted(set(a) - KNOWN_ATTRS[n.op_type])
        if unknown:
            problems.append(f"{where}: attribute(s) {', '.join(unknown)} not supported")
            continue
        before = len(problems)
        _check_values(n.op_type, where, a, problems)
        if len(problems) > before:
            continue
        try:
            nodes.extend(_convert(n, k, a, opset, const, init))
        except _Problem as p:
            problems.append(f"{where}: {p}")
    used = {o: i for i, n in enumerate(g.node) for o in n.input}
    graph_outputs = [o.name for o in g.output]
    for n in nodes:
        if n.op == "Dropout" and len(n.outputs) > 1 and n.outputs[1] and (n.outputs[1] in used or
                                                                        n.outputs[1] in graph_outputs):
            problems.append(f"{n.where()}: its mask output is read; only inference Dropout is supported")
        if n.op in ("BatchNormalization", "MaxPool") and any(o in used or o in graph_outputs for o in n.outputs[1:] if o):
            problems.append(f"{n.where()}: outputs beyond the first are not supported")
    if problems:
        raise UnsupportedError(problems)
    for n in nodes:
        if n.op in ("BatchNormalization", "MaxPool", "Dropout"):
            n.outputs = n.outputs[:1]
    graph = Graph(nodes, inputs, graph_outputs, init, name=g.name or "graph")
    return graph.toposort(), shapes


def _input_shapes(declared, given, problems):
    shapes = {}
    given = dict(given or {})
    for name, dims in declared.items():
        if name in given:
            shp = tuple(int(d) for d in given.pop(name))
            if len(shp) != len(dims) or any(isinstance(d, int) and d and d != s for d, s in zip(dims, shp)):
                problems.append(f"graph input {name!r}: input_shapes gives {shp}, the model declares {dims}")
            shapes[name] = shp
            continue
        shp = []
        for i, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                shp.append(d)
            elif i == 0:
                shp.append(1)  # a free batch size: 1 at load, any at run time
            else:
                problems.append(f"graph input {name!r}: dimension {i} is {d!r} (not fixed); pass "
                                f"input_shapes={{{name!r}: (...)}} to load()")
        shapes[name] = tuple(shp)
    for name in given:
        problems.append(f"input_shapes names {name!r}, which is not an input of the model "
                        f"({', '.join(declared)})")
    return shapes


def _convert(n, k, a, opset, const, init):
    op = n.op_type
    name = n.name or f"{op}_{k}"
    inputs, outputs = list(n.input), list(n.output)
    if op == "Constant":
        if "value" in a:
            v = a["value"]
        elif "value_float" in a or "value_floats" in a:
            v = np.asarray(a.get("value_float", a.get("value_floats")), np.float32)
        elif "value_int" in a or "value_ints" in a:
            v = np.asarray(a.get("value_int", a.get("value_ints")), np.int64)
        else:
            raise _Problem(f"attribute(s) {', '.join(a) or '(none)'} are not supported (value, value_float(s), "
                           "value_int(s))")
        init[outputs[0]] = np.asarray(v)
        return []
    if op in _ATTR_TO_INPUT and opset <= _ATTR_TO_INPUT[op][0]:
        for attr, pos in _ATTR_TO_INPUT[op][1]:
            if attr in a:
                v = a.pop(attr)
                dtype = np.float32 if pos in _FLOAT_INPUTS.get(op, ()) else np.int64
                inputs += [""] * (pos + 1 - len(inputs))
                inputs[pos] = const(np.asarray(v, dtype), name)
        if op == "Pad" and len(inputs) > 2 and inputs[2] == "":
            inputs = inputs[:2]
    if op == "Dropout":
        if opset >= 12 and len(inputs) > 2 and inputs[2]:
            t = init.get(inputs[2])
            if t is None or bool(np.asarray(t).reshape(-1)[0]):
                raise _Problem("training_mode must be a constant False (inference only)")
        return [Node("Dropout", inputs[:1], outputs, {}, name)]
    if op == "Resize" and opset == 10:
        inputs = [inputs[0], "", inputs[1]]
        a.setdefault("coordinate_transformation_mode", "asymmetric")
    if op == "Resize" and a.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        raise _Problem("coordinate_transformation_mode tf_crop_and_resize is not supported")
    if op in ("Softmax", "LogSoftmax") and opset < 13:
        axis = a.get("axis", 1)  # the input is seen as 2-D, split before `axis`
        flat, y, shp = f"{name}__2d", f"{name}__y2d", f"{name}__shape"
        return [Node("Flatten", [inputs[0]], [flat], {"axis": axis}, name + "/flatten"),
                Node(op, [flat], [y], {"axis": 1}, name),
                Node("Shape", [inputs[0]], [shp], {}, name + "/shape"),
                Node("Reshape", [y, shp], outputs, {}, name + "/reshape")]
    if op in ("Conv", "ConvTranspose") and "kernel_shape" not in a and len(inputs) > 1 and inputs[1] in init:
        a["kernel_shape"] = list(init[inputs[1]].shape[2:])
    if op in ("Conv", "ConvTranspose") and len(inputs) > 1 and inputs[1] in init and init[inputs[1]].ndim != 4:
        raise _Problem(f"weight {inputs[1]!r} has shape {init[inputs[1]].shape}: only 2-D convolutions are supported")
    if op == "AveragePool" and opset < 7:
        a.setdefault("count_include_pad", 0)
    if op == "Cast":
        a["to"] = np.dtype(_DTYPES[a["to"]]).str
        a.pop("saturate", None)
    if op == "ConstantOfShape" and "value" in a:
        a["value"] = np.asarray(a["value"]).reshape(-1)
    if op in ("Sum", "Max", "Min") and len(inputs) == 1:
        return [Node("Identity", inputs, outputs, {}, name)]
    bools = [i for i in inputs if i in init and init[i].dtype == np.bool_]
    if bools and op != "Cast":
        raise _Problem(f"input {bools[0]!r} is a bool tensor, which {op} does not take here")
    return [Node(op, inputs, outputs, a, name)]
