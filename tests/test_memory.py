"""Memory limits, measured in fresh interpreters (subprocesses):

* the im2col workspace cap (pyconv.set_workspace_limit) holds: peak RSS growth of a large
  im2col convolution, minus its output, stays near the cap and far below the unbounded column
  buffer, for all three directions, with an 8 MiB cap and with the default (64 MiB);
* requests whose result cannot fit in this machine's memory raise MemoryError naming the size
  before allocating; sizes whose products overflow int64 raise ValueError; never a crash.

The subprocesses run under an address-space limit (RLIMIT_AS), so that a regression shows up as
a MemoryError / failed test rather than as the OOM killer taking the machine down.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

pyconv = pytest.importorskip("pyconv")

MiB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))

# Under AddressSanitizer (the CI's second run) address-space limits and RSS peaks say nothing:
# ASan reserves terabytes of shadow address space and keeps freed blocks in quarantine. These
# checks run in the regular build.
pytestmark = pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                                reason="memory limits and RSS are meaningless under AddressSanitizer")


def run_py(code, timeout=300, as_limit=None):
    """Run `code` in a fresh interpreter; return the JSON object it prints last."""
    prelude = ""
    if as_limit is not None:
        prelude = (f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({as_limit}, {as_limit}))\n")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=HERE)
    assert proc.returncode == 0, (f"subprocess died with return code {proc.returncode} (negative: killed by "
                                  f"signal)\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# workspace cap
# --------------------------------------------------------------------------
# float64, 2 images of 64 x 150 x 150, 8 filters 5x5, padding 2: the im2col column matrix of
# ONE image is (64*5*5) x (150*150) doubles = 275 MiB; unbounded, the two images in parallel
# would need 549 MiB.
N, C, H, W, K, R = 2, 64, 150, 150, 8, 5
COLS_PER_IMAGE = C * R * R * H * W * 8

MEASURE = """
import json, sys
import numpy as np
import pyconv
F = pyconv.functional

def hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")

def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")     # resets the peak RSS (Linux >= 4.0)
        return True
    except OSError:
        return False

limit, direction = {limit}, {direction!r}
N, C, H, W, K, R = {shape}
if limit:
    pyconv.set_workspace_limit(limit)
