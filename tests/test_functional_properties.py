"""Property-based tests (hypothesis): random valid calls of pyconv.functional against
pyconv/_reference.py, and random invalid calls (one bad argument) that must raise
ValueError/TypeError naming that argument.

Budget: the ``ci`` profile (tests/hypothesis_profiles.py) keeps this file near a minute on 2
cores; ``HYPOTHESIS_PROFILE=thorough`` runs ~20x more examples. Minimal failing cases that
hypothesis found are kept below as ordinary parametrised tests (REGRESSIONS).
"""
import math
import re

import numpy as np
import pytest

import cases
import hypothesis_profiles  # noqa: F401  (registers and loads the profiles)
from pyconv import _reference as ref
from conftest import check_close, conv_algo_run
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st
from hypothesis_profiles import examples

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

ALGOS = tuple(F.CONV_ALGORITHMS)     # read at run time: the list may grow
MODES = ("zeros", "reflect", "replicate", "circular")
LAYOUTS = ("C", "F", "negative", "strided", "channels_last")
DTYPES = (np.float32, np.float64)
ISAS = tuple(cases.available_isas())   # every SIMD path this CPU runs


@pytest.fixture(autouse=True, scope="module")
def _poison_outputs():
    """NaN-fill every pyconv output buffer before kernels write it (unwritten elements fail)."""
    pyconv._core.set_poison(True)
    try:
        yield
    finally:
        pyconv._core.set_poison(False)


