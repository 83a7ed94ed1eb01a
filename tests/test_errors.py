"""Every bad argument raises ValueError/TypeError naming the argument.

Each case is (callable, expected exception type(s), regex naming the argument).
Cases are generated for every public function the argument applies to.
Python-type mistakes (float/str/None/bool where an int is needed) expect
TypeError; bad values expect ValueError; wrongly sized tuples may be either.
"""

import math

import numpy as np
import pytest

from pyconv import _reference as ref

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

V, T, VT = ValueError, TypeError, (ValueError, TypeError)
HUGE = (2**40, 2**40, 3, 3)

# --------------------------------------------------------------------------
# convolution family
# --------------------------------------------------------------------------
CONV_BASE = dict(x=np.zeros((2, 4, 8, 8)), w=np.zeros((6, 2, 3, 3)), b=np.zeros(6),
                 stride=1, padding=1, dilation=1, groups=2, mode="zeros", algo="auto")


def conv_args(**over):
    a = dict(CONV_BASE)
    a.update(over)
    a.setdefault("input_shape", a["x"].shape if hasattr(a["x"], "shape") else None)
    a.setdefault("weight_shape", a["w"].shape if hasattr(a["w"], "shape") else None)
    if "gy" not in a:
        # grad_output of the right shape for the (possibly bad) geometry, if computable
        shape = (2, 6, 8, 8)
        try:
            s = ref.conv2d_output_shape(tuple(a["input_shape"]), tuple(a["weight_shape"]),
                                        a["stride"], a["padding"], a["dilation"])
            if all(type(v) is int for v in s) and min(s) >= 1 and math.prod(s) < 10**6:
                shape = s
        except Exception:
            pass
        a["gy"] = np.zeros(shape, a["x"].dtype if hasattr(a["x"], "dtype") else np.float64)
    return a


CONV_FNS = {
    "conv2d": lambda a: F.conv2d(a["x"], a["w"], a["b"], a["stride"], a["padding"], a["dilation"],
                                 a["groups"], padding_mode=a["mode"], algo=a["algo"]),
    "conv2d_grad_input": lambda a: F.conv2d_grad_input(
        a["gy"], a["w"], a["input_shape"], a["stride"], a["padding"], a["dilation"], a["groups"],
        padding_mode=a["mode"], algo=a["algo"]),
    "conv2d_grad_weight": lambda a: F.conv2d_grad_weight(
        a["x"], a["gy"], a["weight_shape"], a["stride"], a["padding"], a["dilation"], a["groups"],
        padding_mode=a["mode"], algo=a["algo"]),
    "conv2d_output_shape": lambda a: F.conv2d_output_shape(
        a["input_shape"], a["weight_shape"], a["stride"], a["padding"], a["dilation"]),
}
GEOM_ONLY = ("stride", "padding", "dilation")   # the args conv2d_output_shape has

BAD_INTS = [(0, V), (-1, V), ((1, 0), V), ((-2, 1), V), (1.5, T), ("1", T), (None, T), (True, T),
            (False, T), ((), VT), ((0,), V), ((1, 1, 1), VT), ((1, 2.0), T), ((True, 1), T)]
BAD_PADDING = [(-1, V), ((0, -1), V), (1.5, T), (None, T), (True, T), ((-1,), V), ((1, 1, 1), VT),
               ((1, 0.5), T), ("full", V), ("Same", V)]
BAD_GROUPS = [(0, V), (-1, V), (3, V), (2.0, T), ("2", T), (None, T), (True, T)]
BAD_MODE = [("bogus", V), ("zero", V), ("Zeros", V), (None, VT), (3, VT)]
BAD_ALGO = [("fft", V), ("", V), ("Direct", V), (None, VT), (1, VT)]


def _p(fn_name, fn, args, exc, match, tag):
    return pytest.param(fn, args, exc, match, id=f"{fn_name}-{tag}")


