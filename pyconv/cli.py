"""The ``pyconv`` command line (also ``python -m pyconv``).

``train`` trains a ConvNet (digits by default), ``summary`` describes a model layer by layer,
``eval``/``predict`` use a checkpoint, ``bench`` times the algorithms, ``info`` describes the build.
Every error is one line on stderr and a non-zero exit status.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from . import _core, _runtime


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

    cases = bench.SUITES[args.suite]
    if args.case:
        cases = [c for c in bench.SUITES["all"] + bench.ZOO if any(sel in c.name for sel in args.case)]
        if not cases:
            raise ValueError(f"no benchmark case matches {args.case}; see `pyconv bench --list`")
    if args.list:
        for c in bench.SUITES["all"] + bench.ZOO:
            print(c.name)
        return 0
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
        bench.write_json(rows, args.json, meta)
        print(f"wrote {args.json}")
    return 0


def _shape_arg(text):
    """'3x32x32' or '3,32,32' -> (3, 32, 32)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: expected CxHxW such as 3x32x32") from None
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: expected three positive sizes CxHxW such as 3x32x32")
    return shape


def _positive(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _summary(args):
    from .models import build_model
    from .summary import summary

    model = build_model(args.model, args.input, args.classes)
    print(summary(model, args.input))
    return 0


class _Bar:
    """A tqdm bar per epoch showing loss, accuracy and images/s (plain lines when not a terminal)."""

    def __init__(self, epoch, epochs, total, enabled):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=True, disable=not enabled,
                        dynamic_ncols=True, file=sys.stderr)

    def update(self, loss, acc, ips):
        self.bar.set_postfix_str(f"loss {loss:.4f} acc {acc:.3f} {ips:,.0f} img/s", refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()


def _metrics_table(history):
    head = f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'test loss':>9}  {'test acc':>8}  {'seconds':>7}  {'img/s':>8}"
    lines = [head, "-" * len(head)]
    for h in history:
        lines.append(f"{h['epoch']:>5}  {h['train_loss']:>10.4f}  {h['train_accuracy']:>9.4f}  {h['test_loss']:>9.4f}  "
                     f"{h['test_accuracy']:>8.4f}  {h['seconds']:>7.2f}  {h['images_per_second']:>8,.0f}")
    return "\n".join(lines)


def _train(args):
    from . import data, viz
    from .checkpoint import save_checkpoint
    from .models import build_model, spec_for
    from .random import manual_seed
    from .train import fit, make_optimizer, make_schedule

    if args.threads is not None:
        _runtime.set_num_threads(args.threads)
    train, test = data.load_dataset(args.dataset, args.data_dir)
    train, test = train.subset(args.train_size), test.subset(args.test_size)
    mean, std = data.channel_stats(train.x)
    train = data.Dataset(data.normalize(train.x, mean, std), train.y, train.classes, train.name)
    test = data.Dataset(data.normalize(test.x, mean, std), test.y, test.classes, test.name)
    model_name = args.model or ("digits-cnn" if args.dataset == "digits" else "convnetjs-cifar")
    spec = spec_for(model_name)
    manual_seed(args.seed)
    model = build_model(spec, train.image_shape, len(train.classes))
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr, weight_decay=args.weight_decay)
    schedule = make_schedule(args.schedule, optimizer, args.epochs)
    print(f"pyconv train: {train.name} ({len(train)} train / {len(test)} test, {'x'.join(map(str, train.image_shape))}), "
          f"model {model_name} ({model.num_parameters():,} parameters), {args.optimizer} lr {optimizer.lr:g}, "
          f"{args.epochs} epochs, batch {args.batch_size}, {_runtime.get_num_threads()} threads", flush=True)
    show = not args.quiet
    t0 = time.perf_counter()
    history = fit(model, train, test, args.epochs, optimizer, batch_size=args.batch_size, seed=args.seed,
                  schedule=schedule, progress=lambda e, n: _Bar(e, args.epochs, n, show))
    elapsed = time.perf_counter() - t0
    print(_metrics_table(history))
    print(f"test accuracy {history[-1]['test_accuracy']:.4f} after {args.epochs} epochs in {elapsed:.1f} s")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        meta = dict(model_name=model_name, model_spec=spec, input_shape=list(train.image_shape),
                    num_classes=len(train.classes), classes=list(train.classes), dataset=args.dataset,
                    data_dir=args.data_dir, normalize=dict(mean=mean.tolist(), std=std.tolist()),
                    optimizer_name=args.optimizer, epochs=args.epochs, seed=args.seed, history=history)
        save_checkpoint(os.path.join(args.out, "checkpoint.npz"), model, optimizer, **meta)
        with open(os.path.join(args.out, "metrics.json"), "w") as f:
            json.dump(dict(epochs=history, dataset=args.dataset, model=model_name, seed=args.seed,
                           seconds=elapsed, parameters=model.num_parameters()), f, indent=1)
        written = ["checkpoint.npz", "metrics.json"]
        if not args.no_plots:
            viz.plot_history(history, os.path.join(args.out, "curves.png"))
            viz.save_filters(model, os.path.join(args.out, "filters.png"))
            label = test.classes[test.y[0]] if len(test) else None
            viz.save_activations(model, test.x[0], os.path.join(args.out, "activations.png"), label=label)
            written += ["curves.png", "filters.png", "activations.png"]
        print(f"wrote {', '.join(written)} to {args.out}")
    return 0


