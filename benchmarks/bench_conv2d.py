"""pytest-benchmark: every conv algorithm x direction x layer x thread count.

    pytest benchmarks/bench_conv2d.py --benchmark-group-by=param:case -k cifar
GFLOP/s = extra_info["flops"] / time.
"""
import numpy as np
import pytest
from shapes import CONV_CASES

import pyconv.functional as F

ALGOS = [a for a in F.CONV_ALGORITHMS if a != "auto"]


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("direction", ["fwd", "bwd_data", "bwd_weight"])
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.name)
def test_conv2d(benchmark, case, direction, algo, threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.input_shape, dtype=np.float32)
    w = rng.standard_normal(case.weight_shape, dtype=np.float32)
    dy = rng.standard_normal(case.output_shape, dtype=np.float32)
    kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups, algo=algo)
    fn = {
        "fwd": lambda: F.conv2d(x, w, **kw),
        "bwd_data": lambda: F.conv2d_grad_input(dy, w, x.shape, **kw),
        "bwd_weight": lambda: F.conv2d_grad_weight(x, dy, w.shape, **kw),
    }[direction]
    benchmark.extra_info["flops"] = case.flops()
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
