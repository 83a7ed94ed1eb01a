"""Robust side-by-side timing on a shared machine: minimum of interleaved repeats over >= 1 s per
case and direction (preemption only ever adds time). Usage: python benchmarks/min_compare.py THREADS NAME_SUBSTRING [ALGO]"""
import time, numpy as np, pyconv, pyconv.functional as F, sys, torch
from pyconv.bench import SUITES, _conv_calls, _torch_conv_call
nt = int(sys.argv[1]); pat = sys.argv[2]; algo = sys.argv[3] if len(sys.argv) > 3 else "auto"
pyconv.set_num_threads(nt); torch.set_num_threads(nt)
rng = np.random.default_rng(0)
for case in SUITES["all"]:
    if not hasattr(case, "k") or pat not in case.name: continue
    x = rng.standard_normal(case.input_shape).astype(np.float32); w = rng.standard_normal(case.weight_shape).astype(np.float32)
    dy = rng.standard_normal(case.output_shape).astype(np.float32)
    for d in ("fwd", "bwd_data", "bwd_weight"):
        fn = _conv_calls(case, d, algo, x, w, dy); tf = _torch_conv_call(torch, case, d, x, w, dy)
        fn(); tf(); a=[]; b=[]
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.0 or len(a) < 3:
            t=time.perf_counter(); fn(); a.append(time.perf_counter()-t)
            t=time.perf_counter(); tf(); b.append(time.perf_counter()-t)
        print(f"{case.name:30s} {d:10s} pyconv {case.flops()/min(a)/1e9:6.1f}  torch {case.flops()/min(b)/1e9:6.1f} GF/s  ratio {min(b)/min(a):5.2f}", flush=True)
