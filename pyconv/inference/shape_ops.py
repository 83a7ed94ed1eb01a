"""Shape-manipulating operators of the inference graph (Concat, Split, Slice, Reshape, Flatten,
Transpose, Squeeze, Unsqueeze, Gather, Shape, ConstantOfShape, Pad, ReduceMean/Max, Resize,
Identity): ``(infer, build)`` pairs as in :mod:`pyconv.inference.ops`. Most outputs are views
of their input; with constant inputs they fold at load."""
import math

import numpy as np

from ._common import _F32, _axis, _const, _err, _ints

def _infer_concat(node, ins):
    nd = len(ins[0].shape)
    axis = _axis(node, int(node.attrs["axis"]), nd)
    rest = [s.shape[:axis] + s.shape[axis + 1:] for s in ins]
    if any(len(s.shape) != nd for s in ins) or len(set(rest)) > 1:
        raise _err(node, f"the inputs {[i.shape for i in ins]} differ outside axis {axis}")
    shape = list(ins[0].shape)
    shape[axis] = sum(i.shape[axis] for i in ins)
    return [(tuple(shape), ins[0].dtype)]


def _build_concat(node, ins, inplace):
    axis = _axis(node, int(node.attrs["axis"]), len(ins[0].shape))

    def run(*xs, out=None):
        return np.concatenate(xs, axis=axis, out=out)
    run.takes_out = True
    return run


