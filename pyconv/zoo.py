"""Every convolution of six real models for a 224x224 input, as data: ResNet-18, ResNet-50,
MobileNetV2, EfficientNet-B0, SqueezeNet 1.1 and VGG-11 (torchvision's definitions).

Each model is derived from its architecture table (the numbers of the papers / torchvision's
configurations) into the list of its conv layers in order; ``distinct(model)`` counts how often
each shape occurs. ``pyconv bench --suite zoo`` times them and sums each model's conv time.
"""
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class ZooConv:
    """One conv layer of one image: input (c, h, w), k filters of r x s."""
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    bias: bool = False

    def out_size(self):
        return (self.h + 2 * self.padding - self.r) // self.stride + 1

    def label(self):
        kind = "dw" if self.groups == self.c and self.groups > 1 else (f"g{self.groups}_" if self.groups > 1 else "")
        s = f"_s{self.stride}" if self.stride > 1 else ""
        return f"{kind}{self.r}x{self.s}{s}_{self.c}to{self.k}_at{self.h}"


def _conv(layers, c, h, k, r, stride=1, padding=None, groups=1, bias=False):
    """Appends one square conv at h x h; returns its output size."""
    layer = ZooConv(c, h, h, k, r, r, stride, r // 2 if padding is None else padding, groups, bias)
    layers.append(layer)
    return layer.out_size()


def resnet(blocks, bottleneck):
    layers = []
    h = _conv(layers, 3, 224, 64, 7, stride=2, padding=3)
    h = (h + 2 - 3) // 2 + 1  # max pool 3x3 stride 2 pad 1: 112 -> 56
    c = 64
    for stage, n in enumerate(blocks):
        width = 64 * 2 ** stage
        out = width * (4 if bottleneck else 1)
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            if bottleneck:  # torchvision v1.5: the stride sits in the 3x3 conv
                _conv(layers, c, h, width, 1)
                h2 = _conv(layers, width, h, width, 3, stride)
                _conv(layers, width, h2, out, 1)
            else:
                h2 = _conv(layers, c, h, width, 3, stride)
                _conv(layers, width, h2, width, 3)
            if stride != 1 or c != out:  # the shortcut's 1x1 projection
                _conv(layers, c, h, out, 1, stride)
            c, h = out, h2
    return layers


def mobilenet_v2():
    layers = []
    h = _conv(layers, 3, 224, 32, 3, stride=2)
    c = 32
    for t, out, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                         (6, 320, 1, 1)):
        for i in range(n):
            hidden = c * t
            if t != 1:
                _conv(layers, c, h, hidden, 1)
            h2 = _conv(layers, hidden, h, hidden, 3, s if i == 0 else 1, groups=hidden)
            _conv(layers, hidden, h2, out, 1)
            c, h = out, h2
    _conv(layers, c, h, 1280, 1)
    return layers


def efficientnet_b0():
    layers = []
    h = _conv(layers, 3, 224, 32, 3, stride=2)
    c = 32
    for t, k, s, out, n in ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                            (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)):
        for i in range(n):
            hidden = c * t
            if t != 1:
                _conv(layers, c, h, hidden, 1)
            h2 = _conv(layers, hidden, h, hidden, k, s if i == 0 else 1, groups=hidden)
            squeeze = max(1, c // 4)  # squeeze-and-excitation: two 1x1 convs (with bias) on 1x1 maps
            _conv(layers, hidden, 1, squeeze, 1, bias=True)
            _conv(layers, squeeze, 1, hidden, 1, bias=True)
            _conv(layers, hidden, h2, out, 1)
            c, h = out, h2
    _conv(layers, c, h, 1280, 1)
    return layers


def squeezenet1_1():
    layers = []
    h = _conv(layers, 3, 224, 64, 3, stride=2, padding=0, bias=True)

    def pool(h):  # max pool 3x3 stride 2, ceil_mode=True
        return -(-(h - 3) // 2) + 1

    c = 64
    h = pool(h)
    for i, (sq, ex) in enumerate(((16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256),
                                  (64, 256))):
        if i in (2, 4):
            h = pool(h)
        _conv(layers, c, h, sq, 1, bias=True)
        _conv(layers, sq, h, ex, 1, bias=True)
        _conv(layers, sq, h, ex, 3, bias=True)
        c = 2 * ex
    _conv(layers, c, h, 1000, 1, bias=True)  # the classifier is a conv too
    return layers


def vgg11():
    layers = []
    h, c = 224, 3
    for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if v == "M":
            h //= 2
        else:
            _conv(layers, c, h, v, 3, bias=True)
            c = v
    return layers


MODELS = {
    "resnet18": lambda: resnet((2, 2, 2, 2), False),
    "resnet50": lambda: resnet((3, 4, 6, 3), True),
    "mobilenet_v2": mobilenet_v2,
    "efficientnet_b0": efficientnet_b0,
    "squeezenet1_1": squeezenet1_1,
    "vgg11": vgg11,
}
BATCHES = (1, 8)


def conv_layers(model):
    """The model's conv layers in order (one entry per layer)."""
    try:
        return MODELS[model]()
    except KeyError:
        raise ValueError(f"unknown zoo model {model!r}; one of {', '.join(MODELS)}") from None


def distinct(model):
    """[(ZooConv, count)] in order of first occurrence."""
    return list(Counter(conv_layers(model)).items())


def parameters(model):
    """Conv weights and biases of the model (the lecture's (F*F*C/groups + 1)*K, bias where present)."""
    return sum(layer.k * (layer.c // layer.groups) * layer.r * layer.s + (layer.k if layer.bias else 0)
               for layer in conv_layers(model))
