"""Side-by-side timing of pyconv's algorithms (and PyTorch, when importable) on named layers.

``pyconv bench`` and ``benchmarks/compare.py`` both run this. Every case is timed interleaved
(pyconv algorithms and torch alternate within each repeat) and reported as the median, so a noisy
shared machine affects both sides alike.
"""
import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import _runtime, zoo
from . import functional as F
from ._reference import ConvCase


def _conv(name, *geometry, **kwargs):
    """A named benchmark layer: ``_conv("vgg.64at224_b1", n, c, h, w, k, r, s, padding=1)``."""
    return ConvCase(*geometry, name=name, **kwargs)


@dataclass(frozen=True)
class PoolCase:
    name: str
    op: str  # "max" or "avg"
    n: int
    c: int
    h: int
    w: int
    kernel: int
    stride: int
    padding: int = 0

    @property
    def input_shape(self):
        return (self.n, self.c, self.h, self.w)

    def bytes(self, itemsize=4):
        out = F.pool2d_output_shape(self.input_shape, self.kernel, self.stride, self.padding)
        return itemsize * (int(np.prod(self.input_shape)) + int(np.prod(out)))


# The lecture's layers first (the quick set), then model layers.
LECTURE = [
    _conv("lecture.32x32x3_f5x6_p0", 1, 3, 32, 32, 6, 5, 5),
    _conv("lecture.32x32x3_f5x10_p2", 1, 3, 32, 32, 10, 5, 5, padding=2),
    _conv("lecture.7x7_f3_s1", 1, 1, 7, 7, 1, 3, 3),
    _conv("lecture.7x7_f3_s2", 1, 1, 7, 7, 1, 3, 3, stride=2),
    _conv("lecture.56x56x64_1x1x32", 1, 64, 56, 56, 32, 1, 1),
]
CIFAR = [
    _conv("cifar.3to32_b128", 128, 3, 32, 32, 32, 3, 3, padding=1),
    _conv("cifar.32to64_b128", 128, 32, 32, 32, 64, 3, 3, padding=1),
    _conv("cifar.64to128_b128", 128, 64, 16, 16, 128, 3, 3, padding=1),
    # the lecture's browser demo (model "convnetjs-cifar") at the training step's batch
    _conv("convnetjs.3to16_5x5_b64", 64, 3, 32, 32, 16, 5, 5, padding=2),
    _conv("convnetjs.16to20_5x5_b64", 64, 16, 16, 16, 20, 5, 5, padding=2),
    _conv("convnetjs.20to20_5x5_b64", 64, 20, 8, 8, 20, 5, 5, padding=2),
]
IMAGENET = [
    case
    for n in (1, 8)
    for case in (
        _conv(f"alexnet.conv1_b{n}", n, 3, 224, 224, 64, 11, 11, stride=4, padding=2),
        _conv(f"vgg.64at224_b{n}", n, 64, 224, 224, 64, 3, 3, padding=1),
        _conv(f"vgg.128at112_b{n}", n, 128, 112, 112, 128, 3, 3, padding=1),
        _conv(f"vgg.256at56_b{n}", n, 256, 56, 56, 256, 3, 3, padding=1),
        _conv(f"vgg.512at28_b{n}", n, 512, 28, 28, 512, 3, 3, padding=1),
        _conv(f"resnet50.1x1_256to64_b{n}", n, 256, 56, 56, 64, 1, 1),
        _conv(f"resnet50.1x1_64to256_b{n}", n, 64, 56, 56, 256, 1, 1),
        _conv(f"resnet.3x3s2_128at56_b{n}", n, 128, 56, 56, 128, 3, 3, stride=2, padding=1),
        _conv(f"mobilenet.dw3x3_32at112_b{n}", n, 32, 112, 112, 32, 3, 3, padding=1, groups=32),
        _conv(f"dilated.3x3d2_64at56_b{n}", n, 64, 56, 56, 64, 3, 3, padding=2, dilation=2),
    )
]
POOLS = [
    PoolCase("pool.max2x2s2_8x64x112", "max", 8, 64, 112, 112, 2, 2),
    PoolCase("pool.max3x3s2p1_8x64x112", "max", 8, 64, 112, 112, 3, 2, 1),
    PoolCase("pool.avg2x2s2_8x64x112", "avg", 8, 64, 112, 112, 2, 2),
    PoolCase("pool.max2x2s2_1x64x224", "max", 1, 64, 224, 224, 2, 2),
]


def _zoo_case(layer, n):
    return _conv(f"zoo.{layer.label()}_b{n}", n, layer.c, layer.h, layer.w, layer.k, layer.r, layer.s,
                    layer.stride, layer.padding, 1, layer.groups)


