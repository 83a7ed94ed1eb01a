"""pyconv in processes forked after the parent already ran multithreaded kernels."""
import multiprocessing as mp
import os
import sys
import threading

import numpy as np
import pytest

import pyconv
import pyconv.functional as F

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork()")

X = np.random.default_rng(0).random((8, 16, 24, 24), dtype=np.float32)
W = np.random.default_rng(1).random((16, 16, 3, 3), dtype=np.float32)


def _os_threads():
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None


def _child_conv(q):
    before = _os_threads()
    y = F.conv2d(X, W, padding=1)
    p = F.max_pool2d(y, 2)
    q.put((float(y.sum()), float(p.sum()), pyconv.get_num_threads(), before, _os_threads()))


def _run_child(target, *args):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(q,) + args)
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        pytest.fail("pyconv hung in a forked child")
    assert p.exitcode == 0
    return q.get(timeout=5)


def test_forked_child_starts_its_own_workers():
    pyconv.set_num_threads(2)
    y = F.conv2d(X, W, padding=1)  # the parent's workers now exist; the child has none of them
    ysum, _, threads, before, after = _run_child(_child_conv)
    assert ysum == float(y.sum())  # bitwise: results do not depend on the thread count
    assert threads == 2
    if before is not None:
        assert after > before, "the child ran its kernels without starting a worker thread"


def test_fork_pool_matches_serial():
    pyconv.set_num_threads(2)
    F.conv2d(X, W, padding=1)
    with mp.get_context("fork").Pool(2) as pool:
        got = pool.map_async(_pool_task, range(4)).get(timeout=60)
    assert got == [_pool_task(s) for s in range(4)]


def _pool_task(seed):
    x = np.random.default_rng(seed).random((2, 3, 16, 16), dtype=np.float32)
    return F.conv2d(x, W[:, :3], padding=1).sum()


def _child_sets_threads(q):
    pyconv.set_num_threads(1)
    one = F.conv2d(X, W, padding=1)
    pyconv.set_num_threads(2)
    two = F.conv2d(X, W, padding=1)
    q.put((pyconv.get_num_threads(), bool(np.array_equal(one, two))))


def test_set_num_threads_in_forked_child():
    pyconv.set_num_threads(2)
    F.conv2d(X, W, padding=1)
    threads, same = _run_child(_child_sets_threads)
    assert threads == 2 and same


def test_fork_while_another_thread_is_inside_a_kernel():
    """The child inherits a pool that was mid-job in a thread it does not have: it must start over."""
    pyconv.set_num_threads(2)
    big = np.random.default_rng(2).random((16, 32, 48, 48), dtype=np.float32)
    wb = np.random.default_rng(3).random((32, 32, 3, 3), dtype=np.float32)
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            F.conv2d(big, wb, padding=1)

    t = threading.Thread(target=busy)
    t.start()
    try:
        for _ in range(3):
            ysum, _, threads, _, _ = _run_child(_child_conv)
            assert threads == 2
    finally:
        stop.set()
        t.join(60)
    assert ysum == float(F.conv2d(X, W, padding=1).sum())