def conv_cases():
    out = []
    for fname, fn in CONV_FNS.items():
        has_all = fname != "conv2d_output_shape"
        for arg, bad in (("stride", BAD_INTS), ("dilation", BAD_INTS), ("padding", BAD_PADDING)):
            for v, exc in bad:
                out.append(_p(fname, fn, conv_args(**{arg: v}), exc, arg, f"{arg}={v!r}"))
        out.append(_p(fname, fn, conv_args(stride=2, padding="same"), V, "padding|stride", "same+stride2"))
        out.append(_p(fname, fn, conv_args(stride=(1, 2), padding="same"), V, "padding|stride", "same+stride1x2"))
        # kernel larger than the padded input
        out.append(_p(fname, fn, conv_args(w=np.zeros((6, 2, 11, 3)), padding=1), V,
                      "weight|input|kernel|padding", "kernel>padded_input"))
        out.append(_p(fname, fn, conv_args(w=np.zeros((6, 2, 3, 3)), dilation=(1, 5), padding=0), V,
                      "weight|input|kernel|padding|dilation", "dilated_kernel>input"))
        if not has_all:
            out.append(_p(fname, fn, conv_args(input_shape=(8, 8)), V, "input_shape", "input_shape_len2"))
            out.append(_p(fname, fn, conv_args(input_shape=(1, 2, 4, 8, 8)), V, "input_shape", "input_shape_len5"))
            out.append(_p(fname, fn, conv_args(weight_shape=(6, 2, 3)), V, "weight_shape", "weight_shape_len3"))
            out.append(_p(fname, fn, conv_args(input_shape=(2, 4, 1.5, 8)), T, "input_shape", "input_shape_float"))
            continue
        for v, exc in BAD_GROUPS:
            out.append(_p(fname, fn, conv_args(groups=v), exc, "groups", f"groups={v!r}"))
        for v, exc in BAD_MODE:
            out.append(_p(fname, fn, conv_args(mode=v), exc, "padding_mode", f"padding_mode={v!r}"))
        for v, exc in BAD_ALGO:
            out.append(_p(fname, fn, conv_args(algo=v), exc, "algo", f"algo={v!r}"))
        small = np.zeros((1, 2, 3, 5))
        out.append(_p(fname, fn, conv_args(x=small, w=np.zeros((2, 2, 3, 3)), b=np.zeros(2), groups=1,
                                           padding=3, mode="reflect"), V, "padding", "reflect_pad=H"))
        out.append(_p(fname, fn, conv_args(x=small, w=np.zeros((2, 2, 3, 3)), b=np.zeros(2), groups=1,
                                           padding=(1, 5), mode="reflect"), V, "padding", "reflect_pad=W"))
        out.append(_p(fname, fn, conv_args(x=small, w=np.zeros((2, 2, 3, 3)), b=np.zeros(2), groups=1,
                                           padding=(4, 1), mode="circular"), V, "padding", "circular_pad>H"))
        out.append(_p(fname, fn, conv_args(x=small, w=np.zeros((2, 2, 3, 11)), b=np.zeros(2), groups=1,
                                           padding="same", mode="reflect"), V, "padding", "reflect_same>=W"))
        # channels / groups mismatch
        out.append(_p(fname, fn, conv_args(w=np.zeros((6, 3, 3, 3))), V, "weight|input|groups|channel",
                      "channel_mismatch"))
        out.append(_p(fname, fn, conv_args(w=np.zeros((5, 2, 3, 3)), b=np.zeros(5)), V, "groups|weight",
                      "out_channels%groups"))
        out.append(_p(fname, fn, conv_args(w=np.zeros((6, 4, 3, 3)), groups=1, x=np.zeros((2, 0, 8, 8))),
                      V, "input|input_shape|channel", "zero_channels"))
        out.append(_p(fname, fn, conv_args(w=np.zeros((6, 0, 3, 3)), groups=1, x=np.zeros((2, 0, 8, 8))),
                      V, "input|input_shape|weight|weight_shape|channel", "zero_channels_both"))
        out.append(_p(fname, fn, conv_args(x=np.zeros((2, 4, 0, 8))), V, "input|input_shape", "zero_height"))
        out.append(_p(fname, fn, conv_args(w=np.zeros((0, 2, 3, 3)), b=np.zeros(0)), V, "weight|weight_shape|bias",
                      "zero_out_channels"))
    return out


