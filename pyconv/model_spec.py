"""The vocabulary of model tables: layer types, their fields, and one entry <-> one module.

:mod:`pyconv.models` (layer lists), :mod:`pyconv.model_graph` (graphs) and :mod:`pyconv.formats`
(Caffe, ConvNetJS) all build on these; none of them is imported here.
"""
import json

from . import functional as F
from . import nn


class ModelSpecError(ValueError):
    """A model description is invalid; the message names the layer and the field."""


# type -> (constructor, required fields, optional fields); inferred input fields are listed apart.
_LAYERS = {
    "Conv2d": (nn.Conv2d, ("out_channels", "kernel_size"),
               ("in_channels", "stride", "padding", "dilation", "groups", "bias", "padding_mode", "algo")),
    "Linear": (nn.Linear, ("out_features",), ("in_features", "bias")),
    "ReLU": (nn.ReLU, (), ("inplace",)),
    "MaxPool2d": (nn.MaxPool2d, ("kernel_size",), ("stride", "padding", "dilation", "ceil_mode")),
    "AvgPool2d": (nn.AvgPool2d, ("kernel_size",), ("stride", "padding", "ceil_mode", "count_include_pad",
                                                   "divisor_override")),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, ("output_size",), ()),
    "AdaptiveMaxPool2d": (nn.AdaptiveMaxPool2d, ("output_size",), ()),
    "Flatten": (nn.Flatten, (), ("start_dim", "end_dim")),
    "Dropout": (nn.Dropout, (), ("p",)),
    "BatchNorm2d": (nn.BatchNorm2d, (), ("num_features", "eps", "momentum", "affine", "track_running_stats")),
    "LeakyReLU": (nn.LeakyReLU, (), ("negative_slope", "inplace")),
    "Sigmoid": (nn.Sigmoid, (), ()),
    "Tanh": (nn.Tanh, (), ()),
    "Softmax": (nn.Softmax, (), ("dim",)),
    "Maxout": (nn.Maxout, (), ("group_size",)),
    "LocalResponseNorm": (nn.LocalResponseNorm, ("size",), ("alpha", "beta", "k", "region")),
    "CaffeBatchNorm2d": (nn.CaffeBatchNorm2d, (), ("num_features", "eps", "moving_average_fraction",
                                                   "use_global_stats")),
    "Scale": (nn.Scale, (), ("num_features", "bias")),
    "Concat": (nn.Concat, (), ("dim",)),
    "Eltwise": (nn.Eltwise, (), ("operation", "coeffs")),
}
_JOINS = ("Concat", "Eltwise")  # several inputs: graph nodes only
# Fields every layer may carry: initial values (pyconv.nn.fillers) and where a translated layer
# came from (named in messages).
_COMMON = ("weight_init", "bias_init", "origin")
# The input size each layer type infers from its input: its channels or features.
_INFERRED = {"Conv2d": "in_channels", "Linear": "in_features", "BatchNorm2d": "num_features",
             "CaffeBatchNorm2d": "num_features", "Scale": "num_features"}
_ALIASES = {k.lower(): k for k in _LAYERS}
_ALIASES.update({"conv": "Conv2d", "fc": "Linear", "relu": "ReLU", "pool": "MaxPool2d", "maxpool": "MaxPool2d",
                 "avgpool": "AvgPool2d", "dropout": "Dropout", "flatten": "Flatten", "batchnorm": "BatchNorm2d"})


def _read_json_or_toml(path, raw):
    """The document of a JSON (or, for .toml files, TOML) model file."""
    try:
        if path.endswith(".toml"):
            try:
                import tomllib
            except ImportError:  # Python < 3.11
                import tomli as tomllib
            return tomllib.loads(raw.decode("utf-8"))
        return json.loads(raw.decode("utf-8"))
    except Exception as exc:
        raise ModelSpecError(f"{path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {exc}") from None


def _layer_list(doc, path):
    if isinstance(doc, dict) and "nodes" in doc:
        return doc
    layers = doc.get("layers") if isinstance(doc, dict) else doc
    if not isinstance(layers, list) or not layers:
        raise ModelSpecError(f"{path}: expected a non-empty list of layers (or a 'layers' list, or a 'nodes' list for "
                             f"a graph), got {type(layers).__name__}")
    return doc if isinstance(doc, dict) else layers