class isa_cap:
    """Run a block with pyconv's ISA capped at `name`, then restore the previous cap."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.prev = pyconv.set_max_isa(self.name)
        assert pyconv.get_max_isa() == self.name

    def __exit__(self, *exc):
        pyconv.set_max_isa(self.prev)


# --------------------------------------------------------------------------
# data and memory layouts
# --------------------------------------------------------------------------
def rand(seed, shape, values="uniform"):
    """float32-exact float64 values (one reference serves both dtypes).

    values: "uniform" in [-1, 1); "ties": small integers (many equal maxima); "specials":
    uniform with ~10% NaN, +inf and -inf sprinkled in.
    """
    rng = np.random.default_rng(seed)
    if values == "ties":
        return rng.integers(-2, 3, shape).astype(np.float64)
    x = rng.uniform(-1, 1, shape).astype(np.float32).astype(np.float64)
    if values == "specials":
        u = rng.random(shape)
        x[u < 0.04] = np.nan
        x[(u >= 0.04) & (u < 0.07)] = np.inf
        x[(u >= 0.07) & (u < 0.10)] = -np.inf
    return x


def layout(a, kind):
    """Same values as `a`, in another memory layout (never a C-contiguous array unless 'C')."""
    if a is None or kind == "C":
        return a
    if kind == "F":
        return np.asfortranarray(a)
    if kind == "negative":
        flip = (slice(None, None, -1),) * a.ndim
        return a[flip].copy()[flip]
    if kind == "strided":
        big = np.full(tuple(2 * n + 1 for n in a.shape), np.nan, a.dtype)
        view = big[(slice(1, None, 2),) * a.ndim]
        view[...] = a
        return view
    if kind == "channels_last" and a.ndim == 4:
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return np.asfortranarray(a)


def prepare(dtype, kind, *arrays):
    return [None if a is None else layout(a.astype(dtype), kind) for a in arrays]


def pair_or_int(draw, a, b):
    """(a, b) as an int when equal and the coin says so, else as a tuple or list."""
    form = draw(st.sampled_from(("int", "tuple", "list")))
    if a == b and form == "int":
        return a
    return [a, b] if form == "list" else (a, b)


# --------------------------------------------------------------------------
# valid convolution configurations
# --------------------------------------------------------------------------
@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 17))
    cg = draw(st.integers(1, 17 // groups))
    kg = draw(st.integers(1, 17 // groups))
    n = draw(st.integers(0, 4))
    r, s = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    mode = draw(st.sampled_from(MODES))
    ptype = draw(st.sampled_from(("int", "int", "int", "same", "valid")))
    if ptype == "same":
        sh = sw = 1
        stride = draw(st.sampled_from((1, (1, 1))))
        padding = "same"
        th, tw = dh * (r - 1), dw * (s - 1)
        pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    else:
        sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        stride = pair_or_int(draw, sh, sw)
        if ptype == "valid":
            padding, pads = "valid", (0, 0, 0, 0)
        else:
            ph, pw = draw(st.integers(0, r)), draw(st.integers(0, s))
            padding = pair_or_int(draw, ph, pw)
            pads = (ph, ph, pw, pw)
    dilation = pair_or_int(draw, dh, dw)
    pt, pb, pl, pr = pads

    def min_size(eff, before, after):
        lo = max(1, eff - before - after)          # output >= 1
        if mode == "reflect":
            lo = max(lo, max(before, after) + 1)  # pad < size
        if mode == "circular":
            lo = max(lo, max(before, after))      # pad <= size
        return lo

    lo_h, lo_w = min_size(dh * (r - 1) + 1, pt, pb), min_size(dw * (s - 1) + 1, pl, pr)
    assume(lo_h <= 33 and lo_w <= 33)
    h, w = draw(st.integers(lo_h, 33)), draw(st.integers(lo_w, 33))
    unbatched = n == 1 and draw(st.booleans())
    cfg = dict(n=n, c=cg * groups, h=h, w=w, k=kg * groups, r=r, s=s, stride=stride, padding=padding,
               dilation=dilation, groups=groups, mode=mode, pads=pads, unbatched=unbatched,
               algo=draw(st.sampled_from(ALGOS)), dtype=draw(st.sampled_from(DTYPES)),
               isa=draw(st.sampled_from(ISAS)),
               layout=draw(st.sampled_from(LAYOUTS)), bias=draw(st.booleans()),
               specials=draw(st.integers(0, 7)) == 0, seed=draw(st.integers(0, 2**32 - 1)))
    oh = (h + pt + pb - dh * (r - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (s - 1) - 1) // sw + 1
    cfg["out"] = (n, cfg["k"], oh, ow)
    return cfg


def conv_kw(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
                groups=cfg["groups"], padding_mode=cfg["mode"], algo=cfg["algo"])


def conv_data(cfg, direction="fwd"):
    x_shape = (cfg["n"], cfg["c"], cfg["h"], cfg["w"])
    w_shape = (cfg["k"], cfg["c"] // cfg["groups"], cfg["r"], cfg["s"])
    seed = cfg["seed"]
    # NaN/inf go into x (fwd, bwd_weight) or grad_output (bwd_data) only: never into an array
    # that meets the implicit zero padding as a factor (0 * inf would depend on whether a kernel
    # skips padded taps or multiplies explicit zeros)
    values = "specials" if cfg.get("specials") else "uniform"
    x = rand(seed, x_shape, values)
    w = rand(seed + 1, w_shape)
    b = rand(seed + 2, (cfg["k"],)) if cfg["bias"] else None
    gy = rand(seed + 3, cfg["out"], values if direction == "bwd_data" else "uniform")
    return x, w, b, gy


def run_conv(direction, cfg):
    """(pyconv result, float64 reference, reduction length) for one direction."""
    x, w, b, gy = conv_data(cfg, direction)
    refargs = (cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"], cfg["mode"])
    u = cfg["unbatched"]
    xs, ws, bs, gys = prepare(cfg["dtype"], cfg["layout"], x, w, b, gy)
    if u:
        xs, gys = xs[0], gys[0]
    kw = conv_kw(cfg)
    cg, kg = cfg["c"] // cfg["groups"], cfg["k"] // cfg["groups"]
    if direction == "fwd":
        got = F.conv2d(xs, ws, bs, **kw)
        expected = ref.conv2d(x, w, b, *refargs)
        k = cg * cfg["r"] * cfg["s"]
    elif direction == "bwd_data":
        got = F.conv2d_grad_input(gys, ws, x.shape[1:] if u else x.shape, **kw)
        expected = ref.conv2d_grad_input(gy, w, x.shape, *refargs)
        pt, pb, pl, pr = cfg["pads"]
        fold = 1 if cfg["mode"] == "zeros" else (1 + pt + pb) * (1 + pl + pr)  # border pixels fold back
        k = kg * cfg["r"] * cfg["s"] * fold
    else:
        got = F.conv2d_grad_weight(xs, gys, w.shape, **kw)
        expected = ref.conv2d_grad_weight(x, gy, w.shape, *refargs)
        k = cfg["n"] * cfg["out"][2] * cfg["out"][3]
    if u and direction != "bwd_weight":
        expected = expected[0]
    return got, expected, k


def describe(cfg):
    keys = ("n", "c", "h", "w", "k", "r", "s", "stride", "padding", "dilation", "groups", "mode", "algo",
            "isa", "layout", "bias", "unbatched", "specials", "seed")
    return ", ".join(f"{k}={cfg[k]!r}" for k in keys) + f", dtype={np.dtype(cfg['dtype']).name}"


def check_conv(direction, cfg):
    with isa_cap(cfg["isa"]):
        got, expected, k = run_conv(direction, cfg)
    ran = conv_algo_run(cfg["algo"], direction, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]),
                        (cfg["k"], cfg["c"] // cfg["groups"], cfg["r"], cfg["s"]), cfg["stride"], cfg["padding"],
                        cfg["dilation"], cfg["groups"], cfg["mode"])
    check_close(got, expected, dtype=cfg["dtype"], k=k, case=f"{direction}: {describe(cfg)}", algo=ran)


def conv_cfg(n=1, c=1, h=1, w=1, k=1, r=1, s=1, stride=1, padding=0, dilation=1, groups=1, mode="zeros",
             algo="auto", dtype=np.float64, isa=None, layout="C", bias=False, unbatched=False, specials=False,
             seed=0):
    """A conv_configs()-style dict from keyword arguments (for the kept examples below)."""
    sh, sw = ref.pair(stride)
    dh, dw = ref.pair(dilation)
    pads = ref.conv_padding(padding, (r, s), dilation)
    oh = (h + pads[0] + pads[1] - dh * (r - 1) - 1) // sh + 1
    ow = (w + pads[2] + pads[3] - dw * (s - 1) - 1) // sw + 1
    return dict(n=n, c=c, h=h, w=w, k=k, r=r, s=s, stride=stride, padding=padding, dilation=dilation,
                groups=groups, mode=mode, pads=pads, unbatched=unbatched, algo=algo, dtype=dtype,
                isa=isa or ISAS[-1], layout=layout, bias=bias, specials=specials, seed=seed, out=(n, k, oh, ow))


# Examples kept as regular tests: minimal failing cases hypothesis finds go here (none has failed
# on this build yet), plus hand-picked corners the strategies reach only rarely.
CONV_KEPT = [
    # kernel equal to the circularly / reflect-padded input, dilated, grouped: output 1x1
    conv_cfg(n=2, c=4, h=3, w=3, k=2, r=3, s=3, padding=(1, 1), dilation=(2, 2), groups=2, mode="circular"),
    conv_cfg(n=1, c=3, h=2, w=5, k=3, r=3, s=7, padding=1, groups=3, mode="reflect", algo="im2col"),
    # even kernel, 'same' with dilation 3: asymmetric replicate padding of 4/5
    conv_cfg(n=2, c=2, h=5, w=4, k=5, r=4, s=2, padding="same", dilation=3, mode="replicate", bias=True),
    # stride larger than the kernel and the input: most input pixels get no gradient
    conv_cfg(n=1, c=2, h=4, w=7, k=3, r=1, s=2, stride=(4, 3), padding="valid", algo="direct", dtype=np.float32),
    # unbatched, Fortran order, NaN/inf in the data
    conv_cfg(n=1, c=5, h=6, w=9, k=4, r=2, s=3, stride=2, padding=(2, 1), mode="zeros", layout="F",
             unbatched=True, specials=True, seed=7),
    # empty batch in every padding mode
    conv_cfg(n=0, c=2, h=3, w=3, k=2, r=3, s=3, padding=1, mode="circular"),
]


@pytest.mark.parametrize("direction", ["fwd", "bwd_data", "bwd_weight"])
@pytest.mark.parametrize("cfg", CONV_KEPT, ids=lambda c: describe(c).replace(" ", ""))
def test_conv_kept_examples(cfg, direction):
    for algo in ALGOS:
        for isa in ISAS:
            check_conv(direction, dict(cfg, algo=algo, isa=isa))


@settings(max_examples=examples(2000))
@given(cfg=conv_configs())
def test_conv2d_matches_reference(cfg):
    note(describe(cfg))
    check_conv("fwd", cfg)


@settings(max_examples=examples(1800))
@given(cfg=conv_configs())
def test_conv2d_grad_input_matches_reference(cfg):
    note(describe(cfg))
    check_conv("bwd_data", cfg)


@settings(max_examples=examples(1800))
@given(cfg=conv_configs())
def test_conv2d_grad_weight_matches_reference(cfg):
    note(describe(cfg))
    check_conv("bwd_weight", cfg)


@settings(max_examples=examples(500))
@given(cfg=conv_configs())
def test_conv2d_algorithms_agree(cfg):
    """Every algorithm of CONV_ALGORITHMS gives the reference's answer on the same draw."""
    note(describe(cfg))
    for algo in ALGOS:
        for direction in ("fwd", "bwd_data", "bwd_weight"):
            check_conv(direction, dict(cfg, algo=algo))


