"""Pooling counterpart of min_compare.py (2 threads, minimum of interleaved repeats; max-pool backward uses the forward indices, as autograd does)."""
import time, numpy as np, pyconv, pyconv.functional as F, torch
pyconv.set_num_threads(2); torch.set_num_threads(2)
from pyconv.bench import POOLS
rng = np.random.default_rng(0)
for c in POOLS:
    x = rng.standard_normal(c.input_shape).astype(np.float32)
    kw = dict(kernel_size=c.kernel, stride=c.stride, padding=c.padding)
    xt = torch.from_numpy(x).requires_grad_(True)
    if c.op == "max":
        y, idx = F.max_pool2d(x, return_indices=True, **kw); tp = torch.nn.functional.max_pool2d
        bwd = lambda: F.max_pool2d_grad(dy, x, indices=idx, **kw)
    else:
        y = F.avg_pool2d(x, **kw); tp = torch.nn.functional.avg_pool2d
        bwd = lambda: F.avg_pool2d_grad(dy, x.shape, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32); yt = tp(xt, **kw); dyt = torch.from_numpy(dy)
    fwd = (lambda: F.max_pool2d(x, **kw)) if c.op == "max" else (lambda: F.avg_pool2d(x, **kw))
    for d, fn, tf in [("fwd", fwd, lambda: tp(xt.detach(), **kw)), ("bwd", bwd, lambda: torch.autograd.grad(yt, xt, dyt, retain_graph=True))]:
        fn(); tf(); a=[]; b=[]
        t0=time.perf_counter()
        while time.perf_counter()-t0 < 1.0 or len(a) < 5:
            t=time.perf_counter(); fn(); a.append(time.perf_counter()-t)
            t=time.perf_counter(); tf(); b.append(time.perf_counter()-t)
        print(f"{c.name:30s} {d:4s} pyconv {min(a)*1e3:7.3f} ms ({c.bytes()/min(a)/1e9:5.1f} GB/s)  torch {min(b)*1e3:7.3f} ms  ratio {min(b)/min(a):5.2f}")
