"""pyconv as torch's CPU backend on whole models: ``pt.convert(model)`` against torch eager.

    python benchmarks/torch_backend.py                       # training step b8 + inference b1/b8, 4 models
    python benchmarks/torch_backend.py --models resnet18 --steps 10 --no-infer
    python benchmarks/torch_backend.py --profile             # + where the time goes (torch.profiler)
    python benchmarks/torch_backend.py --layers --no-train --no-infer   # every conv layer alone, both engines
    python benchmarks/torch_backend.py --import-orders       # the same run with torch / pyconv imported first

Models: benchmarks/torch_models.py (torchvision's ResNet-18, MobileNetV2, VGG-11, SqueezeNet 1.1),
random weights, 224x224. The torch model and its converted twin (a deep copy: own weights, own
optimizer) run interleaved step by step in one process, both engines on --threads threads;
figures are medians after warm-up. "speed-up" is torch / pyconv (> 1: pyconv faster). A round
(one call of each engine) during which other processes kept more than a quarter of a core busy
is discarded and run again (/proc/stat against this process's own CPU time): on a shared 2-core
machine torch's OpenMP barriers suffer badly from a preempted thread, which would flatter pyconv.

* training step: forward, cross-entropy, backward, SGD (momentum 0.9) at --batch (8) in train mode
* inference: eval mode under torch.inference_mode(), batch 1 and --batch (no fusion yet: that is
  optimize(), which is not written)
* --profile: torch.profiler over 2 steps of each engine: time per op kind (convolutions forward
  and backward, pooling, BatchNorm, ReLU, the rest) and the convolution layers ordered by how
  much slower (or faster) pyconv's forward + both gradients are than torch's at that shape.
* --layers: every distinct conv layer of each model alone: torch's forward and backward
  (``convolution_backward``, both gradients) against pyconv's forward, input and weight gradients.
* --json FILE writes every figure.
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def busy_cores(seconds=1.0):
    """CPU cores busy over ``seconds`` (all processes, from /proc/stat; None where unavailable)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total
    try:
        i0, t0 = snap()
        time.sleep(seconds)
        i1, t1 = snap()
    except OSError:
        return None
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(t1 - t0, 1))


def wait_quiet(max_wait, busy=0.3):
    """Wait (up to ``max_wait`` seconds) until other processes keep fewer than ``busy`` cores busy
    over 3 s: a shared 2-core machine's other jobs make both engines' timings meaningless (torch's
    OpenMP barriers suffer most from a preempted thread)."""
    deadline = time.time() + max_wait
    while True:
        b = busy_cores(3.0)
        if b is None or b < busy or time.time() > deadline:
            return b
        print(f"  (machine busy: {b:.1f} cores; waiting)", file=sys.stderr, flush=True)
        time.sleep(10)


def _imports(first):
    """Import torch and pyconv in the order asked for (both orders must give the same speed)."""
    global torch, nn, pyconv, pt, zoo
    if first == "pyconv":
        import pyconv
        import torch
    else:
        import torch
        import pyconv
    import pyconv.torch as pt
    from torch import nn

    sys.path.insert(0, str(HERE))
    import torch_models as zoo


def _pair(name, batch, train, seed=0):
    import copy

    torch.manual_seed(seed)
    model = zoo.MODELS[name]()
    twin = pt.convert(copy.deepcopy(model))
    model.train(train)
    twin.train(train)
    return model, twin


def _torch_threads(n):
    """Run the wrapped step with torch's intra-op threads set to n (None: leave them)."""
    def wrap(fn):
        if n is None:
            return fn

        def run():
            before = torch.get_num_threads()
            torch.set_num_threads(n)
            try:
                fn()
            finally:
                torch.set_num_threads(before)
        return run
    return wrap


def _step_fn(model, x, y, torch_threads=None):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    @_torch_threads(torch_threads)
    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


def _infer_fn(model, x, torch_threads=None):
    @_torch_threads(torch_threads)
    def run():
        with torch.inference_mode():
            model(x)
    return run