# --------------------------------------------------------------------------
# valid pooling configurations
# --------------------------------------------------------------------------
@st.composite
def pool_configs(draw, avg=False):
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    dh, dw = (1, 1) if avg else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride_none = draw(st.integers(0, 4)) == 0
    sh, sw = (kh, kw) if stride_none else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    ceil_mode = draw(st.booleans())
    lo_h = max(1, dh * (kh - 1) + 1 - 2 * ph)
    lo_w = max(1, dw * (kw - 1) + 1 - 2 * pw)
    assume(lo_h <= 33 and lo_w <= 33)
    h, w = draw(st.integers(lo_h, 33)), draw(st.integers(lo_w, 33))
    oh = ref.pool_out_size(h, kh, sh, ph, dh, ceil_mode)
    ow = ref.pool_out_size(w, kw, sw, pw, dw, ceil_mode)
    assume(oh >= 1 and ow >= 1)
    n = draw(st.integers(0, 4))
    cfg = dict(n=n, c=draw(st.integers(1, 17)), h=h, w=w,
               kernel=pair_or_int(draw, kh, kw), stride=None if stride_none else pair_or_int(draw, sh, sw),
               padding=pair_or_int(draw, ph, pw), dilation=pair_or_int(draw, dh, dw), ceil_mode=ceil_mode,
               kk=kh * kw, out_hw=(oh, ow), unbatched=n == 1 and draw(st.booleans()),
               dtype=draw(st.sampled_from(DTYPES)), layout=draw(st.sampled_from(LAYOUTS)),
               isa=draw(st.sampled_from(ISAS)),
               values=draw(st.sampled_from(("uniform", "uniform", "ties", "specials"))),
               seed=draw(st.integers(0, 2**32 - 1)))
    if avg:
        cfg["count_include_pad"] = draw(st.booleans())
        cfg["divisor_override"] = draw(st.one_of(st.none(), st.integers(1, 9),
                                                 st.sampled_from((2**20, 2**31))))
    return cfg


