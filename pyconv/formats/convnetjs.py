"""ConvNetJS ``layer_defs`` (the CS231n browser demo's network definitions) as pyconv layer lists.

Read from JSON (a list of layer objects) or straight from the demo's JavaScript
(``layer_defs.push({type:'conv', sx:5, filters:16, ...});`` lines, unquoted keys and single
quotes allowed; the trainer's options are reported, not applied). ConvNetJS's own rules are
kept (karpathy/convnetjs ``src/``): ``input`` (out_sx / out_sy / out_depth, also sx / sy /
depth / width / height) declares the volume; ``conv`` (filters, sx, sy = sx, stride 1, pad 0)
and ``pool`` (max pooling: sx, sy = sx, stride **2**, pad 0) both give
``floor((in + 2 * pad - sx) / stride + 1)`` per side, which is torch's floor rounding; ``fc``
(num_neurons, or filters); ``activation`` relu / sigmoid / tanh / maxout (group_size 2) and
``drop_prob`` on a conv or fc add those layers after it, as ConvNetJS's desugaring does;
``softmax`` (num_classes) is an fc layer of num_classes scores (the softmax is the loss's);
``lrn`` (k, n, alpha, beta, n odd) is torch's LocalResponseNorm. Weights start as ConvNetJS's
(gaussian, std sqrt(1 / fan-in)), biases at ``bias_pref`` (0.1 before a relu, else 0).
``svm`` and ``regression`` (other losses) are reported as unsupported.
"""
import re

from ..model_spec import ModelSpecError

__all__ = ["TYPES", "classify", "translate", "parse_js"]

TYPES = ("input", "conv", "pool", "fc", "relu", "sigmoid", "tanh", "maxout", "dropout", "lrn", "softmax", "svm",
         "regression")
_FIELDS = {
    "input": ("out_sx", "out_sy", "out_depth", "sx", "sy", "depth", "width", "height"),
    "conv": ("sx", "sy", "filters", "stride", "pad", "activation", "drop_prob", "bias_pref", "l1_decay_mul",
             "l2_decay_mul", "group_size"),
    "pool": ("sx", "sy", "stride", "pad"),
    "fc": ("num_neurons", "filters", "activation", "drop_prob", "bias_pref", "l1_decay_mul", "l2_decay_mul",
           "group_size"),
    "relu": (), "sigmoid": (), "tanh": (), "maxout": ("group_size",), "dropout": ("drop_prob",),
    "lrn": ("k", "n", "alpha", "beta"), "softmax": ("num_classes",), "svm": ("num_classes",),
    "regression": ("num_neurons",),
}
_COMPUTED = ("in_sx", "in_sy", "in_depth")  # ConvNetJS fills these in itself
ONLY_CONVNETJS = {"sx", "sy", "filters", "num_neurons", "num_classes", "out_sx", "out_sy", "out_depth", "drop_prob",
                  "activation", "bias_pref", "l1_decay_mul", "l2_decay_mul", "pad", "n", "depth", "width", "height"}


def classify(doc, torch_types, torch_fields):
    """``"convnetjs"``, ``"pyconv"``, ``"saved-net"`` (ConvNetJS's net.toJSON(), with weights) or
    an error message: whether a parsed JSON document is ConvNetJS layer_defs or pyconv's own."""
    layers = doc.get("layers") if isinstance(doc, dict) else doc
    if isinstance(doc, dict) and "nodes" in doc:
        return "pyconv"
    if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
        return "pyconv"  # the pyconv reader words the error
    if any("layer_type" in x for x in layers):
        return "saved-net"
    js = [(i, k) for i, x in enumerate(layers) for k in x if k in ONLY_CONVNETJS]
    if layers and layers[0].get("type") == "input":
        js.insert(0, (0, "type 'input'"))
    torch = [(i, k) for i, x in enumerate(layers) for k in x if k in torch_fields and k not in _all_fields()]
    torch += [(i, f"type {x['type']!r}") for i, x in enumerate(layers) if x.get("type") in torch_types]
    if js and torch:
        (a, ka), (b, kb) = js[0], torch[0]
        return (f"mixes ConvNetJS layer_defs (layer {a}: {ka}) with pyconv's torch-named layers (layer {b}: {kb}): "
                "use one format")
    if js:
        return "convnetjs"
    return "pyconv"


