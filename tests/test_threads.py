"""Thread count / ISA hooks, determinism across thread counts, concurrent callers, the pool."""

import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

import cases
from pyconv import _reference as ref
from conftest import check_close, conv_algo_run

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional


@pytest.fixture
def restore_threads():
    prev = pyconv.get_num_threads()
    yield prev
    pyconv.set_num_threads(prev)


def rnd(shape, seed, dtype):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


# big enough that work is split across threads (batch, channels, rows)
CONV = cases.ConvCase(4, 16, 21, 19, 24, 3, 3, 1, 1, 1, 1, "zeros")
CONV_G = cases.ConvCase(3, 12, 17, 23, 12, 5, 3, (2, 1), (2, 1), (1, 2), 3, "reflect")


def all_ops(dtype, algo):
    """Run every op once; return the list of results (numpy arrays)."""
    out = []
    for i, case in enumerate((CONV, CONV_G)):
        x = rnd(case.input_shape, 1 + i, dtype)
        w = rnd(case.weight_shape, 2 + i, dtype)
        b = rnd((case.k,), 3 + i, dtype)
        gy = rnd(case.output_shape, 4 + i, dtype)
        s, p, d, g = case.args
        kw = dict(padding_mode=case.mode, algo=algo)
        out.append(F.conv2d(x, w, b, s, p, d, g, **kw))
        out.append(F.conv2d_grad_input(gy, w, x.shape, s, p, d, g, **kw))
        out.append(F.conv2d_grad_weight(x, gy, w.shape, s, p, d, g, **kw))
        out.append(F.conv2d_grad_bias(gy))
    x = rnd((4, 16, 33, 31), 7, dtype)
    y, idx = F.max_pool2d(x, 3, 2, 1, 1, True, return_indices=True)
    gy = rnd(y.shape, 8, dtype)
    out += [y, idx, F.max_pool2d_grad(gy, x, 3, 2, 1, 1, True),
            F.max_pool2d_grad(gy, x, 3, 2, 1, 1, True, indices=idx)]
    a = F.avg_pool2d(x, 3, 2, 1, True, False)
    out += [a, F.avg_pool2d_grad(gy, x.shape, 3, 2, 1, True, False)]
    xl, wl, gl = rnd((64, 48), 9, dtype), rnd((40, 48), 10, dtype), rnd((64, 40), 11, dtype)
    out += [F.linear(xl, wl, wl[:, 0].copy()), F.linear_grad_input(gl, wl),
            F.linear_grad_weight(xl, gl), F.linear_grad_bias(gl), F.relu(xl), F.relu_grad(xl, xl)]
    # Linear layers big enough for the GEMM to split (both orientations: 7 and 200 outputs)
    for n_out in (7, 200):
        xl, wl = rnd((256, 300), 12, dtype), rnd((n_out, 300), 13, dtype)
        gl = rnd((256, n_out), 14, dtype)
        out += [F.linear(xl, wl, wl[:, 1].copy()), F.linear_grad_input(gl, wl), F.linear_grad_weight(xl, gl)]
    return out


@pytest.mark.parametrize("dtype", cases.DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("algo", cases.ALGOS)
def test_bitwise_identical_1_vs_2_and_3_threads(algo, dtype, isa, restore_threads):
    pyconv.set_num_threads(1)
    one = all_ops(dtype, algo)
    for n in (2, 3):  # 3 threads on 2 cores: one is always preempted and its chunks move
        pyconv.set_num_threads(n)
        other = all_ops(dtype, algo)
        assert len(one) == len(other)
        for i, (a, b) in enumerate(zip(one, other)):
            assert a.dtype == b.dtype and a.shape == b.shape, i
            np.testing.assert_array_equal(a, b, err_msg=f"result #{i} differs between 1 and {n} threads")


def test_threaded_results_are_correct(restore_threads):
    pyconv.set_num_threads(2)
    case = CONV_G
    x, w = rnd(case.input_shape, 21, np.float64), rnd(case.weight_shape, 22, np.float64)
    gy = rnd(case.output_shape, 23, np.float64)
    s, p, d, g = case.args
    for algo in cases.ALGOS:
        kw = dict(padding_mode=case.mode, algo=algo)
        check_close(F.conv2d(x, w, None, s, p, d, g, **kw), ref.conv2d(x, w, None, s, p, d, g, case.mode),
                    dtype=np.float64, k=case.reduction_length("fwd"))
        check_close(F.conv2d_grad_input(gy, w, x.shape, s, p, d, g, **kw),
                    ref.conv2d_grad_input(gy, w, x.shape, s, p, d, g, case.mode),
                    dtype=np.float64, k=case.reduction_length("bwd_data"))
        check_close(F.conv2d_grad_weight(x, gy, w.shape, s, p, d, g, **kw),
                    ref.conv2d_grad_weight(x, gy, w.shape, s, p, d, g, case.mode),
                    dtype=np.float64, k=case.reduction_length("bwd_weight"))


@pytest.mark.parametrize("algo", cases.ALGOS)
def test_concurrent_python_threads_match_serial(algo):
    serial = {dt: all_ops(dt, algo) for dt in cases.DTYPES}
    errors, results = [], {}

    def worker(tid):
        try:
            dt = cases.DTYPES[tid % 2]
            results[tid] = [all_ops(dt, algo) for _ in range(3)]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append((tid, repr(exc)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert not errors, errors
    for tid, runs in results.items():
        expected = serial[cases.DTYPES[tid % 2]]
        for run in runs:
            for i, (a, b) in enumerate(zip(run, expected)):
                np.testing.assert_array_equal(a, b, err_msg=f"thread {tid} result #{i}")
    assert len(results) == 4


# --------------------------------------------------------------------------
# hooks
# --------------------------------------------------------------------------
def test_num_threads_round_trip(restore_threads):
    assert isinstance(restore_threads, int) and restore_threads >= 1
    for n in (1, 2, 3, 1):
        pyconv.set_num_threads(n)
        assert pyconv.get_num_threads() == n


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-1, ValueError), ("2", TypeError), (2.0, TypeError),
                                     (None, TypeError), (True, TypeError)], ids=repr)