def pool_describe(cfg):
    return ", ".join(f"{k}={v!r}" for k, v in cfg.items() if k not in ("kk", "out_hw", "dtype")) + \
        f", dtype={np.dtype(cfg['dtype']).name}"


def pool_arrays(cfg):
    x = rand(cfg["seed"], (cfg["n"], cfg["c"], cfg["h"], cfg["w"]), values=cfg["values"])
    gy = rand(cfg["seed"] + 1, (cfg["n"], cfg["c"]) + cfg["out_hw"])
    xs, gys = prepare(cfg["dtype"], cfg["layout"], x, gy)
    if cfg["unbatched"]:
        xs, gys = xs[0], gys[0]
    return x, gy, xs, gys


def unb(a, cfg):
    return a[0] if cfg["unbatched"] else a


def empty_windows(cfg):
    """(OH, OW) bool mask of windows that contain no input pixel (possible with dilation)."""
    p = ref._pool_params(cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"])
    kh, kw, sh, sw, ph, pw, dh, dw = p
    oh, ow = cfg["out_hw"]

    def side(n_out, size, k, s, pad, d):
        return np.array([not any(0 <= o * s - pad + t * d < size for t in range(k)) for o in range(n_out)])

    return side(oh, cfg["h"], kh, sh, ph, dh)[:, None] | side(ow, cfg["w"], kw, sw, pw, dw)[None, :]


def check_max_pool(cfg):
    x, gy, xs, gys = pool_arrays(cfg)
    args = (cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["ceil_mode"])
    msg = pool_describe(cfg)
    y_ref, idx_ref = ref.max_pool2d(x, *args, return_indices=True)
    y = F.max_pool2d(xs, *args)
    check_close(y, unb(y_ref, cfg), dtype=cfg["dtype"], case=msg)
    y2, idx = F.max_pool2d(xs, *args, return_indices=True)
    np.testing.assert_array_equal(y2, y, err_msg=msg)
    assert idx.dtype == np.int64 and idx.shape == y.shape, msg
    empty = np.broadcast_to(empty_windows(cfg), y_ref.shape)
    # a window with no input pixel: -inf and index -1 (documented); the gradient skips it
    assert (np.asarray(unb(y_ref, cfg))[unb(empty, cfg)] == -np.inf).all(), msg
    assert (np.asarray(idx)[unb(empty, cfg)] == -1).all(), msg + " (empty window index)"
    idx_ref = np.where(empty, -1, idx_ref)
    np.testing.assert_array_equal(idx, unb(idx_ref, cfg), err_msg=msg)
    g_ref = unb(ref.max_pool2d_grad(np.where(empty, 0.0, gy), x, *args, indices=np.where(empty, 0, idx_ref)), cfg)
    check_close(F.max_pool2d_grad(gys, xs, *args), g_ref, dtype=cfg["dtype"], k=cfg["kk"], case=msg)
    check_close(F.max_pool2d_grad(gys, xs, *args, indices=layout(idx, cfg["layout"])), g_ref,
                dtype=cfg["dtype"], k=cfg["kk"], case=msg + " (indices)")


def check_avg_pool(cfg):
    x, gy, xs, gys = pool_arrays(cfg)
    args = (cfg["kernel"], cfg["stride"], cfg["padding"], cfg["ceil_mode"], cfg["count_include_pad"],
            cfg["divisor_override"])
    msg = pool_describe(cfg)
    div = cfg["divisor_override"]
    scale = 1.0 if div is None else max(1.0, cfg["kk"] / abs(div))
    y = F.avg_pool2d(xs, *args)
    check_close(y, unb(ref.avg_pool2d(x, *args), cfg), dtype=cfg["dtype"], k=cfg["kk"], scale=scale, case=msg)
    shape = xs.shape
    g = F.avg_pool2d_grad(gys, shape, *args)
    check_close(g, unb(ref.avg_pool2d_grad(gy, x.shape, *args), cfg), dtype=cfg["dtype"], k=cfg["kk"],
                scale=scale, case=msg + " grad")


def pool_cfg(n=1, c=1, h=1, w=1, kernel=1, stride=None, padding=0, dilation=1, ceil_mode=False, dtype=np.float64,
             layout="C", values="uniform", unbatched=False, seed=0, count_include_pad=None, divisor_override=None):
    """A pool_configs()-style dict (count_include_pad given: average pooling)."""
    kh, kw, sh, sw, ph, pw, dh, dw = ref._pool_params(kernel, stride, padding, dilation)
    cfg = dict(n=n, c=c, h=h, w=w, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
               ceil_mode=ceil_mode, kk=kh * kw, out_hw=(ref.pool_out_size(h, kh, sh, ph, dh, ceil_mode),
                                                         ref.pool_out_size(w, kw, sw, pw, dw, ceil_mode)),
               unbatched=unbatched, dtype=dtype, layout=layout, isa=ISAS[-1], values=values, seed=seed)
    if count_include_pad is not None:
        cfg.update(count_include_pad=count_include_pad, divisor_override=divisor_override)
    return cfg


POOL_KEPT = [
    # dilation leaves windows with no input pixel (-inf, index -1, no gradient)
    ("max", pool_cfg(n=2, c=3, h=1, w=9, kernel=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(2, 1),
                     ceil_mode=True)),
    # ceil_mode overhang + NaN / +-inf values
    ("max", pool_cfg(n=1, c=2, h=7, w=17, kernel=3, stride=2, padding=1, ceil_mode=True, values="specials", seed=3)),
    # ties everywhere: the first maximum in window order wins
    ("max", pool_cfg(n=1, c=4, h=9, w=33, kernel=(2, 3), stride=1, padding=(1, 1), values="ties", layout="negative")),
    # ceil_mode overhang: divisor excludes the overhang but includes padding / counts only pixels
    ("avg", pool_cfg(n=2, c=2, h=6, w=10, kernel=(3, 4), stride=(2, 3), padding=(1, 2), ceil_mode=True,
                     count_include_pad=True)),
    ("avg", pool_cfg(n=1, c=3, h=5, w=16, kernel=5, stride=4, padding=2, ceil_mode=True, count_include_pad=False,
                     layout="strided")),
    ("avg", pool_cfg(n=1, c=1, h=8, w=31, kernel=(2, 7), stride=(2, 5), padding=(1, 3), count_include_pad=False,
                     divisor_override=3, unbatched=True, values="specials", seed=11)),
]


@pytest.mark.parametrize("kind,cfg", POOL_KEPT, ids=lambda v: v if isinstance(v, str) else pool_describe(v))
def test_pool_kept_examples(kind, cfg):
    for dtype in DTYPES:
        for isa in ISAS:
            with isa_cap(isa):
                (check_max_pool if kind == "max" else check_avg_pool)(dict(cfg, dtype=dtype, isa=isa))


@settings(max_examples=examples(2000))
@given(cfg=pool_configs())
def test_max_pool2d_matches_reference(cfg):
    note(pool_describe(cfg))
    with isa_cap(cfg["isa"]):
        check_max_pool(cfg)


@settings(max_examples=examples(1800))
@given(cfg=pool_configs(avg=True))
def test_avg_pool2d_matches_reference(cfg):
    note(pool_describe(cfg))
    with isa_cap(cfg["isa"]):
        check_avg_pool(cfg)


# --------------------------------------------------------------------------
# relu and linear
# --------------------------------------------------------------------------
@settings(max_examples=examples(300))
@given(shape=st.lists(st.integers(0, 9), min_size=1, max_size=4), dtype=st.sampled_from(DTYPES),
       kind=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**32 - 1), nan=st.booleans())
