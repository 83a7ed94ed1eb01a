"""Layer-by-layer summary of a network: output volume (CxHxW), parameters, FLOPs, receptive field,
the algorithm ``auto`` runs for each direction of each convolution and the column buffer im2col
would need, with the lecture's non-integer output-size warning."""
from dataclasses import dataclass, field

import numpy as np

from . import _core, _runtime, nn
from . import functional as F
from ._utils import _pair
from .tensor import Tensor, no_grad

__all__ = ["summary", "Summary", "Row"]


@dataclass
class Row:
    name: str
    layer: str
    output_shape: tuple  # (C, H, W) or (features,), no batch
    params: int
    flops: int  # per image; a multiply-add counts 2
    receptive_field: tuple = None  # (rows, cols) of input pixels one output sees (at most the input's)
    workspace_bytes: int = 0  # im2col's column buffer for the input-gradient pass, one image (0: none)
    algos: tuple = None  # what algo="auto" runs: (forward, input gradient, weight gradient)
    notes: list = field(default_factory=list)


def _volume(shape):
    """CxHxW (3x32x32), the arrays' own order, as pyconv writes volumes everywhere."""
    return "x".join(str(d) for d in shape)


@dataclass
class Summary:
    input_shape: tuple
    rows: list
    dtype: str = "float32"

    @property
    def total_params(self):
        return sum(r.params for r in self.rows)

    @property
    def total_flops(self):
        return sum(r.flops for r in self.rows)

    @property
    def max_workspace_bytes(self):
        return max([r.workspace_bytes for r in self.rows] or [0])

    def brief(self):
        """``760 parameters, output 10x32x32``: what one reading of an input volume gives."""
        out = self.rows[-1].output_shape if self.rows else self.input_shape
        return f"{self.total_params:,} parameters, output {_volume(out)}"

    def _rf(self, r):
        if not r.receptive_field:
            return ""
        text = f"{r.receptive_field[0]}x{r.receptive_field[1]}"
        return text + " (all)" if tuple(r.receptive_field) == tuple(self.input_shape[1:]) else text

    def __str__(self):
        head = ("layer", "output (CxHxW)", "params", "MFLOPs", "receptive field", "auto: fwd/dx/dw", "im2col cols")
        lines = [("input", _volume(self.input_shape), "", "", "", "", "")]
        for r in self.rows:
            ws = f"{r.workspace_bytes / 1024:.1f} KiB" if r.workspace_bytes else ("none" if r.algos else "")
            lines.append((f"{r.name}: {r.layer}", _volume(r.output_shape), f"{r.params:,}", f"{r.flops / 1e6:.3f}",
                          self._rf(r), "/".join(r.algos) if r.algos else "", ws))
        widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]
        fmt = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                    for i, (c, w) in enumerate(zip(row, widths)))
        out = [fmt(head), "-" * (sum(widths) + 2 * (len(widths) - 1))]
        out += [fmt(x) for x in lines]
        out.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        out.append(f"total params: {self.total_params:,}   total MFLOPs per image: {self.total_flops / 1e6:.3f}   "
                   f"largest im2col column buffer: {self.max_workspace_bytes / 1024:.1f} KiB")
        out.append(f"auto: the algorithm algo='auto' runs for the forward pass, the input gradient (dx) and the weight "
                   f"gradient (dw), at batch 1. im2col cols: the column buffer ({self.dtype}, batch 1) im2col's input "
                   "gradient needs (its forward and weight gradient pack straight from the input; direct and winograd "
                   "need no column buffer). receptive field: input pixels one output sees ('all': the whole input).")
        for r in self.rows:
            for note in r.notes:
                out.append(f"! {r.name}: {r.layer}: {note}")
        return "\n".join(out)


def _coverage_note(in_size, pad_before, pad_after, k_eff, stride, axis):
    """The lecture's check: (N - F + 2P) / S + 1 must be an integer, else input is skipped."""
    span = in_size + pad_before + pad_after - k_eff
    left = span % stride
    if left == 0:
        return None
    real = max(0, left - pad_after)
    value = span / stride + 1
    pads = f"{pad_before}+{pad_after}" if pad_before != pad_after else f"2*{pad_before}"
    what = "row(s)" if axis == 0 else "column(s)"
    return (f"(N - F + 2P)/S + 1 = ({in_size} - {k_eff} + {pads})/{stride} + 1 = {value:.2f} is not an integer "
            f"along {'height' if axis == 0 else 'width'}: the last {real} input {what} are never covered"
            + (f" (and {left - real} padding)" if left - real else ""))