def _zoo_suite():
    """Every distinct conv layer of the zoo's models at batch 1 and 8 (shared shapes timed once)."""
    cases = {}
    for n in zoo.BATCHES:
        for model in zoo.MODELS:
            for layer, _ in zoo.distinct(model):
                case = _zoo_case(layer, n)
                cases.setdefault(case.name, case)
    return list(cases.values())


ZOO = _zoo_suite()
SUITES = {"quick": LECTURE + CIFAR[:1] + POOLS[3:], "lecture": LECTURE, "cifar": CIFAR, "imagenet": IMAGENET,
          "pool": POOLS, "all": LECTURE + CIFAR + IMAGENET + POOLS, "zoo": ZOO}

DIRECTIONS = ("fwd", "bwd_data", "bwd_weight")


def _time_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _conv_calls(case, direction, algo, x, w, dy):
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups, algo=algo)
    if direction == "fwd":
        return lambda: F.conv2d(x, w, **kw)
    if direction == "bwd_data":
        return lambda: F.conv2d_grad_input(dy, w, x.shape, **kw)
    return lambda: F.conv2d_grad_weight(x, dy, w.shape, **kw)


def _torch_conv_call(torch, case, direction, x, w, dy):
    xt, wt, dyt = (torch.from_numpy(a) for a in (x, w, dy))
    st, pd, dl = [case.stride] * 2, [case.padding] * 2, [case.dilation] * 2
    if direction == "fwd":
        return lambda: torch.nn.functional.conv2d(xt, wt, None, st, pd, dl, case.groups)
    mask = [direction == "bwd_data", direction == "bwd_weight", False]
    return lambda: torch.ops.aten.convolution_backward(dyt, xt, wt, None, st, pd, dl, False, [0, 0], case.groups, mask)


def run(cases, threads=None, repeats=7, algos=("direct", "im2col"), directions=DIRECTIONS, torch_compare=True,
        dtype=np.float32, progress=None):
    """Times every case; returns a list of row dicts (ms, GFLOP/s or GB/s, ratio vs torch)."""
    torch = None
    if torch_compare:
        try:
            import torch
        except ImportError:
            torch = None
        else:
            # pyconv on torch's OpenMP threads: otherwise each engine's idle threads spin on the
            # cores the other's next call wants (benchmarks/torch_results.md)
            try:
                import pyconv.torch  # noqa: F401
            except Exception:  # a torch pyconv.torch cannot register with: time it as it is
                pass
    if threads is not None:
        _runtime.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for case in cases:
        if progress:
            progress(case.name)
        x = rng.standard_normal(case.input_shape).astype(dtype)
        if isinstance(case, PoolCase):
            rows.extend(_run_pool(case, x, torch, repeats, rng))
            continue
        w = rng.standard_normal(case.weight_shape).astype(dtype)
        dy = rng.standard_normal(case.output_shape).astype(dtype)
        for direction in directions:
            calls = {a: _conv_calls(case, direction, a, x, w, dy) for a in algos}
            if torch is not None:
                calls["torch"] = _torch_conv_call(torch, case, direction, x, w, dy)
            times = {k: [] for k in calls}
            for fn in calls.values():  # warm-up
                fn()
            for _ in range(repeats):  # interleaved
                for k, fn in calls.items():
                    times[k].append(_time_once(fn))
            med = {k: float(np.median(v)) for k, v in times.items()}
            for algo in algos:
                row = dict(case=case.name, op="conv2d", direction=direction, algo=algo, ms=med[algo] * 1e3,
                           gflops=case.flops() / med[algo] / 1e9)
                if "torch" in med:
                    row["torch_ms"] = med["torch"] * 1e3
                    row["ratio"] = med["torch"] / med[algo]
                rows.append(row)
    return rows