def _busy_ticks():
    """(all processes' busy CPU seconds, this process's CPU seconds) so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return (sum(v) - v[3] - v[4]) / hz, r.ru_utime + r.ru_stime


MAX_OTHERS = 0.25  # cores other processes may use during a round before it is discarded


def _interleaved(fns, steps, warmup, max_rounds=None):
    """Rounds of one call of each fn; a round during which other processes kept more than
    MAX_OTHERS cores busy is discarded and run again (up to max_rounds rounds in all)."""
    times = {k: [] for k in fns}
    discarded = 0
    max_rounds = max_rounds or 4 * (steps + warmup)
    for i in range(max_rounds):
        if len(times[next(iter(fns))]) >= steps:
            break
        b0, s0 = _busy_ticks()
        w0 = time.perf_counter()
        dts = {}
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            dts[k] = time.perf_counter() - t0
        b1, s1 = _busy_ticks()
        others = ((b1 - b0) - (s1 - s0)) / (time.perf_counter() - w0)
        if i < warmup:
            continue
        if others > MAX_OTHERS:
            discarded += 1
            continue
        for k, dt in dts.items():
            times[k].append(dt)
    if discarded:
        print(f"  ({discarded} rounds discarded: other processes were busy)", file=sys.stderr, flush=True)
    if not times[next(iter(fns))]:  # never quiet: keep the last round rather than nothing
        for k, dt in dts.items():
            times[k].append(dt)
    return {k: statistics.median(v) for k, v in times.items()}, times


def bench_train(name, batch, steps, warmup, torch_threads=None):
    model, twin = _pair(name, batch, True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 224, 224, generator=g)
    y = torch.randint(0, 1000, (batch,), generator=g)
    med, _ = _interleaved({"torch": _step_fn(model, x, y), "pyconv": _step_fn(twin, x, y, torch_threads)}, steps,
                          warmup)
    return med


def bench_infer(name, batch, steps, warmup, torch_threads=None):
    model, twin = _pair(name, batch, False)
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    med, _ = _interleaved({"torch": _infer_fn(model, x), "pyconv": _infer_fn(twin, x, torch_threads)}, steps,
                          warmup)
    return med


# --------------------------------------------------------------------------- profile

_CONV_OPS = {"aten::conv2d": ("torch", "fwd"), "aten::convolution_backward": ("torch", "bwd"),
             "pyconv::conv2d": ("pyconv", "fwd"), "pyconv::conv2d_grad_input": ("pyconv", "bwd"),
             "pyconv::conv2d_grad_weight": ("pyconv", "bwd")}
_KINDS = (("conv fwd", ("aten::conv2d", "pyconv::conv2d")),
          ("conv bwd", ("aten::convolution_backward", "pyconv::conv2d_grad_input", "pyconv::conv2d_grad_weight")),
          ("pool", ("aten::max_pool2d", "aten::max_pool2d_with_indices_backward", "aten::avg_pool2d",
                    "aten::avg_pool2d_backward", "pyconv::max_pool2d", "pyconv::max_pool2d_backward",
                    "pyconv::avg_pool2d", "pyconv::avg_pool2d_backward", "aten::adaptive_avg_pool2d",
                    "aten::_adaptive_avg_pool2d_backward")),
          ("batch norm", ("aten::batch_norm", "aten::native_batch_norm_backward")),
          ("relu", ("aten::relu_", "aten::hardtanh_", "aten::threshold_backward", "aten::hardtanh_backward")),
          ("linear", ("aten::linear", "aten::mm", "aten::addmm")),
          ("optimizer", ("Optimizer.step#SGD.step",)))


def _layer_key(op, shapes):
    """(input shape, weight shape) of a conv call, from the profiler's recorded input shapes."""
    if op in ("aten::conv2d", "pyconv::conv2d"):
        return tuple(shapes[0]), tuple(shapes[1])
    if op == "aten::convolution_backward":  # (grad_output, input, weight, ...)
        return tuple(shapes[1]), tuple(shapes[2])
    if op == "pyconv::conv2d_grad_weight":  # (input, grad_output, weight_size)
        return tuple(shapes[0]), None
    return None, tuple(shapes[1])  # grad_input: (grad_output, weight, input_size)


