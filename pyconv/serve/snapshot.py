"""What the page shows of the network, computed between two steps on a small fixed sample.

:class:`Probe` describes every layer once (type, volume written as ``pyconv summary`` writes it,
filter size and stride, parameters) and, when asked, runs the model in eval mode on a fixed
sample of test images (one per class): a forward pass whose every layer output keeps its
gradient (``Tensor.retain_grad``), and a backward pass of the sample's summed loss that computes
input gradients only. From that: each layer's activation maps and activation gradients for the
selected image with their min/max, the conv layers' weights and the training batch's weight
gradients, and the sample's top-3 classes. Eval mode and no parameter gradients: a snapshot
changes neither the weights, nor the BatchNorm statistics, nor any random generator, so a
``--serve`` run trains bitwise as one without it. Maps travel as base64 uint8 (scaled per layer,
weights per filter) with the real range beside them.
"""
import base64
import math

import numpy as np

from .. import nn
from ..summary import summary
from ..tensor import Tensor

__all__ = ["Probe", "describe_layers", "encode_bytes", "pick_sample", "quantize"]

MAX_FILTER_TILES = 512  # per conv layer: the first input channels of every filter, up to this many tiles


def _num(v):
    """A float for JSON (None for NaN/inf: JSON has no such numbers)."""
    v = float(v)
    return v if math.isfinite(v) else None


def _volume(shape):
    return "x".join(str(int(d)) for d in shape)


def _pair_text(v):
    """``2`` for (2, 2), ``1x2`` for (1, 2); a padding string (``same``) as it is."""
    if isinstance(v, str):
        return v
    a, b = (v[0], v[-1]) if isinstance(v, (tuple, list)) else (v, v)
    return str(a) if a == b else f"{a}x{b}"


def _geometry(m):
    """(filter, stride, padding) as text for conv and pooling layers, else Nones."""
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return f"{kh}x{kw}", _pair_text(m.stride), _pair_text(m.padding)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = m.kernel_size if isinstance(m.kernel_size, (tuple, list)) else (m.kernel_size, m.kernel_size)
        return f"{k[0]}x{k[-1]}", _pair_text(m.stride), _pair_text(m.padding)
    return None, None, None


def describe_layers(model, input_shape):
    """[{name, type, volume, params, filter, stride, padding, filters}] for the input and every
    leaf layer in the order they run, volumes CxHxW from :func:`pyconv.summary`."""
    modules = dict(model.named_modules())
    layers = [dict(name="input", type="input", volume=_volume(input_shape), params=0, filter=None, stride=None,
                   padding=None, filters=None)]
    for row in summary(model, input_shape).rows:
        m = modules.get(row.name)
        filt, stride, pad = _geometry(m) if m is not None else (None, None, None)
        layers.append(dict(name=row.name, type=row.layer, volume=_volume(row.output_shape), params=int(row.params),
                           filter=filt, stride=stride, padding=pad,
                           filters=int(m.out_channels) if isinstance(m, nn.Conv2d) else None))
    return layers


def pick_sample(y, classes, n=10):
    """Indices of a fixed sample: the first image of each class in class order, then the next ones."""
    y = np.asarray(y)
    picked = []
    for c in range(len(classes)):
        hit = np.flatnonzero(y == c)
        if len(hit) and len(picked) < n:
            picked.append(int(hit[0]))
    rest = [i for i in range(len(y)) if i not in set(picked)]
    return picked + rest[: max(0, n - len(picked))]


def encode_bytes(q):
    """uint8 array -> base64 text (the page decodes it with atob)."""
    return base64.b64encode(np.ascontiguousarray(q, np.uint8).tobytes()).decode("ascii")


def quantize(a, per_row=False):
    """{shape, min, max, data}: ``a`` scaled to 0..255 over the whole array (or per first-axis
    entry: one filter each) as base64 bytes, with its real min and max (NaN/inf drawn as 0)."""
    a = np.asarray(a, np.float32)
    finite = np.isfinite(a)
    clean = np.where(finite, a, np.float32(0)) if not finite.all() else a
    lo_all = float(clean.min()) if clean.size else 0.0
    hi_all = float(clean.max()) if clean.size else 0.0
    flat = clean.reshape(len(clean), -1) if per_row and clean.ndim > 1 else clean.reshape(1, -1)
    lo = flat.min(axis=1, keepdims=True) if flat.size else np.zeros((len(flat), 1), np.float32)
    span = (flat.max(axis=1, keepdims=True) - lo) if flat.size else np.zeros_like(lo)
    scale = np.divide(255.0, span, out=np.zeros_like(span), where=span > 0)
    q = np.rint((flat - lo) * scale).astype(np.uint8)
    return dict(shape=list(a.shape), min=_num(lo_all), max=_num(hi_all), data=encode_bytes(q))


