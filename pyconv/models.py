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

__all__ = ["BUILTIN_MODELS", "ModelSpecError", "build_model", "load_spec", "spec_for"]


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
    layers = spec_for(spec)
    shape = tuple(input_shape)
    modules = []
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
    return nn.Sequential(*modules)


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
