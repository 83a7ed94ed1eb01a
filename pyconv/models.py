"""Networks described as data: an ordered list of layers with torch-named arguments.

This is the format of ``pyconv train --model FILE.json|FILE.toml`` (as Caffe's prototxt and
ConvNetJS's layer_defs describe a net)::

    [{"type": "Conv2d", "out_channels": 16, "kernel_size": 5, "padding": 2},
     {"type": "ReLU"},
     {"type": "MaxPool2d", "kernel_size": 2},
     {"type": "Linear", "out_features": 10}]

or in TOML, ``[[layers]]`` tables with the same keys. Input sizes (``in_channels``,
``in_features``, ``num_features``) are inferred from the input shape (given ones are checked),
and a ``Flatten`` is inserted before the first ``Linear`` that follows an image-shaped layer.
"""
import json
import os

from . import functional as F
from . import nn

__all__ = ["BUILTIN_MODELS", "ModelSpecError", "build_model", "build_classifier", "load_spec", "spec_for",
           "spec_from_model", "describe_source"]


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
    "Flatten": (nn.Flatten, (), ("start_dim", "end_dim")),
    "Dropout": (nn.Dropout, (), ("p",)),
    "BatchNorm2d": (nn.BatchNorm2d, (), ("num_features", "eps", "momentum", "affine", "track_running_stats")),
}
_ALIASES = {k.lower(): k for k in _LAYERS}
_ALIASES.update({"conv": "Conv2d", "fc": "Linear", "relu": "ReLU", "pool": "MaxPool2d", "maxpool": "MaxPool2d",
                 "avgpool": "AvgPool2d", "dropout": "Dropout", "flatten": "Flatten", "batchnorm": "BatchNorm2d"})


def _conv(k, f, s=1, p=0):
    return {"type": "Conv2d", "out_channels": k, "kernel_size": f, "stride": s, "padding": p}


RELU = {"type": "ReLU"}
POOL2 = {"type": "MaxPool2d", "kernel_size": 2, "stride": 2}

BUILTIN_MODELS = {
    # Small and fast; the default for the 8x8 digits.
    "digits-cnn": [_conv(16, 3, p=1), RELU, _conv(32, 3, p=1), RELU, POOL2, _conv(64, 3, p=1), RELU, POOL2,
                   {"type": "Linear", "out_features": "classes"}],
    # LeNet-5 (conv6 5x5, pool, conv16 5x5, pool, fc120, fc84, fc); padding 2 so it fits 8x8 inputs too.
    "lenet": [_conv(6, 5, p=2), RELU, POOL2, _conv(16, 5, p=2), RELU, POOL2,
              {"type": "Linear", "out_features": 120}, RELU, {"type": "Linear", "out_features": 84}, RELU,
              {"type": "Linear", "out_features": "classes"}],
    # The CS231n / ConvNetJS CIFAR-10 browser demo: conv16 5x5-relu-pool2, conv20 5x5-relu-pool2,
    # conv20 5x5-relu-pool2, fc (pad 2 keeps each conv's size).
    "convnetjs-cifar": [_conv(16, 5, p=2), RELU, POOL2, _conv(20, 5, p=2), RELU, POOL2, _conv(20, 5, p=2), RELU,
                        POOL2, {"type": "Linear", "out_features": "classes"}],
}


def load_spec(path):
    """Reads a JSON or TOML model file: a list of layers, or a table with a ``layers`` list."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ModelSpecError(f"cannot read model file {path}: {exc.strerror}") from None
    try:
        if path.endswith(".toml"):
            try:
                import tomllib
            except ImportError:  # Python < 3.11
                import tomli as tomllib
            doc = tomllib.loads(raw.decode("utf-8"))
        else:
            doc = json.loads(raw.decode("utf-8"))
    except Exception as exc:
        raise ModelSpecError(f"{path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {exc}") from None
    layers = doc.get("layers") if isinstance(doc, dict) else doc
    if not isinstance(layers, list) or not layers:
        raise ModelSpecError(f"{path}: expected a non-empty list of layers (or a 'layers' list), got {type(layers).__name__}")
    return layers


def spec_for(model):
    """The layer list of a built-in name or a JSON/TOML path."""
    if isinstance(model, list):
        return model
    if model in BUILTIN_MODELS:
        return BUILTIN_MODELS[model]
    if isinstance(model, str) and (model.endswith(".json") or model.endswith(".toml") or os.path.exists(model)):
        return load_spec(model)
    raise ModelSpecError(f"unknown model {model!r}: use one of {', '.join(BUILTIN_MODELS)} or a .json/.toml file")


def build_model(spec, input_shape, num_classes):
    """A :class:`pyconv.nn.Sequential` from a layer list (or built-in name / file) for
    ``input_shape`` = (C, H, W) and ``num_classes`` outputs (the value ``"classes"`` in a field)."""
    return nn.Sequential(*_build(spec, input_shape, num_classes)[0])


def describe_source(model):
    """How messages name a model: ``model file lec.json`` or ``model digits-cnn``."""
    if isinstance(model, str) and model not in BUILTIN_MODELS:
        return f"model file {model}"
    return f"model {model}" if isinstance(model, str) else "the model"


def build_classifier(spec, input_shape, num_classes, source=None, dataset=None):
    """:func:`build_model`, checked to end in one score per class (what cross-entropy needs), so
    that a model file's mistake is reported before training starts, naming the fix."""
    modules, shapes, origin = _build(spec, input_shape, num_classes)
    source = source or describe_source(spec)
    out = shapes[-1]
    data = f"the {dataset} data set has" if dataset else "there are"
    last = f"layer {origin[-1]} ({type(modules[-1]).__name__})"
    if len(out) != 1:
        vol = "x".join(map(str, out))
        raise ModelSpecError(
            f"{source} ends in a {vol} {'volume (CxHxW)' if len(out) == 3 else 'array'} after {last}, but training "
            f"needs one score per class ({data} {num_classes}): add "
            '{"type": "Linear", "out_features": "classes"} as the last layer')
    if out[0] != num_classes:
        raise ModelSpecError(
            f"{source}: {last} gives {out[0]} outputs, but {data} {num_classes} classes: make the last layer "
            f'"out_features": "classes" (or {num_classes})')
    return nn.Sequential(*modules)


