"""The ``pyconv`` command line (also ``python -m pyconv``).

``train`` trains a ConvNet (digits by default; see :mod:`pyconv.cli_train`), ``summary``
describes a model layer by layer, ``eval``/``predict`` use a checkpoint, ``bench`` times the
algorithms, ``info`` describes the build. Every error is one line on stderr and a non-zero exit
status (2 for a bad option, 1 otherwise), and every option is checked before any long work.
"""
import argparse
import json
import os
import platform
import sys

import numpy as np

from . import _core, _runtime
from .cli_args import (HelpFormatter, Parser, layout_arg, nonnegative_float, nonnegative_int, plural, port_number,
                       positive_float, positive_int, read_volume, volume, volume_triple)


def _info(args):
    build = _core.build_info()
    rows = [
        ("pyconv", _core.__version__),
        ("python", f"{platform.python_version()} ({platform.machine()})"),
        ("numpy", np.__version__),
        ("compiler", build["compiler"]),
        ("threads", f"{_runtime.get_num_threads()} (default {_core.default_num_threads()}; "
                    f"idle workers spin {_core.get_spin_us()} us, then sleep)"),
        ("cpu features", " ".join(_core.cpu_features()) or "(none detected)"),
        ("cpu isa", _runtime.cpu_isa()),
        ("compiled isas", " ".join(_runtime.compiled_isas())),
        ("active isa", f"{_runtime.get_max_isa()} (cap: PYCONV_MAX_ISA / pyconv.set_max_isa)"),
        ("bfloat16", {"amx": "AMX tiles", "avx512_bf16": "AVX512-BF16 (vdpbf16ps)"}.get(
            _core.conv2d_bf16_kernel(), "float32 kernels on rounded operands (no bfloat16 kernel at this level)")
         + f"; default precision {_runtime.get_float32_precision()}"),
        ("workspace limit", f"{_runtime.get_workspace_limit() / 2**20:g} MiB"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("kernels:")
    for name in _runtime.kernels():
        print(f"  {name}")
    return 0


def _bench(args):
    from . import bench
    from .outputs import check_file_target, write_atomic

    if args.list:
        for c in bench.SUITES["all"] + bench.ZOO:
            print(c.name)
        return 0
    cases = bench.SUITES[args.suite]
    if args.case:
        cases = [c for c in bench.SUITES["all"] + bench.ZOO if any(sel in c.name for sel in args.case)]
        if not cases:
            raise ValueError(f"no benchmark case matches {args.case}; see `pyconv bench --list`")
    if args.json:
        check_file_target(args.json, "--json")  # before the benchmarks, not after them
    threads = args.threads if args.threads is not None else _runtime.get_num_threads()
    print(f"pyconv bench: suite={args.suite} threads={threads} repeats={args.repeats} dtype={args.dtype}",
          flush=True)
    rows = bench.run(cases, threads=threads, repeats=args.repeats, algos=tuple(args.algo),
                     torch_compare=not args.no_torch, dtype=np.dtype(args.dtype),
                     progress=lambda name: print(f"  {name} ...", file=sys.stderr, flush=True))
    print(bench.format_table(rows))
    if args.suite == "zoo":
        print()
        print(bench.zoo_report(rows, algo=args.algo[0]))
    if args.json:
        meta = dict(threads=threads, repeats=args.repeats, dtype=args.dtype, isa=_runtime.get_max_isa(),
                    cases=bench.case_dicts(cases))
        write_atomic(args.json, lambda f: json.dump({"meta": meta, "rows": rows}, f, indent=1))
        print(f"wrote {args.json}")
    return 0


_FORMATS = {"caffe": "Caffe prototxt", "convnetjs": "ConvNetJS layer_defs"}


def _summary(args):
    from .models import build_model, declared_input_shape, describe_source, spec_for, spec_notes
    from .summary import summary

    spec = spec_for(args.model)

    def describe(shape):
        try:
            return f"gives {summary(build_model(spec, shape, args.classes), shape).brief()}"
        except ValueError as exc:
            return f"does not fit the model (at {str(exc).split(': ', 1)[0]})"

    declared = declared_input_shape(spec)
    if args.input is None:
        shape, whose = declared or (3, 32, 32), "declared by the file" if declared else "the default"
    else:
        shape, whose = read_volume(args.input, args.layout, describe), None
        if declared and tuple(declared) != tuple(shape):
            whose = f"the file declares {volume(declared)}"
    model = build_model(spec, shape, args.classes)
    what = describe_source(args.model)
    if isinstance(spec, dict) and spec.get("source") in _FORMATS:
        name = f', net "{spec["name"]}"' if spec.get("name") else ""
        what += f" ({_FORMATS[spec['source']]}{name})"
    print(f"{what}, input {volume(shape)} (CxHxW{'; ' + whose if whose else ''})")
    print(summary(model, shape))
    for note in spec_notes(spec):
        print(f"note: {note}")
    return 0


def _normalizer(meta):
    mean = np.asarray(meta["normalize"]["mean"], np.float32)
    std = np.asarray(meta["normalize"]["std"], np.float32)
    return mean, std


def _eval_data(args, meta):
    """The test set a checkpoint is evaluated on: its own data set unless --dataset says otherwise."""
    from . import data

    name = args.dataset or meta.get("dataset", "digits")
    if name == "digits" and args.data_dir is not None:
        raise ValueError(f"--data-dir {args.data_dir} is only read for cifar10 or npz data; the digits are embedded "
                         "in pyconv: drop --data-dir")
    data_dir = args.data_dir
    if data_dir is None and name == meta.get("dataset"):
        data_dir = meta.get("data_dir")
        if data_dir is not None and not os.path.isabs(data_dir):  # checkpoints of older versions
            data_dir = os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), data_dir) \
                if not os.path.exists(data_dir) else data_dir
        if data_dir is not None and not os.path.exists(data_dir):
            raise ValueError(f"{args.checkpoint} was trained on {name} data from {data_dir}, which does not exist "
                             f"(any more): pass --data-dir with its new location")
    _, test = data.load_dataset(name, data_dir)
    return name, test


