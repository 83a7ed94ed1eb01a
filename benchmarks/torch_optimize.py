"""pyconv.torch.optimize vs torch eager, inference, side by side in one process.

    python benchmarks/torch_optimize.py [--models resnet18 mobilenet_v2 squeezenet1_1 vgg11]
                                        [--batch 1 8] [--repeats 9] [--threads 2]

Per model and batch: median seconds of torch eager (no_grad) and of the optimised module, the
calls interleaved, and eager / optimised (> 1: pyconv faster). Models: benchmarks/torch_models.py.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyconv  # noqa: E402
import pyconv.torch as pt  # noqa: E402
from torch_models import MODELS  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pyconv.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}")
    print(f"{'model':14s} {'batch':>5s} {'eager ms':>9s} {'optimize ms':>11s} {'eager/opt':>9s}")
    for name in args.models:
        model = MODELS[name]().eval()
        fast = pt.optimize(model)
        for b in args.batch:
            x = torch.randn(b, 3, 224, 224)
            te, to = [], []
            with torch.no_grad():
                for i in range(args.repeats + 2):
                    t0 = time.perf_counter()
                    model(x)
                    t1 = time.perf_counter()
                    fast(x)
                    t2 = time.perf_counter()
                    if i >= 2:
                        te.append(t1 - t0)
                        to.append(t2 - t1)
            e, o = np.median(te) * 1e3, np.median(to) * 1e3
            print(f"{name:14s} {b:5d} {e:9.2f} {o:11.2f} {e / o:9.2f}", flush=True)


if __name__ == "__main__":
    main()
