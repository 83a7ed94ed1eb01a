"""Caffe prototxt files as pyconv graph tables (see :mod:`pyconv.model_graph`).

Both forms are read: ``layer { type: "Convolution" ... }`` and the legacy ``layers { type:
CONVOLUTION ... }`` (V1, with its enum type names), with the net's input from ``input`` /
``input_shape`` / ``input_dim``, an ``Input`` layer, or a data layer (Data, ImageData, HDF5Data,
MemoryData, WindowData, DummyData: skipped, their first top is the image input). ``bottom`` and
``top`` names make the graph; a layer whose top is its bottom (in place) replaces the blob. The
net is the one Caffe builds for training (phase TRAIN, level 0, no stages).

Every layer keeps Caffe's semantics where they differ from torch's: pooling rounds up (CEIL,
Caffe's default; the last window must start inside the input or its leading padding, which is
torch's ``ceil_mode=True``), AVE pooling divides by the window clipped to the padded input
(torch's ``count_include_pad=True``), LRN is ``k + alpha / local_size * sum``, BatchNorm has no
affine part and its own moving average (:class:`pyconv.nn.CaffeBatchNorm2d`), fillers
initialise the weights. What pyconv cannot do is listed all at once, each item with its line
and layer; what it leaves out or changes is returned as ``notes``.
"""
import os

from ..model_spec import ModelSpecError
from .files import read_bytes
from .caffe_layers import HANDLERS, IGNORED, check_common, data_input_shape
from .caffe_schema import V1_TYPES, Params, Problems
from .prototxt import TextFormatError, parse

__all__ = ["load", "translate", "looks_like_prototxt"]

DATA_LAYERS = ("Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData")
OTHER_LOSSES = ("EuclideanLoss", "HingeLoss", "SigmoidCrossEntropyLoss", "InfogainLoss", "MultinomialLogisticLoss",
                "ContrastiveLoss")


def looks_like_prototxt(text):
    head = "\n".join(line for line in text.splitlines()[:200] if not line.lstrip().startswith("#"))
    return any(k in head for k in ("layer {", "layers {", "layer{", "layers{", "input_dim", "input_shape")) or \
        head.lstrip().startswith(("name:", "input:"))


def load(path):
    path = os.fspath(path)
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelSpecError(f"{path}: not a text file (byte {exc.start} is not UTF-8); a prototxt is text (a "
                             ".caffemodel holds weights, which pyconv does not read)") from None
    return translate(text, path)


class _Layer:
    """One layer of either form: name, V2 type name, bottoms, tops, line, and its Params."""

    def __init__(self, params, v1, index):
        self.p, self.v1 = params, v1
        raw = params.get("type")
        self.type = (V1_TYPES.get(raw, raw) if v1 else raw) or ""
        self.name = params.get("name") or f"{self.type.lower() or 'layer'}{index}"
        self.bottoms, self.tops = params.list("bottom"), params.list("top")
        self.line = params.line()
        self.label = f'layer "{self.name}" ({self.type or "no type"})'

    def param(self, field):
        """The layer's ``field`` (its Params), or None."""
        return self.p.get(field)


def _included(layer, problems):
    """Whether the layer is in Caffe's training net (phase TRAIN, level 0, no stages)."""
    p = layer.p
    include, exclude = p.list("include"), p.list("exclude")
    if include and exclude:
        problems.error(layer.line, f"{layer.label}: has both include and exclude rules (Caffe allows one kind)")
    if p.get("phase", "TRAIN") != "TRAIN":
        return False

    def meets(rule):
        if rule.get("phase", "TRAIN") != "TRAIN":
            return False
        if rule.has("min_level") and rule.get("min_level") > 0:
            return False
        if rule.has("max_level") and rule.get("max_level") < 0:
            return False
        return not rule.list("stage")  # the training net has no stages (so every not_stage holds)

    if include:
        return any(meets(r) for r in include)
    return not any(meets(r) for r in exclude)