def _where(index, name, layer):
    """How messages name a layer: ``layer 3 (Conv2d)``, or where a translated layer came from."""
    origin = layer.get("origin") if isinstance(layer, dict) else None
    if isinstance(origin, dict) and origin.get("where"):
        return origin["where"]
    return f"layer {index} ({name})"


def layer_type(index, layer):
    """(canonical type name, (constructor, required, optional)) of one layer entry."""
    label = index if isinstance(index, str) else f"layer {index}"
    if not isinstance(layer, dict):
        raise ModelSpecError(f"{label}: expected a table/object with a 'type', got {layer!r}")
    kind = layer.get("type")
    name = _ALIASES.get(str(kind).lower()) if kind is not None else None
    if name is None:
        raise ModelSpecError(f"{label}: unknown type {kind!r}; valid types: {', '.join(_LAYERS)}")
    return name, _LAYERS[name]


def make_layer(where, layer, in_shapes, num_classes, skip=("type",)):
    """(module, output shape) of one layer entry for inputs of ``in_shapes`` (no batch axis);
    ModelSpecError naming ``where`` and the field on any mistake. ``skip``: keys that are not
    the layer's fields (a graph node's ``name`` and ``inputs``)."""
    from .nn.fillers import fill_

    name, (ctor, required, optional) = layer_type(where, layer)
    args = {k: (num_classes if v == "classes" else v) for k, v in layer.items() if k not in skip}
    unknown = sorted(set(args) - set(required) - set(optional) - set(_COMMON))
    if unknown:
        raise ModelSpecError(f"{where}: unknown field(s) {', '.join(unknown)}; valid: {', '.join(required + optional)}")
    missing = [k for k in required if k not in args]
    if missing:
        raise ModelSpecError(f"{where}: missing required field(s) {', '.join(missing)}")
    init = {k: args.pop(k) for k in ("weight_init", "bias_init") if k in args}
    args.pop("origin", None)
    shape = tuple(in_shapes[0])
    if len(in_shapes) != 1 and name not in _JOINS:
        raise ModelSpecError(f"{where}: {name} takes one input, got {len(in_shapes)}")
    inferred = _INFERRED.get(name)
    if inferred:
        have = shape[0]
        if inferred in args and args[inferred] != have:
            raise ModelSpecError(f"{where}: field {inferred}={args[inferred]} but the layer's input has {have} "
                                 f"(input shape {shape})")
        args[inferred] = have
    try:
        if name == "Conv2d":
            module = ctor(args.pop("in_channels"), args.pop("out_channels"), args.pop("kernel_size"), **args)
        elif name == "Linear":
            module = ctor(args.pop("in_features"), args.pop("out_features"), **args)
        elif inferred:
            module = ctor(args.pop(inferred), **args)
        else:
            module = ctor(**args)
        out = tuple(module.output_shape(*in_shapes)) if hasattr(module, "output_shape") else _out_shape(module, shape)
        for key, filler in init.items():
            target = getattr(module, key.split("_")[0], None)
            if target is None:
                raise ModelSpecError(f"{where}: {key} given, but the layer has no {key.split('_')[0]}")
            fill_(target, filler)
    except ModelSpecError:
        raise
    except (ValueError, TypeError) as exc:
        shapes = " and ".join("x".join(map(str, s)) for s in in_shapes)
        raise ModelSpecError(f"{where}: {exc} (input {'shapes' if len(in_shapes) > 1 else 'shape'} {shapes})") from None
    return module, out