def conv_tensor_cases():
    f32, i32 = np.float32, np.int32
    x, w, b, gy = CONV_BASE["x"], CONV_BASE["w"], CONV_BASE["b"], np.zeros((2, 6, 8, 8))
    fwd, gin, gwt, gb = (CONV_FNS["conv2d"], CONV_FNS["conv2d_grad_input"],
                         CONV_FNS["conv2d_grad_weight"], lambda a: F.conv2d_grad_bias(a["gy"]))
    c = []
    add = lambda name, fn, exc, match, tag, **o: c.append(_p(name, fn, conv_args(**o), exc, match, tag))  # noqa: E731
    # conv2d
    add("conv2d", fwd, V, "input", "input_2d", x=np.zeros((8, 8)))
    add("conv2d", fwd, V, "input", "input_5d", x=np.zeros((1, 2, 4, 8, 8)))
    add("conv2d", fwd, V, "weight", "weight_3d", w=np.zeros((6, 2, 3)))
    add("conv2d", fwd, V, "weight", "weight_5d", w=np.zeros((6, 2, 3, 3, 1)))
    add("conv2d", fwd, V, "bias", "bias_len5", b=np.zeros(5))
    add("conv2d", fwd, V, "bias", "bias_2d", b=np.zeros((6, 1)))
    add("conv2d", fwd, V, "bias", "bias_0d", b=np.zeros(()))
    for dt in (np.int32, np.int64, np.bool_, np.complex128, np.float16):
        add("conv2d", fwd, T, "input", f"input_{np.dtype(dt).name}", x=x.astype(dt))
        add("conv2d", fwd, T, "weight", f"weight_{np.dtype(dt).name}", w=w.astype(dt))
        add("conv2d", fwd, T, "bias", f"bias_{np.dtype(dt).name}", b=b.astype(dt))
    add("conv2d", fwd, T, "weight|input", "mixed_x32_w64", x=x.astype(f32))
    add("conv2d", fwd, T, "weight|input", "mixed_x64_w32", w=w.astype(f32))
    add("conv2d", fwd, T, "bias", "mixed_bias32", b=b.astype(f32))
    add("conv2d", fwd, T, "input", "input_none", x=None, input_shape=(2, 4, 8, 8))
    add("conv2d", fwd, T, "weight", "weight_str", w="w", weight_shape=(6, 2, 3, 3))
    # bwd_data (conv2d_grad_input)
    add("conv2d_grad_input", gin, V, "grad_output", "grad_output_shape", gy=np.zeros((2, 6, 7, 8)))
    add("conv2d_grad_input", gin, V, "grad_output", "grad_output_channels", gy=np.zeros((2, 5, 8, 8)))
    add("conv2d_grad_input", gin, V, "grad_output|input_shape", "grad_output_batch", gy=np.zeros((3, 6, 8, 8)))
    add("conv2d_grad_input", gin, V, "grad_output|input_shape", "grad_output_3d", gy=np.zeros((6, 8, 8)))
    add("conv2d_grad_input", gin, V, "grad_output", "grad_output_2d", gy=np.zeros((8, 8)),
        input_shape=(4, 8, 8))
    add("conv2d_grad_input", gin, V, "input_shape", "input_shape_negative", input_shape=(2, -4, 8, 8))
    add("conv2d_grad_input", gin, V, "input_shape", "input_shape_zero_h", input_shape=(2, 4, 0, 8))
    add("conv2d_grad_input", gin, V, "input_shape|grad_output", "input_shape_overflow",
        input_shape=HUGE)
    add("conv2d_grad_input", gin, V, "input_shape|grad_output", "input_shape_overflow2",
        input_shape=(2**31, 2**31, 2**31, 2**31))
    add("conv2d_grad_input", gin, V, "input_shape|grad_output", "input_shape_int64max",
        input_shape=(2, 4, 2**63 - 1, 8))
    add("conv2d_grad_input", gin, T, "input_shape", "input_shape_none", input_shape=None)
    add("conv2d_grad_input", gin, T, "grad_output", "grad_output_int", gy=gy.astype(i32))
    add("conv2d_grad_input", gin, T, "weight", "weight_int", w=w.astype(i32))
    add("conv2d_grad_input", gin, T, "weight|grad_output", "mixed_gy32", gy=gy.astype(f32))
    add("conv2d_grad_input", gin, V, "weight", "weight_3d", w=np.zeros((6, 2, 3)))
    # bwd_weight (conv2d_grad_weight)
    add("conv2d_grad_weight", gwt, V, "grad_output", "grad_output_shape", gy=np.zeros((2, 6, 8, 7)))
    add("conv2d_grad_weight", gwt, V, "grad_output|input", "grad_output_batch", gy=np.zeros((1, 6, 8, 8)))
    add("conv2d_grad_weight", gwt, V, "grad_output", "grad_output_channels", gy=np.zeros((2, 7, 8, 8)))
    add("conv2d_grad_weight", gwt, V, "input", "input_2d", x=np.zeros((8, 8)), gy=gy)
    add("conv2d_grad_weight", gwt, V, "weight_shape|input|groups|channel", "weight_shape_channels",
        weight_shape=(6, 3, 3, 3), gy=gy)
    add("conv2d_grad_weight", gwt, V, "weight_shape", "weight_shape_negative", weight_shape=(6, 2, -3, 3), gy=gy)
    add("conv2d_grad_weight", gwt, V, "weight_shape|grad_output", "weight_shape_overflow", weight_shape=HUGE, gy=gy)
    add("conv2d_grad_weight", gwt, V, "weight_shape|grad_output", "weight_shape_overflow2",
        weight_shape=(2**62, 2, 3, 3), gy=gy)
    add("conv2d_grad_weight", gwt, T, "weight_shape", "weight_shape_float", weight_shape=(6, 2, 3.0, 3), gy=gy)
    add("conv2d_grad_weight", gwt, T, "input", "input_int", x=x.astype(i32), gy=gy)
    add("conv2d_grad_weight", gwt, T, "grad_output", "grad_output_int", gy=gy.astype(i32))
    add("conv2d_grad_weight", gwt, T, "grad_output|input", "mixed_gy32", gy=gy.astype(f32))
    add("conv2d_grad_weight", gwt, T, "grad_output|input", "mixed_x32", x=x.astype(f32), gy=gy)
    # grad_bias
    add("conv2d_grad_bias", gb, V, "grad_output", "grad_output_2d", gy=np.zeros((6, 8)))
    add("conv2d_grad_bias", gb, V, "grad_output", "grad_output_5d", gy=np.zeros((1, 2, 6, 8, 8)))
    add("conv2d_grad_bias", gb, T, "grad_output", "grad_output_int", gy=gy.astype(i32))
    add("conv2d_grad_bias", gb, T, "grad_output", "grad_output_complex", gy=gy.astype(np.complex64))
    add("conv2d_grad_bias", gb, V, "grad_output", "grad_output_zero_channels", gy=np.zeros((2, 0, 8, 8)))
    return c