class _Net:
    def __init__(self, path, problems):
        self.path, self.problems = path, problems
        self.inputs = {}  # blob -> declared (C, H, W) or None
        self.producer = {}  # blob -> node name, input blob, or None (unknown: already reported)
        self.nodes, self.names, self.losses, self.labels = [], set(), [], set()

    def add_input(self, blob, shape, line, what=None):
        """``shape``: the dims the file gives (N, C, H, W), or a (C, H, W) a data layer fixes, or None."""
        if blob in self.producer and blob not in self.inputs:
            self.problems.error(line, f"the input {blob!r} is also a layer's output")
        if shape is not None or blob not in self.inputs:
            self.inputs[blob] = (shape, line, what or f"input {blob!r}") if shape is not None else None
        self.producer[blob] = blob

    def unique(self, name):
        clean = name.replace(".", "_") or "layer"
        out, n = clean, 2
        while out in self.names or out in self.inputs:
            out, n = f"{clean}_{n}", n + 1
        if out != name:
            self.problems.note(f'layer "{name}" is named "{out}" in pyconv (node names are unique, without ".")')
        self.names.add(out)
        return out

    def read(self, layer, count=None):
        """The producers of a layer's bottoms, or None (reported) when one names no blob."""
        if count is not None and len(layer.bottoms) not in count:
            want = " or ".join(map(str, count)) if len(count) < 3 else f"at least {min(count)}"
            self.problems.error(layer.line, f"{layer.label}: takes {want} bottom blob(s), has {len(layer.bottoms)}")
            return None
        out = []
        for b in layer.bottoms:
            if b not in self.producer:
                known = ", ".join(sorted(self.producer)) or "none"
                self.problems.error(layer.line, f"{layer.label}: bottom {b!r} is not the top of an earlier layer or an "
                                                f"input (known blobs: {known})")
                return None
            if self.producer[b] is None:
                return None
            out.append(self.producer[b])
        return out


class _Bottoms:
    """A layer seen with only some of its bottoms (a loss layer's scores, without the labels)."""

    def __init__(self, layer, bottoms):
        self.line, self.label, self.bottoms = layer.line, layer.label, bottoms


def _declared(dims, line, what, problems):
    dims = [int(d) for d in dims]
    if len(dims) == 4:
        if min(dims[1:]) < 1:
            problems.error(line, f"{what}: the input shape {dims} has a size below 1")
            return None
        return tuple(dims[1:])
    problems.note(f"{what} declares a {len(dims)}-D input {dims}; pyconv declares an input volume only for 4-D "
                  "shapes (N, C, H, W): give --input")
    return None


def _net_inputs(net, params, problems):
    """The NetParameter's own input / input_shape / input_dim fields (the deprecated form)."""
    names, shapes, dims = params.list("input"), params.list("input_shape"), params.list("input_dim")
    line = params.line("input") if names else params.line()
    if shapes and dims:
        problems.error(line, "both input_shape and input_dim are given (Caffe allows one)")
    if dims and len(dims) != 4 * len(names):
        problems.error(params.line("input_dim"), f"input_dim has {len(dims)} values for {len(names)} input(s): Caffe "
                                                 "needs 4 per input (N, C, H, W)")
        dims = []
    if shapes and len(shapes) != len(names):
        problems.error(params.line("input_shape"), f"{len(shapes)} input_shape(s) for {len(names)} input(s)")
        shapes = []
    for i, blob in enumerate(names):
        shape = None
        if shapes:
            shape = shapes[i].list("dim")
        elif dims:
            shape = dims[4 * i:4 * i + 4]
        net.add_input(blob, shape, line)


def translate(text, path="<prototxt>"):
    """The graph table (a dict, see :mod:`pyconv.model_graph`) of a prototxt's text; ModelSpecError
    naming the line for a malformed file, or listing everything unsupported at once."""
    try:
        root = parse(text)
    except TextFormatError as exc:
        raise ModelSpecError(f"{path}: line {exc.line}, column {exc.column}: {exc} (not a valid prototxt)") from None
    problems = Problems()
    try:
        params = Params(root, "NetParameter", problems, "")
    except TextFormatError as exc:
        where = _layer_at(root, exc.line)
        raise ModelSpecError(f"{path}: line {exc.line}, column {exc.column}{where}: {exc}") from None
    v2, v1 = params.list("layer"), params.list("layers")
    if v2 and v1:
        problems.error(params.line("layers"), "the file mixes layer { } and the legacy layers { } forms (Caffe reads "
                                              "one)")
    if not v2 and not v1:
        raise ModelSpecError(f"{path}: no layer {{ }} (or legacy layers {{ }}) in the file: not a Caffe net "
                             "definition (a solver prototxt names its net in 'net:' or 'train_net:')"
                             if "base_lr" not in text else
                             f"{path}: this is a Caffe solver prototxt (base_lr, ...), not a net: pass the file its "
                             "'net:' field names")
    net = _Net(path, problems)
    _net_inputs(net, params, problems)
    layers = [_Layer(p, p.schema_name == "V1LayerParameter", i) for i, p in enumerate(v2 or v1)]
    skipped = {"data": [], "phase": [], "ignored": []}
    for layer in layers:
        if layer.v1 and layer.p.has("layer"):
            problems.error(layer.line, f"{layer.label}: the V0 form (a layer {{ }} inside layers {{ }}) is not read: "
                                       "upgrade the file with Caffe's upgrade_net_proto_text")
            continue
        if not layer.type:
            problems.error(layer.line, f"{layer.label}: has no type")
            continue
        if not _included(layer, problems):
            if layer.type in IGNORED:
                skipped["ignored"].append(layer.name)
            elif layer.type not in DATA_LAYERS:
                skipped["phase"].append(layer.name)
            continue  # its tops stay unknown to the training net, as in Caffe
        check_common(layer, problems)
        _add(layer, net, problems, skipped)
    spec = _finish(net, params, problems, skipped, path) if not problems.errors else None
    if problems.errors:
        items = sorted(((line, text if text.startswith("layer ") else _layer_label(root, line) + text)
                        for line, text in problems.errors), key=lambda e: e[0])
        raise ModelSpecError(f"{path}: {len(items)} thing{'s' if len(items) > 1 else ''} pyconv cannot load: "
                             + "; ".join(f"line {line}: {text}" for line, text in items))
    return spec