def _eval(args):
    from . import data
    from .checkpoint import load_model
    from .train import evaluate

    model, meta = load_model(args.checkpoint)
    name, test = _eval_data(args, meta)
    if tuple(test.image_shape) != tuple(meta["input_shape"]):
        raise ValueError(f"the {name} images are {volume(test.image_shape)} but the model expects "
                         f"{volume(meta['input_shape'])} (CxHxW)")
    if len(test.classes) > meta["num_classes"]:
        raise ValueError(f"the {name} test set has {len(test.classes)} classes but the model scores "
                         f"{meta['num_classes']}")
    mean, std = _normalizer(meta)
    loss, acc = evaluate(model, data.normalize(test.x, mean, std), test.y)
    print(f"{args.checkpoint}: {meta.get('model_name', 'model')} on {name} test set ({plural(len(test), 'image')}): "
          f"accuracy {acc:.4f}, loss {loss:.4f}")
    return 0


def _predict(args):
    from . import data
    from .checkpoint import load_model
    from .images import load_image
    from .tensor import Tensor, no_grad

    model, meta = load_model(args.checkpoint)
    shape = tuple(meta["input_shape"])
    invert = args.invert if args.invert is not None else meta.get("dataset") == "digits"
    x, note = load_image(args.image, shape, invert)
    mean, std = _normalizer(meta)
    with no_grad():
        logits = model(Tensor(data.normalize(x[None], mean, std))).data[0].astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    classes = meta.get("classes") or [str(i) for i in range(len(p))]
    print(f"{args.image} ({note}): top {min(args.top, len(p))} of {len(p)} classes")
    for i in np.argsort(-p)[: args.top]:
        print(f"  {classes[i]:>12}  {p[i]:.4f}")
    return 0


def _check(args):
    from .check import run

    return run(quiet=args.quiet, isas=args.isa)