# --------------------------------------------------------------------------
# pooling family
# --------------------------------------------------------------------------
POOL_X = np.zeros((2, 3, 8, 9))


def pool_args(**over):
    a = dict(x=POOL_X, k=3, s=2, p=1, d=1, ceil=False, cip=True, div=None, indices=None)
    a.update(over)
    a.setdefault("input_shape", getattr(a["x"], "shape", None))
    if "gy" not in a:
        shape = (2, 3, 4, 5)
        try:
            s = ref.pool2d_output_shape(tuple(a["input_shape"]), a["k"], a["s"], a["p"], a["d"], a["ceil"])
            if all(type(v) is int for v in s) and min(s) >= 1 and math.prod(s) < 10**6:
                shape = s
        except Exception:
            pass
        a["gy"] = np.zeros(shape, getattr(a["x"], "dtype", np.float64))
    return a


POOL_FNS = {
    "max_pool2d": lambda a: F.max_pool2d(a["x"], a["k"], a["s"], a["p"], a["d"], a["ceil"]),
    "max_pool2d_idx": lambda a: F.max_pool2d(a["x"], a["k"], a["s"], a["p"], a["d"], a["ceil"],
                                             return_indices=True),
    "max_pool2d_grad": lambda a: F.max_pool2d_grad(a["gy"], a["x"], a["k"], a["s"], a["p"], a["d"],
                                                   a["ceil"], indices=a["indices"]),
    "avg_pool2d": lambda a: F.avg_pool2d(a["x"], a["k"], a["s"], a["p"], a["ceil"], a["cip"], a["div"]),
    "avg_pool2d_grad": lambda a: F.avg_pool2d_grad(a["gy"], a["input_shape"], a["k"], a["s"], a["p"],
                                                   a["ceil"], a["cip"], a["div"]),
    "pool2d_output_shape": lambda a: F.pool2d_output_shape(a["input_shape"], a["k"], a["s"], a["p"],
                                                           a["d"], a["ceil"]),
}
HAS_DILATION = ("max_pool2d", "max_pool2d_idx", "max_pool2d_grad", "pool2d_output_shape")

