"""pytest-benchmark: pooling forward and backward over NCHW planes.

    pytest benchmarks/bench_pool2d.py
GB/s = extra_info["bytes"] / time.
"""
import numpy as np
import pytest
from shapes import POOL_CASES

import pyconv.functional as F


@pytest.mark.parametrize("direction", ["fwd", "bwd"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.name)
def test_pool2d(benchmark, case, direction, threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.input_shape, dtype=np.float32)
    kw = dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding)
    if case.op == "max":
        y, idx = F.max_pool2d(x, return_indices=True, **kw)
        dy = np.ones_like(y)
        fn = (lambda: F.max_pool2d(x, **kw)) if direction == "fwd" else (lambda: F.max_pool2d_grad(dy, x, indices=idx, **kw))
    else:
        y = F.avg_pool2d(x, **kw)
        dy = np.ones_like(y)
        fn = (lambda: F.avg_pool2d(x, **kw)) if direction == "fwd" else (lambda: F.avg_pool2d_grad(dy, x.shape, **kw))
    benchmark.extra_info["bytes"] = case.bytes()
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