rng = np.random.default_rng(0)
x = rng.standard_normal((N, C, H, W))
w = rng.standard_normal((K, C, R, R))
gy = rng.standard_normal((N, K, H, W))
kw = dict(padding=R // 2, algo="im2col")
# warm up the same code paths on a small problem: worker threads, GEMM packing scratch
F.conv2d(x[:, :, :20, :20], w, **kw)
F.conv2d_grad_input(gy[:, :, :20, :20], w, (N, C, 20, 20), **kw)
F.conv2d_grad_weight(x[:, :, :20, :20], gy[:, :, :20, :20], w.shape, **kw)
resettable = reset_hwm()
before = hwm()
if direction == "fwd":
    out = F.conv2d(x, w, **kw)
elif direction == "bwd_data":
    out = F.conv2d_grad_input(gy, w, x.shape, **kw)
else:
    out = F.conv2d_grad_weight(x, gy, w.shape, **kw)
after = hwm()
print(json.dumps(dict(growth=after - before, out_bytes=out.nbytes, limit=pyconv.get_workspace_limit(),
                      resettable=resettable)))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("direction", ["fwd", "bwd_data", "bwd_weight"])
@pytest.mark.parametrize("limit", [8 * MiB, None], ids=["8MiB", "default"])
def test_im2col_workspace_cap_holds(limit, direction):
    res = run_py(MEASURE.format(limit=limit or 0, direction=direction, shape=(N, C, H, W, K, R)),
                 as_limit=6 << 30)
    cap = res["limit"]
    assert cap == (limit or 64 * MiB), res
    extra = res["growth"] - res["out_bytes"]
    # the cap, plus GEMM packing panels, allocator slack and Python temporaries
    bound = cap + 32 * MiB
    msg = (f"{direction}: peak RSS grew by {res['growth'] / MiB:.1f} MiB, {extra / MiB:.1f} MiB beyond the "
           f"output; workspace limit {cap / MiB:.0f} MiB, unbounded columns {COLS_PER_IMAGE / MiB:.0f} MiB "
           f"per image")
    assert extra < bound, msg
    assert extra < COLS_PER_IMAGE / 3, msg


def test_workspace_limit_round_trip_and_validation():
    old = pyconv.get_workspace_limit()
    try:
        pyconv.set_workspace_limit(12345)
        assert pyconv.get_workspace_limit() == 12345
        for bad, exc in [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("8", TypeError), (True, TypeError)]:
            with pytest.raises(exc, match="nbytes"):
                pyconv.set_workspace_limit(bad)
        assert pyconv.get_workspace_limit() == 12345
    finally:
        pyconv.set_workspace_limit(old)


# --------------------------------------------------------------------------
# results that cannot fit: MemoryError naming the size, before allocating
# --------------------------------------------------------------------------
HUGE_CASES = """
import json, os
import numpy as np
import pyconv
F = pyconv.functional
phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
side = int((4 * phys / 4) ** 0.5) + 1           # a float32 side x side plane is > 4x the memory
p = side // 2
f32 = np.float32
one = np.ones((1, 1, 1, 1), f32)
cases = {{
    # output far larger than memory from a tiny input (huge zero padding)
    "conv2d": lambda: F.conv2d(one, one, padding=(p, p)),
    "conv2d_f64_bias": lambda: F.conv2d(one.astype(np.float64)[0], one.astype(np.float64), np.ones(1),
                                        padding=p),
    "conv2d_channels": lambda: F.conv2d(one, np.ones((side, 1, 1, 1), f32), padding=(side // 2, 0)),
    "conv2d_grad_input": lambda: F.conv2d_grad_input(np.ones((1, 1, 2, 2), f32), one, (1, 1, side, side),
                                                     stride=side - 1),
    "conv2d_grad_weight": lambda: F.conv2d_grad_weight(one, np.ones((1, side, 1, 1), f32),
                                                       (side, 1, 2 * p + 1, 2 * p + 1), padding=p),
    "avg_pool2d_grad": lambda: F.avg_pool2d_grad(one, (1, 1, side, side), side),
    "avg_pool2d_grad_f64": lambda: F.avg_pool2d_grad(np.ones((2, 3, 1, 1)), (2, 3, side, side), side),
}}
out = {{}}
for name, call in cases.items():
    try:
        r = call()
        out[name] = ["returned", str(r.shape)]
    except BaseException as e:
        out[name] = [type(e).__name__, str(e)]
print(json.dumps(out))
"""

PRECHECKED = ["conv2d", "conv2d_f64_bias", "conv2d_channels", "conv2d_grad_input", "conv2d_grad_weight",
              "avg_pool2d_grad", "avg_pool2d_grad_f64"]


@pytest.fixture(scope="module")
def huge_results():
    return run_py(HUGE_CASES.format(), as_limit=4 << 30)


@pytest.mark.parametrize("name", PRECHECKED)
def test_result_larger_than_memory_raises_memoryerror_before_allocating(name, huge_results):
    kind, msg = huge_results[name]
    assert kind == "MemoryError", (name, kind, msg)
    fn = name.split("_f64")[0].split("_channels")[0]
    # pyconv's own message (checked before allocating): function, shape and size
    assert msg.startswith(fn + ":") and "GiB" in msg, (
        f"{name}: MemoryError does not come from pyconv's size check (the allocation itself was attempted; "
        f"with vm.overcommit_memory=1 it would succeed and the process be OOM-killed when filled): {msg!r}")


ZERO_STRIDE_CASES = """
import json, os
import numpy as np
import pyconv
F = pyconv.functional
phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
side = int((2 * phys / 4) ** 0.5) + 1
# a zero-strided view that looks like a float32 array twice the size of memory
xb = np.broadcast_to(np.float32(1), (1, 1, side, side))
g1 = np.ones((1, 1, 1, 1), np.float32)
cases = {
    "max_pool2d": lambda: F.max_pool2d(xb, side),
    "max_pool2d_indices": lambda: F.max_pool2d(xb, 2, return_indices=True),
    "max_pool2d_grad": lambda: F.max_pool2d_grad(g1, xb, side),
    "avg_pool2d": lambda: F.avg_pool2d(xb, side),
    "conv2d": lambda: F.conv2d(xb, np.ones((1, 1, side, side), np.float32)[:, :, :1, :1]),
    "relu": lambda: F.relu(xb),
}
out = {}
for name, call in cases.items():
    try:
        r = call()
        out[name] = ["returned", str(r.shape)]
    except BaseException as e:
        out[name] = [type(e).__name__, str(e)]
print(json.dumps(out))
"""


def test_zero_strided_inputs_larger_than_memory_raise_memoryerror():
    """Broadcast views whose contiguous copy would not fit: a clean MemoryError naming the size."""
    res = run_py(ZERO_STRIDE_CASES, as_limit=4 << 30)
    for name, (kind, msg) in res.items():
        assert kind == "MemoryError", (name, kind, msg)
        assert "GiB" in msg or "bytes" in msg, (name, msg)


OVERFLOW_CASES = """
import json
import numpy as np
import pyconv
F = pyconv.functional
one = np.ones((1, 1, 1, 1), np.float32)
g = np.ones((1, 1, 1, 1), np.float32)
cases = {
    "conv2d_padding": lambda: F.conv2d(one, one, padding=2**62),
    "conv2d_padding_pair": lambda: F.conv2d(one, one, padding=(1, 2**61)),
    "conv2d_grad_input_shape": lambda: F.conv2d_grad_input(g, one, (2**31, 2**31, 2**31, 2**31)),
    "conv2d_grad_input_shape_hw": lambda: F.conv2d_grad_input(g, one, (1, 1, 2**32, 2**32), stride=2**33),
    "conv2d_grad_weight_shape": lambda: F.conv2d_grad_weight(one, g, (2**40, 2**40, 1, 1)),
    "conv2d_output_shape": lambda: F.conv2d_output_shape((2**62, 2**62, 1, 1), (1, 2**62, 1, 1)),
    "avg_pool2d_grad_shape": lambda: F.avg_pool2d_grad(g, (2**40, 2**40, 3, 3), 3),
    "avg_pool2d_grad_int64max": lambda: F.avg_pool2d_grad(g, (1, 1, 2**63 - 1, 1), (2**63 - 1, 1)),
    "pool2d_output_shape": lambda: F.pool2d_output_shape((2**40, 2**40, 2**40, 3), 3),
    "max_pool2d_kernel": lambda: F.max_pool2d(one, 2**63 - 1),
    "conv2d_dilation": lambda: F.conv2d(one, np.ones((1, 1, 3, 3), np.float32), dilation=2**62, padding=1),
}
out = {}
for name, call in cases.items():
    try:
        r = call()
        out[name] = ["returned", str(getattr(r, "shape", r))]
    except BaseException as e:
        out[name] = [type(e).__name__, str(e)]
print(json.dumps(out))
"""


def test_sizes_overflowing_int64_raise_valueerror():
    res = run_py(OVERFLOW_CASES, as_limit=4 << 30)
    bad = {k: v for k, v in res.items() if v[0] not in ("ValueError", "TypeError")}
    assert not bad, bad
    assert all(v[0] == "ValueError" for v in res.values()), res