BAD_KERNEL = [(0, V), (-1, V), ((3, 0), V), (1.5, T), ("3", T), (None, T), (True, T), ((), VT), ((0,), V),
              ((3, 3, 3), VT), ((3, 3.0), T)]
BAD_POOL_STRIDE = [(0, V), (-1, V), ((2, 0), V), (1.5, T), ("2", T), (True, T), ((0,), V), ((2, 2, 2), VT)]
BAD_POOL_PAD = [(-1, V), ((0, -1), V), (2, V), ((1, 2), V), (1.5, T), (True, T), ((2,), V),
                ((1, 1, 1), VT), ("same", VT)]
BAD_POOL_DIL = [(0, V), ((1, 0), V), (1.5, T), ("1", T), (True, T), ((1, 1, 1), VT)]
BAD_DIVISOR = [(0, V), (-2, V), (1.5, T), ("2", T), (True, T)]


def pool_cases():
    out = []
    for fname, fn in POOL_FNS.items():
        for arg, key, bad in (("kernel_size", "k", BAD_KERNEL), ("stride", "s", BAD_POOL_STRIDE),
                              ("padding", "p", BAD_POOL_PAD)):
            for v, exc in bad:
                out.append(_p(fname, fn, pool_args(**{key: v}), exc, arg, f"{arg}={v!r}"))
        # pad > kernel//2 per dim (kernel not dilated)
        out.append(_p(fname, fn, pool_args(k=(1, 4), p=(1, 2)), V, "padding", "pad>k//2_h"))
        out.append(_p(fname, fn, pool_args(k=(4, 2), p=(2, 2)), V, "padding", "pad>k//2_w"))
        out.append(_p(fname, fn, pool_args(k=(11, 3), p=1), V, "kernel_size|input|padding", "kernel>padded_input"))
        if fname in HAS_DILATION:
            for v, exc in BAD_POOL_DIL:
                out.append(_p(fname, fn, pool_args(d=v), exc, "dilation", f"dilation={v!r}"))
            out.append(_p(fname, fn, pool_args(d=(5, 1)), V, "kernel_size|input|padding|dilation",
                          "dilated_kernel>input"))
        if fname.startswith("avg"):
            for v, exc in BAD_DIVISOR:
                out.append(_p(fname, fn, pool_args(div=v), exc, "divisor_override", f"divisor_override={v!r}"))
        if fname in ("avg_pool2d_grad", "pool2d_output_shape"):
            out.append(_p(fname, fn, pool_args(input_shape=(8, 9)), V, "input_shape", "input_shape_len2"))
            out.append(_p(fname, fn, pool_args(input_shape=(1, 2, 3, 8, 9)), V, "input_shape", "input_shape_len5"))
            continue
        # array input
        out.append(_p(fname, fn, pool_args(x=np.zeros((8, 9))), V, "input", "input_2d"))
        out.append(_p(fname, fn, pool_args(x=np.zeros((1, 2, 3, 8, 9))), V, "input", "input_5d"))
        out.append(_p(fname, fn, pool_args(x=np.zeros((2, 0, 8, 9))), V, "input", "zero_channels"))
        out.append(_p(fname, fn, pool_args(x=np.zeros((2, 3, 8, 0)), k=1, p=0), V, "input", "zero_width"))
        for dt in (np.int32, np.bool_, np.complex64, np.float16):
            out.append(_p(fname, fn, pool_args(x=POOL_X.astype(dt)), T, "input", f"input_{np.dtype(dt).name}"))
    return out