def _run_pool(case, x, torch, repeats, rng):
    kw = dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding)
    pool = F.max_pool2d if case.op == "max" else F.avg_pool2d
    if case.op == "max":  # the gradient uses the forward's indices, as autograd (and torch's) does
        y, idx = F.max_pool2d(x, return_indices=True, **kw)
    else:
        y = pool(x, **kw)
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    if case.op == "max":
        grad = lambda: F.max_pool2d_grad(dy, x, indices=idx, **kw)  # noqa: E731
    else:
        grad = lambda: F.avg_pool2d_grad(dy, x.shape, **kw)  # noqa: E731
    calls = {("fwd", "direct"): lambda: pool(x, **kw), ("bwd", "direct"): grad}
    if torch is not None:
        xt = torch.from_numpy(x).requires_grad_(True)
        tpool = torch.nn.functional.max_pool2d if case.op == "max" else torch.nn.functional.avg_pool2d
        yt = tpool(xt, **kw)
        dyt = torch.from_numpy(dy)
        calls[("fwd", "torch")] = lambda: tpool(xt.detach(), **kw)
        calls[("bwd", "torch")] = lambda: torch.autograd.grad(yt, xt, dyt, retain_graph=True)
    times = {k: [] for k in calls}
    for fn in calls.values():
        fn()
    for _ in range(repeats):
        for k, fn in calls.items():
            times[k].append(_time_once(fn))
    rows = []
    for direction in ("fwd", "bwd"):
        t = float(np.median(times[(direction, "direct")]))
        row = dict(case=case.name, op=f"{case.op}_pool2d", direction=direction, algo="direct", ms=t * 1e3,
                   gbps=case.bytes(x.itemsize) / t / 1e9)
        if (direction, "torch") in times:
            tt = float(np.median(times[(direction, "torch")]))
            row["torch_ms"] = tt * 1e3
            row["ratio"] = tt / t
        rows.append(row)
    return rows


def format_table(rows):
    lines = [f"{'case':34} {'op':11} {'dir':10} {'algo':7} {'ms':>9} {'rate':>12} {'torch ms':>9} {'ratio':>6}"]
    for r in rows:
        rate = f"{r['gflops']:7.1f} GF/s" if "gflops" in r else f"{r['gbps']:7.2f} GB/s"
        tms = f"{r['torch_ms']:9.3f}" if "torch_ms" in r else f"{'-':>9}"
        ratio = f"{r['ratio']:6.2f}" if "ratio" in r else f"{'-':>6}"
        lines.append(f"{r['case']:34} {r['op']:11} {r['direction']:10} {r['algo']:7} {r['ms']:9.3f} {rate:>12} {tms} {ratio}")
    ratios = {}
    for r in rows:
        if "ratio" in r:
            ratios.setdefault((r["op"], r["direction"], r["algo"]), []).append(r["ratio"])
    if ratios:
        lines.append("")
        lines.append("geometric mean of torch time / pyconv time:")
        for (op, d, a), v in sorted(ratios.items()):
            lines.append(f"  {op:11} {d:10} {a:7} {float(np.exp(np.mean(np.log(v)))):6.2f}  ({len(v)} cases)")
    return "\n".join(lines)


def write_json(rows, path, meta):
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)


def case_dicts(cases):
    return [asdict(c) for c in cases]


def zoo_report(rows, algo="auto", worst=12):
    """Per zoo model and batch: summed conv time (each layer x how often it occurs), pyconv vs torch,
    for inference (forward) and training (forward + both gradients); then the layers that lose most."""
    ms = {(r["case"], r["direction"]): r for r in rows if r.get("algo") == algo and "torch_ms" in r}
    if not ms:
        return "(zoo report needs the torch timings: run with torch installed, without --no-torch)"
    lines = [f"{'model':16} {'batch':>5} {'infer ms':>9} {'torch':>9} {'ratio':>6}   {'train ms':>9} {'torch':>9} "
             f"{'ratio':>6}   layers"]
    losses = {}
    for n in zoo.BATCHES:
        for model in zoo.MODELS:
            tot = {"infer": [0.0, 0.0], "train": [0.0, 0.0]}
            count = 0
            for layer, times in zoo.distinct(model):
                name = _zoo_case(layer, n).name
                count += times
                for d in DIRECTIONS:
                    r = ms.get((name, d))
                    if r is None:
                        continue
                    for kind in ("infer", "train") if d == "fwd" else ("train",):
                        tot[kind][0] += times * r["ms"]
                        tot[kind][1] += times * r["torch_ms"]
                    key = (name, d)
                    losses[key] = losses.get(key, 0.0) + times * (r["ms"] - r["torch_ms"])
            (pi, ti), (pt, tt) = tot["infer"], tot["train"]
            if pi == 0:
                continue
            lines.append(f"{model:16} {n:5d} {pi:9.2f} {ti:9.2f} {ti / pi:6.2f}   {pt:9.2f} {tt:9.2f} {tt / pt:6.2f}   "
                         f"{count}")
    lines.append("")
    lines.append(f"layers losing most time to torch (ms summed over the models' occurrences, {algo}):")
    for (name, d), loss in sorted(losses.items(), key=lambda kv: -kv[1])[:worst]:
        if loss <= 0:
            break
        r = ms[(name, d)]
        lines.append(f"  {name:40} {d:10} {r['ms']:8.3f} ms vs torch {r['torch_ms']:8.3f}  ratio {r['ratio']:5.2f}  "
                     f"lost {loss:7.2f} ms")
    return "\n".join(lines)