def _all_fields():
    return {f for fields in _FIELDS.values() for f in fields}


def _num(v, what, problems, where, positive=True, integer=True):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (not integer or float(v).is_integer())
    if not ok or (positive and v < 1) or (not positive and v < 0):
        kind = ("a positive" if positive else "a non-negative") + (" integer" if integer else " number")
        problems.append(f"{where}: {what} must be {kind}, got {v!r}")
        return None
    return int(v) if integer else float(v)


def translate(layers, path, trainer=None):
    """The pyconv model table ``{"layers": [...], "input_shape": [C, H, W], "source":
    "convnetjs", "notes": [...]}`` of ConvNetJS layer_defs; ModelSpecError listing every problem
    at once, each naming the layer (and its line, for JavaScript)."""
    problems, notes, out = [], [], []
    input_shape = None
    decays, dropped_bias_pref = [], []
    for i, d in enumerate(layers):
        kind = d.get("type")
        where = f"layer_defs[{i}] ({kind})" + (f", line {d['__line__']}" if "__line__" in d else "")
        if kind not in TYPES:
            problems.append(f"{where}: unknown ConvNetJS layer type {kind!r} (types: {', '.join(TYPES)})")
            continue
        unknown = sorted(set(d) - set(_FIELDS[kind]) - set(_COMPUTED) - {"type", "__line__"})
        if unknown:
            problems.append(f"{where}: unknown field(s) {', '.join(unknown)} for a ConvNetJS {kind} layer (fields: "
                            f"{', '.join(_FIELDS[kind]) or 'none'})")
        origin = {"where": where}
        if kind == "input":
            if i != 0:
                problems.append(f"{where}: the input layer must come first (ConvNetJS's rule)")
                continue
            depth = d.get("out_depth", d.get("depth"))
            sx, sy = d.get("out_sx", d.get("sx", d.get("width", 1))), d.get("out_sy", d.get("sy", d.get("height", 1)))
            dims = [_num(depth, "out_depth", problems, where), _num(sy, "out_sy", problems, where),
                    _num(sx, "out_sx", problems, where)]
            input_shape = dims if None not in dims else None
            continue
        if i == 0:
            problems.append(f"{where}: the first layer must be the input layer ({{type: 'input', out_sx, out_sy, "
                            "out_depth}}, ConvNetJS's rule)")
        if kind in ("svm", "regression"):
            problems.append(f"{where}: the {kind} loss is not supported: pyconv trains with softmax cross-entropy "
                            "(ConvNetJS's softmax layer)")
            continue
        if kind in ("conv", "fc"):
            if "l1_decay_mul" in d or "l2_decay_mul" in d:
                decays.append(str(i))
            act = d.get("activation")
            bias = d.get("bias_pref", 0.1 if act == "relu" else 0.0)
            if not isinstance(bias, (int, float)) or isinstance(bias, bool):
                problems.append(f"{where}: bias_pref must be a number, got {bias!r}")
                bias = 0.0
            init = {"weight_init": {"type": "lecun"}, "bias_init": {"type": "constant", "value": float(bias)}}
            if kind == "conv":
                filters = _num(d.get("filters"), "filters", problems, where)
                sx = _num(d.get("sx"), "sx", problems, where)
                sy = _num(d.get("sy", sx), "sy", problems, where) if sx is not None else None
                stride = _num(d.get("stride", 1), "stride", problems, where)
                pad = _num(d.get("pad", 0), "pad", problems, where, positive=False)
                if None not in (filters, sx, sy, stride, pad):
                    out.append(dict({"type": "Conv2d", "out_channels": filters,
                                     "kernel_size": sx if sx == sy else [sy, sx], "stride": stride, "padding": pad},
                                    **init, origin=origin))
            else:
                n = _num(d.get("num_neurons", d.get("filters")), "num_neurons", problems, where)
                if n is not None:
                    out.append(dict({"type": "Linear", "out_features": n}, **init,
                                    origin=dict(origin, classes_field="num_neurons")))
            if act is not None:
                acts = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "maxout": "Maxout"}
                if act not in acts:
                    problems.append(f"{where}: activation {act!r} is not a ConvNetJS activation (relu, sigmoid, tanh, "
                                    "maxout)")
                elif act == "maxout":
                    gs = _num(d.get("group_size", 2), "group_size", problems, where)
                    if gs is not None:
                        out.append({"type": "Maxout", "group_size": gs, "origin": origin})
                else:
                    out.append({"type": acts[act], "origin": origin})
            if "drop_prob" in d:
                out.append(_dropout(d["drop_prob"], where, problems, notes, origin))
        elif kind == "pool":
            sx = _num(d.get("sx"), "sx", problems, where)
            sy = _num(d.get("sy", sx), "sy", problems, where) if sx is not None else None
            stride = _num(d.get("stride", 2), "stride", problems, where)
            pad = _num(d.get("pad", 0), "pad", problems, where, positive=False)
            if None not in (sx, sy, stride, pad):
                if 2 * pad > min(sx, sy):
                    problems.append(f"{where}: pad {pad} with sx {sx}: pyconv's pooling (torch's) takes at most half "
                                    "the window as padding")
                else:
                    out.append({"type": "MaxPool2d", "kernel_size": sx if sx == sy else [sy, sx], "stride": stride,
                                "padding": pad, "origin": origin})
        elif kind in ("relu", "sigmoid", "tanh"):
            out.append({"type": {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh"}[kind], "origin": origin})
        elif kind == "maxout":
            gs = _num(d.get("group_size", 2), "group_size", problems, where)
            if gs is not None:
                out.append({"type": "Maxout", "group_size": gs, "origin": origin})
        elif kind == "dropout":
            out.append(_dropout(d.get("drop_prob", 0.5), where, problems, notes, origin))
        elif kind == "lrn":
            missing = [k for k in ("k", "n", "alpha", "beta") if k not in d]
            if missing:
                problems.append(f"{where}: ConvNetJS's lrn layer needs {', '.join(missing)} (it has no defaults)")
                continue
            n = _num(d["n"], "n", problems, where)
            if n is not None and n % 2 == 0:
                problems.append(f"{where}: n {n} is even: ConvNetJS's window is then n + 1 channels wide (it warns "
                                "that n should be odd), which pyconv does not reproduce")
            elif n is not None:
                vals = [_num(d[k], k, problems, where, positive=False, integer=False) for k in ("k", "alpha", "beta")]
                if None not in vals:
                    out.append({"type": "LocalResponseNorm", "size": n, "k": vals[0], "alpha": vals[1],
                                "beta": vals[2], "origin": origin})
        elif kind == "softmax":
            n = _num(d.get("num_classes"), "num_classes", problems, where)
            if i != len(layers) - 1:
                problems.append(f"{where}: softmax is ConvNetJS's loss layer and must come last")
            if n is not None:
                out.append({"type": "Linear", "out_features": n, "weight_init": {"type": "lecun"},
                            "bias_init": {"type": "constant", "value": 0.0},
                            "origin": dict(origin, classes_field="num_classes")})
                notes.append(f"{where}: the softmax layer is an fc layer of {n} scores (ConvNetJS adds it itself); "
                             "pyconv's cross-entropy loss applies the softmax, and `pyconv predict` prints the "
                             "probabilities")
    if decays:
        notes.append(f"l1_decay_mul / l2_decay_mul (layers {', '.join(decays)}) are not applied: pyconv's "
                     "--weight-decay applies to every parameter")
    if trainer:
        notes.append(f"the demo's trainer ({trainer}) is not applied: pyconv train's --optimizer (adam or sgd), "
                     "--batch-size, --lr and --weight-decay choose the training")
    if problems:
        raise ModelSpecError(f"{path}: {len(problems)} thing{'s' if len(problems) > 1 else ''} pyconv cannot load from "
                             "these ConvNetJS layer_defs: " + "; ".join(problems))
    if not out:
        raise ModelSpecError(f"{path}: the ConvNetJS layer_defs have no layer after the input")
    return {"layers": out, "input_shape": input_shape, "source": "convnetjs", "file": path, "notes": notes}


def _dropout(p, where, problems, notes, origin):
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
        problems.append(f"{where}: drop_prob must be a probability in [0, 1], got {p!r}")
        p = 0.5
    if p != 0.5:
        notes.append(f"{where}: dropout is torch's (kept values scaled by 1 / (1 - {p}) in training, identity at test "
                     f"time); ConvNetJS scales by drop_prob at test time instead, which equals it only for 0.5")
    return {"type": "Dropout", "p": float(p), "origin": origin}


# --------------------------------------------------------------------------- the demo's JavaScript

_JS_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>[{}\[\]:,()])
""", re.VERBOSE | re.DOTALL)


class _JS:
    def __init__(self, text, path):
        self.text, self.path = text, path

    def line(self, pos):
        return self.text.count("\n", 0, pos) + 1

    def fail(self, pos, what):
        raise ModelSpecError(f"{self.path}: line {self.line(pos)}: {what} (reading the layer_defs as JavaScript)")

    def token(self, pos):
        while True:
            m = _JS_TOKEN.match(self.text, pos)
            if m is None:
                if pos >= len(self.text):
                    return "eof", "", pos, pos
                self.fail(pos, f"unexpected character {self.text[pos]!r}")
            if m.lastgroup != "space":
                return m.lastgroup, m.group(), m.start(), m.end()
            pos = m.end()

    def value(self, pos):
        kind, text, start, end = self.token(pos)
        if kind == "punct" and text == "{":
            obj, pos = {"__line__": self.line(start)}, end
            while True:
                kind, text, start, end = self.token(pos)
                if kind == "punct" and text == "}":
                    return obj, end
                if kind not in ("ident", "string"):
                    self.fail(start, f"expected a key or '}}', got {text!r}")
                key = text if kind == "ident" else text[1:-1]
                kind, text, start, pos = self.token(end)
                if text != ":":
                    self.fail(start, f"expected ':' after {key!r}")
                obj[key], pos = self.value(pos)
                kind, text, start, end = self.token(pos)
                if text == ",":
                    pos = end
                elif text != "}":
                    self.fail(start, f"expected ',' or '}}', got {text!r}")
        if kind == "punct" and text == "[":
            items, pos = [], end
            while True:
                kind, text, start, end = self.token(pos)
                if text == "]":
                    return items, end
                item, pos = self.value(pos)
                items.append(item)
                kind, text, start, end = self.token(pos)
                if text == ",":
                    pos = end
                elif text != "]":
                    self.fail(start, f"expected ',' or ']', got {text!r}")
        if kind == "string":
            return text[1:-1].replace("\\'", "'").replace('\\"', '"'), end
        if kind == "number":
            v = float(text)
            return (int(v) if v.is_integer() and not any(c in text for c in ".eE") else v), end
        if kind == "ident" and text in ("true", "false", "null", "undefined"):
            return {"true": True, "false": False}.get(text), end
        self.fail(start, f"expected a value, got {text!r}")


def parse_js(text, path):
    """(layer_defs, the trainer's options as written or None) from the demo's JavaScript."""
    js = _JS(text, path)
    layers = []
    for m in re.finditer(r"\.push\s*\(", text):
        value, pos = js.value(m.end())
        kind, tok, start, _ = js.token(pos)
        if tok != ")":
            js.fail(start, f"expected ')' after the pushed object, got {tok!r}")
        layers.append(value)
    if not layers:
        m = re.search(r"layer_defs\s*=\s*\[", text)
        if m is None:
            raise ModelSpecError(f"{path}: no layer_defs found: expected JSON, or ConvNetJS's JavaScript "
                                 "(layer_defs.push({type: 'input', ...}); lines)")
        layers, _ = js.value(m.end() - 1)
    bad = [i for i, x in enumerate(layers) if not isinstance(x, dict)]
    if bad:
        raise ModelSpecError(f"{path}: layer_defs[{bad[0]}] is not an object {{type: ..., ...}}")
    trainer = None
    m = re.search(r"Trainer\s*\(\s*\w+\s*,\s*\{", text)
    if m:
        opts, _ = js.value(m.end() - 1)
        opts.pop("__line__", None)
        trainer = ", ".join(f"{k}: {v}" for k, v in opts.items())
    return layers, trainer
