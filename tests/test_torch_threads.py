"""With pyconv.torch imported, pyconv's work runs on torch's OpenMP team (pyconv/torch/_threads.py)."""
import os
import subprocess
import sys
import tempfile
import threading

import pytest

torch = pytest.importorskip("torch")
import pyconv  # noqa: E402
import pyconv.torch as pt  # noqa: E402
from pyconv import _core  # noqa: E402
from pyconv.torch import _threads  # noqa: E402

needs_torch_openmp = pytest.mark.skipif(_threads.torch_openmp_runtime() is None,
                                        reason="torch does not run on an OpenMP runtime pyconv can find here")


def _run(code, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("PYCONV_TORCH_THREADS", "PYCONV_NUM_THREADS")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300,
                          cwd=tempfile.gettempdir())


@pytest.fixture
def shared_default():
    yield
    assert pt.share_threads(True) == (_threads.torch_openmp_runtime() is not None)


# Threads of this process before and after a big pyconv op and a numpy-API call: on torch's team
# pyconv starts none of its own; with PYCONV_TORCH_THREADS=pyconv its pool starts once.
_COUNT_THREADS = """
import os, sys, torch, numpy as np, pyconv, pyconv.torch as pt, pyconv.functional as F
from pyconv import _core
torch.set_num_threads(2); pyconv.set_num_threads(2)
tasks = lambda: len(os.listdir('/proc/self/task'))
x = torch.randn(4, 32, 48, 48); w = torch.randn(32, 32, 3, 3)
(x * 2).sum()  # torch's OpenMP team is up
before = tasks()
y = torch.ops.pyconv.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1, "zeros", "auto", False)
after_op = tasks()
F.conv2d(x.numpy(), w.numpy(), padding=1)  # pyconv's numpy API: the same threads
print(_core.get_host_openmp() != "", after_op - before, tasks() - after_op)
"""


@needs_torch_openmp
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
@pytest.mark.parametrize("mode,expect", [("torch", "True 0 0"), ("pyconv", "False 1 0")])
def test_torch_ops_and_the_numpy_api_run_on_torchs_team(mode, expect):
    r = _run(_COUNT_THREADS, PYCONV_TORCH_THREADS=mode)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == expect.split()


def _all_ops(x, w, g):
    c = dict(stride=[2, 1], padding=[1, 2], dilation=[1, 1], groups=1, padding_mode="zeros", algo="auto", same=False)
    y = pt.ops.conv2d(x, w, None, **c)
    out = [y, pt.ops.conv2d_grad_input(g, w, list(x.shape), **c), pt.ops.conv2d_grad_weight(x, g, list(w.shape), **c)]
    p, idx = pt.ops.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
    out += [p, pt.ops.max_pool2d_backward(p, x, idx, [3, 3], [2, 2], [1, 1], [1, 1], False)]
    a = pt.ops.avg_pool2d(x, [2, 2], [2, 2], [0, 0], False, True, None)
    out += [a, pt.ops.avg_pool2d_backward(a, list(x.shape), [2, 2], [2, 2], [0, 0], False, True, None)]
    return out


@needs_torch_openmp
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_same_bits_on_torchs_team_and_on_pyconvs_pool(dtype, shared_default):
    torch.manual_seed(0)
    x = torch.randn(3, 16, 29, 31, dtype=dtype)
    w = torch.randn(24, 16, 3, 5, dtype=dtype)
    g = torch.randn(3, 24, 15, 31, dtype=dtype)
    with pyconv.threads(2):
        assert pt.share_threads(True)
        shared = _all_ops(x, w, g)
        assert not pt.share_threads(False)
        own = _all_ops(x, w, g)
    for a, b in zip(shared, own):
        assert torch.equal(a, b)
    expect = torch.nn.functional.conv2d(x, w, stride=(2, 1), padding=(1, 2))
    torch.testing.assert_close(shared[0], expect, rtol=1e-4, atol=1e-4)  # Winograd in float32


@needs_torch_openmp
def test_python_threads_calling_torch_ops_at_once(shared_default):
    assert pt.share_threads(True)
    torch.manual_seed(1)
    xs = [torch.randn(2, 8, 40, 40) for _ in range(4)]
    w = torch.randn(16, 8, 3, 3)
    serial = [torch.ops.pyconv.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1, "zeros", "auto", False) for x in xs]
    got = [[] for _ in xs]

    def run(i):
        for _ in range(10):
            got[i].append(torch.ops.pyconv.conv2d(xs[i], w, None, [1, 1], [1, 1], [1, 1], 1, "zeros", "auto", False))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(xs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in ts)
    for i, ys in enumerate(got):
        assert len(ys) == 10 and all(torch.equal(y, serial[i]) for y in ys)


@needs_torch_openmp
def test_optimized_module_runs_on_torchs_team(shared_default):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                              torch.nn.MaxPool2d(2), torch.nn.Conv2d(16, 32, 3), torch.nn.ReLU()).eval()
    x = torch.randn(2, 3, 30, 30)
    fast = pt.optimize(net)
    assert pt.share_threads(True)
    a = fast(x)
    assert not pt.share_threads(False)
    b = fast(x)
    assert torch.equal(a, b)
    with torch.no_grad():
        torch.testing.assert_close(a, net(x), rtol=1e-4, atol=1e-5)


_FORK = """
import os, numpy as np, torch, pyconv.torch as pt
from pyconv import _core
same = lambda a, b: np.array_equal(a.numpy(), b.numpy())  # torch's own parallel ops hang in a forked child
x = torch.randn(2, 8, 40, 40); w = torch.randn(16, 8, 3, 3)
conv = lambda: torch.ops.pyconv.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1, "zeros", "auto", False)
y = conv()
pid = os.fork()
if pid == 0:  # libgomp's team does not survive fork: the child uses pyconv's pool
    ok = _core.get_host_openmp() == "" and same(conv(), y)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), same(conv(), y))
"""


@needs_torch_openmp
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_computes_on_its_own_pool():
    r = _run(_FORK)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "True"]


def test_share_threads_arguments(shared_default):
    with pytest.raises(TypeError, match="enabled must be a bool, got str"):
        pt.share_threads("yes")
    before = _core.get_host_openmp()
    assert "not loaded in this process" in _core.set_host_openmp("/nonexistent/libgomp.so.1")
    assert "no GOMP_parallel" in _core.set_host_openmp(_core.__file__)  # loaded, but no OpenMP runtime
    assert _core.get_host_openmp() == before


def test_bad_mode_in_the_environment_warns_and_shares():
    r = _run("import pyconv.torch as pt; from pyconv import _core; print(repr(_core.get_host_openmp() != ''))",
             PYCONV_TORCH_THREADS="both")
    assert r.returncode == 0, r.stderr
    assert "ignoring PYCONV_TORCH_THREADS='both'" in r.stderr
    assert r.stdout.split()[-1] == repr(_threads.torch_openmp_runtime() is not None)