def pool_tensor_cases():
    mg, ag = POOL_FNS["max_pool2d_grad"], POOL_FNS["avg_pool2d_grad"]
    idx = ref.max_pool2d(POOL_X, 3, 2, 1, return_indices=True)[1]
    gy = np.zeros(idx.shape)
    c = []
    add = lambda name, fn, exc, match, tag, **o: c.append(_p(name, fn, pool_args(**o), exc, match, tag))  # noqa: E731
    for name, fn in (("max_pool2d_grad", mg), ("avg_pool2d_grad", ag)):
        add(name, fn, V, "grad_output", "grad_output_shape", gy=np.zeros((2, 3, 4, 4)))
        add(name, fn, V, "grad_output|input", "grad_output_batch", gy=np.zeros((1, 3, 4, 5)))
        add(name, fn, V, "grad_output", "grad_output_2d", gy=np.zeros((4, 5)))
        add(name, fn, T, "grad_output", "grad_output_int", gy=gy.astype(np.int64))
    add("max_pool2d_grad", mg, T, "grad_output|input", "mixed_gy32", gy=gy.astype(np.float32))
    add("max_pool2d_grad", mg, T, "grad_output|input", "mixed_x32", x=POOL_X.astype(np.float32), gy=gy)
    add("max_pool2d_grad", mg, V, "indices", "indices_shape", indices=idx[:, :, :3])
    add("max_pool2d_grad", mg, V, "indices", "indices_3d", indices=idx[0])
    add("max_pool2d_grad", mg, TypeError, "indices", "indices_float", indices=idx.astype(np.float64))
    add("max_pool2d_grad", mg, V, "indices", "indices_too_big", indices=np.where(idx == idx.max(), 8 * 9, idx))
    add("max_pool2d_grad", mg, V, "indices", "indices_negative", indices=np.where(idx == idx.min(), -2, idx))
    add("avg_pool2d_grad", ag, V, "input_shape|grad_output", "input_shape_overflow", input_shape=(2**40, 2**40, 8, 9))
    add("avg_pool2d_grad", ag, V, "input_shape|grad_output", "input_shape_overflow2",
        input_shape=(2**31, 2**31, 2**31, 2**31))
    add("avg_pool2d_grad", ag, V, "input_shape", "input_shape_negative", input_shape=(2, -3, 8, 9))
    add("avg_pool2d_grad", ag, T, "input_shape", "input_shape_float", input_shape=(2, 3, 8.0, 9))
    add("avg_pool2d_grad", ag, T, "input_shape", "input_shape_none", input_shape=None)
    add("avg_pool2d_grad", ag, V, "input_shape|grad_output", "input_shape_zero_channels", input_shape=(2, 0, 8, 9))
    return c