def _build(spec, input_shape, num_classes):
    """(modules, output shape after each, spec index of each) for a layer list."""
    layers = spec_for(spec)
    shape = tuple(input_shape)
    modules, shapes, origin = [], [], []
    for i, layer in enumerate(layers):
        where = f"layer {i}"
        if not isinstance(layer, dict):
            raise ModelSpecError(f"{where}: expected a table/object with a 'type', got {layer!r}")
        kind = layer.get("type")
        name = _ALIASES.get(str(kind).lower()) if kind is not None else None
        if name is None:
            raise ModelSpecError(f"{where}: unknown type {kind!r}; valid types: {', '.join(_LAYERS)}")
        where = f"layer {i} ({name})"
        ctor, required, optional = _LAYERS[name]
        args = {k: (num_classes if v == "classes" else v) for k, v in layer.items() if k != "type"}
        unknown = sorted(set(args) - set(required) - set(optional))
        if unknown:
            raise ModelSpecError(f"{where}: unknown field(s) {', '.join(unknown)}; valid: "
                                 f"{', '.join(required + optional)}")
        missing = [k for k in required if k not in args]
        if missing:
            raise ModelSpecError(f"{where}: missing required field(s) {', '.join(missing)}")
        if name == "Linear" and len(shape) == 3:
            modules.append(nn.Flatten())
            shape = (shape[0] * shape[1] * shape[2],)
            shapes.append(shape)
            origin.append(i)
        inferred = {"Conv2d": "in_channels", "Linear": "in_features", "BatchNorm2d": "num_features"}.get(name)
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
            elif name == "BatchNorm2d":
                module = ctor(args.pop("num_features"), **args)
            else:
                module = ctor(**args)
            shape = _out_shape(module, shape)
        except ModelSpecError:
            raise
        except (ValueError, TypeError) as exc:
            raise ModelSpecError(f"{where}: {exc} (input shape {shape})") from None
        modules.append(module)
        shapes.append(shape)
        origin.append(i)
    return modules, shapes, origin


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
    nn.Flatten: (("start_dim", 1), ("end_dim", -1)),
    nn.Dropout: (("p", 0.5),),
    nn.BatchNorm2d: (("num_features", None), ("eps", 1e-5), ("momentum", 0.1), ("affine", True),
                     ("track_running_stats", True)),
}


def _json(v):
    if isinstance(v, (tuple, list)):
        return [_json(e) for e in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


def spec_from_model(model, input_shape, num_classes):
    """The layer list that rebuilds ``model`` with :func:`build_model`, checked by rebuilding it
    for ``input_shape``: an ``nn.Sequential`` (indexed, not named) of the layers a model file can
    describe. Raises :class:`ModelSpecError` saying why when there is none."""
    if not isinstance(model, nn.Sequential):
        raise ModelSpecError(f"a {type(model).__name__} cannot be described as a layer list (only an nn.Sequential "
                             "of pyconv.nn layers can)")
    layers = []
    for i, (name, m) in enumerate(model.named_children()):
        if name != str(i):
            raise ModelSpecError(f"layer {name!r}: a Sequential with named layers cannot be described as a layer "
                                 "list (its state_dict keys are the names)")
        fields = _FIELDS.get(type(m))
        if fields is None:
            raise ModelSpecError(f"layer {i} ({type(m).__name__}) is not a layer type a model file can describe ("
                                 f"types: {', '.join(_LAYERS)})")
        if getattr(m, "return_indices", False):
            raise ModelSpecError(f"layer {i} (MaxPool2d) has return_indices=True, which a model file cannot describe")
        entry = {"type": type(m).__name__}
        for field, default in fields:
            v = (m.bias is not None) if field == "bias" else (m.affine if field == "affine" else getattr(m, field))
            if field == "stride" and isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and v == m.kernel_size:
                continue
            if default is not None and (v == default or _json(v) == _json(default)
                                        or (isinstance(default, tuple) and _json(v) == [default[0]] * 2)):
                continue
            entry[field] = _json(v)
        layers.append(entry)
    rebuilt = build_model(layers, input_shape, num_classes)
    mine = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in rebuilt.state_dict().items()}
    if mine != theirs:
        diff = sorted(set(mine.items()) ^ set(theirs.items()))
        raise ModelSpecError(f"the layer list does not rebuild this model for input {tuple(input_shape)} "
                             f"(state_dict entries differ: {diff[:4]})")
    return layers