def test_relu_and_grad_match_reference(shape, dtype, kind, seed, nan):
    x = rand(seed, tuple(shape))
    if nan and x.size:
        x.flat[seed % x.size] = np.nan
    gy = rand(seed + 1, tuple(shape))
    xs, gys = prepare(dtype, kind, x, gy)
    y = F.relu(xs)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, ref.relu(x).astype(dtype))
    g = F.relu_grad(gys, xs)
    assert g.dtype == dtype and g.shape == x.shape
    np.testing.assert_array_equal(g, ref.relu_grad(gy, x).astype(dtype))
    np.testing.assert_array_equal(xs, x.astype(dtype))   # inputs untouched


@settings(max_examples=examples(300))
@given(lead=st.lists(st.integers(0, 5), min_size=0, max_size=2), fin=st.integers(1, 17),
       fout=st.integers(1, 17), bias=st.booleans(), dtype=st.sampled_from(DTYPES),
       kind=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**32 - 1))
def test_linear_and_grads_match_reference(lead, fin, fout, bias, dtype, kind, seed):
    x = rand(seed, tuple(lead) + (fin,))
    w = rand(seed + 1, (fout, fin))
    b = rand(seed + 2, (fout,)) if bias else None
    gy = rand(seed + 3, tuple(lead) + (fout,))
    xs, ws, bs, gys = prepare(dtype, kind, x, w, b, gy)
    check_close(F.linear(xs, ws, bs), ref.linear(x, w, b), dtype=dtype, k=fin + 1)
    check_close(F.linear_grad_input(gys, ws), ref.linear_grad_input(gy, w), dtype=dtype, k=fout)
    check_close(F.linear_grad_weight(xs, gys), ref.linear_grad_weight(x, gy), dtype=dtype,
                k=max(1, math.prod(lead)))
    check_close(F.linear_grad_bias(gys), ref.linear_grad_bias(gy), dtype=dtype, k=max(1, math.prod(lead)))


# --------------------------------------------------------------------------
# invalid calls: exactly one wrong argument -> ValueError/TypeError naming it
# --------------------------------------------------------------------------
BASE_X = np.zeros((2, 4, 9, 8))
BASE_W = np.zeros((6, 2, 3, 3))