# --------------------------------------------------------------------------
# relu / linear
# --------------------------------------------------------------------------
def relu_linear_cases():
    x, w, b, gy = np.zeros((3, 5)), np.zeros((4, 5)), np.zeros(4), np.zeros((3, 4))
    f32 = np.float32
    c = []

    def add(name, exc, match, tag, fn):
        c.append(pytest.param(fn, None, exc, match, id=f"{name}-{tag}"))

    add("relu", T, "input", "int", lambda: F.relu(np.zeros(4, np.int32)))
    add("relu", T, "input", "bool", lambda: F.relu(np.zeros(4, bool)))
    add("relu", T, "input", "complex", lambda: F.relu(np.zeros(4, complex)))
    add("relu_grad", V, "grad_output|input", "shape", lambda: F.relu_grad(np.zeros(4), np.zeros(5)))
    add("relu_grad", T, "grad_output|input", "mixed", lambda: F.relu_grad(np.zeros(4, f32), np.zeros(4)))
    add("relu_grad", T, "grad_output", "int", lambda: F.relu_grad(np.zeros(4, np.int64), np.zeros(4)))
    add("relu_grad", T, "input", "int_input", lambda: F.relu_grad(np.zeros(4), np.zeros(4, np.int64)))
    add("linear", V, "weight|input", "in_features", lambda: F.linear(x, np.zeros((4, 6))))
    add("linear", V, "weight", "weight_1d", lambda: F.linear(x, np.zeros(5)))
    add("linear", V, "weight", "weight_3d", lambda: F.linear(x, np.zeros((1, 4, 5))))
    add("linear", V, "bias", "bias_shape", lambda: F.linear(x, w, np.zeros(5)))
    add("linear", V, "bias", "bias_2d", lambda: F.linear(x, w, np.zeros((1, 4))))
    add("linear", T, "input", "input_int", lambda: F.linear(x.astype(np.int32), w, b))
    add("linear", T, "weight", "weight_int", lambda: F.linear(x, w.astype(np.int32), b))
    add("linear", T, "bias", "bias_int", lambda: F.linear(x, w, b.astype(np.int32)))
    add("linear", T, "weight|input", "mixed", lambda: F.linear(x.astype(f32), w, None))
    add("linear", T, "bias", "mixed_bias", lambda: F.linear(x, w, b.astype(f32)))
    add("linear_grad_input", V, "grad_output|weight", "shape", lambda: F.linear_grad_input(np.zeros((3, 5)), w))
    add("linear_grad_input", V, "weight", "weight_1d", lambda: F.linear_grad_input(gy, np.zeros(4)))
    add("linear_grad_input", T, "grad_output|weight", "mixed", lambda: F.linear_grad_input(gy.astype(f32), w))
    add("linear_grad_input", T, "grad_output", "int", lambda: F.linear_grad_input(gy.astype(np.int16), w))
    add("linear_grad_weight", V, "grad_output|input", "batch", lambda: F.linear_grad_weight(x, np.zeros((2, 4))))
    add("linear_grad_weight", T, "grad_output|input", "mixed", lambda: F.linear_grad_weight(x, gy.astype(f32)))
    add("linear_grad_weight", T, "input", "int", lambda: F.linear_grad_weight(x.astype(np.int8), gy))
    add("linear_grad_bias", T, "grad_output", "int", lambda: F.linear_grad_bias(gy.astype(np.int32)))
    add("linear_grad_bias", T, "grad_output", "complex", lambda: F.linear_grad_bias(gy.astype(complex)))
    return c


ALL_CASES = conv_cases() + conv_tensor_cases() + pool_cases() + pool_tensor_cases() + relu_linear_cases()


@pytest.mark.parametrize("fn,args,exc,match", ALL_CASES)
def test_bad_argument(fn, args, exc, match):
    call = (lambda: fn(args)) if args is not None else fn
    with pytest.raises(exc, match=rf"\b({match})\b") as info:
        call()
    assert not isinstance(info.value, (MemoryError, OverflowError))