def _shown(action, default):
    action.shown_default = default
    return action


def _train_arguments(p):
    # argparse defaults are None (the real ones are cli_args.TRAIN_DEFAULTS), so --resume can tell
    # which options were given; --help shows the real ones.
    _shown(p.add_argument("--dataset", choices=["digits", "cifar10", "npz"], help="the data set"), "digits")
    p.add_argument("--data-dir", help="cifar10: the cifar-10-batches-py folder; npz: the .npz file (x, y); "
                                      "not for digits, which are embedded")
    _shown(p.add_argument("--model", help="built-in (digits-cnn, lenet, convnetjs-cifar), a .json/.toml layer list "
                                          "or graph, a Caffe .prototxt, or ConvNetJS layer_defs (.json, or the "
                                          "demo's .js)"),
           "digits-cnn for digits, else convnetjs-cifar")
    _shown(p.add_argument("--epochs", type=positive_int, help="passes over the training set"), 12)
    _shown(p.add_argument("--batch-size", type=positive_int, help="images per optimizer step"), 32)
    _shown(p.add_argument("--lr", type=positive_float, help="learning rate (finite, > 0)"), "adam 0.001, sgd 0.05")
    _shown(p.add_argument("--optimizer", choices=["adam", "sgd"], help="update rule (sgd: momentum 0.9)"), "adam")
    _shown(p.add_argument("--weight-decay", type=nonnegative_float, help="L2 weight decay (>= 0)"), 0.0)
    _shown(p.add_argument("--schedule", choices=["none", "step", "cosine"],
                          help="learning-rate schedule: cosine anneals it to 0 over the run, step divides it by 10 "
                               "every epochs/3, none keeps it"), "cosine")
    _shown(p.add_argument("--seed", type=nonnegative_int, help="seed of the weights, shuffling, augmentation and "
                                                                "dropout"), 0)
    _shown(p.add_argument("--augment", help="training-time transforms: none, shift (up to 2 pixels; shift=N), flip "
                                            "(left-right), comma-separated, e.g. shift,flip"),
           "shift,flip for cifar10, else none")
    _shown(p.add_argument("--threads", type=positive_int, help="pyconv threads"),
           "PYCONV_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs available")
    _shown(p.add_argument("--train-size", type=positive_int, help="use only the first N training images"), "all")
    _shown(p.add_argument("--test-size", type=positive_int, help="use only the first N test images"), "all")
    _shown(p.add_argument("--out", help="directory for checkpoint.npz, best.npz, metrics.json and the PNGs, written "
                                        "after every epoch ('' to write nothing)"), "pyconv-run")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR (its checkpoint.npz) with its "
                                                   "options, bitwise as if it had not stopped")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--serve", action="store_true", help="watch it learn: a live page (the ConvNetJS demo's views and "
                                                        "controls) at the printed address; after training it stays up "
                                                        "until Ctrl-C")
    _shown(p.add_argument("--host", help="with --serve: the address to listen on; any other than 127.0.0.1 makes the "
                                         "page reachable from other machines (a warning says so)"), "127.0.0.1")
    _shown(p.add_argument("--port", type=port_number, help="with --serve: the port (0: any free one)"), 8000)