def _enclosing_layer(root, line):
    """(name, type) of the layer whose text holds ``line``, or None."""
    best = None
    for f in root.fields:
        if f.name in ("layer", "layers") and hasattr(f.value, "fields") and f.value.line <= line:
            best = f.value
    if best is None:
        return None
    get = {x.name: x.value.text for x in best.fields if x.name in ("name", "type") and hasattr(x.value, "text")}
    return get.get("name"), V1_TYPES.get(get.get("type"), get.get("type")), best.line


def _layer_label(root, line):
    """``layer "conv1" (Convolution): `` for the layer whose text holds ``line`` (or "")."""
    found = _enclosing_layer(root, line)
    return f'layer "{found[0] or "?"}" ({found[1] or "no type"}): ' if found else ""


def _layer_at(root, line):
    """`` (in layer "conv1")`` for the layer whose text holds ``line`` (or "")."""
    found = _enclosing_layer(root, line)
    if found is None:
        return ""
    return f' (in layer "{found[0]}")' if found[0] else f" (in the layer starting on line {found[2]})"


def _add(layer, net, problems, skipped):
    t = layer.type
    if t == "Input":
        p = layer.param("input_param")
        shapes = p.list("shape") if p is not None else []
        if shapes and len(shapes) not in (1, len(layer.tops)):
            problems.error(layer.line, f"{layer.label}: {len(shapes)} shapes for {len(layer.tops)} tops")
            shapes = []
        for i, top in enumerate(layer.tops):
            shape = shapes[min(i, len(shapes) - 1)].list("dim") if shapes else None
            net.add_input(top, shape, layer.line, layer.label)
        return
    if t in DATA_LAYERS:
        if not layer.tops:
            problems.error(layer.line, f"{layer.label}: has no top")
            return
        fixed = data_input_shape(layer)
        net.add_input(layer.tops[0], (1,) + tuple(fixed) if fixed else None, layer.line, layer.label)
        net.labels.update(layer.tops[1:])
        for top in layer.tops[1:]:
            net.producer[top] = None
        skipped["data"].append(layer.name)
        return
    if t == "SoftmaxWithLoss":
        if len(layer.bottoms) not in (2, 3):
            problems.error(layer.line, f"{layer.label}: takes 2 bottom blobs (scores, labels), has "
                                       f"{len(layer.bottoms)}")
            return
        # the labels come from --dataset: only the scores must be a blob of the net
        ins = net.read(_Bottoms(layer, layer.bottoms[:1]))
        weights = layer.p.list("loss_weight")
        if ins:
            net.losses.append((weights[0] if weights else 1.0, ins[0], layer.name))
        skipped["ignored"].append(layer.name)
        return
    if t in ("Accuracy", "Silence"):
        skipped["ignored"].append(layer.name)
        return
    if t in OTHER_LOSSES:
        problems.error(layer.line, f"{layer.label}: pyconv trains with softmax cross-entropy (Caffe's "
                                   f"SoftmaxWithLoss); the {t} loss is not supported")
        return
    if t == "Split":
        ins = net.read(layer, (1,))
        for top in layer.tops:
            net.producer[top] = ins[0] if ins else None
        return
    handler = HANDLERS.get(t)
    if handler is None:
        known = ", ".join(sorted(HANDLERS) + ["Input"] + list(DATA_LAYERS) + ["SoftmaxWithLoss", "Accuracy", "Split",
                                                                             "Silence"])
        problems.error(layer.line, f"{layer.label}: layer type {t!r} is not supported (supported: {known})")
        for top in layer.tops:
            net.producer[top] = None
        return
    entry, count = handler(layer, problems)
    ins = net.read(layer, count)
    if len(layer.tops) != 1:
        problems.error(layer.line, f"{layer.label}: has {len(layer.tops)} tops; pyconv reads layers with one")
    if ins is None or entry is None or len(layer.tops) != 1:
        for top in layer.tops:
            net.producer[top] = None
        return
    name = net.unique(layer.name)
    origin = {"where": f"{layer.label}, line {layer.line}"}
    if entry.get("type") in ("Linear", "Conv2d"):
        origin["classes_field"] = "num_output"
    node = dict({"name": name, "type": entry.pop("type"), "inputs": ins}, **entry, origin=origin)
    net.nodes.append(node)
    net.producer[layer.tops[0]] = name


