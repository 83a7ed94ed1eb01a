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

A table with ``nodes`` instead of ``layers`` describes a net that branches and joins (an
:class:`pyconv.nn.Graph`, see :mod:`pyconv.model_graph`). Caffe prototxt files and ConvNetJS
``layer_defs`` are read by :mod:`pyconv.formats` into these forms.
"""
import os

from . import nn
from .model_spec import _JOINS, ModelSpecError, _describe, _where, layer_type, make_layer  # noqa: F401 (re-exported)

__all__ = ["BUILTIN_MODELS", "ModelSpecError", "build_model", "build_classifier", "load_spec", "spec_for",
           "spec_from_model", "describe_source", "declared_input_shape", "spec_notes", "make_layer"]


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
    """Reads a model file: a JSON or TOML list of layers (or a table with a ``layers`` list, or a
    ``nodes`` list for a graph), ConvNetJS ``layer_defs`` (JSON, or the demo's JavaScript
    ``layer_defs.push({...})`` lines) or a Caffe prototxt; the last two come back translated."""
    from .formats import read_model_file

    return read_model_file(path)


def spec_for(model):
    """The layer list (or graph table) of a built-in name, a model file's path, or a spec itself."""
    if isinstance(model, (list, dict)):
        return model
    if model in BUILTIN_MODELS:
        return BUILTIN_MODELS[model]
    if isinstance(model, str) and (model.endswith((".json", ".toml", ".prototxt", ".js")) or os.path.exists(model)):
        return load_spec(model)
    raise ModelSpecError(f"unknown model {model!r}: use one of {', '.join(BUILTIN_MODELS)} or a .json/.toml/.prototxt "
                         "file")


def declared_input_shape(spec):
    """The (C, H, W) a model file declares for its input (Caffe's input shape, ConvNetJS's input
    layer), or None."""
    spec = spec_for(spec)
    shape = spec.get("input_shape") if isinstance(spec, dict) else None
    return tuple(int(d) for d in shape) if shape else None


def spec_notes(spec):
    """What a translated model file left out or changed, one sentence each."""
    spec = spec_for(spec)
    return list(spec.get("notes", ())) if isinstance(spec, dict) else []


def _layers_of(spec):
    spec = spec_for(spec)
    if isinstance(spec, dict):
        if "nodes" in spec:
            return None
        layers = spec.get("layers")
        if not isinstance(layers, list) or not layers:
            raise ModelSpecError("a model table needs a non-empty 'layers' list (or a 'nodes' list for a graph)")
        return layers
    return spec


def build_model(spec, input_shape, num_classes):
    """A :class:`pyconv.nn.Sequential` from a layer list (or built-in name / file) for
    ``input_shape`` = (C, H, W) and ``num_classes`` outputs (the value ``"classes"`` in a field);
    an :class:`pyconv.nn.Graph` from a graph table (``nodes``)."""
    try:
        if _layers_of(spec) is None:
            from .model_graph import build_graph

            return build_graph(spec_for(spec), input_shape, num_classes)[0]
        return nn.Sequential(*_build(spec, input_shape, num_classes)[0])
    except ModelSpecError as exc:
        raise ModelSpecError(f"{exc}{_declared_hint(spec, input_shape)}") from None


def _declared_hint(spec, input_shape, dataset=None):
    """`` (model file X declares an input of 1x28x28 (CxHxW); the input is 1x8x8)`` when they differ."""
    declared = declared_input_shape(spec)
    if not declared or tuple(declared) == tuple(input_shape):
        return ""
    what = f"the {dataset} images are" if dataset else "the input is"
    return (f" ({describe_source(spec)} declares an input of {'x'.join(map(str, declared))} (CxHxW); {what} "
            f"{'x'.join(map(str, input_shape))})")


def describe_source(model):
    """How messages name a model: ``model file lec.json`` or ``model digits-cnn``."""
    if isinstance(model, str) and model not in BUILTIN_MODELS:
        return f"model file {model}"
    if isinstance(model, dict) and model.get("file"):
        return f"model file {model['file']}"
    return f"model {model}" if isinstance(model, str) else "the model"