def _normalizer(meta):
    mean = np.asarray(meta["normalize"]["mean"], np.float32)
    std = np.asarray(meta["normalize"]["std"], np.float32)
    return mean, std


def _eval(args):
    from . import data
    from .checkpoint import load_model
    from .train import evaluate

    model, meta = load_model(args.checkpoint)
    name = args.dataset or meta.get("dataset", "digits")
    _, test = data.load_dataset(name, args.data_dir or meta.get("data_dir"))
    if tuple(test.image_shape) != tuple(meta["input_shape"]):
        raise ValueError(f"the {name} images are {test.image_shape} but the model expects {tuple(meta['input_shape'])}")
    mean, std = _normalizer(meta)
    loss, acc = evaluate(model, data.normalize(test.x, mean, std), test.y)
    print(f"{args.checkpoint}: {meta.get('model_name', 'model')} on {name} test set ({len(test)} images): "
          f"accuracy {acc:.4f}, loss {loss:.4f}")
    return 0


def _load_image(path, shape, invert):
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise ValueError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None
    img = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
    a = np.asarray(img, np.float32) / 255.0
    if invert:
        a = 1.0 - a
    return a[None] if c == 1 else a.transpose(2, 0, 1)


def _predict(args):
    from . import data
    from .checkpoint import load_model
    from .tensor import Tensor, no_grad

    model, meta = load_model(args.checkpoint)
    shape = tuple(meta["input_shape"])
    invert = args.invert if args.invert is not None else meta.get("dataset") == "digits"
    x = _load_image(args.image, shape, invert)
    mean, std = _normalizer(meta)
    with no_grad():
        logits = model(Tensor(data.normalize(x[None], mean, std))).data[0].astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    classes = meta.get("classes") or [str(i) for i in range(len(p))]
    print(f"{args.image}: top {min(args.top, len(p))} of {len(p)} classes")
    for i in np.argsort(-p)[: args.top]:
        print(f"  {classes[i]:>12}  {p[i]:.4f}")
    return 0


def _check(args):
    from .check import run

    return run(quiet=args.quiet, isas=args.isa)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump): `pyconv X: error: ...`, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _Parser(prog="pyconv", description="Fast CPU convolutions for numpy: train, inspect and benchmark ConvNets.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("info", help="version, compiler, CPU features, compiled kernels, threads")
    p.set_defaults(func=_info)

    p = sub.add_parser("train", help="train a ConvNet (default: a small one on the embedded 8x8 digits)")
    p.add_argument("--dataset", choices=["digits", "cifar10", "npz"], default="digits")
    p.add_argument("--data-dir", help="cifar10: the cifar-10-batches-py folder; npz: the .npz file (x, y)")
    p.add_argument("--model", help="built-in (digits-cnn, lenet, convnetjs-cifar) or a .json/.toml layer list "
                                   "(default: digits-cnn for digits, else convnetjs-cifar)")
    p.add_argument("--epochs", type=_positive, default=12)
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: adam 1e-3, sgd 0.05)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", choices=["none", "step", "cosine"], default="cosine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive, default=None)
    p.add_argument("--train-size", type=_positive, default=None, help="use only the first N training images")
    p.add_argument("--test-size", type=_positive, default=None, help="use only the first N test images")
    p.add_argument("--out", default="pyconv-run", help="directory for checkpoint.npz, metrics.json and PNGs "
                                                       "(default: pyconv-run; '' to write nothing)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    p = sub.add_parser("summary", help="layer-by-layer output volumes, parameters, FLOPs, workspace")
    p.add_argument("--model", default="lenet", help="built-in name or .json/.toml layer list (default: lenet)")
    p.add_argument("--input", type=_shape_arg, default=(3, 32, 32), help="input volume CxHxW (default 3x32x32)")
    p.add_argument("--classes", type=_positive, default=10, help="outputs of the last layer (default 10)")
    p.set_defaults(func=_summary)

    p = sub.add_parser("eval", help="test accuracy of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--dataset", choices=["digits", "cifar10", "npz"], default=None)
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=_eval)

    p = sub.add_parser("predict", help="classify an image file with a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("image")
    p.add_argument("--top", type=_positive, default=3)
    p.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None,
                   help="invert gray levels (default: on for digits, whose strokes are bright on dark)")
    p.set_defaults(func=_predict)

    p = sub.add_parser("bench", help="time conv algorithms side by side (and torch, if installed)")
    p.add_argument("--suite", choices=["quick", "lecture", "cifar", "imagenet", "pool", "all", "zoo"], default="quick")
    p.add_argument("--case", action="append", help="run only cases whose name contains this (repeatable)")
    p.add_argument("--list", action="store_true", help="list the case names and exit")
    p.add_argument("--threads", type=int, default=None, help="threads for pyconv and torch (default: current)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per case; the median is reported")
    p.add_argument("--algo", nargs="+", default=["direct", "im2col"], choices=["auto", "direct", "im2col", "winograd"])
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--no-torch", action="store_true", help="do not time torch even if importable")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.set_defaults(func=_bench)

    p = sub.add_parser("check", help="self-test: every compiled kernel on this CPU against a float64 reference")
    from .check import add_arguments as _check_arguments

    _check_arguments(p)
    p.set_defaults(func=_check)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, NotImplementedError) as exc:
        print(f"pyconv {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pyconv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