def _stats(a):
    if a is None:
        return None
    a = np.asarray(a)
    finite = a[np.isfinite(a)]
    if not finite.size:
        return dict(min=None, max=None)
    return dict(min=_num(finite.min()), max=_num(finite.max()))


class Probe:
    """Snapshots of ``model`` on a fixed sample of ``images`` (N, C, H, W, normalised as the
    network sees them) with ``labels``; ``mean``/``std`` undo the normalisation for display."""

    def __init__(self, model, images, labels, classes, mean, std):
        self.model = model
        self.x = np.ascontiguousarray(images, np.float32)
        self.y = np.asarray(labels, np.int64)
        self.classes = list(classes)
        self.input_shape = tuple(self.x.shape[1:])
        self.layers = describe_layers(model, self.input_shape)
        self.leaves = [(name, m) for name, m in model.named_modules() if not m._modules]
        self.convs = [(name, m) for name, m in self.leaves if isinstance(m, nn.Conv2d)]
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        self.loss_fn = nn.CrossEntropyLoss(reduction="sum")

    def display_images(self):
        """The sample as the eye sees it: [{label, shape [H, W, C], data (base64 uint8)}]."""
        out = []
        for x, y in zip(self.x, self.y):
            img = np.clip(x * self.std + self.mean, 0.0, 1.0)
            q = np.rint(img.transpose(1, 2, 0) * 255).astype(np.uint8)
            out.append(dict(label=int(y), shape=list(q.shape), data=encode_bytes(q)))
        return out

    def weight_gradients(self):
        """Copies of the conv weights' current ``.grad`` (the last training batch's), by layer."""
        return {name: m.weight.grad.copy() for name, m in self.convs if m.weight.grad is not None}

    def _filters(self, w):
        k, c = w.shape[:2]
        shown = max(1, min(c, MAX_FILTER_TILES // max(k, 1)))
        return w[:, :shown], shown

    def compute(self, selected=0, weight_grads=None, weight_decay=0.0):
        """One snapshot: {image, layers: [{name, act, grad, weights?, wgrad?, channels_shown?}],
        stats: [{name, activation, gradient}], predictions, sample_loss, l2_loss}."""
        model = self.model
        selected = int(selected) % len(self.x)
        outs = {}

        def keep(name):
            def hook(module, inputs, output):
                if isinstance(output, Tensor) and output.requires_grad:
                    output.retain_grad()
                outs[name] = output
            return hook

        params = list(model.parameters())
        flags = [p.requires_grad for p in params]
        handles = [m.register_forward_hook(keep(name)) for name, m in self.leaves]
        was_training = model.training
        model.eval()
        for p in params:
            p.requires_grad = False  # input gradients only: no weight-gradient kernels, .grad untouched
        try:
            x = Tensor(self.x.copy(), requires_grad=True)
            logits = model(x)
            loss = self.loss_fn(logits, self.y)
            loss.backward()
        finally:
            for p, f in zip(params, flags):
                p.requires_grad = f
            for h in handles:
                h.remove()
            model.train(was_training)
        layers, stats = [], []
        entries = [("input", x)] + [(name, outs.get(name)) for name, _ in self.leaves]
        modules = dict(self.leaves)
        for name, t in entries:
            act = t.data[selected] if t is not None else None
            grad = t.grad[selected] if t is not None and t.grad is not None else None
            entry = dict(name=name, act=quantize(act) if act is not None else None,
                         grad=quantize(grad) if grad is not None else None)
            m = modules.get(name)
            if isinstance(m, nn.Conv2d):
                w, shown = self._filters(m.weight.data)
                entry["weights"] = quantize(w, per_row=True)
                entry["channels_shown"], entry["in_channels"] = shown, int(m.weight.shape[1])
                g = (weight_grads or {}).get(name)
                entry["wgrad"] = quantize(g[:, :shown], per_row=True) if g is not None else None
            layers.append(entry)
            stats.append(dict(name=name, activation=_stats(act), gradient=_stats(grad)))
        z = logits.data.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        prob = np.exp(z)
        prob /= prob.sum(axis=1, keepdims=True)
        preds = []
        for row in prob:
            top = np.argsort(-row, kind="stable")[:3]
            preds.append([dict(index=int(i), p=_num(row[i])) for i in top])
        l2 = 0.5 * weight_decay * sum(float(np.sum(np.square(p.data, dtype=np.float64))) for p in params)
        return dict(image=selected, label=int(self.y[selected]), layers=layers, stats=stats, predictions=preds,
                    sample_loss=_num(float(loss.item()) / len(self.x)), l2_loss=_num(l2))

    def classify(self, x):
        """Probabilities of every class for one normalised input (C, H, W), in eval mode."""
        from ..tensor import no_grad

        model = self.model
        was_training = model.training
        model.eval()
        try:
            with no_grad():
                z = model(Tensor(np.ascontiguousarray(x, np.float32)[None])).data[0].astype(np.float64)
        finally:
            model.train(was_training)
        p = np.exp(z - z.max())
        return p / p.sum()