def profile(name, batch, steps=2):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    model, twin = _pair(name, batch, True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 224, 224, generator=g)
    y = torch.randint(0, 1000, (batch,), generator=g)
    out = {}
    layers = {}
    for engine, m in (("torch", model), ("pyconv", twin)):
        step = _step_fn(m, x, y)
        step()
        t0 = time.perf_counter()
        with tprofile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(steps):
                step()
        wall = (time.perf_counter() - t0) / steps
        avgs = prof.key_averages(group_by_input_shape=True)
        kinds = {k: 0.0 for k, _ in _KINDS}
        for ev in avgs:
            for kind, names in _KINDS:
                if ev.key in names:
                    kinds[kind] += ev.cpu_time_total / steps / 1e3
            if ev.key in _CONV_OPS:
                who, direction = _CONV_OPS[ev.key]
                xs, ws = _layer_key(ev.key, ev.input_shapes)
                layers.setdefault(who, []).append((ev.key, xs, ws, ev.cpu_time_total / steps / 1e3, ev.count))
        kinds["other"] = wall * 1e3 - sum(kinds.values())
        out[engine] = {"wall_ms": wall * 1e3, "kinds_ms": kinds}
    out["layers"] = _match_layers(layers)
    return out


def _match_layers(layers):
    """Per conv layer shape: torch fwd+bwd and pyconv fwd + grad_input + grad_weight, in ms per step."""
    table = {}
    wshape_of = {}
    for op, xs, ws, ms, count in layers.get("pyconv", []):
        if op == "pyconv::conv2d":
            wshape_of.setdefault(xs, set()).add(ws)
    for who in ("torch", "pyconv"):
        for op, xs, ws, ms, count in layers.get(who, []):
            if op == "pyconv::conv2d_grad_weight":  # only the input shape is recorded as a tensor
                cands = wshape_of.get(xs, set())
                if len(cands) != 1:
                    continue
                ws = next(iter(cands))
            if op == "pyconv::conv2d_grad_input":
                xs = "?"
            key = (str(xs), str(ws))
            row = table.setdefault(key, {"torch": 0.0, "pyconv": 0.0, "calls": 0})
            row[who] += ms
            if op in ("aten::conv2d", "pyconv::conv2d") and who == "torch":
                row["calls"] += count
    # grad_input rows carry only the weight shape: fold them into the layer with that weight
    merged = {}
    for (xs, ws), row in table.items():
        if xs == "?":
            continue
        merged[(xs, ws)] = dict(row)
    for (xs, ws), row in table.items():
        if xs != "?":
            continue
        targets = [k for k in merged if k[1] == ws]
        for k in targets:  # split evenly between layers sharing a weight shape
            merged[k]["pyconv"] += row["pyconv"] / len(targets)
    return [{"input": k[0], "weight": k[1], **v} for k, v in merged.items()]


def print_profile(name, prof):
    t, p = prof["torch"], prof["pyconv"]
    print(f"\n{name}: where a training step's time goes (ms per step, torch.profiler)")
    print(f"{'':14s} {'torch':>9s} {'pyconv':>9s}")
    print(f"{'wall':14s} {t['wall_ms']:9.1f} {p['wall_ms']:9.1f}")
    for kind in list(t["kinds_ms"]):
        print(f"{kind:14s} {t['kinds_ms'][kind]:9.1f} {p['kinds_ms'][kind]:9.1f}")
    rows = sorted(prof["layers"], key=lambda r: r["pyconv"] - r["torch"], reverse=True)
    print(f"conv layers (fwd + both gradients, ms per step), slowest for pyconv first:")
    print(f"  {'input':>22s} {'weight':>22s} {'calls':>5s} {'torch':>8s} {'pyconv':>8s} {'torch/pyconv':>12s}")
    for r in rows:
        ratio = r["torch"] / r["pyconv"] if r["pyconv"] else float("nan")
        print(f"  {r['input']:>22s} {r['weight']:>22s} {r['calls'] // 2:5d} {r['torch']:8.2f} {r['pyconv']:8.2f} "
              f"{ratio:12.2f}")


# --------------------------------------------------------------------------- per conv layer


def conv_layers(name, batch):
    """The model's distinct conv layers at 224x224: (input shape, weight shape, stride, padding,
    dilation, groups, bias) -> how many layers have it."""
    torch.manual_seed(0)
    model = zoo.MODELS[name]().eval()
    seen = {}
    hooks = [m.register_forward_pre_hook(
        lambda m, a: seen.__setitem__(key := (tuple(a[0].shape), tuple(m.weight.shape), m.stride, m.padding,
                                              m.dilation, m.groups, m.bias is not None), seen.get(key, 0) + 1))
        for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.randn(batch, 3, 224, 224))
    for h in hooks:
        h.remove()
    return seen