def _split_sizes(node, ins):
    shape = ins[0].shape
    axis = _axis(node, int(node.attrs.get("axis", 0)), len(shape))
    split = _const(node, ins, 1, "split") if len(node.inputs) > 1 and node.inputs[1] else None
    n = len(node.outputs)
    if split is not None:
        sizes = _ints(split)
        if sum(sizes) != shape[axis] or len(sizes) != n:
            raise _err(node, f"split {sizes} does not divide axis {axis} of size {shape[axis]} into {n} outputs")
    else:
        n = int(node.attrs.get("num_outputs", n))
        chunk = -(-shape[axis] // n)
        sizes = [min(chunk, shape[axis] - i * chunk) for i in range(n)]
        if min(sizes) < 0:
            raise _err(node, f"cannot split axis {axis} of size {shape[axis]} into {n} outputs")
    return axis, sizes


def _infer_split(node, ins):
    axis, sizes = _split_sizes(node, ins)
    outs = []
    for s in sizes:
        shape = list(ins[0].shape)
        shape[axis] = s
        outs.append((tuple(shape), ins[0].dtype))
    return outs


def _build_split(node, ins, inplace):
    axis, sizes = _split_sizes(node, ins)
    cuts = np.cumsum(sizes)[:-1].tolist()
    return lambda x, *_: tuple(np.split(x, cuts, axis=axis))


def _slices(node, ins):
    shape = ins[0].shape
    starts = _ints(_const(node, ins, 1, "starts"))
    ends = _ints(_const(node, ins, 2, "ends"))
    axes = _const(node, ins, 3, "axes") if len(node.inputs) > 3 and node.inputs[3] else None
    steps = _const(node, ins, 4, "steps") if len(node.inputs) > 4 and node.inputs[4] else None
    axes = _ints(axes) if axes is not None else list(range(len(starts)))
    steps = _ints(steps) if steps is not None else [1] * len(starts)
    idx = [slice(None)] * len(shape)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        if sp == 0:
            raise _err(node, "steps must not be 0")
        ax = _axis(node, ax, len(shape), "axes entry")
        big = 1 << 62
        st = max(min(st, big), -big)
        en = max(min(en, big), -big)
        idx[ax] = slice(st, en, sp)
    return tuple(idx)


def _infer_slice(node, ins):
    idx = _slices(node, ins)
    shape = tuple(len(range(*s.indices(d))) for s, d in zip(idx, ins[0].shape))
    return [(shape, ins[0].dtype)]


def _build_slice(node, ins, inplace):
    idx = _slices(node, ins)
    return lambda x, *_: x[idx]


def _reshape_target(node, ins):
    shape = ins[0].shape
    want = _ints(_const(node, ins, 1, "shape"))
    allowzero = int(node.attrs.get("allowzero", 0))
    out = [shape[i] if (d == 0 and not allowzero and i < len(shape)) else d for i, d in enumerate(want)]
    if out.count(-1) > 1:
        raise _err(node, f"shape {want} has more than one -1")
    known = math.prod(d for d in out if d != -1)
    total = math.prod(shape)
    if -1 in out:
        if known == 0 or total % known:
            raise _err(node, f"cannot reshape {shape} ({total} elements) to {want}")
        out[out.index(-1)] = total // known
    if math.prod(out) != total:
        raise _err(node, f"cannot reshape {shape} ({total} elements) to {tuple(out)} ({math.prod(out)} elements)")
    return tuple(out)


def _infer_reshape(node, ins):
    return [(_reshape_target(node, ins), ins[0].dtype)]


def _build_reshape(node, ins, inplace):
    target = _reshape_target(node, ins)
    return lambda x, *_: x.reshape(target)


def _infer_flatten(node, ins):
    shape = ins[0].shape
    axis = int(node.attrs.get("axis", 1))
    if not -len(shape) <= axis <= len(shape):
        raise _err(node, f"axis={axis} is out of range for a {len(shape)}-D input")
    axis += len(shape) if axis < 0 else 0
    return [((math.prod(shape[:axis]), math.prod(shape[axis:])), ins[0].dtype)]


def _build_flatten(node, ins, inplace):
    (out, _), = _infer_flatten(node, ins)
    return lambda x: x.reshape(out)


def _perm(node, ins):
    nd = len(ins[0].shape)
    perm = node.attrs.get("perm")
    perm = list(range(nd))[::-1] if perm is None else [int(p) for p in perm]
    if sorted(p % nd for p in perm) != list(range(nd)):
        raise _err(node, f"perm {perm} is not a permutation of the {nd} axes of {ins[0].shape}")
    return [p % nd for p in perm]


def _infer_transpose(node, ins):
    perm = _perm(node, ins)
    return [(tuple(ins[0].shape[p] for p in perm), ins[0].dtype)]


def _build_transpose(node, ins, inplace):
    perm = _perm(node, ins)
    return lambda x: x.transpose(perm)


def _squeeze_axes(node, ins):
    shape = ins[0].shape
    axes = _const(node, ins, 1, "axes") if len(node.inputs) > 1 and node.inputs[1] else None
    if axes is None:
        return tuple(i for i, d in enumerate(shape) if d == 1)
    axes = tuple(_axis(node, a, len(shape), "axes entry") for a in _ints(axes))
    bad = [a for a in axes if shape[a] != 1]
    if bad:
        raise _err(node, f"cannot squeeze axes {bad} of shape {shape}: their size is not 1")
    return axes


def _infer_squeeze(node, ins):
    axes = _squeeze_axes(node, ins)
    return [(tuple(d for i, d in enumerate(ins[0].shape) if i not in axes), ins[0].dtype)]


def _build_squeeze(node, ins, inplace):
    axes = _squeeze_axes(node, ins)
    return lambda x, *_: np.squeeze(x, axis=axes)


def _unsqueeze_axes(node, ins):
    nd = len(ins[0].shape) + len(_ints(_const(node, ins, 1, "axes")))
    axes = sorted(_axis(node, a, nd, "axes entry") for a in _ints(_const(node, ins, 1, "axes")))
    if len(set(axes)) != len(axes):
        raise _err(node, f"axes {axes} repeat an axis")
    return tuple(axes)


def _infer_unsqueeze(node, ins):
    axes = _unsqueeze_axes(node, ins)
    shape = list(ins[0].shape)
    for a in axes:
        shape.insert(a, 1)
    return [(tuple(shape), ins[0].dtype)]


def _build_unsqueeze(node, ins, inplace):
    axes = _unsqueeze_axes(node, ins)
    return lambda x, *_: np.expand_dims(x, axes)


def _infer_gather(node, ins):
    shape = ins[0].shape
    axis = _axis(node, int(node.attrs.get("axis", 0)), len(shape))
    if ins[1].dtype.kind not in "iu":
        raise _err(node, f"indices must be integers, got dtype {ins[1].dtype}")
    if ins[1].const is not None and ins[1].const.size:
        idx = ins[1].const
        if idx.min() < -shape[axis] or idx.max() >= shape[axis]:
            raise _err(node, f"indices {idx.tolist()} out of range for axis {axis} of size {shape[axis]}")
    return [(shape[:axis] + ins[1].shape + shape[axis + 1:], ins[0].dtype)]


def _build_gather(node, ins, inplace):
    axis = _axis(node, int(node.attrs.get("axis", 0)), len(ins[0].shape))
    return lambda x, i: np.take(x, i, axis=axis)


def _infer_shape(node, ins):
    return [((len(_shape_slice(node, ins)),), np.dtype(np.int64))]


def _shape_slice(node, ins):
    nd = len(ins[0].shape)
    start, end = int(node.attrs.get("start", 0)), node.attrs.get("end")
    return ins[0].shape[slice(start, None if end is None else int(end))] if nd else ()


def _build_shape(node, ins, inplace):
    value = np.array(_shape_slice(node, ins), np.int64)
    return lambda x: value.copy()


def _infer_cos(node, ins):
    shape = tuple(_ints(_const(node, ins, 0, "shape")))
    if any(d < 0 for d in shape):
        raise _err(node, f"shape {shape} has a negative entry")
    value = node.attrs.get("value")
    return [(shape, np.asarray(value).dtype if value is not None else _F32)]


def _build_cos(node, ins, inplace):
    value = node.attrs.get("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return lambda s: np.full(tuple(_ints(s)), value[0], value.dtype)


def _pad_args(node, ins):
    nd = len(ins[0].shape)
    pads = _ints(_const(node, ins, 1, "pads"))
    axes = _const(node, ins, 3, "axes") if len(node.inputs) > 3 and node.inputs[3] else None
    axes = [_axis(node, a, nd, "axes entry") for a in _ints(axes)] if axes is not None else list(range(nd))
    if len(pads) != 2 * len(axes):
        raise _err(node, f"pads {pads} must have 2 entries per padded axis ({len(axes)} axes)")
    width = [(0, 0)] * nd
    for j, a in enumerate(axes):
        width[a] = (pads[j], pads[j + len(axes)])
    return width


def _infer_pad(node, ins):
    width = _pad_args(node, ins)
    shape = tuple(d + b + e for d, (b, e) in zip(ins[0].shape, width))
    if min(shape, default=1) < 0:
        raise _err(node, f"pads {width} crop input {ins[0].shape} below zero")
    mode = node.attrs.get("mode", "constant")
    if mode == "reflect" and any(max(b, e) >= d for d, (b, e) in zip(ins[0].shape, width) if b or e):
        raise _err(node, f"reflect pads {width} must be smaller than the input {ins[0].shape}")
    return [(shape, ins[0].dtype)]


def _build_pad(node, ins, inplace):
    width = _pad_args(node, ins)
    mode = node.attrs.get("mode", "constant")
    value = _const(node, ins, 2, "constant_value") if len(node.inputs) > 2 and node.inputs[2] else None
    value = 0 if value is None else np.asarray(value).reshape(-1)[0]
    crop = tuple(slice(-b if b < 0 else None, e if e < 0 else None) for b, e in width)
    grow = [(max(b, 0), max(e, 0)) for b, e in width]
    np_mode = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode]
    kw = {"constant_values": value} if mode == "constant" else {}
    return lambda x, *_: np.pad(x[crop], grow, mode=np_mode, **kw)


def _reduce_axes(node, ins):
    nd = len(ins[0].shape)
    axes = _const(node, ins, 1, "axes") if len(node.inputs) > 1 and node.inputs[1] else None
    if axes is None or np.asarray(axes).size == 0:
        return None if node.attrs.get("noop_with_empty_axes", 0) else tuple(range(nd))
    return tuple(sorted(_axis(node, a, nd, "axes entry") for a in _ints(axes)))


def _infer_reduce(node, ins):
    axes = _reduce_axes(node, ins)
    if axes is None:
        return [(ins[0].shape, ins[0].dtype)]
    keep = int(node.attrs.get("keepdims", 1))
    shape = tuple(1 if i in axes else d for i, d in enumerate(ins[0].shape) if keep or i not in axes)
    return [(shape, ins[0].dtype)]


def _build_reduce(node, ins, inplace):
    axes = _reduce_axes(node, ins)
    keep = bool(node.attrs.get("keepdims", 1))
    if axes is None:
        return lambda x, *_: x
    if node.op == "ReduceMean":
        return lambda x, *_: x.mean(axis=axes, keepdims=keep, dtype=x.dtype)
    return lambda x, *_: x.max(axis=axes, keepdims=keep)


_RESIZE_COORD = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn")


def _resize_sizes(node, ins):
    shape = ins[0].shape
    sizes = _const(node, ins, 3, "sizes") if len(node.inputs) > 3 and node.inputs[3] else None
    scales = _const(node, ins, 2, "scales") if len(node.inputs) > 2 and node.inputs[2] else None
    if sizes is not None and np.asarray(sizes).size:
        out = tuple(_ints(sizes))
        sc = [o / i for o, i in zip(out, shape)]
    elif scales is not None and np.asarray(scales).size:
        sc = [float(s) for s in np.asarray(scales).reshape(-1)]
        out = tuple(int(math.floor(d * s)) for d, s in zip(shape, sc))
    else:
        raise _err(node, "needs scales or sizes")
    if len(out) != len(shape):
        raise _err(node, f"scales/sizes {out} must have one entry per axis of input {shape}")
    if len(shape) != 4 or out[:2] != shape[:2]:
        raise _err(node, f"only 2-D resizing (of H and W of a 4-D input) is supported: input {shape}, output {out}")
    return out, sc


def _infer_resize(node, ins):
    out, _ = _resize_sizes(node, ins)
    return [(out, ins[0].dtype)]


def _nearest_index(node, size, out, scale):
    a = node.attrs
    mode = a.get("coordinate_transformation_mode", "half_pixel")
    o = np.arange(out, dtype=np.float64)
    if mode == "asymmetric":
        x = o / scale
    elif mode == "align_corners":
        x = o * ((size - 1) / (out - 1)) if out > 1 else np.zeros_like(o)
    elif mode == "pytorch_half_pixel":
        x = (o + 0.5) / scale - 0.5 if out > 1 else np.zeros_like(o)
    elif mode == "tf_half_pixel_for_nn":
        x = (o + 0.5) / scale
    else:
        x = (o + 0.5) / scale - 0.5
    nm = a.get("nearest_mode", "round_prefer_floor")
    if nm == "floor":
        i = np.floor(x)
    elif nm == "ceil":
        i = np.ceil(x)
    elif nm == "round_prefer_ceil":
        i = np.floor(x + 0.5)
    else:
        i = np.ceil(x - 0.5)
    return np.clip(i, 0, size - 1).astype(np.intp)


def _build_resize(node, ins, inplace):
    out, sc = _resize_sizes(node, ins)
    h, w = ins[0].shape[2:]
    ih = _nearest_index(node, h, out[2], sc[2])
    iw = _nearest_index(node, w, out[3], sc[3])
    return lambda x, *_: x[:, :, ih][:, :, :, iw]


def _infer_identity(node, ins):
    return [(ins[0].shape, ins[0].dtype)]


def _build_identity(node, ins, inplace):
    return lambda x, *_: x


SHAPE_OPS = {
    "Concat": (_infer_concat, _build_concat),
    "Split": (_infer_split, _build_split),
    "Slice": (_infer_slice, _build_slice),
    "Reshape": (_infer_reshape, _build_reshape),
    "Flatten": (_infer_flatten, _build_flatten),
    "Transpose": (_infer_transpose, _build_transpose),
    "Squeeze": (_infer_squeeze, _build_squeeze),
    "Unsqueeze": (_infer_unsqueeze, _build_unsqueeze),
    "Gather": (_infer_gather, _build_gather),
    "Shape": (_infer_shape, _build_shape),
    "ConstantOfShape": (_infer_cos, _build_cos),
    "Pad": (_infer_pad, _build_pad),
    "ReduceMean": (_infer_reduce, _build_reduce),
    "ReduceMax": (_infer_reduce, _build_reduce),
    "Resize": (_infer_resize, _build_resize),
    "Identity": (_infer_identity, _build_identity),
}