def build_classifier(spec, input_shape, num_classes, source=None, dataset=None):
    """:func:`build_model`, checked to end in one score per class (what cross-entropy needs), so
    that a model file's mistake is reported before training starts, naming the fix."""
    source = source or describe_source(spec)
    try:
        if _layers_of(spec) is None:
            from .model_graph import build_graph

            model, out, last, last_layer = build_graph(spec_for(spec), input_shape, num_classes)
        else:
            modules, shapes, origin = _build(spec, input_shape, num_classes)
            model, out = nn.Sequential(*modules), shapes[-1]
            last_layer = _layers_of(spec)[origin[-1]]
            last = _where(origin[-1], type(modules[-1]).__name__, last_layer)
    except ModelSpecError as exc:
        raise ModelSpecError(f"{exc}{_declared_hint(spec, input_shape, dataset)}") from None
    data = f"the {dataset} data set has" if dataset else "there are"
    origin = last_layer.get("origin") if isinstance(last_layer, dict) else None
    field = origin.get("classes_field") if isinstance(origin, dict) else None
    if len(out) != 1:
        vol = "x".join(map(str, out))
        fix = ('{"type": "Linear", "out_features": "classes"} as the last layer' if not field else
               f"a layer with {field}: {num_classes} at the end")
        raise ModelSpecError(
            f"{source} ends in a {vol} {'volume (CxHxW)' if len(out) == 3 else 'array'} after {last}, but training "
            f"needs one score per class ({data} {num_classes}): add {fix}")
    if out[0] != num_classes:
        fix = (f'"out_features": "classes" (or {num_classes})' if not field else f"{field}: {num_classes}")
        raise ModelSpecError(
            f"{source}: {last} gives {out[0]} outputs, but {data} {num_classes} classes: make the last layer {fix}")
    return model


def _build(spec, input_shape, num_classes):
    """(modules, output shape after each, spec index of each) for a layer list."""
    layers = _layers_of(spec)
    shape = tuple(input_shape)
    modules, shapes, origin = [], [], []
    for i, layer in enumerate(layers):
        name, _ = layer_type(i, layer)
        if name in _JOINS:
            raise ModelSpecError(f"{_where(i, name, layer)}: {name} joins several inputs, so it belongs in a graph "
                                 "(a 'nodes' list whose nodes name their 'inputs'), not in a layer list")
        if name == "Linear" and len(shape) == 3:
            modules.append(nn.Flatten())
            shape = (shape[0] * shape[1] * shape[2],)
            shapes.append(shape)
            origin.append(i)
        module, shape = make_layer(_where(i, name, layer), layer, [shape], num_classes)
        modules.append(module)
        shapes.append(shape)
        origin.append(i)
    return modules, shapes, origin


def spec_from_model(model, input_shape, num_classes):
    """The layer list that rebuilds ``model`` with :func:`build_model`, checked by rebuilding it
    for ``input_shape``: an ``nn.Sequential`` (indexed, not named) of the layers a model file can
    describe, or an ``nn.Graph`` of them (a ``nodes`` table). Raises :class:`ModelSpecError`
    saying why when there is none."""
    if isinstance(model, nn.Graph):
        from .model_graph import spec_from_graph

        spec = spec_from_graph(model, _describe)
    elif isinstance(model, nn.Sequential):
        spec = []
        for i, (name, m) in enumerate(model.named_children()):
            if name != str(i):
                raise ModelSpecError(f"layer {name!r}: a Sequential with named layers cannot be described as a layer "
                                     "list (its state_dict keys are the names)")
            spec.append(_describe(f"layer {i}", m))
    else:
        raise ModelSpecError(f"a {type(model).__name__} cannot be described as a layer list (only an nn.Sequential "
                             "or nn.Graph of pyconv.nn layers can)")
    rebuilt = build_model(spec, input_shape, num_classes)
    mine = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in rebuilt.state_dict().items()}
    if mine != theirs:
        diff = sorted(set(mine.items()) ^ set(theirs.items()))
        raise ModelSpecError(f"the layer list does not rebuild this model for input {tuple(input_shape)} "
                             f"(state_dict entries differ: {diff[:4]})")
    return spec