def build_parser():
    parser = Parser(prog="pyconv", description="Fast CPU convolutions for numpy: train, inspect and benchmark ConvNets.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    p = sub.add_parser("info", help="version, compiler, CPU features, compiled kernels, threads")
    p.set_defaults(func=_info)

    p = sub.add_parser("train", help="train a ConvNet (default: a small one on the embedded 8x8 digits)",
                       description="Train a ConvNet. Exit status: 0 done, 1 error (or the loss became NaN/inf), "
                                   "2 bad option, 130 stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM; a stopped "
                                   "run continues with --resume DIR.")
    _train_arguments(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("summary", help="layer-by-layer output volumes, parameters, FLOPs, workspace (or "
                                       "pyconv summary MODEL.onnx)")
    p.add_argument("--model", default="lenet", help="built-in name, .json/.toml layer list or graph, Caffe .prototxt or "
                                                    "ConvNetJS layer_defs")
    _shown(p.add_argument("--input", type=volume_triple, default=None,
                          help="input volume, CxHxW (3x32x32); the lecture's 32x32x3 with --layout hwc; without it, a "
                               "model file that declares its input (Caffe's input shape, ConvNetJS's input layer) "
                               "gives it"), "3x32x32")
    p.add_argument("--layout", type=layout_arg, default=None,
                   help="how to read --input: chw (CxHxW, pyconv's and torch's order) or hwc (HxWxC, the lecture's "
                        "32x32x3); without it an NxNxD input such as 32x32x3 is refused as ambiguous")
    p.add_argument("--classes", type=positive_int, default=10, help="outputs of the last layer")
    p.set_defaults(func=_summary)

    p = sub.add_parser("eval", help="test accuracy of a checkpoint")
    p.add_argument("checkpoint", help="a checkpoint.npz or best.npz of pyconv train")
    _shown(p.add_argument("--dataset", choices=["digits", "cifar10", "npz"], help="the data set whose test set to use"), "the checkpoint's")
    _shown(p.add_argument("--data-dir", help="where that data set is (cifar10, npz)"), "the checkpoint's (an absolute path)")
    p.set_defaults(func=_eval)

    p = sub.add_parser("predict", help="classify an image file with a checkpoint (or an .onnx model: "
                                       "pyconv predict MODEL.onnx IMAGE)")
    p.add_argument("checkpoint", help="a checkpoint.npz or best.npz of pyconv train")
    p.add_argument("image", help="an image file (PNG, JPEG, ...; any size and bit depth)")
    p.add_argument("--top", type=positive_int, default=3, help="how many classes to list")
    _shown(p.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None,
                          help="invert gray levels (the digits' strokes are bright on dark)"), "on for digits")
    p.set_defaults(func=_predict)

    p = sub.add_parser("bench", help="time conv algorithms side by side (and torch, if installed); pyconv bench "
                                     "MODEL.onnx times a model against onnxruntime")
    p.add_argument("--suite", choices=["quick", "lecture", "cifar", "imagenet", "pool", "all", "zoo"], default="quick",
                   help="which layers to time (zoo: every conv of six real models, summed per model)")
    p.add_argument("--case", action="append", help="run only cases whose name contains this (repeatable)")
    p.add_argument("--list", action="store_true", help="list the case names and exit")
    _shown(p.add_argument("--threads", type=positive_int, default=None, help="threads for pyconv and torch"),
           "the current count")
    p.add_argument("--repeats", type=positive_int, default=7, help="timed repeats per case; the median is reported")
    p.add_argument("--algo", nargs="+", default=["direct", "im2col"], choices=list(_core.algorithms()),
                   help="pyconv algorithms to time").shown_default = "direct im2col"
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="array type")
    p.add_argument("--no-torch", action="store_true", help="do not time torch even if importable")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON (checked before the benchmarks run)")
    p.set_defaults(func=_bench)

    p = sub.add_parser("check", help="self-test: every compiled kernel on this CPU against a float64 reference")
    from .check import add_arguments as _check_arguments

    _check_arguments(p)
    p.set_defaults(func=_check)
    return parser


def _train(args):
    from .cli_train import run

    return run(args)


def _quiet_broken_pipe():
    """stdout's reader went away (`pyconv info | head -3`): no traceback, no 'Exception ignored'."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a program killed by the closed pipe reports


def _onnx_model_arg(argv):
    """predict / summary / bench of an .onnx file go to pyconv.cli_onnx."""
    return len(argv) > 1 and argv[0] in ("predict", "summary", "bench") and any(
        a.lower().endswith(".onnx") and not a.startswith("-") for a in argv[1:2])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if _onnx_model_arg(argv):
        from .cli_onnx import main as onnx_main

        return onnx_main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (ValueError, TypeError, OSError, NotImplementedError) as exc:
        print(f"pyconv {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pyconv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
