"""Shape tables for the sweeps, as data.

Conv geometries come from three sources:

* ``PAIRWISE``: a deterministic pairwise covering design over the geometry
  parameters (kernel, stride, padding, dilation, groups, padding_mode, size,
  batch, channels): every value of every parameter meets every value of every
  other parameter in at least one valid geometry (pairs that no valid geometry
  can contain are listed in ``PAIRWISE_INFEASIBLE``);
* ``BLOCKS``: full products on the most important axes;
* ``EDGE``: SIMD edges (channels / widths 1, 7, 8, 9, 15, 16, 17, 33, depthwise,
  output 1x1, kernel equal to the padded input, asymmetric strides/pads).

The test files cross these with algorithm x direction x dtype (x ISA).
Ids look like ``n2c3h7w9_k4r3s3_s2p1d1g1-zeros`` (N, C, H, W, K=out channels,
R x S kernel, stride, padding, dilation, groups, padding mode).
"""

import itertools
import zlib
from dataclasses import dataclass

import numpy as np

from pyconv import _reference as ref
from pyconv._reference import ConvCase  # noqa: F401  (the sweeps' case type)
from pyconv import _core
from pyconv._runtime import FLOAT_ISAS, ISAS as ISA_ORDER
from pyconv._utils import DIRECTIONS  # noqa: F401

ALGOS = tuple(a for a in _core.algorithms() if a != "auto") + ("auto",)  # the C++ registry's, auto last
DTYPES = (np.float32, np.float64)
MODES = ("zeros", "reflect", "replicate", "circular")