def _conv_call(fn, a):
    kw = dict(stride=a["stride"], padding=a["padding"], dilation=a["dilation"], groups=a["groups"],
              padding_mode=a["padding_mode"], algo=a["algo"])
    if fn == "conv2d":
        return lambda: F.conv2d(a["input"], a["weight"], a["bias"], **kw)
    if fn == "conv2d_grad_input":
        return lambda: F.conv2d_grad_input(a["grad_output"], a["weight"], a["input_shape"], **kw)
    return lambda: F.conv2d_grad_weight(a["input"], a["grad_output"], a["weight_shape"], **kw)


def _pool_call(fn, a):
    geo = (a["kernel_size"], a["stride"], a["padding"])
    if fn == "max_pool2d":
        return lambda: F.max_pool2d(a["input"], *geo, a["dilation"], a["ceil_mode"])
    if fn == "max_pool2d_grad":
        return lambda: F.max_pool2d_grad(a["grad_output"], a["input"], *geo, a["dilation"], a["ceil_mode"],
                                         indices=a["indices"])
    avg = (a["ceil_mode"], a["count_include_pad"], a["divisor_override"])
    if fn == "avg_pool2d":
        return lambda: F.avg_pool2d(a["input"], *geo, *avg)
    return lambda: F.avg_pool2d_grad(a["grad_output"], a["input_shape"], *geo, *avg)


BAD_INT = [0, -1, -3, 1.0, 2.5, "2", None, True, False, (0,), (1, 1, 1), (1, 0), (0, 1), (-1, 2),
           (1, 2.0), (True, 1), np.float64(2.0)]
BAD_PAD = [-1, (0, -2), 1.5, None, True, (-1,), (1, 1, 1), (1, 0.5), "full", "Same", "VALID"]
BAD_STR = ["bogus", "", "Zeros", "ZEROS", None, 3, ("zeros",)]


@st.composite
def invalid_conv_calls(draw):
    fn = draw(st.sampled_from(("conv2d", "conv2d_grad_input", "conv2d_grad_weight")))
    dtype = draw(st.sampled_from(DTYPES))
    a = dict(input=BASE_X.astype(dtype), weight=BASE_W.astype(dtype), bias=np.zeros(6, dtype), stride=1,
             padding=1, dilation=1, groups=2, padding_mode=draw(st.sampled_from(MODES)),
             algo=draw(st.sampled_from(ALGOS)), grad_output=np.zeros((2, 6, 9, 8), dtype),
             input_shape=BASE_X.shape, weight_shape=BASE_W.shape)
    other = {np.float32: np.float64, np.float64: np.float32}[dtype]
    arrays = {"conv2d": ("input", "weight", "bias"), "conv2d_grad_input": ("grad_output", "weight"),
              "conv2d_grad_weight": ("input", "grad_output")}[fn]
    kinds = ["stride", "dilation", "padding", "groups", "padding_mode", "algo", "channels", "kernel_big",
             "reflect_big", "circular_big", "same_strided", "int_dtype", "mixed_dtype", "ndim",
             "grad_output_shape"]
    if fn != "conv2d":
        kinds.append("shape_arg")
    kind = draw(st.sampled_from(kinds))
    if kind in ("stride", "dilation"):
        a[kind] = draw(st.sampled_from(BAD_INT))
        name = kind
    elif kind == "padding":
        a[kind] = draw(st.sampled_from(BAD_PAD))
        name = kind
    elif kind == "groups":
        # 3 divides neither channel count, 4 divides in_channels (4) but not out_channels (6)
        a["groups"] = draw(st.sampled_from([0, -2, 3, 4, 2.0, "2", None, True, (2,)]))
        name = "groups"
    elif kind in ("padding_mode", "algo"):
        a[kind] = draw(st.sampled_from(BAD_STR))
        name = kind
    elif kind == "channels":   # weight.shape[1] * groups != in_channels
        cg = draw(st.sampled_from((1, 3, 4)))
        a["weight"] = np.zeros((6, cg, 3, 3), dtype)
        a["weight_shape"] = a["weight"].shape
        name = "weight|weight_shape|channels"
    elif kind == "kernel_big":
        r = draw(st.integers(12, 40))
        a["weight"] = np.zeros((6, 2, r, 3), dtype) if draw(st.booleans()) else np.zeros((6, 2, 3, r), dtype)
        a["weight_shape"] = a["weight"].shape
        a["padding_mode"] = "zeros"
        name = "kernel"
    elif kind == "reflect_big":
        a["padding_mode"] = "reflect"
        a["padding"] = draw(st.sampled_from((9, (9, 1), (1, 8), (20, 20))))
        a["weight"] = np.zeros((6, 2, 1, 1), dtype)
        a["weight_shape"] = a["weight"].shape
        name = "padding"
    elif kind == "circular_big":
        a["padding_mode"] = "circular"
        a["padding"] = draw(st.sampled_from((10, (10, 1), (1, 9))))
        a["weight"] = np.zeros((6, 2, 1, 1), dtype)
        a["weight_shape"] = a["weight"].shape
        name = "padding"
    elif kind == "same_strided":
        a["padding"] = "same"
        a["stride"] = draw(st.sampled_from((2, (1, 2), (3, 1))))
        name = "padding|stride"
    elif kind == "int_dtype":
        arg = draw(st.sampled_from(arrays))
        a[arg] = a[arg].astype(draw(st.sampled_from((np.int32, np.int64, np.bool_, np.float16, np.complex64))))
        name = arg
    elif kind == "mixed_dtype":
        arg = draw(st.sampled_from(arrays[1:]))
        a[arg] = a[arg].astype(other)
        name = arg
    elif kind == "ndim":
        arg = draw(st.sampled_from([x for x in arrays if x != "bias"]))
        a[arg] = a[arg][(0,) * draw(st.integers(1, 2))] if draw(st.booleans()) else a[arg][None, None]
        name = arg
        if arg == "input" and a[arg].ndim == 3:   # unbatched input is valid; make it 2-D instead
            a[arg] = a[arg][0]
        if arg == "grad_output" and a[arg].ndim == 3:
            name = "grad_output|input_shape"
    elif kind == "grad_output_shape":
        if fn == "conv2d":
            a["bias"] = np.zeros(draw(st.sampled_from((5, 7, 1))), dtype)
            name = "bias"
        else:
            shape = list(a["grad_output"].shape)
            shape[draw(st.integers(1, 3))] += draw(st.sampled_from((-1, 1)))
            a["grad_output"] = np.zeros(shape, dtype)
            name = "grad_output"
    else:   # shape_arg
        which = "input_shape" if fn == "conv2d_grad_input" else "weight_shape"
        base = list(a[which])
        bad = draw(st.sampled_from(("len", "neg", "float", "none", "overflow")))
        if bad == "len":
            v = tuple(base[:3]) if which == "weight_shape" or draw(st.booleans()) else tuple(base) + (1,)
            if which == "input_shape" and len(v) == 3:
                v = tuple(base[:2])
        elif bad == "neg":
            base[draw(st.integers(1, 3))] = -draw(st.integers(1, 5))
            v = tuple(base)
        elif bad == "float":
            base[draw(st.integers(0, 3))] = 2.0
            v = tuple(base)
        elif bad == "none":
            v = None
        else:
            v = (2**40, 2**40, 2**40, 3)
        a[which] = v
        name = which + ("|grad_output" if bad in ("overflow",) else "")
    return fn, _conv_call(fn, a), name, f"{fn} {kind}: " + ", ".join(
        f"{k}={v.dtype}{v.shape}" if isinstance(v, np.ndarray) else f"{k}={v!r}" for k, v in a.items())