def _out_shape(m, shape):
    """Output shape (no batch) of module ``m`` for an input of ``shape`` (no batch)."""
    image = len(shape) == 3
    if isinstance(m, nn.Conv2d):
        if not image:
            raise ModelSpecError(f"Conv2d needs an image input (C, H, W), got {shape}")
        return F.conv2d_output_shape(shape, m.weight.shape, m.stride, m.padding, m.dilation)
    if isinstance(m, nn.MaxPool2d):
        return F.pool2d_output_shape(shape, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        return F.pool2d_output_shape(shape, m.kernel_size, m.stride, m.padding, 1, m.ceil_mode)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        oh, ow = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size,) * 2
        return (shape[0], oh or shape[1], ow or shape[2])
    if isinstance(m, nn.Flatten):
        full = (1,) + tuple(shape)
        s, e = m.start_dim % len(full), m.end_dim % len(full)
        n = 1
        for d in full[s:e + 1]:
            n *= d
        return tuple(full[1:s]) + (n,) + tuple(full[e + 1:])
    if isinstance(m, nn.Linear):
        if shape[-1] != m.in_features:
            raise ModelSpecError(f"Linear expects {m.in_features} input features, got shape {shape}")
        return tuple(shape[:-1]) + (m.out_features,)
    if isinstance(m, nn.BatchNorm2d) and not image:
        raise ModelSpecError(f"BatchNorm2d needs an image input (C, H, W), got {shape}")
    return shape


# What spec_from_model records per layer type: (field, default); fields equal to their default are left out.
_FIELDS = {
    nn.Conv2d: (("in_channels", None), ("out_channels", None), ("kernel_size", None), ("stride", (1, 1)),
                ("padding", (0, 0)), ("dilation", (1, 1)), ("groups", 1), ("bias", True), ("padding_mode", "zeros"),
                ("algo", "auto")),
    nn.Linear: (("in_features", None), ("out_features", None), ("bias", True)),
    nn.ReLU: (("inplace", False),),
    nn.MaxPool2d: (("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1), ("ceil_mode", False)),
    nn.AvgPool2d: (("kernel_size", None), ("stride", None), ("padding", 0), ("ceil_mode", False),
                   ("count_include_pad", True), ("divisor_override", None)),
    nn.AdaptiveAvgPool2d: (("output_size", None),),
    nn.AdaptiveMaxPool2d: (("output_size", None),),
    nn.Flatten: (("start_dim", 1), ("end_dim", -1)),
    nn.Dropout: (("p", 0.5),),
    nn.BatchNorm2d: (("num_features", None), ("eps", 1e-5), ("momentum", 0.1), ("affine", True),
                     ("track_running_stats", True)),
    nn.LeakyReLU: (("negative_slope", 0.01), ("inplace", False)),
    nn.Sigmoid: (),
    nn.Tanh: (),
    nn.Softmax: (("dim", None),),
    nn.Maxout: (("group_size", 2),),
    nn.LocalResponseNorm: (("size", None), ("alpha", 1e-4), ("beta", 0.75), ("k", 1.0), ("region", "across_channels")),
    nn.CaffeBatchNorm2d: (("num_features", None), ("eps", 1e-5), ("moving_average_fraction", 0.999),
                          ("use_global_stats", None)),
    nn.Scale: (("num_features", None), ("bias", False)),
    nn.Concat: (("dim", 1),),
    nn.Eltwise: (("operation", "sum"), ("coeffs", None)),
}


def _json(v):
    if isinstance(v, (tuple, list)):
        return [_json(e) for e in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


def _describe(label, m):
    """The layer entry (type and non-default fields) that rebuilds module ``m``."""
    fields = _FIELDS.get(type(m))
    if fields is None:
        raise ModelSpecError(f"{label} ({type(m).__name__}) is not a layer type a model file can describe ("
                             f"types: {', '.join(_LAYERS)})")
    if getattr(m, "return_indices", False):
        raise ModelSpecError(f"{label} (MaxPool2d) has return_indices=True, which a model file cannot describe")
    entry = {"type": type(m).__name__}
    for field, default in fields:
        v = (m.bias is not None) if field == "bias" else (m.affine if field == "affine" else getattr(m, field))
        if field == "stride" and isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and v == m.kernel_size:
            continue
        if v is None and default is None and field not in ("in_channels", "out_channels", "kernel_size"):
            continue
        if default is not None and (v == default or _json(v) == _json(default)
                                    or (isinstance(default, tuple) and _json(v) == [default[0]] * 2)):
            continue
        entry[field] = _json(v)
    return entry