def _median_ms(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def layer_table(name, batch, reps=5):
    """Each distinct conv layer of the model, torch's forward and backward (convolution_backward:
    both gradients and the bias's) against pyconv's forward, input gradient and weight gradient."""
    rows = []
    for (xs, ws, stride, padding, dilation, groups, bias), count in conv_layers(name, batch).items():
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(xs, generator=g), torch.randn(ws, generator=g)
        b = torch.randn(ws[0], generator=g) if bias else None
        args = (stride, padding, dilation, groups, "zeros", "auto", False)
        y = pt.ops.conv2d(x, w, b, *args)
        gy = torch.randn(y.shape, generator=g)
        t = {
            "torch fwd": lambda: torch.nn.functional.conv2d(x, w, b, stride, padding, dilation, groups),
            "torch bwd": lambda: torch.ops.aten.convolution_backward(
                gy, x, w, [ws[0]] if bias else None, stride, padding, dilation, False, [0, 0], groups,
                [True, True, bias]),
            "pyconv fwd": lambda: pt.ops.conv2d(x, w, b, *args),
            "pyconv grad_input": lambda: pt.ops.conv2d_grad_input(gy, w, list(xs), *args),
            "pyconv grad_weight": lambda: pt.ops.conv2d_grad_weight(x, gy, list(ws), *args),
        }
        with torch.no_grad():
            ms = {k: [] for k in t}
            for _ in range(3):  # interleave rounds of both engines
                for k, fn in t.items():
                    ms[k].append(_median_ms(fn, reps))
        row = {"input": xs, "weight": ws, "stride": stride, "groups": groups, "count": count}
        row.update({k: min(v) for k, v in ms.items()})  # the best round: the least disturbed
        rows.append(row)
    return rows


def print_layers(name, rows):
    print(f"\n{name}: each distinct conv layer, ms per call (best of 3 rounds of medians), n = layers of that shape")
    print(f"  {'input':>18s} {'weight':>18s} {'s':>2s} {'n':>2s} {'torch fwd':>9s} {'pyc fwd':>8s} {'torch bwd':>9s} "
          f"{'pyc gi':>7s} {'pyc gw':>7s} {'fwd x':>6s} {'bwd x':>6s}")
    tot = {"tf": 0.0, "pf": 0.0, "tb": 0.0, "pb": 0.0}
    for r in sorted(rows, key=lambda r: -(r["pyconv fwd"] + r["pyconv grad_input"] + r["pyconv grad_weight"]
                                          - r["torch fwd"] - r["torch bwd"]) * r["count"]):
        pb = r["pyconv grad_input"] + r["pyconv grad_weight"]
        print(f"  {str(r['input']):>18s} {str(r['weight']):>18s} {r['stride'][0]:2d} {r['count']:2d} "
              f"{r['torch fwd']:9.2f} {r['pyconv fwd']:8.2f} {r['torch bwd']:9.2f} {r['pyconv grad_input']:7.2f} "
              f"{r['pyconv grad_weight']:7.2f} {r['torch fwd'] / r['pyconv fwd']:6.2f} {r['torch bwd'] / pb:6.2f}")
        tot["tf"] += r["torch fwd"] * r["count"]
        tot["pf"] += r["pyconv fwd"] * r["count"]
        tot["tb"] += r["torch bwd"] * r["count"]
        tot["pb"] += pb * r["count"]
    print(f"  all convs of one step: forward torch {tot['tf']:.1f} / pyconv {tot['pf']:.1f} ms "
          f"({tot['tf'] / tot['pf']:.2f}x), backward torch {tot['tb']:.1f} / pyconv {tot['pb']:.1f} ms "
          f"({tot['tb'] / tot['pb']:.2f}x)")
    return tot


# --------------------------------------------------------------------------- main


def _geomean(v):
    return math.exp(sum(math.log(x) for x in v) / len(v))


def run(args):
    _imports(args.import_first)
    torch.set_num_threads(args.threads)
    pyconv.set_num_threads(args.threads)
    results = {"threads": args.threads, "import_first": args.import_first, "torch": torch.__version__,
               "load_avg_start": os.getloadavg(), "train": {}, "infer": {}, "profile": {}}
    env = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "PYCONV_SPIN_US") if k in os.environ}
    results["env"] = env
    print(f"torch {torch.__version__}, pyconv {pyconv.__version__}, {args.threads} threads, {args.import_first} "
          f"imported first, load average {os.getloadavg()[0]:.2f}" + (f", {env}" if env else "") +
          (f", torch threads {args.torch_threads_converted} in the converted model"
           if args.torch_threads_converted else ""))
    if not args.no_train:
        print(f"\ntraining step (forward, backward, SGD), batch {args.batch}, 224x224: median ms")
        print(f"{'model':14s} {'torch':>9s} {'pyconv':>9s} {'speed-up':>9s}")
        for name in args.models:
            wait_quiet(args.wait_quiet)
            med = bench_train(name, args.batch, args.steps, args.warmup, args.torch_threads_converted)
            results["train"][name] = med
            print(f"{name:14s} {med['torch'] * 1e3:9.1f} {med['pyconv'] * 1e3:9.1f} {med['torch'] / med['pyconv']:9.2f}",
                  flush=True)
        if len(results["train"]) > 1:
            gm = _geomean([m["torch"] / m["pyconv"] for m in results["train"].values()])
            results["train_geomean"] = gm
            print(f"{'geomean':14s} {'':9s} {'':9s} {gm:9.2f}")
    if not args.no_infer:
        for b in (1, args.batch):
            print(f"\ninference (eval, inference_mode, no fusion), batch {b}, 224x224: median ms")
            print(f"{'model':14s} {'torch':>9s} {'pyconv':>9s} {'speed-up':>9s}")
            for name in args.models:
                wait_quiet(args.wait_quiet)
                med = bench_infer(name, b, args.infer_steps, args.warmup, args.torch_threads_converted)
                results["infer"][f"{name}/b{b}"] = med
                print(f"{name:14s} {med['torch'] * 1e3:9.1f} {med['pyconv'] * 1e3:9.1f} "
                      f"{med['torch'] / med['pyconv']:9.2f}", flush=True)
    if args.profile:
        for name in args.models:
            wait_quiet(args.wait_quiet)
            prof = profile(name, args.batch)
            results["profile"][name] = prof
            print_profile(name, prof)
    if args.layers:
        results["layers"] = {}
        for name in args.models:
            wait_quiet(args.wait_quiet)
            rows = layer_table(name, args.batch)
            results["layers"][name] = {"rows": rows, "totals": print_layers(name, rows)}
    results["load_avg_end"] = os.getloadavg()
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