POOL_X = np.zeros((2, 3, 10, 11))


@st.composite
def invalid_pool_calls(draw):
    fn = draw(st.sampled_from(("max_pool2d", "max_pool2d_grad", "avg_pool2d", "avg_pool2d_grad")))
    dtype = draw(st.sampled_from(DTYPES))
    a = dict(input=POOL_X.astype(dtype), kernel_size=3, stride=2, padding=1, dilation=1,
             ceil_mode=draw(st.booleans()), count_include_pad=True, divisor_override=None, indices=None,
             input_shape=POOL_X.shape)
    oh = ref.pool_out_size(10, 3, 2, 1, 1, a["ceil_mode"])
    ow = ref.pool_out_size(11, 3, 2, 1, 1, a["ceil_mode"])
    a["grad_output"] = np.zeros((2, 3, oh, ow), dtype)
    kinds = ["kernel_size", "stride", "padding", "pad_gt_half", "kernel_big", "ceil_mode", "grad_output_shape"]
    if fn.startswith("max"):
        kinds.append("dilation")
    if fn.startswith("avg"):
        kinds += ["divisor_override", "count_include_pad"]
    if fn != "avg_pool2d_grad":
        kinds += ["int_dtype", "ndim"]
    if fn == "max_pool2d_grad":
        kinds += ["mixed_dtype", "indices"]
    if fn == "avg_pool2d_grad":
        kinds += ["shape_arg"]
    if fn in ("max_pool2d", "avg_pool2d"):
        kinds.remove("grad_output_shape")
    kind = draw(st.sampled_from(kinds))
    name = kind
    if kind in ("kernel_size", "stride", "dilation"):
        v = draw(st.sampled_from([b for b in BAD_INT if not (kind == "stride" and b is None)]))
        a[kind] = v
    elif kind == "padding":
        a["padding"] = draw(st.sampled_from([-1, (0, -2), 1.5, None, True, (-1,), (1, 1, 1), (1, 0.5), "same"]))
    elif kind == "pad_gt_half":
        k = draw(st.integers(1, 5))
        a["kernel_size"] = k
        a["padding"] = draw(st.integers(k // 2 + 1, k + 3))
        name = "padding"
    elif kind == "kernel_big":
        a["kernel_size"] = draw(st.sampled_from((13, (13, 2), (2, 14), 30)))
        a["padding"] = 0
        name = "kernel_size|input"
    elif kind == "ceil_mode":
        a["ceil_mode"] = draw(st.sampled_from((1, 0, "True", None, 1.0)))
    elif kind == "count_include_pad":
        a["count_include_pad"] = draw(st.sampled_from((1, 0, "yes", None)))
    elif kind == "divisor_override":
        a["divisor_override"] = draw(st.sampled_from((0, -2, 1.5, "2", True, 2**63)))
    elif kind == "grad_output_shape":
        shape = list(a["grad_output"].shape)
        shape[draw(st.integers(0, 3))] += 1
        a["grad_output"] = np.zeros(shape, dtype)
        name = "grad_output"
    elif kind == "int_dtype":
        a["input"] = a["input"].astype(draw(st.sampled_from((np.int32, np.int64, np.bool_, np.float16))))
        name = "input"
    elif kind == "ndim":
        a["input"] = a["input"][0, 0] if draw(st.booleans()) else a["input"][None]
        name = "input"
    elif kind == "mixed_dtype":
        a["grad_output"] = a["grad_output"].astype(np.float32 if dtype == np.float64 else np.float64)
        name = "grad_output"
    elif kind == "indices":
        a["indices"] = draw(st.sampled_from(("float", "shape")))
        if a["indices"] == "float":
            a["indices"] = np.zeros(a["grad_output"].shape)
        else:
            a["indices"] = np.zeros((2, 3, oh + 1, ow), np.int64)
    else:   # shape_arg
        bad = draw(st.sampled_from(("len", "neg", "float", "none")))
        a["input_shape"] = {"len": (10, 11), "neg": (2, -3, 10, 11), "float": (2, 3, 10.0, 11),
                            "none": None}[bad]
        name = "input_shape"
    return fn, _pool_call(fn, a), name, f"{fn} {kind}: " + ", ".join(
        f"{k}={v.dtype}{v.shape}" if isinstance(v, np.ndarray) else f"{k}={v!r}" for k, v in a.items())


@st.composite
def invalid_linear_calls(draw):
    fn = draw(st.sampled_from(("linear", "linear_grad_input", "linear_grad_weight", "relu_grad")))
    dtype = draw(st.sampled_from(DTYPES))
    x, w, b, gy = (np.zeros(s, dtype) for s in ((3, 5), (4, 5), (4,), (3, 4)))
    kind = draw(st.sampled_from(("features", "int_dtype", "mixed_dtype", "bias", "ndim")))
    other = np.float32 if dtype == np.float64 else np.float64
    if fn == "linear":
        if kind == "features":
            w, name = np.zeros((4, draw(st.sampled_from((4, 6)))), dtype), "input|weight|features"
        elif kind == "int_dtype":
            x, name = x.astype(np.int64), "input"
        elif kind == "mixed_dtype":
            w, name = w.astype(other), "weight"
        elif kind == "bias":
            b, name = np.zeros(draw(st.sampled_from((3, 5))), dtype), "bias"
        else:
            w, name = np.zeros((4, 5, 1), dtype), "weight"
        call = lambda: F.linear(x, w, b)  # noqa: E731
    elif fn == "linear_grad_input":
        if kind in ("features", "bias"):
            gy, name = np.zeros((3, 5), dtype), "grad_output"
        elif kind == "int_dtype":
            gy, name = gy.astype(np.int32), "grad_output"
        elif kind == "mixed_dtype":
            gy, name = gy.astype(other), "grad_output"
        else:
            w, name = np.zeros((4,), dtype), "weight"
        call = lambda: F.linear_grad_input(gy, w)  # noqa: E731
    elif fn == "linear_grad_weight":
        if kind in ("features", "bias", "ndim"):
            gy, name = np.zeros((2, 4), dtype), "grad_output"
        elif kind == "int_dtype":
            x, name = x.astype(np.int32), "input"
        else:
            gy, name = gy.astype(other), "grad_output"
        call = lambda: F.linear_grad_weight(x, gy)  # noqa: E731
    else:
        g2 = x.copy()
        if kind in ("features", "bias", "ndim"):
            g2, name = np.zeros((3, 6), dtype), "grad_output"
        elif kind == "int_dtype":
            x, name = x.astype(np.int32), "input"
        else:
            g2, name = g2.astype(other), "grad_output"
        call = lambda: F.relu_grad(g2, x)  # noqa: E731
    return fn, call, name, f"{fn} {kind}"


def check_invalid(fn, call, name, desc):
    note(desc)
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    msg = str(info.value)
    assert re.search(name, msg), f"{desc}: message {msg!r} does not name {name!r}"
    assert type(info.value) in (ValueError, TypeError), f"{desc}: {type(info.value)}"


@settings(max_examples=examples(1000))
@given(c=invalid_conv_calls())
def test_invalid_conv_calls_name_the_argument(c):
    check_invalid(*c)


@settings(max_examples=examples(800))
@given(c=invalid_pool_calls())
def test_invalid_pool_calls_name_the_argument(c):
    check_invalid(*c)


@settings(max_examples=examples(200))
@given(c=invalid_linear_calls())
def test_invalid_linear_calls_name_the_argument(c):
    check_invalid(*c)
