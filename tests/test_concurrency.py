"""Concurrency stress: many Python threads calling pyconv at once (the kernels release the GIL),
while other threads change the thread count or the ISA cap.

* 8 threads x mixed ops (conv fwd/bwd for every algorithm, pools, linear) for ~3 s: every
  result is bitwise identical to the serial result;
* set_num_threads toggled 1 <-> 2 while 4 threads run kernels: no crash, bitwise identical
  (results do not depend on the thread count);
* set_max_isa toggled over every available ISA while 4 threads run kernels: every result is
  within tolerance of the float64 reference (different ISAs may round differently);
* set_workspace_limit toggled likewise (the im2col tile size changes): within tolerance.
"""
import threading
import time

import numpy as np
import pytest

import cases
from pyconv import _reference as ref
from conftest import check_close, conv_algo_run

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

ALGOS = tuple(F.CONV_ALGORITHMS)
JOIN_TIMEOUT = 120   # seconds; a thread still alive after that is reported as hung


def rnd(shape, seed, dtype):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32).astype(dtype)


CONVS = [
    cases.ConvCase(2, 8, 13, 15, 12, 3, 3, 1, 1, 1, 1, "zeros"),
    cases.ConvCase(2, 6, 11, 17, 6, 3, 2, (2, 1), (1, 0), (1, 2), 3, "reflect"),
    cases.ConvCase(1, 4, 9, 9, 4, 3, 3, 1, "same", 1, 4, "circular"),       # depthwise
    cases.ConvCase(3, 16, 7, 6, 9, 1, 1),                                   # pointwise
]


RAN = {}   # op name -> the conv algorithm that computes it (for its tolerance)


def make_ops(dtype):
    """[(name, thunk, float64 reference, reduction length)] covering every op family."""
    ops = []
    for i, c in enumerate(CONVS):
        x, w = rnd(c.input_shape, 10 * i, dtype), rnd(c.weight_shape, 10 * i + 1, dtype)
        b, gy = rnd((c.k,), 10 * i + 2, dtype), rnd(c.output_shape, 10 * i + 3, dtype)
        s, p, d, g = c.args
        for algo in ALGOS:
            kw = dict(padding_mode=c.mode, algo=algo)
            for direction in ("fwd", "bwd_data", "bwd_weight"):
                RAN[f"{c.id} {direction} {algo}"] = conv_algo_run(algo, direction, c.input_shape, c.weight_shape, s, p, d, g, c.mode)
            ops.append((f"{c.id} fwd {algo}", lambda x=x, w=w, b=b, s=s, p=p, d=d, g=g, kw=kw:
                        F.conv2d(x, w, b, s, p, d, g, **kw),
                        ref.conv2d(x, w, b, s, p, d, g, c.mode), c.reduction_length("fwd")))
            ops.append((f"{c.id} bwd_data {algo}", lambda gy=gy, w=w, xs=x.shape, s=s, p=p, d=d, g=g, kw=kw:
                        F.conv2d_grad_input(gy, w, xs, s, p, d, g, **kw),
                        ref.conv2d_grad_input(gy, w, x.shape, s, p, d, g, c.mode), c.reduction_length("bwd_data")))
            ops.append((f"{c.id} bwd_weight {algo}", lambda x=x, gy=gy, ws=w.shape, s=s, p=p, d=d, g=g, kw=kw:
                        F.conv2d_grad_weight(x, gy, ws, s, p, d, g, **kw),
                        ref.conv2d_grad_weight(x, gy, w.shape, s, p, d, g, c.mode),
                        c.reduction_length("bwd_weight")))
    x = rnd((2, 6, 19, 23), 100, dtype)
    for args in [(3, 2, 1, 1, True), ((2, 3), 1, (1, 0), (2, 1), False)]:
        y, idx = ref.max_pool2d(x, *args, return_indices=True)
        gy = rnd(y.shape, 101, dtype)
        ops.append((f"max_pool2d {args}", lambda args=args: F.max_pool2d(x, *args), y, 1))
        ops.append((f"max_pool2d_grad {args}", lambda args=args, gy=gy: F.max_pool2d_grad(gy, x, *args),
                    ref.max_pool2d_grad(gy, x, *args), 9))
        ops.append((f"max_pool2d_grad(indices) {args}", lambda args=args, gy=gy, idx=idx:
                    F.max_pool2d_grad(gy, x, *args, indices=idx), ref.max_pool2d_grad(gy, x, *args), 9))
    for args in [(3, 2, 1, True, False, None), ((3, 2), (1, 2), (1, 1), False, True, 5)]:
        y = ref.avg_pool2d(x, *args)
        gy = rnd(y.shape, 102, dtype)
        ops.append((f"avg_pool2d {args}", lambda args=args: F.avg_pool2d(x, *args), y, 9))
        ops.append((f"avg_pool2d_grad {args}", lambda args=args, gy=gy: F.avg_pool2d_grad(gy, x.shape, *args),
                    ref.avg_pool2d_grad(gy, x.shape, *args), 9))
    xl, wl = rnd((32, 24), 200, dtype), rnd((20, 24), 201, dtype)
    bl, gl = rnd((20,), 202, dtype), rnd((32, 20), 203, dtype)
    ops.append(("linear", lambda: F.linear(xl, wl, bl), ref.linear(xl, wl, bl), 25))
    ops.append(("linear_grad_input", lambda: F.linear_grad_input(gl, wl), ref.linear_grad_input(gl, wl), 20))
    ops.append(("linear_grad_weight", lambda: F.linear_grad_weight(xl, gl), ref.linear_grad_weight(xl, gl), 32))
    ops.append(("relu_grad", lambda: F.relu_grad(gl, gl), ref.relu_grad(gl, gl), 1))
    return ops


