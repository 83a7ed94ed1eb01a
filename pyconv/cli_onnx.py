"""``pyconv predict|summary|bench MODEL.onnx``: the command line for ONNX models (``pyconv.cli``
hands any of these commands whose model argument ends in .onnx to :func:`main`).

``bench`` times each engine in its own process (their thread pools would otherwise fight):
``python -m pyconv.cli_onnx --time ENGINE MODEL BATCH REPEATS THREADS`` prints one JSON line.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import _runtime
from .cli_args import Parser

ENGINES = ("pyconv", "onnxruntime", "openvino")
PRECISIONS = ("float32", "bfloat16")
_PRECISION_HELP = ("float32 (default) or bfloat16: convolutions on bfloat16 operands, float32 accumulation (AMX "
                   "tiles where the CPU has them)")


def _floats(text):
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one number")
    return vals


def _positive(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _parser():
    parser = Parser(prog="pyconv", description="pyconv's commands for ONNX models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    p = sub.add_parser("predict", help="classify an image with an ONNX model")
    p.add_argument("model", help="an .onnx file")
    p.add_argument("image", help="an image file (PNG, JPEG, ...)")
    p.add_argument("--labels", help="a text file with one class name per line")
    p.add_argument("--size", type=_positive, help="resize the shorter side to this, then crop the centre to the "
                                                   "model's input (ImageNet's 256 -> 224); without it the image is "
                                                   "resized to the input")
    p.add_argument("--mean", type=_floats, default=None, help="per-channel mean subtracted after scaling to [0, 1], "
                                                              "e.g. 0.485,0.456,0.406")
    p.add_argument("--std", type=_floats, default=None, help="per-channel divisor after the mean, e.g. "
                                                             "0.229,0.224,0.225")
    p.add_argument("--top", type=_positive, default=5, help="how many classes to list")
    p.add_argument("--precision", choices=PRECISIONS, default="float32", help=_PRECISION_HELP)
    p.set_defaults(func=_predict)
    p = sub.add_parser("summary", help="per op: output volume, parameters, FLOPs, the algorithm pyconv runs")
    p.add_argument("model", help="an .onnx file")
    p.add_argument("--batch", type=_positive, default=None, help="batch size (default: the model's, or 1)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32", help=_PRECISION_HELP)
    p.set_defaults(func=_summary)
    p = sub.add_parser("bench", help="time pyconv against onnxruntime (and OpenVINO) on an ONNX model")
    p.add_argument("model", help="an .onnx file")
    p.add_argument("--batch", type=_positive, nargs="+", default=[1, 8], help="batch sizes")
    p.add_argument("--threads", type=_positive, default=2, help="threads of every engine")
    p.add_argument("--repeats", type=_positive, default=20, help="timed runs per engine; the median is reported")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES),
                   help="engines to time (those not installed are skipped)")
    p.add_argument("--profile", action="store_true", help="also print pyconv's time per op (the costliest ones)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="float32 (default) or bfloat16: pyconv's convolutions on bfloat16 operands and OpenVINO's "
                        "bf16 inference precision hint (onnxruntime's CPU provider has float32 only)")
    p.set_defaults(func=_bench)
    return parser


def _load(path, **kw):
    import pyconv.onnx as pox

    return pox.load(path, **kw)


def _image(path, shape, size):
    from .images import load_image, prepare_image

    if size is None:
        return load_image(path, shape)
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None
    _, h, w = shape
    scale = size / min(img.size)
    img = img.resize((max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale))), Image.BILINEAR)
    left, top = (img.size[0] - w) // 2, (img.size[1] - h) // 2
    x, note = prepare_image(img.crop((left, top, left + w, top + h)), shape)
    return x, f"shorter side resized to {size}, centre {h}x{w} cropped; {note}"


def _per_channel(name, vals, c):
    if len(vals) == 1:
        vals = vals * c
    if len(vals) != c:
        raise ValueError(f"--{name} has {len(vals)} values but the model takes {c} channels")
    return np.asarray(vals, np.float32).reshape(c, 1, 1)


def _predict(args):
    model = _load(args.model, precision=args.precision)
    if len(model.inputs) != 1 or len(model.inputs[0][1]) != 4:
        raise ValueError(f"pyconv predict needs a model with one (N, C, H, W) input; this one takes "
                         f"{', '.join(f'{k} {s}' for k, s in model.inputs)}")
    shape = tuple(model.inputs[0][1][1:])
    x, note = _image(args.image, shape, args.size)
    if args.mean is not None:
        x = x - _per_channel("mean", args.mean, shape[0])
    if args.std is not None:
        std = _per_channel("std", args.std, shape[0])
        if (std == 0).any():
            raise ValueError("--std must not contain 0")
        x = x / std
    y = model(np.ascontiguousarray(x[None], np.float32))
    y = (y[0] if isinstance(y, tuple) else y).reshape(-1).astype(np.float64)
    p = y if (y.min() >= 0 and abs(y.sum() - 1) < 1e-3) else np.exp(y - y.max()) / np.exp(y - y.max()).sum()
    labels = [str(i) for i in range(len(p))]
    if args.labels:
        with open(args.labels, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) != len(p):
            raise ValueError(f"{args.labels} has {len(names)} labels but the model scores {len(p)} classes")
        labels = names
    print(f"{args.image} ({note}): top {min(args.top, len(p))} of {len(p)} classes")
    width = max(len(labels[i]) for i in np.argsort(-p)[: args.top])
    for i in np.argsort(-p)[: args.top]:
        print(f"  {labels[i]:>{width}}  {p[i]:.4f}")
    return 0


def _summary(args):
    t = time.perf_counter()
    model = _load(args.model, precision=args.precision)
    load_s = time.perf_counter() - t
    s = model.summary(args.batch)
    ins = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in model.inputs)
    print(f"{args.model}: {model.producer or 'unknown producer'}, opset {model.opset}, input {ins}"
          f"{f' (batch {args.batch})' if args.batch else ''}; loaded and optimised in {load_s:.2f} s")
    print(s)
    return 0


def _inputs(model, batch):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((batch,) + tuple(s[1:])).astype(np.float32) for _, s in model.inputs]


def _time_engine(engine, path, batch, repeats, threads, precision="float32"):
    """Median milliseconds of one run (after warm-up), in this process."""
    import pyconv.onnx  # noqa: F401  (the import is not load time)

    t0 = time.perf_counter()
    if engine == "pyconv":
        _runtime.set_num_threads(threads)
        model = _load(path, precision=precision)
        xs = _inputs(model, batch)

        def run():
            return model(*xs)
    elif engine == "onnxruntime":
        import onnxruntime as ort

        model = _load(path)  # for the input shapes
        xs = _inputs(model, batch)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        feeds = {i.name: x for i, x in zip(sess.get_inputs(), xs)}

        def run():
            return sess.run(None, feeds)
    else:
        import openvino as ov

        model = _load(path)
        xs = _inputs(model, batch)
        core = ov.Core()
        ovm = core.read_model(path)
        ovm.reshape({i.get_any_name(): list(x.shape) for i, x in zip(ovm.inputs, xs)})
        hint = "bf16" if precision == "bfloat16" else "f32"
        compiled = core.compile_model(ovm, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint,
                                                   "PERFORMANCE_HINT": "LATENCY"})
        req = compiled.create_infer_request()

        def run():
            return req.infer(xs)
    load_s = time.perf_counter() - t0
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return {"engine": engine, "batch": batch, "ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * min(times),
            "load_s": load_s, "precision": precision}


def _available(engine):
    import importlib.util

    return engine == "pyconv" or importlib.util.find_spec(engine) is not None


def time_in_subprocess(engine, path, batch, repeats, threads, precision="float32"):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYCONV_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-m", "pyconv.cli_onnx", "--time", engine, os.path.abspath(path),
                          str(batch), str(repeats), str(threads), precision], capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir())  # outside a source tree, which would shadow the install
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        raise RuntimeError(f"{engine} failed: {lines[-1] if lines else out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _bench(args):
    if not os.path.isfile(args.model):
        raise ValueError(f"no ONNX model at {args.model!r}")
    engines = [e for e in args.engines if _available(e)]
    skipped = [e for e in args.engines if e not in engines]
    print(f"pyconv bench {args.model}: threads={args.threads} repeats={args.repeats} precision={args.precision}, "
          "each engine in its own process"
          + (f" ({', '.join(skipped)} not installed)" if skipped else ""), flush=True)
    rows = []
    for batch in args.batch:
        res = {}
        for e in engines:
            try:
                res[e] = time_in_subprocess(e, args.model, batch, args.repeats, args.threads, args.precision)
            except RuntimeError as exc:
                print(f"  batch {batch}: {exc}", file=sys.stderr)
        rows.append((batch, res))
    head = ["batch"] + [f"{e} ms" for e in engines] + [f"{e}/pyconv" for e in engines if e != "pyconv"]
    print("  ".join(f"{h:>16}" for h in head))
    for batch, res in rows:
        cells = [str(batch)] + [f"{res[e]['ms']:.2f}" if e in res else "-" for e in engines]
        py = res.get("pyconv", {}).get("ms")
        cells += [f"{res[e]['ms'] / py:.2f}x" if py and e in res else "-" for e in engines if e != "pyconv"]
        print("  ".join(f"{c:>16}" for c in cells))
    if "pyconv" in engines and rows and "pyconv" in rows[0][1]:
        print(f"pyconv load + optimise: {rows[0][1]['pyconv']['load_s']:.2f} s")
    if args.profile:
        _profile(args.model, args.batch[-1], args.threads, args.precision)
    return 0


def _profile(path, batch, threads, precision="float32", top=12):
    _runtime.set_num_threads(threads)
    model = _load(path, precision=precision)
    plan = model.plan(batch)
    secs = plan.profile(_inputs(model, batch))
    rows = plan.rows()
    total = secs.sum()
    by_op = {}
    for r, t in zip(rows, secs):
        by_op[r["op"]] = by_op.get(r["op"], 0) + t
    print(f"\npyconv per op at batch {batch} (median of 5; total {1e3 * total:.1f} ms):")
    print("  " + ", ".join(f"{op} {100 * t / total:.0f}%" for op, t in sorted(by_op.items(), key=lambda kv: -kv[1])))
    for k in np.argsort(-secs)[:top]:
        r = rows[k]
        gf = r["flops"] / secs[k] / 1e9 if secs[k] else 0
        print(f"  {1e3 * secs[k]:7.2f} ms  {gf:6.1f} GFLOP/s  {r['op']:<12} {r['algorithm']:<8} "
              f"{'x'.join(map(str, r['output'])):<14} {r['name']}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv[:1] == ["--time"]:
        engine, path, batch, repeats, threads = argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5])
        precision = argv[6] if len(argv) > 6 else "float32"
        print(json.dumps(_time_engine(engine, path, batch, repeats, threads, precision)))
        return 0
    args = _parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except ImportError as exc:
        print(f"pyconv {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, NotImplementedError, RuntimeError) as exc:
        print(f"pyconv {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