def import_orders(args):
    """The same training benchmark in two fresh processes, torch imported first, then pyconv."""
    import tempfile

    out = {}
    for first in ("torch", "pyconv"):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            path = f.name
        cmd = [sys.executable, __file__, "--import-first", first, "--no-infer", "--json", path,
               "--wait-quiet", str(args.wait_quiet), "--threads",
               str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
               "--models", *args.models]
        subprocess.run(cmd, check=True)
        out[first] = json.loads(Path(path).read_text())["train"]
        os.unlink(path)
    print("\nimport order: median training step, ms (torch first / pyconv first)")
    print(f"{'model':14s} {'torch eager':>21s} {'converted':>21s}")
    for name in args.models:
        a, b = out["torch"][name], out["pyconv"][name]
        print(f"{name:14s} {a['torch'] * 1e3:9.1f} / {b['torch'] * 1e3:9.1f} {a['pyconv'] * 1e3:9.1f} / "
              f"{b['pyconv'] * 1e3:9.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2", "vgg11", "squeezenet1_1"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8, help="timed training steps per engine")
    ap.add_argument("--infer-steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-infer", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--layers", action="store_true", help="time every distinct conv layer in isolation")
    ap.add_argument("--torch-threads-converted", type=int, metavar="N",
                    help="torch's intra-op threads while the converted model runs (default: --threads)")
    ap.add_argument("--import-first", choices=("torch", "pyconv"), default="torch")
    ap.add_argument("--import-orders", action="store_true", help="run the training benchmark under both orders")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="before each model, wait up to this long for other processes to leave the cores idle")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.import_orders:
        import_orders(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
