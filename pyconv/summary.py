"""Layer-by-layer summary of a network: output volume, parameters, FLOPs, receptive field and the
im2col workspace each convolution needs, with the lecture's non-integer output-size warning."""
from dataclasses import dataclass, field

import numpy as np

from . import _core, _runtime, nn
from . import functional as F
from .tensor import Tensor, no_grad

__all__ = ["summary", "Summary", "Row"]


@dataclass
class Row:
    name: str
    layer: str
    output_shape: tuple  # (C, H, W) or (features,), no batch
    params: int
    flops: int  # per image; a multiply-add counts 2
    receptive_field: tuple = None  # (rows, cols) of input pixels one output sees
    workspace_bytes: int = 0  # im2col column buffers of the input-gradient pass, one image (0: none)
    notes: list = field(default_factory=list)


def _volume(shape):
    """The lecture's H x W x D notation for (C, H, W); plain for flat shapes."""
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]}x{shape[0]}"
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

    def __str__(self):
        head = ("layer", "output (HxWxC)", "params", "MFLOPs", "receptive field", "workspace")
        lines = [(f"input", _volume(self.input_shape), "", "", "", "")]
        for r in self.rows:
            rf = f"{r.receptive_field[0]}x{r.receptive_field[1]}" if r.receptive_field else ""
            ws = f"{r.workspace_bytes / 1024:.1f} KiB" if r.workspace_bytes else ""
            lines.append((f"{r.name}: {r.layer}", _volume(r.output_shape), f"{r.params:,}", f"{r.flops / 1e6:.3f}",
                          rf, ws))
        widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]
        fmt = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                    for i, (c, w) in enumerate(zip(row, widths)))
        out = [fmt(head), "-" * (sum(widths) + 2 * (len(widths) - 1))]
        out += [fmt(x) for x in lines]
        out.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
        out.append(f"total params: {self.total_params:,}   total MFLOPs per image: {self.total_flops / 1e6:.3f}   "
                   f"largest im2col column buffer: {self.max_workspace_bytes / 1024:.1f} KiB ({self.dtype}; "
                   "input-gradient pass, batch 1)")
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


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def summary(model, input_shape, dtype=np.float32):
    """Runs ``model`` once on zeros of ``input_shape`` (C, H, W) and describes every leaf layer.

    Returns a :class:`Summary` (``.rows``, ``.total_params``; ``print()`` it for a table).
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"summary: input_shape must be (C, H, W) with positive sizes, got {input_shape}")
    records = []
    leaves = [(name, m) for name, m in model.named_modules() if not m._modules]
    handles = [m.register_forward_hook(lambda mod, inp, out, name=name: records.append((name, mod, inp[0], out)))
               for name, m in leaves]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(Tensor(np.zeros((1,) + input_shape, dtype)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    rows = []
    rf = [1, 1]  # receptive field in input pixels
    jump = [1, 1]  # input pixels between neighbouring outputs
    itemsize = np.dtype(dtype).itemsize
    for name, m, inp, out in records:
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
                algo = m.algo if m.algo != "auto" else _core.conv2d_choose_algo(
                    (1,) + ishape, m.weight.shape, m.stride, spec.pads, m.dilation, m.groups,
                    F._MODE_CODE[m.padding_mode], 1)
                if algo == "im2col":
                    row.workspace_bytes = int(_core.conv2d_column_bytes(
                        (1,) + ishape, m.weight.shape, m.stride, spec.pads, m.dilation, m.groups,
                        F._MODE_CODE[m.padding_mode], itemsize))
            else:
                k = _pair(m.kernel_size)
                stride = _pair(m.stride)
                dil = _pair(getattr(m, "dilation", 1))
                pad = _pair(m.padding)
                pt, pb, pl, pr = pad[0], pad[0], pad[1], pad[1]
                row.flops = out_elems * k[0] * k[1]
            k_eff = [dil[i] * (k[i] - 1) + 1 for i in range(2)]
            for axis in range(2):
                rf[axis] += (k_eff[axis] - 1) * jump[axis]
                jump[axis] *= stride[axis]
            row.receptive_field = (rf[0], rf[1])
            if not getattr(m, "ceil_mode", False):
                for axis, (size, b, a) in enumerate(((ishape[1], pt, pb), (ishape[2], pl, pr))):
                    note = _coverage_note(size, b, a, k_eff[axis], stride[axis], axis)
                    if note:
                        row.notes.append(note)
        elif isinstance(m, nn.Linear):
            row.flops = 2 * m.in_features * m.out_features * (out_elems // m.out_features)
            rf = [input_shape[1], input_shape[2]]
            row.receptive_field = tuple(rf)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            row.flops = int(np.prod(ishape))
            rf = [input_shape[1], input_shape[2]]
            row.receptive_field = tuple(rf)
        elif isinstance(m, (nn.ReLU, nn.BatchNorm2d, nn.Dropout)):
            row.flops = out_elems * (2 if isinstance(m, nn.BatchNorm2d) else 1)
        rows.append(row)
    return Summary(input_shape, rows, np.dtype(dtype).name)