@pytest.fixture
def restore_runtime():
    threads, isa = pyconv.get_num_threads(), pyconv._core.get_max_isa()   # the cap, not the active ISA
    limit = pyconv.get_workspace_limit()
    yield
    pyconv.set_num_threads(threads)
    pyconv.set_max_isa(isa)
    pyconv.set_workspace_limit(limit)


def run_workers(n_threads, seconds, ops, check, background=None):
    """n_threads threads call random ops until `seconds` pass; check(op, result) on each.

    `background(stop_event)` runs in one more thread meanwhile (the toggler). Returns the
    number of calls made. Fails on any exception or a hung thread.
    """
    errors, counts = [], [0] * n_threads
    stop = threading.Event()
    start = threading.Barrier(n_threads + (background is not None))

    def worker(tid):
        rng = np.random.default_rng(tid)
        try:
            start.wait()
            while not stop.is_set():
                op = ops[rng.integers(len(ops))]
                check(op, op[1]())
                counts[tid] += 1
        except BaseException as exc:  # reported below
            errors.append((tid, f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}"))
            stop.set()

    def bg():
        try:
            start.wait()
            background(stop)
        except BaseException as exc:
            errors.append(("background", f"{type(exc).__name__}: {exc}"))
            stop.set()

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(n_threads)]
    if background is not None:
        threads.append(threading.Thread(target=bg, daemon=True))
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors[:5]
    assert min(counts) > 0, counts
    return sum(counts)


def serial_results(ops):
    return {op[0]: op[1]() for op in ops}


def bitwise_checker(serial):
    def check(op, got):
        want = serial[op[0]]
        assert got.dtype == want.dtype and got.shape == want.shape, op[0]
        if not np.array_equal(got, want, equal_nan=True):
            raise AssertionError(f"{op[0]}: concurrent result differs from serial "
                                 f"(max abs diff {np.nanmax(np.abs(got - want))})")
    return check


@pytest.mark.parametrize("dtype", cases.DTYPES, ids=["f32", "f64"])
def test_eight_threads_mixed_ops_match_serial(dtype, restore_runtime):
    ops = make_ops(dtype)
    serial = serial_results(ops)
    calls = run_workers(8, 1.5, ops, bitwise_checker(serial))
    assert calls >= 8


@pytest.mark.parametrize("dtype", cases.DTYPES, ids=["f32", "f64"])
def test_set_num_threads_toggled_during_kernels(dtype, restore_runtime):
    ops = make_ops(dtype)
    pyconv.set_num_threads(2)
    serial = serial_results(ops)
    pyconv.set_num_threads(1)
    assert all(np.array_equal(v, serial[k], equal_nan=True) for k, v in serial_results(ops).items())
    toggles = [0]

    def toggler(stop):
        while not stop.is_set():
            pyconv.set_num_threads(1 + toggles[0] % 2)
            toggles[0] += 1
            time.sleep(0.0005)

    run_workers(4, 0.8, ops, bitwise_checker(serial), background=toggler)
    assert toggles[0] > 10


@pytest.mark.parametrize("dtype", cases.DTYPES, ids=["f32", "f64"])
def test_set_max_isa_toggled_during_kernels(dtype, restore_runtime):
    isas = cases.available_isas()
    ops = make_ops(dtype)
    toggles = [0]

    def check(op, got):
        name, _, expected, k = op
        check_close(got, expected, dtype=dtype, k=k, case=f"{name} (ISA toggled)", algo=RAN.get(name))

    def toggler(stop):
        while not stop.is_set():
            pyconv.set_max_isa(isas[toggles[0] % len(isas)])
            toggles[0] += 1
            time.sleep(0.0005)

    run_workers(4, 0.8, ops, check, background=toggler)
    assert toggles[0] > 10


@pytest.mark.parametrize("dtype", cases.DTYPES, ids=["f32", "f64"])
def test_set_workspace_limit_toggled_during_kernels(dtype, restore_runtime):
    """The im2col tile follows the workspace limit; changing it mid-flight must stay safe."""
    ops = make_ops(dtype)
    limits = (4 << 10, 64 << 10, 64 << 20)     # 4 KiB: one output pixel per tile for most shapes
    toggles = [0]

    def check(op, got):
        name, _, expected, k = op
        check_close(got, expected, dtype=dtype, k=k, case=f"{name} (workspace limit toggled)", algo=RAN.get(name))

    def toggler(stop):
        while not stop.is_set():
            pyconv.set_workspace_limit(limits[toggles[0] % len(limits)])
            toggles[0] += 1
            time.sleep(0.0005)

    run_workers(4, 0.8, ops, check, background=toggler)
    assert toggles[0] > 10
