"""Model files from other frameworks: Caffe prototxt (:mod:`.caffe`) and ConvNetJS layer_defs
(:mod:`.convnetjs`), read into pyconv's own model tables (layer lists and graphs, see
:mod:`pyconv.models` and :mod:`pyconv.model_graph`). :func:`read_model_file` decides the format
by extension and content."""
import os

from ..model_spec import ModelSpecError
from .files import read_bytes

__all__ = ["read_model_file", "read_bytes", "FORMATS"]

FORMATS = ("pyconv JSON/TOML (torch's names)", "Caffe prototxt", "ConvNetJS layer_defs (JSON or the demo's JavaScript)")


def read_model_file(path):
    """The model table of the file at ``path``: a layer list (list), a table with ``layers`` or
    ``nodes`` (dict); translated ones carry ``source``, ``file``, ``notes`` and ``input_shape``."""
    from .. import model_spec as models
    from . import caffe, convnetjs

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".prototxt":
        return caffe.load(path)
    raw = read_bytes(path)
    if ext == ".toml":
        return models._layer_list(models._read_json_or_toml(path, raw), path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelSpecError(f"{path}: not a text file (byte {exc.start} is not UTF-8): a model file is JSON, TOML, a "
                             "Caffe prototxt or ConvNetJS layer_defs") from None
    try:
        doc = models._read_json_or_toml(path, raw)
    except ModelSpecError as exc:
        if caffe.looks_like_prototxt(text):
            return caffe.translate(text, path)
        if ".push" in text or "layer_defs" in text:
            layers, trainer = convnetjs.parse_js(text, path)
            return convnetjs.translate(layers, path, trainer)
        if ext == ".json":
            raise
        raise ModelSpecError(f"{path}: not a model file pyconv reads ({'; '.join(FORMATS)}): as JSON, "
                             f"{str(exc).split(': ', 2)[-1]}") from None
    fields = {f for _, required, optional in models._LAYERS.values() for f in required + optional}
    kind = convnetjs.classify(doc, set(models._LAYERS), fields)
    if kind == "convnetjs":
        layers = doc.get("layers") if isinstance(doc, dict) else doc
        return convnetjs.translate(layers, path)
    if kind == "saved-net":
        raise ModelSpecError(f"{path} is a saved ConvNetJS net (net.toJSON(): layers with layer_type and weights); "
                             "pyconv reads the layer_defs that built it (the list passed to net.makeLayers)")
    if kind != "pyconv":
        raise ModelSpecError(f"{path} {kind}")
    spec = models._layer_list(doc, path)
    layers = spec.get("layers") if isinstance(spec, dict) and "layers" in spec else spec
    if isinstance(layers, list) and layers and all(isinstance(x, dict) for x in layers):
        known = set(a.lower() for a in models._ALIASES) | set(models._LAYERS)
        if not any(str(x.get("type")).lower() in known or x.get("type") in known for x in layers):
            raise ModelSpecError(
                f"{path}: neither a pyconv layer list (types {', '.join(list(models._LAYERS)[:6])}, ... with torch's "
                f"argument names) nor ConvNetJS layer_defs (types {', '.join(convnetjs.TYPES[:6])}, ... with sx, "
                f"filters, num_neurons): layer 0 is {_short(layers[0])}")
    return spec


def _short(layer):
    text = repr({k: v for k, v in layer.items() if k != "__line__"})
    return text if len(text) < 80 else text[:77] + "..."
