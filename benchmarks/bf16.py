"""precision="bfloat16" on this CPU: speed against pyconv's own float32, the error it costs, and
whole models against OpenVINO's bf16 default.

    python benchmarks/bf16.py layers  [--threads 2] [--repeats 15]
    python benchmarks/bf16.py error   [--models resnet18 ...]
    python benchmarks/bf16.py models  [--models resnet18 mobilenet_v2] [--batch 1 8] [--rounds 3]
    python benchmarks/bf16.py agree   [--inputs 1000]

layers: the large 3x3 and 1x1 layers of the zoo (pyconv/zoo.py), float32 against bfloat16 with
    weights packed once (as pyconv.onnx.load / pyconv.torch.optimize hold them) and with packing in
    every call (functional conv2d), interleaved in one process; medians; GFLOP/s.
error: every distinct conv layer of the zoo models at batch 1, random N(0, 1) data: the bfloat16
    result against the exact float64 convolution, as max|y - exact| / max|exact| and as the worst
    |y - exact| / sum|w||x| (the per-output bound: 2 roundings of at most 2**-8 each, 2**-7).
models: ONNX files exported from torch (benchmarks/onnx_models.py), each engine and precision in
    its own process, rounds alternating the engines: pyconv float32 and bfloat16, onnxruntime
    (float32 only), OpenVINO f32 and bf16 (when installed).
agree: top-1 agreement of bfloat16 with float32 on random inputs (ResNet-18, MobileNetV2).
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

LAYERS = [  # (label, batch, c, h, k, r, stride, padding): ResNet / VGG layers
    ("resnet 3x3 64@56", 1, 64, 56, 64, 3, 1, 1),
    ("resnet 3x3 128@28", 1, 128, 28, 128, 3, 1, 1),
    ("resnet 3x3 256@14", 1, 256, 14, 256, 3, 1, 1),
    ("resnet 3x3 512@7", 1, 512, 7, 512, 3, 1, 1),
    ("vgg 3x3 256@56", 1, 256, 56, 256, 3, 1, 1),
    ("vgg 3x3 512@28", 1, 512, 28, 512, 3, 1, 1),
    ("resnet 3x3 64@56", 8, 64, 56, 64, 3, 1, 1),
    ("resnet 3x3 256@14", 8, 256, 14, 256, 3, 1, 1),
    ("resnet 3x3 512@7", 8, 512, 7, 512, 3, 1, 1),
    ("resnet50 1x1 64->256@56", 1, 64, 56, 256, 1, 1, 0),
    ("resnet50 1x1 256->64@56", 1, 256, 56, 64, 1, 1, 0),
    ("resnet50 1x1 1024->256@14", 1, 1024, 14, 256, 1, 1, 0),
    ("resnet50 1x1 2048->512@7", 1, 2048, 7, 512, 1, 1, 0),
    ("resnet50 1x1 64->256@56", 8, 64, 56, 256, 1, 1, 0),
    ("resnet50 1x1 1024->256@14", 8, 1024, 14, 256, 1, 1, 0),
    ("resnet 3x3 s2 128->256@28", 1, 128, 28, 256, 3, 2, 1),
    ("resnet stem 7x7 s2 3->64@224", 1, 3, 224, 64, 7, 2, 3),
]


def _median_ms(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def layers(args):
    import pyconv
    from pyconv import _core
    from pyconv.functional import conv2d

    pyconv.set_num_threads(args.threads)
    print(f"bfloat16 kernel: {_core.conv2d_bf16_kernel()}, threads {args.threads}, median of {args.repeats}")
    print(f"{'layer':<30} {'batch':>5} {'fp32 ms':>9} {'GF/s':>6} {'bf16 ms':>9} {'GF/s':>6} {'ratio':>6} "
          f"{'bf16+pack ms':>12} {'ratio':>6}")
    rng = np.random.default_rng(0)
    for label, n, c, h, k, r, st, pd in LAYERS:
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = rng.standard_normal((k, c, r, r)).astype(np.float32)
        b = rng.standard_normal(k).astype(np.float32)
        oh = (h + 2 * pd - r) // st + 1
        flop = 2.0 * n * k * oh * oh * c * r * r
        packed = _core.Bf16ConvWeights(w, 1)
        args_core = ((st, st), (pd,) * 4, (1, 1), 1, 0)
        f32 = lambda: conv2d(x, w, b, st, pd)  # noqa: E731
        bf = lambda: _core.conv2d_fwd_bf16(x, packed, b, *args_core)  # noqa: E731
        bfp = lambda: conv2d(x, w, b, st, pd, precision="bfloat16")  # noqa: E731
        t32, t16, t16p = [], [], []
        for _ in range(3):  # interleaved rounds
            t32.append(_median_ms(f32, args.repeats))
            t16.append(_median_ms(bf, args.repeats))
            t16p.append(_median_ms(bfp, args.repeats))
        a, c16, cp = np.median(t32), np.median(t16), np.median(t16p)
        print(f"{label:<30} {n:>5} {a:9.3f} {flop / a / 1e6:6.0f} {c16:9.3f} {flop / c16 / 1e6:6.0f} {a / c16:5.2f}x "
              f"{cp:12.3f} {a / cp:5.2f}x", flush=True)


def error(args):
    from pyconv import zoo
    from pyconv._reference import conv2d as ref
    from pyconv.functional import conv2d

    rng = np.random.default_rng(1)
    print(f"{'model':<16} {'layer':<28} {'max|err|/max|y|':>16} {'max |err|/sum|w||x|':>20}")
    for name in args.models:
        worst = (0.0, 0.0)
        for layer, _ in zoo.distinct(name):
            if layer.h * layer.w * layer.c > 2_000_000:
                continue  # the float64 reference of the stem layers takes minutes
            x = rng.standard_normal((1, layer.c, layer.h, layer.w)).astype(np.float32)
            w = rng.standard_normal((layer.k, layer.c // layer.groups, layer.r, layer.s)).astype(np.float32)
            y = conv2d(x, w, None, layer.stride, layer.padding, 1, layer.groups, precision="bfloat16")
            args_ref = (None, layer.stride, layer.padding, 1, layer.groups)
            exact = ref(x.astype(np.float64), w.astype(np.float64), *args_ref)
            mag = ref(np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64)), *args_ref)
            e = np.abs(y - exact)
            rel, bound = float(e.max() / np.abs(exact).max()), float((e / np.maximum(mag, 1e-30)).max())
            worst = max(worst[0], rel), max(worst[1], bound)
            print(f"{name:<16} {layer.label():<28} {rel:16.2e} {bound:20.2e}", flush=True)
        print(f"{name:<16} {'worst':<28} {worst[0]:16.2e} {worst[1]:20.2e}  (bound 2**-7 = {2**-7:.2e})")


def models(args):
    from onnx_models import export
    from pyconv.cli_onnx import _available, time_in_subprocess

    runs = [("pyconv", "float32"), ("pyconv", "bfloat16"), ("onnxruntime", "float32"),
            ("openvino", "float32"), ("openvino", "bfloat16")]
    runs = [r for r in runs if _available(r[0])]
    os.makedirs(args.dir, exist_ok=True)
    for name in args.models:
        path = export(name, args.dir)
        for batch in args.batch:
            per = {r: [] for r in runs}
            for k in range(args.rounds):
                for r in runs[k % len(runs):] + runs[: k % len(runs)]:
                    per[r].append(time_in_subprocess(r[0], path, batch, args.repeats, args.threads, r[1])["ms"])
            med = {r: float(np.median(v)) for r, v in per.items()}
            cells = "  ".join(f"{e} {p[:4]} {med[(e, p)]:7.2f}" for e, p in runs)
            ratio = ""
            if ("openvino", "bfloat16") in med:
                ratio = f"  OpenVINO bf16 / pyconv bf16 {med[('openvino', 'bfloat16')] / med[('pyconv', 'bfloat16')]:.2f}x"
            print(f"{name:<14} b{batch:<2} {cells} ms  pyconv f32/bf16 "
                  f"{med[('pyconv', 'float32')] / med[('pyconv', 'bfloat16')]:.2f}x{ratio}", flush=True)


def agree(args):
    import pyconv
    import pyconv.onnx as pox
    from onnx_models import export

    pyconv.set_num_threads(args.threads)
    rng = np.random.default_rng(2)
    os.makedirs(args.dir, exist_ok=True)
    for name in ("resnet18", "mobilenet_v2"):
        path = export(name, args.dir)
        m32, m16 = pox.load(path), pox.load(path, precision="bfloat16")
        same, rel = 0, 0.0
        for i in range(0, args.inputs, 8):
            x = rng.standard_normal((min(8, args.inputs - i), 3, 224, 224)).astype(np.float32)
            y32, y16 = m32(x), m16(x)
            same += int(np.sum(y32.argmax(1) == y16.argmax(1)))
            rel = max(rel, float(np.max(np.abs(y16 - y32)) / np.max(np.abs(y32))))
        print(f"{name:<14} top-1 agreement {same}/{args.inputs} = {same / args.inputs:.1%}, "
              f"max|logit diff| / max|logit| {rel:.2e}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["layers", "error", "models", "agree"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    p.add_argument("--models", nargs="+", default=None)
    p.add_argument("--inputs", type=int, default=1000)
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "pyconv-onnx-models"))
    args = p.parse_args(argv)
    if args.what == "error":
        args.models = args.models or ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "squeezenet1_1",
                                      "vgg11"]
    elif args.what == "models":
        args.models = args.models or ["resnet18", "mobilenet_v2"]
    {"layers": layers, "error": error, "models": models, "agree": agree}[args.what](args)


if __name__ == "__main__":
    main()
