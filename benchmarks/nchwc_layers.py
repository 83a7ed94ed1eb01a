"""The blocked-layout (NCHW16c) inference conv against the NCHW one, layer by layer, one process.

    python benchmarks/nchwc_layers.py [--threads 2] [--repeats 15]

Part 1: MobileNetV2's and ResNet's layer classes, the NCHW fused conv (what the graph runs
without the blocked layout: auto's algorithm, or im2col on weights packed once ("im2col pk")
where the graph runs that) against _core.conv2d_fwd_nchwc with blocked input (first layers: NCHW) and blocked output,
each repeated on the same buffers. Part 2: a 1x1 expansion + depthwise conv, the two blocked
calls against the fused one (conv2d_fwd_nchwc_expand_dw). Median ms; > 1: blocked / fused faster.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import pyconv  # noqa: E402
from pyconv import _core  # noqa: E402
from pyconv.inference.nchwc import blocked_shape, pack_bias, pack_weight, to_blocked  # noqa: E402

# (n, c, k, h, kernel, stride, depthwise)
LAYERS = [(1, 16, 96, 112, 1, 1, 0), (8, 16, 96, 112, 1, 1, 0), (1, 24, 144, 56, 1, 1, 0), (8, 24, 144, 56, 1, 1, 0),
          (1, 144, 24, 56, 1, 1, 0), (1, 960, 320, 7, 1, 1, 0), (8, 960, 320, 7, 1, 1, 0), (1, 320, 1280, 7, 1, 1, 0),
          (1, 96, 96, 112, 3, 2, 1), (8, 96, 96, 112, 3, 2, 1), (1, 144, 144, 56, 3, 1, 1), (8, 144, 144, 56, 3, 1, 1),
          (1, 576, 576, 14, 3, 1, 1), (8, 576, 576, 14, 3, 1, 1), (1, 3, 32, 224, 3, 2, 0), (8, 3, 32, 224, 3, 2, 0),
          (1, 64, 128, 56, 3, 2, 0), (8, 64, 128, 56, 3, 2, 0), (1, 64, 64, 56, 3, 1, 0),
          (8, 64, 64, 56, 3, 1, 0), (1, 128, 128, 28, 3, 1, 0), (8, 128, 128, 28, 3, 1, 0), (1, 256, 256, 14, 3, 1, 0),
          (8, 256, 256, 14, 3, 1, 0), (1, 512, 512, 7, 3, 1, 0), (8, 512, 512, 7, 3, 1, 0), (1, 128, 256, 28, 3, 2, 0),
          (1, 256, 512, 14, 3, 2, 0), (8, 256, 512, 14, 3, 2, 0), (1, 64, 192, 13, 3, 1, 0), (1, 64, 256, 13, 3, 1, 0),
          (1, 3, 64, 224, 3, 2, 0), (8, 3, 64, 224, 3, 2, 0), (1, 3, 64, 224, 7, 2, 0), (1, 3, 64, 224, 3, 1, 0)]
# (n, c, expanded, h, stride)
EXPANSIONS = [(1, 24, 144, 56, 1), (8, 24, 144, 56, 1), (1, 16, 96, 112, 2), (8, 16, 96, 112, 2), (1, 32, 192, 28, 1),
              (8, 32, 192, 28, 1), (1, 64, 384, 14, 1), (8, 64, 384, 14, 1), (1, 160, 960, 7, 1)]


def median_ms(f, repeats):
    f()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def layers(rng, repeats):
    print("layer                        NCHW algo   NCHW ms  blocked ms  NCHW/blocked")
    for n, c, k, h, r, st, dw in LAYERS:
        pd, g = r // 2, c if dw else 1
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = rng.standard_normal((k, 1 if dw else c, r, r)).astype(np.float32)
        b = rng.standard_normal(k).astype(np.float32)
        geo = ((st, st), (pd,) * 4, (1, 1))
        algo = _core.conv2d_choose_algo(x.shape, w.shape, *geo, g, 0, 0)
        packed = _core.Im2colWeights(w, g) if algo == "im2col" or (n == 1 and h // st <= 14 and g == 1) else None
        code = 2 if packed is not None else 0
        y = _core.conv2d_fwd_fused(x, w, b, *geo, g, code, None, 0.0, 6.0, packed=packed)
        t0 = median_ms(lambda: _core.conv2d_fwd_fused(x, w, b, *geo, g, code, None, 0.0, 6.0, out=y, packed=packed),
                       repeats)
        xb = to_blocked(x) if dw or c >= 16 else x
        wp, bp = pack_weight(w, bool(dw)), pack_bias(b, k)
        yb = np.empty(blocked_shape(y.shape), np.float32)
        t1 = median_ms(lambda: _core.conv2d_fwd_nchwc(xb, c, wp, k, bp, *geo, True, None, 0.0, 6.0, out=yb), repeats)
        name = f"{n}x{c}->{k}@{h} {r}x{r}/s{st}{' dw' if dw else ''}"
        print(f"{name:28s} {'im2col pk' if packed is not None else algo:11s} {t0:8.3f} {t1:10.3f} {t0 / t1:10.2f}x")


def expansions(rng, repeats):
    print("\n1x1 expansion + depthwise 3x3   separate ms  fused ms  separate/fused")
    for n, c, e, h, st in EXPANSIONS:
        x = to_blocked(rng.standard_normal((n, c, h, h)).astype(np.float32))
        pe = pack_weight(rng.standard_normal((e, c, 1, 1)).astype(np.float32) * 0.2)
        pdw = pack_weight(rng.standard_normal((e, 1, 3, 3)).astype(np.float32), depthwise=True)
        be, bd = pack_bias(rng.standard_normal(e), e), pack_bias(rng.standard_normal(e), e)
        mid = np.empty((n, pe.shape[0], h, h, 16), np.float32)
        out = np.empty((n, pe.shape[0], (h - 1) // st + 1, (h - 1) // st + 1, 16), np.float32)
        geo = ((st, st), (1, 1, 1, 1), (1, 1))

        def separate():
            _core.conv2d_fwd_nchwc(x, c, pe, e, be, (1, 1), (0, 0, 0, 0), (1, 1), True, None, 0.0, 6.0, out=mid)
            _core.conv2d_fwd_nchwc(mid, e, pdw, e, bd, *geo, True, None, 0.0, 6.0, out=out)
        t0 = median_ms(separate, repeats)
        t1 = median_ms(lambda: _core.conv2d_fwd_nchwc_expand_dw(x, c, pe, e, be, 0.0, 6.0, pdw, bd, *geo, True, None,
                                                                0.0, 6.0, out=out), repeats)
        print(f"{n}x{c}->{e}@{h} s{st}{'':14s} {t0:11.3f} {t1:9.3f} {t0 / t1:12.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    pyconv.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    layers(rng, args.repeats)
    expansions(rng, args.repeats)


if __name__ == "__main__":
    main()
