"""pyconv in processes forked after the parent already ran multithreaded kernels."""
import multiprocessing as mp
import os
import sys

import numpy as np
import pytest

import pyconv
import pyconv.functional as F

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork()")

X = np.random.default_rng(0).random((8, 16, 24, 24), dtype=np.float32)
W = np.random.default_rng(1).random((16, 16, 3, 3), dtype=np.float32)


def _child_conv(q):
    y = F.conv2d(X, W, padding=1)
    p = F.max_pool2d(y, 2)
    q.put((float(y.sum()), float(p.sum()), pyconv.get_num_threads()))


def test_forked_child_does_not_hang():
    pyconv.set_num_threads(2)
    y = F.conv2d(X, W, padding=1)  # the parent's OpenMP team now exists
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_conv, args=(q,))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        pytest.fail("pyconv hung in a forked child")
    assert p.exitcode == 0
    ysum, _, threads = q.get(timeout=5)
    assert ysum == float(y.sum())  # bitwise: results do not depend on the thread count
    assert threads == 1


def _pool_task(seed):
    x = np.random.default_rng(seed).random((2, 3, 16, 16), dtype=np.float32)
    return F.conv2d(x, W[:, :3], padding=1).sum()


def test_fork_pool_matches_serial():
    pyconv.set_num_threads(2)
    F.conv2d(X, W, padding=1)
    with mp.get_context("fork").Pool(2) as pool:
        got = pool.map_async(_pool_task, range(4)).get(timeout=60)
    assert got == [_pool_task(s) for s in range(4)]


def _child_sets_threads(q):
    import warnings

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pyconv.set_num_threads(2)
    q.put((pyconv.get_num_threads(), [str(x.message) for x in w]))


def test_set_num_threads_in_forked_child_warns_and_stays_single_threaded():
    pyconv.set_num_threads(2)
    F.conv2d(X, W, padding=1)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_sets_threads, args=(q,))
    p.start()
    p.join(60)
    threads, messages = q.get(timeout=5)
    assert threads == 1 and any("forked child" in m for m in messages)