def test_num_threads_invalid(bad, exc, restore_threads):
    before = pyconv.get_num_threads()
    with pytest.raises(exc, match="thread"):
        pyconv.set_num_threads(bad)
    assert pyconv.get_num_threads() == before


def test_isa_hooks():
    compiled = list(pyconv.compiled_isas())
    best = pyconv.cpu_isa()
    assert "scalar" in compiled and all(isinstance(n, str) for n in compiled)
    assert set(compiled) <= set(cases.ISA_ORDER)
    assert best in cases.ISA_ORDER
    prev = pyconv.get_max_isa()
    try:
        for name in cases.ISA_ORDER:
            old = pyconv.get_max_isa()
            returned = pyconv.set_max_isa(name)
            assert returned == old or returned in cases.ISA_ORDER
            # effective = min(detected, cap), limited to what was compiled
            expect = min(cases.ISA_ORDER.index(name), cases.ISA_ORDER.index(best))
            assert cases.ISA_ORDER.index(pyconv.get_max_isa()) <= expect
            if cases.ISA_ORDER[expect] in compiled:
                assert pyconv.get_max_isa() == cases.ISA_ORDER[expect]
        pyconv.set_max_isa("scalar")
        assert pyconv.set_max_isa("avx512") == "scalar"
    finally:
        pyconv.set_max_isa(prev)
    assert pyconv.get_max_isa() == prev


@pytest.mark.parametrize("bad,exc", [("sse9", ValueError), ("", ValueError), ("AVX2x", ValueError),
                                     (3, TypeError), (None, TypeError)], ids=repr)
def test_isa_invalid(bad, exc):
    prev = pyconv.get_max_isa()
    with pytest.raises(exc):
        pyconv.set_max_isa(bad)
    assert pyconv.get_max_isa() == prev


def test_kernel_names():
    names = list(pyconv.kernels())
    assert names and all(isinstance(n, str) and n for n in names)
    assert len(set(names)) == len(names)
    for isa_name in pyconv.compiled_isas():
        assert any(n.endswith("_" + isa_name) for n in names), isa_name
    for prefix in ("conv2d_fwd_direct", "conv2d_bwd_data_direct", "conv2d_bwd_weight_direct"):
        assert any(n.startswith(prefix) for n in names), prefix


@pytest.mark.parametrize("dtype", cases.DTYPES, ids=["f32", "f64"])
def test_every_isa_gives_the_same_answer_within_tolerance(dtype):
    """All SIMD paths agree with the reference on one mid-size case (cross-check of the cap)."""
    case = CONV
    x, w = rnd(case.input_shape, 31, dtype), rnd(case.weight_shape, 32, dtype)
    expected = ref.conv2d(x, w, None, *case.args)
    prev = pyconv.get_max_isa()
    try:
        for name in cases.available_isas():
            pyconv.set_max_isa(name)
            for algo in cases.ALGOS:
                check_close(F.conv2d(x, w, algo=algo, padding=1), expected, dtype=dtype,
                            algo=conv_algo_run(algo, "fwd", x.shape, w.shape, padding=1),
                            k=case.reduction_length("fwd"), case=f"{name} {algo}")
    finally:
        pyconv.set_max_isa(prev)