def _finish(net, params, problems, skipped, path):
    """Picks the output, drops what does not lead to it, and assembles the graph table."""
    notes = problems.all_notes()
    by_name = {n["name"]: n for n in net.nodes}
    consumers = {}
    for n in net.nodes:
        for i in n["inputs"]:
            consumers.setdefault(i, []).append(n["name"])
    output = None
    if net.losses:
        weight = max(w for w, _, _ in net.losses)
        main = [x for x in net.losses if x[0] == weight][-1]
        output = main[1]
        others = [x[2] for x in net.losses if x is not main]
        if others:
            notes.append(f"the net is trained on the scores that loss layer \"{main[2]}\" reads; the other loss layers "
                         f"({', '.join(others)}) are auxiliary and left out")
    elif net.nodes:
        sinks = [n["name"] for n in net.nodes if n["name"] not in consumers]
        output = sinks[-1] if sinks else net.nodes[-1]["name"]
        if len(sinks) > 1:
            notes.append(f"the net has several outputs ({', '.join(sinks)}); pyconv uses the last, {output}")
    soft = None
    if output is not None and output in by_name and by_name[output]["type"] == "Softmax" and \
            len(consumers.get(by_name[output]["inputs"][0], ())) == 1:
        soft = by_name[output]
        output = soft["inputs"][0]
        notes.append(f'the final Softmax ("{soft["name"]}") is left out: pyconv trains on the scores before it '
                     "(its cross-entropy loss applies the softmax, as SoftmaxWithLoss does) and `pyconv predict` "
                     "prints the probabilities")
    if output is None or output in net.inputs:
        problems.error(params.line(), "the net has no layer pyconv could use (an empty net, or every layer was "
                                      "skipped)")
        return None
    if output not in by_name:  # reported already (a layer that failed)
        return None
    keep, stack = set(), [output]
    while stack:
        x = stack.pop()
        if x in keep or x not in by_name:
            continue
        keep.add(x)
        stack.extend(by_name[x]["inputs"])
    dropped = [n["name"] for n in net.nodes if n["name"] not in keep and n is not soft]
    if dropped:
        notes.append(f"layers that do not lead to the net's output are left out: {', '.join(dropped)}")
    used_inputs = sorted({i for n in net.nodes if n["name"] in keep for i in n["inputs"] if i in net.inputs})
    if not used_inputs:
        if not net.inputs:
            problems.error(params.line(), "the net declares no input (no input: field, Input layer or data layer)")
        return None
    if len(used_inputs) > 1:
        problems.error(params.line(), f"the net reads {len(used_inputs)} inputs ({', '.join(used_inputs)}); pyconv's "
                                      "models take one image")
        return None
    if skipped["data"]:
        notes.append(f"data layers ({', '.join(dict.fromkeys(skipped['data']))}) are not read: pyconv takes the images "
                     f"from --dataset and normalises each channel (their transform_param is not applied); "
                     f"{used_inputs[0]!r} is the input")
    if skipped["ignored"]:
        notes.append(f"training-only layers ({', '.join(skipped['ignored'])}) are recognised and not part of the net: "
                     "pyconv train computes the softmax cross-entropy loss and the accuracy itself")
    if skipped["phase"]:
        notes.append(f"layers only in Caffe's TEST phase are left out: {', '.join(skipped['phase'])}")
    nodes = [n for n in net.nodes if n["name"] in keep]
    spec = {"input": used_inputs[0], "nodes": nodes, "output": output, "source": "caffe", "file": path,
            "notes": notes}
    if params.get("name"):
        spec["name"] = params.get("name")
    declared = net.inputs.get(used_inputs[0])
    if declared:
        shape = _declared(*declared, problems)
        notes += [n for n in problems.all_notes() if n not in notes]  # what _declared noted
        if shape:
            spec["input_shape"] = list(shape)
    return spec
