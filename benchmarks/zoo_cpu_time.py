"""The zoo's layers timed by CPU time of the calling thread (1 thread, pyconv and torch
interleaved, medians): a loaded machine stretches wall-clock times of 2-thread runs by whatever the
scheduler does, while a single thread's CPU time only sees cache and memory contention.

    python benchmarks/zoo_cpu_time.py [--case dw] [--repeats 9]

Prints per layer torch / pyconv for the forward and both gradients, and per model and batch the
summed conv CPU time (each layer x how often it occurs), inference and training.
"""
import argparse
import time

import numpy as np
import torch

import pyconv
import pyconv.functional as F
from pyconv import zoo
from pyconv.bench import _zoo_case

DIRS = ("fwd", "bwd_data", "bwd_weight")


def cpu_ms(fn):
    t = time.thread_time()
    fn()
    return 1e3 * (time.thread_time() - t)


def time_case(case, repeats):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.input_shape, dtype=np.float32)
    w = rng.standard_normal(case.weight_shape, dtype=np.float32)
    dy = rng.standard_normal(case.output_shape(), dtype=np.float32)
    xt, wt, dyt = (torch.from_numpy(a) for a in (x, w, dy))
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)
    targs = (case.stride, case.padding, case.dilation, case.groups)
    fns = {
        "fwd": (lambda: F.conv2d(x, w, **kw), lambda: torch.nn.functional.conv2d(xt, wt, None, *targs)),
        "bwd_data": (lambda: F.conv2d_grad_input(dy, w, x.shape, **kw),
                     lambda: torch.nn.grad.conv2d_input(x.shape, wt, dyt, *targs)),
        "bwd_weight": (lambda: F.conv2d_grad_weight(x, dy, w.shape, **kw),
                       lambda: torch.nn.grad.conv2d_weight(xt, w.shape, dyt, *targs)),
    }
    out = {}
    with torch.no_grad():
        for d, (mine, theirs) in fns.items():
            mine(), theirs()  # warm-up
            a, b = [], []
            for _ in range(repeats):
                a.append(cpu_ms(mine))
                b.append(cpu_ms(theirs))
            out[d] = (float(np.median(a)), float(np.median(b)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", action="append", help="only layers whose name contains this")
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    pyconv.set_num_threads(1)
    torch.set_num_threads(1)
    times = {}
    print(f"{'layer':40} " + " ".join(f"{d:>22}" for d in DIRS))
    for n in zoo.BATCHES:
        for model in zoo.MODELS:
            for layer, _ in zoo.distinct(model):
                case = _zoo_case(layer, n)
                if case.name in times or (args.case and not any(c in case.name for c in args.case)):
                    continue
                times[case.name] = t = time_case(case, args.repeats)
                print(f"{case.name:40} " + " ".join(f"{t[d][0]:7.3f}/{t[d][1]:7.3f} {t[d][1] / t[d][0]:5.2f}x"
                                                    for d in DIRS), flush=True)
    print(f"\n{'model':16} {'batch':>5} {'infer ms':>9} {'torch':>9} {'ratio':>6}   {'train ms':>9} {'torch':>9} {'ratio':>6}")
    for n in zoo.BATCHES:
        for model in zoo.MODELS:
            tot = {"infer": [0.0, 0.0], "train": [0.0, 0.0]}
            for layer, k in zoo.distinct(model):
                t = times.get(_zoo_case(layer, n).name)
                if t is None:
                    continue
                for d in DIRS:
                    for kind in ("infer", "train") if d == "fwd" else ("train",):
                        tot[kind][0] += k * t[d][0]
                        tot[kind][1] += k * t[d][1]
            (pi, ti), (pt, tt) = tot["infer"], tot["train"]
            if pi:
                print(f"{model:16} {n:5d} {pi:9.2f} {ti:9.2f} {ti / pi:6.2f}   {pt:9.2f} {tt:9.2f} {tt / pt:6.2f}")


if __name__ == "__main__":
    main()