def summary(model, input_shape, dtype=np.float32):
    """Runs ``model`` once on zeros of ``input_shape`` (C, H, W) and describes every leaf layer.

    Returns a :class:`Summary` (``.rows``, ``.total_params``; ``print()`` it for a table).
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"summary: input_shape must be (C, H, W) with positive sizes, got {input_shape}")
    records = []
    leaves = [(name, m) for name, m in model.named_modules() if not m._modules]
    handles = [m.register_forward_hook(lambda mod, inp, out, name=name: records.append((name, mod, inp, out)))
               for name, m in leaves]
    was_training = model.training
    model.eval()
    x0 = Tensor(np.zeros((1,) + input_shape, dtype))
    try:
        with no_grad():
            model(x0)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    rows = []
    # Per output tensor: the receptive field in input pixels, the input pixels between neighbouring
    # outputs, and the spatial size of the latest image-shaped volume. A layer starts from its
    # inputs' (the widest, where branches join), or from the layer before when an input was made
    # outside the layers (a module computing between its children).
    state = {id(x0): ([1, 1], [1, 1], [input_shape[1], input_shape[2]])}
    previous = state[id(x0)]
    itemsize = np.dtype(dtype).itemsize
    for name, m, inputs, out in records:
        known = [state[id(t)] for t in inputs if id(t) in state] or [previous]
        rf = [max(k[0][a] for k in known) for a in range(2)]
        jump = [max(k[1][a] for k in known) for a in range(2)]
        last_hw = list(known[0][2])
        inp = inputs[0]
        ishape = tuple(np.shape(inp.data if isinstance(inp, Tensor) else inp)[1:])
        oshape = tuple(np.shape(out.data if isinstance(out, Tensor) else out)[1:])
        params = sum(p.size for p in m.parameters())
        row = Row(name or "0", type(m).__name__, oshape, int(params), 0)
        out_elems = int(np.prod(oshape))
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            if isinstance(m, nn.Conv2d):
                k = m.weight.shape[2:]
                stride, dil = m.stride, m.dilation
                spec = F._ConvSpec("summary", (1,) + ishape, m.weight.shape, m.stride, m.padding, m.dilation,
                                   m.groups, m.padding_mode)
                pt, pb, pl, pr = spec.pads
                cg = m.weight.shape[1]
                row.flops = 2 * out_elems * cg * k[0] * k[1]
                geo = ((1,) + ishape, m.weight.shape, spec.stride, spec.pads, spec.dilation, m.groups,
                       F._MODE_CODE[m.padding_mode])
                row.algos = tuple(m.algo if m.algo != "auto" else _core.conv2d_choose_algo(*geo, d) for d in range(3))
                row.workspace_bytes = int(_core.conv2d_column_bytes(*geo, itemsize))
            else:
                k = _pair(m.kernel_size, "summary", "kernel_size")
                stride = _pair(m.stride, "summary", "stride")
                dil = _pair(getattr(m, "dilation", 1), "summary", "dilation")
                pad = _pair(m.padding, "summary", "padding")
                pt, pb, pl, pr = pad[0], pad[0], pad[1], pad[1]
                row.flops = out_elems * k[0] * k[1]
            k_eff = [dil[i] * (k[i] - 1) + 1 for i in range(2)]
            for axis in range(2):
                rf[axis] += (k_eff[axis] - 1) * jump[axis]
                jump[axis] *= stride[axis]
            row.receptive_field = _clip(rf, input_shape)
            if not getattr(m, "ceil_mode", False):
                for axis, (size, b, a) in enumerate(((ishape[1], pt, pb), (ishape[2], pl, pr))):
                    note = _coverage_note(size, b, a, k_eff[axis], stride[axis], axis)
                    if note:
                        row.notes.append(note)
        elif isinstance(m, (nn.Linear, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            # one output sees every position of the last image-shaped volume: the union of their fields
            if isinstance(m, nn.Linear):
                row.flops = 2 * m.in_features * m.out_features * (out_elems // m.out_features)
            else:
                row.flops = int(np.prod(ishape))
            for axis in range(2):
                rf[axis] += (last_hw[axis] - 1) * jump[axis]
                jump[axis] *= last_hw[axis]
            last_hw = [1, 1]
            row.receptive_field = _clip(rf, input_shape)
        elif isinstance(m, (nn.ReLU, nn.BatchNorm2d, nn.Dropout)):
            row.flops = out_elems * (2 if isinstance(m, nn.BatchNorm2d) else 1)
        elif hasattr(m, "flops"):  # pyconv's other layers say what they cost
            row.flops = int(m.flops([tuple(np.shape(t)[1:]) for t in inputs], oshape))
        if len(oshape) == 3:
            last_hw = [oshape[1], oshape[2]]
        previous = state[id(out)] = (rf, jump, last_hw)
        rows.append(row)
    return Summary(input_shape, rows, np.dtype(dtype).name)


def _clip(rf, input_shape):
    """A receptive field in input pixels: padding widens the window, never the input it reads."""
    return (min(rf[0], input_shape[1]), min(rf[1], input_shape[2]))