# the message also names the offending value (checked where it is distinctive)
VALUE_CASES = [
    ("-7", lambda: F.conv2d(np.zeros((1, 2, 5, 5)), np.zeros((2, 2, 3, 3)), stride=-7)),
    ("-7", lambda: F.conv2d(np.zeros((1, 2, 5, 5)), np.zeros((2, 2, 3, 3)), dilation=(1, -7))),
    ("-13", lambda: F.conv2d(np.zeros((1, 2, 5, 5)), np.zeros((2, 2, 3, 3)), padding=-13)),
    ("bogus_mode", lambda: F.conv2d(np.zeros((1, 2, 5, 5)), np.zeros((2, 2, 3, 3)), padding_mode="bogus_mode")),
    ("fancy_algo", lambda: F.conv2d(np.zeros((1, 2, 5, 5)), np.zeros((2, 2, 3, 3)), algo="fancy_algo")),
    ("int32", lambda: F.conv2d(np.zeros((1, 2, 5, 5), np.int32), np.zeros((2, 2, 3, 3)))),
    ("-9", lambda: F.max_pool2d(np.zeros((1, 2, 5, 5)), -9)),
    ("-11", lambda: F.avg_pool2d(np.zeros((1, 2, 5, 5)), 3, stride=-11)),
    ("1099511627776", lambda: F.conv2d_grad_input(np.zeros((1, 2, 3, 3)), np.zeros((2, 2, 3, 3)), HUGE)),
]


@pytest.mark.parametrize("value,fn", VALUE_CASES, ids=[f"{i}-{v}" for i, (v, _) in enumerate(VALUE_CASES)])
def test_message_names_value(value, fn):
    with pytest.raises((ValueError, TypeError)) as info:
        fn()
    assert value in str(info.value), str(info.value)


def test_errors_do_not_modify_or_crash_on_valid_after_error():
    # after a batch of errors the library still works normally
    x = np.arange(2 * 2 * 5 * 5, dtype=np.float64).reshape(2, 2, 5, 5)
    w = np.ones((3, 2, 3, 3))
    x0 = x.copy()
    for bad in (dict(stride=0), dict(padding=-1), dict(groups=3), dict(algo="x")):
        with pytest.raises((ValueError, TypeError)):
            F.conv2d(x, w, **bad)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_allclose(F.conv2d(x, w, padding=1), ref.conv2d(x, w, padding=1), rtol=1e-12)


# ------------------------------------------------------------------ argument forms torch accepts


def test_one_element_sequences_and_integer_scalars_mean_both_sides():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    ref = F.conv2d(x, w, None, 2, 1, 1)
    for form in ((2,), [2], np.int64(2), np.array(2), (np.int32(2),)):
        np.testing.assert_array_equal(F.conv2d(x, w, None, stride=form, padding=(1,), dilation=[1]), ref)
    dy = np.ones_like(ref)
    np.testing.assert_array_equal(F.conv2d_grad_input(dy, w, x.shape, (2,), [1]),
                                  F.conv2d_grad_input(dy, w, x.shape, 2, 1))
    np.testing.assert_array_equal(F.conv2d_grad_weight(x, dy, w.shape, [2], (1,)),
                                  F.conv2d_grad_weight(x, dy, w.shape, 2, 1))
    np.testing.assert_array_equal(F.max_pool2d(x, (3,), (), (1,), [1]), F.max_pool2d(x, 3, None, 1, 1))
    np.testing.assert_array_equal(F.avg_pool2d(x, [2], [], (1,)), F.avg_pool2d(x, 2, None, 1))
    assert F.pool2d_output_shape(x.shape, (2,), (2,)) == F.pool2d_output_shape(x.shape, 2, 2)
    with pytest.raises(ValueError, match=r"conv2d: stride must be an int or a tuple of one or two ints, got 0"):
        F.conv2d(x, w, stride=())  # torch refuses an empty conv stride too
    with pytest.raises(TypeError, match="stride"):
        F.conv2d(x, w, stride=np.array(True))


@pytest.mark.parametrize("fn", ["avg_pool2d", "avg_pool2d_grad"])
def test_negative_divisor_is_refused_saying_why(fn):
    x = np.ones((1, 1, 4, 4), np.float32)
    call = (lambda d: F.avg_pool2d(x, 2, divisor_override=d)) if fn == "avg_pool2d" else \
        (lambda d: F.avg_pool2d_grad(np.ones((1, 1, 2, 2), np.float32), x.shape, 2, divisor_override=d))
    with pytest.raises(ValueError, match=rf"{fn}: divisor_override must be positive, got -2: torch accepts"):
        call(-2)
    assert call(3).shape in ((1, 1, 2, 2), (1, 1, 4, 4))