def seeded(*key):
    """A generator seeded by the key's repr: the same numbers for the same test inputs, run to run."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def u(shape, *key):
    """Uniform(-1, 1) float32-exact values as float64."""
    return seeded(*key).uniform(-1, 1, shape).astype(np.float32).astype(np.float64)


_CASE_DATA = {}


def conv_case_data(case):
    """(x, w, b, gy, float64 references per direction) for a ConvCase, cached: float32-exact
    uniform(-1, 1) data seeded from the case id."""
    if case.id not in _CASE_DATA:
        rng = np.random.default_rng(zlib.crc32(case.id.encode()))
        x, w = (rng.uniform(-1, 1, s).astype(np.float32) for s in (case.input_shape, case.weight_shape))
        b = rng.uniform(-1, 1, case.k).astype(np.float32)
        gy = rng.uniform(-1, 1, case.output_shape).astype(np.float32)
        s, p, d, g = case.args
        _CASE_DATA[case.id] = (x, w, b, gy, {
            "fwd": ref.conv2d(x, w, b, s, p, d, g, case.mode),
            "bwd_data": ref.conv2d_grad_input(gy, w, case.input_shape, s, p, d, g, case.mode),
            "bwd_weight": ref.conv2d_grad_weight(x, gy, case.weight_shape, s, p, d, g, case.mode)})
    return _CASE_DATA[case.id]


def available_isas():
    """ISAs with float kernels compiled into pyconv and supported by this CPU, lowest first.

    Without pyconv (not built yet) a single placeholder so collection works.
    """
    try:
        import pyconv
    except ImportError:
        return ["unavailable"]
    best = pyconv.cpu_isa()
    compiled = list(pyconv.compiled_isas())
    if best not in ISA_ORDER:
        return [i for i in ISA_ORDER if i in compiled][:1] or ["scalar"]
    return [i for i in FLOAT_ISAS
            if i in compiled and ISA_ORDER.index(i) <= ISA_ORDER.index(best)]


# --------------------------------------------------------------------------
# pairwise covering design
# --------------------------------------------------------------------------
FACTORS = {
    "kernel": [(1, 1), (3, 3), (5, 5), (1, 3), (7, 7)],
    "stride": [1, 2, 3],
    "padding": ["0", "1", "k-1", "same", "valid"],
    "dilation": [1, 2],
    "groups": ["1", "2", "C"],
    "mode": list(MODES),
    "size": [(9, 9), (8, 13), (17, 11), (6, 7)],     # odd / non-square
    "batch": [1, 3],
    "channels": [(2, 4), (4, 4), (6, 3), (3, 6)],    # (in, out)
}


def make_case(row):
    (kh, kw), (cin, cout) = row["kernel"], row["channels"]
    h, w = row["size"]
    pad = {"0": 0, "1": 1, "same": "same", "valid": "valid",
           "k-1": (kh - 1, kw - 1) if kh != kw else kh - 1}[row["padding"]]
    groups = {"1": 1, "2": 2, "C": cin}[row["groups"]]
    return ConvCase(row["batch"], cin, h, w, cout, kh, kw, row["stride"], pad,
                    row["dilation"], groups, row["mode"])


def pairwise_cover(factors, make, valid):
    """Greedy deterministic pairwise covering restricted to valid rows.

    Enumerates every valid full combination, then repeatedly takes the one
    covering the most still-uncovered (factor, value) pairs (first one on ties).
    Returns (rows, infeasible pairs).
    """
    names = list(factors)
    sizes = [len(factors[n]) for n in names]
    combos = np.array([c for c in itertools.product(*[range(s) for s in sizes])
                       if valid(make({n: factors[n][i] for n, i in zip(names, c)}))])
    pairs = list(itertools.combinations(range(len(names)), 2))
    uncovered = {}
    infeasible = []
    for i, j in pairs:
        u = np.zeros((sizes[i], sizes[j]), dtype=bool)
        u[combos[:, i], combos[:, j]] = True          # feasible pairs
        for a, b in zip(*np.nonzero(~u)):
            infeasible.append((names[i], factors[names[i]][a], names[j], factors[names[j]][b]))
        uncovered[i, j] = u
    rows = []
    while any(u.any() for u in uncovered.values()):
        gain = np.zeros(len(combos), dtype=np.int64)
        for (i, j), u in uncovered.items():
            gain += u[combos[:, i], combos[:, j]]
        best = combos[int(np.argmax(gain))]
        for (i, j), u in uncovered.items():
            u[best[i], best[j]] = False
        rows.append({n: factors[n][v] for n, v in zip(names, best)})
    return rows, infeasible


_rows, PAIRWISE_INFEASIBLE = pairwise_cover(FACTORS, make_case, lambda c: c.valid())
PAIRWISE = [make_case(r) for r in _rows]
PAIRWISE_ROWS = _rows


# --------------------------------------------------------------------------
# full-product blocks on the most important axes
# --------------------------------------------------------------------------
def _block_kernel_padding_mode():
    out = []
    for (kh, kw), padding, mode in itertools.product(
            FACTORS["kernel"], FACTORS["padding"], MODES):
        out.append(make_case(dict(kernel=(kh, kw), padding=padding, mode=mode, stride=1,
                                  dilation=1, groups="1", size=(8, 13), batch=2,
                                  channels=(3, 4))))
    return out


def _block_stride_dilation_groups():
    out = []
    for stride, dil, groups, kern in itertools.product(
            FACTORS["stride"], FACTORS["dilation"], FACTORS["groups"],
            [(3, 3), (1, 3), (5, 5)]):
        out.append(make_case(dict(kernel=kern, padding="1", mode="zeros", stride=stride,
                                  dilation=dil, groups=groups, size=(13, 10), batch=2,
                                  channels=(4, 8))))
    return out


BLOCKS = [c for c in _block_kernel_padding_mode() + _block_stride_dilation_groups()
          if c.valid()]


# --------------------------------------------------------------------------
# SIMD edges and odd geometries
# --------------------------------------------------------------------------
EDGE_VALUES = (1, 7, 8, 9, 15, 16, 17, 33)


def _edge_cases():
    v = EDGE_VALUES
    out = []
    for i, x in enumerate(v):
        # channels x, out channels / width from other rows of the table
        out.append(ConvCase(1, x, 4, v[(i + 3) % 8], v[(i + 5) % 8], 3, 3, 1, 1))
        out.append(ConvCase(2, v[(i + 6) % 8], 3, x, x, 1, 1, 1, 0))
        out.append(ConvCase(1, v[(i + 1) % 8], 5, v[(i + 2) % 8] + 2, x, 3, 5, (1, 2), (1, 2)))
        # depthwise
        out.append(ConvCase(2, x, 5, v[(i + 4) % 8] + 2, x, 3, 3, 1, 1, 1, x, "zeros"))
    return [c for c in out if c.valid()]


def _edge_geometries():
    out = [
        # output 1x1
        ConvCase(2, 5, 5, 5, 3, 5, 5),                        # kernel == input
        ConvCase(1, 3, 3, 4, 4, 5, 6, 1, 1),                  # kernel == padded input
        ConvCase(1, 3, 3, 4, 4, 5, 6, 1, 1, 1, 1, "replicate"),
        ConvCase(1, 2, 3, 2, 2, 7, 6, 1, 2, 1, 1, "circular"),
        ConvCase(2, 4, 1, 1, 6, 1, 1),                        # 1x1 input, 1x1 kernel
        ConvCase(1, 2, 1, 1, 3, 3, 3, 1, 1, 1, 1, "zeros"),   # 1x1 input padded
        ConvCase(1, 2, 1, 1, 3, 3, 3, 1, 1, 1, 1, "replicate"),
        ConvCase(1, 2, 1, 1, 3, 3, 3, 1, 1, 1, 1, "circular"),
        ConvCase(1, 3, 5, 5, 2, 2, 2, 7, 0),                  # stride > input
        ConvCase(1, 2, 9, 9, 2, 3, 3, 1, 0, 4),               # dilated kernel == input
        # even kernels and asymmetric "same", tuple stride / dilation / padding
        ConvCase(2, 3, 7, 8, 4, 2, 2, 1, "same"),
        ConvCase(1, 4, 9, 6, 2, 4, 3, 1, "same", (1, 2), 2, "reflect"),
        ConvCase(1, 2, 8, 9, 4, 2, 4, 1, "same", (3, 1), 1, "circular"),
        ConvCase(1, 2, 8, 9, 4, 2, 4, 1, "same", 2, 1, "replicate"),
        ConvCase(2, 3, 11, 10, 5, 3, 2, (2, 3), (0, 2), (2, 1)),
        ConvCase(1, 6, 10, 12, 6, 3, 3, (3, 1), (2, 0), (1, 3), 3, "reflect"),
        ConvCase(1, 4, 12, 9, 8, 5, 3, [2, 1], [2, 1], [1, 2], 4, "circular"),
        # larger reduction (blocking / tails in im2col)
        ConvCase(2, 33, 15, 17, 17, 3, 3, 1, 1),
        ConvCase(1, 16, 31, 33, 9, 5, 5, 2, 2, 1, 1, "reflect"),
    ]
    return [c for c in out if c.valid()]


EDGE_SIMD = _edge_cases()
EDGE_GEOM = _edge_geometries()
EDGE = EDGE_SIMD + EDGE_GEOM



# realistic layer shapes: big enough for blocking / threading paths
LARGE = [c for c in [
    ConvCase(2, 64, 28, 28, 64, 3, 3, 1, 1),                      # VGG-like 3x3
    ConvCase(1, 3, 64, 61, 16, 7, 7, 2, 3),                       # ResNet stem 7x7/2
    ConvCase(2, 32, 14, 15, 32, 3, 3, 1, 1, 1, 32),               # depthwise
    ConvCase(1, 128, 7, 7, 96, 1, 1),                             # 1x1 bottleneck
    ConvCase(2, 16, 35, 33, 24, 5, 5, 1, 2, 1, 1, "reflect"),
    ConvCase(1, 24, 20, 22, 48, 3, 3, 2, 1, 1, 4, "circular"),    # grouped, strided
] if c.valid()]


def _width_channel_sweep():
    """Every output width 1..34 (vector tails) and channel counts 1..17 (GEMM tails)."""
    out = []
    for w in range(1, 35):
        out.append(ConvCase(1, 3, 3, w, 5, 3, 3, 1, 1, 1, 1, MODES[w % 4] if w > 1 else "zeros"))
        out.append(ConvCase(2, 2, 4, w + 4, 3, 1, 3, (1, 2), (0, 1), (1, 2), 1, MODES[(w + 1) % 4]))
    for c in range(1, 18):
        out.append(ConvCase(1, c, 5, 6, 18 - c, 3, 3, 1, 1))
    return [c for c in out if c.valid()]


WIDTH_CHANNEL_SWEEP = _width_channel_sweep()


def _dedupe(cs):
    seen, out = set(), []
    for c in cs:
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return out


ALL_GEOMETRIES = _dedupe(PAIRWISE + BLOCKS + EDGE + LARGE + WIDTH_CHANNEL_SWEEP)


# --------------------------------------------------------------------------
# pooling sweep tables
# --------------------------------------------------------------------------
POOL_GEOMS = [(k, s, p, d) for k in (1, 2, 3, 4) for s in (1, 2, 3)
              for p in range(k // 2 + 1) for d in (1, 2)]
POOL_SIZES = [(h, (h * 4) % 9 + 1) for h in range(1, 10)]     # H, W in 1..9, mixed


def pool_geom_id(g):
    return "k{}s{}p{}d{}".format(*g)