# --------------------------------------------------------------------------
# the pool: bounded spinning, threadpoolctl, the context manager, defaults
# --------------------------------------------------------------------------
def _task_cpu_seconds():
    """{tid: user + system CPU seconds} of this process's OS threads (Linux)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_idle_workers_sleep_instead_of_spinning(restore_threads):
    pyconv.set_num_threads(2)
    x = rnd((8, 32, 32, 32), 40, np.float32)
    w = rnd((32, 32, 3, 3), 41, np.float32)
    for _ in range(5):
        F.conv2d(x, w, padding=1)  # the worker exists and has just worked
    time.sleep(0.05)
    before = _task_cpu_seconds()
    time.sleep(0.5)
    after = _task_cpu_seconds()
    me = threading.get_native_id()
    spent = {tid: after[tid] - before[tid] for tid in after if tid in before and tid != me}
    # A spinning worker would burn the whole 0.5 s; clock ticks are 10 ms
    assert max(spent.values(), default=0) <= 0.05, spent


def test_threads_context_manager_restores_on_exception(restore_threads):
    pyconv.set_num_threads(2)
    with pytest.raises(RuntimeError, match="inside"):
        with pyconv.threads(1) as n:
            assert n == 1 and pyconv.get_num_threads() == 1
            raise RuntimeError("inside")
    assert pyconv.get_num_threads() == 2
    with pyconv.threads(3):
        assert pyconv.get_num_threads() == 3
    assert pyconv.get_num_threads() == 2
    with pytest.raises(ValueError, match="num_threads"):
        with pyconv.threads(0):
            pass
    assert pyconv.get_num_threads() == 2


def test_threadpoolctl_sees_and_limits_pyconv(restore_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pyconv.set_num_threads(2)
    info = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "pyconv"]
    assert len(info) == 1, threadpoolctl.threadpool_info()
    assert info[0]["user_api"] == "pyconv" and info[0]["num_threads"] == 2
    assert info[0]["filepath"] == pyconv._core.__file__
    x, w = rnd((4, 16, 20, 20), 50, np.float32), rnd((16, 16, 3, 3), 51, np.float32)
    expect = F.conv2d(x, w, padding=1)
    with threadpoolctl.threadpool_limits(1):
        assert pyconv.get_num_threads() == 1
        np.testing.assert_array_equal(F.conv2d(x, w, padding=1), expect)
    assert pyconv.get_num_threads() == 2
    with threadpoolctl.threadpool_limits(limits=1, user_api="pyconv"):
        assert pyconv.get_num_threads() == 1
    assert pyconv.get_num_threads() == 2
    controller = threadpoolctl.ThreadpoolController()
    with controller.select(internal_api="pyconv").limit(limits=3):
        assert pyconv.get_num_threads() == 3
    assert pyconv.get_num_threads() == 2


def _run_python(code, **env):
    full = dict(os.environ)
    for k in ("PYCONV_NUM_THREADS", "OMP_NUM_THREADS"):
        full.pop(k, None)
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=120,
                          cwd=tempfile.gettempdir())


@pytest.mark.parametrize("env,expect", [({"PYCONV_NUM_THREADS": "3"}, 3), ({"OMP_NUM_THREADS": "2,1"}, 2),
                                        ({"PYCONV_NUM_THREADS": "1", "OMP_NUM_THREADS": "4"}, 1)], ids=str)
def test_default_thread_count_from_environment(env, expect):
    r = _run_python("import pyconv; print(pyconv.get_num_threads())", **env)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[-1]) == expect


def test_bad_thread_environment_is_ignored_with_a_warning():
    r = _run_python("import pyconv; print(pyconv.get_num_threads(), pyconv._core.default_num_threads())",
                    PYCONV_NUM_THREADS="lots")
    assert r.returncode == 0, r.stderr
    assert "PYCONV_NUM_THREADS=lots" in r.stderr
    got, default = map(int, r.stdout.split()[-2:])
    assert got == default >= 1


_IMPORT_ORDER = """
import numpy as np
{first}
{second}
pyconv.set_num_threads(2)
torch.set_num_threads(2)
x = np.random.default_rng(0).random((8, 16, 24, 24), dtype=np.float32)
w = np.random.default_rng(1).random((32, 16, 3, 3), dtype=np.float32)
for _ in range(3):
    y = pyconv.functional.conv2d(x, w, padding=1)
    t = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    l = pyconv.functional.linear(x.reshape(8, -1), np.ones((10, x[0].size), np.float32))
np.testing.assert_allclose(y, t, rtol=1e-4, atol=1e-4)
np.testing.assert_allclose(l, x.reshape(8, -1).sum(1, keepdims=True).repeat(10, 1), rtol=1e-4)
print("ok", pyconv.get_num_threads())
"""


@pytest.mark.parametrize("torch_first", [True, False], ids=["torch-first", "pyconv-first"])
def test_both_import_orders_work(torch_first):
    pytest.importorskip("torch")
    lines = ["import torch", "import pyconv"]
    first, second = lines if torch_first else lines[::-1]
    r = _run_python(_IMPORT_ORDER.format(first=first, second=second))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == ["ok", "2"]


def test_spin_time_setting():
    prev = pyconv._core.get_spin_us()
    try:
        pyconv._core.set_spin_us(0)
        assert pyconv._core.get_spin_us() == 0
        x, w = rnd((4, 16, 20, 20), 60, np.float32), rnd((16, 16, 3, 3), 61, np.float32)
        with pyconv.threads(2):
            a = F.conv2d(x, w, padding=1)  # workers sleep at once and are woken by a futex
        with pyconv.threads(1):
            np.testing.assert_array_equal(F.conv2d(x, w, padding=1), a)
        with pytest.raises(ValueError, match="spin"):
            pyconv._core.set_spin_us(-1)
    finally:
        pyconv._core.set_spin_us(prev)
