"""The inference executor's arena: conv and Concat outputs written into blocks the plan owns and
reuses across runs (out=), with lifetimes that follow every op that may return a view."""
import threading

import numpy as np
import pytest

pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import pyconv.onnx as pox  # noqa: E402
from pyconv import _core  # noqa: E402

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(s)) for k, s in inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    ops = [helper.make_opsetid("", 17)]
    return helper.make_model(graph, opset_imports=ops, ir_version=helper.find_min_ir_version_for(ops))


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32) * 0.3


def _conv(x, w, pad=1):
    return _core.conv2d_fwd(np.ascontiguousarray(x, np.float32), w, None, (1, 1), (pad,) * 4, (1, 1), 1, 0, 0)


def test_views_of_arena_outputs_outlive_later_convs():
    """c1's output is read through a Transpose view (not a FRESH op) after three more convs ran:
    had the arena reused c1's block for them, the view would read their values."""
    ws = {f"w{i}": _w(4, 4, 3, 3) for i in range(4)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c1"], pads=[1] * 4),
             helper.make_node("Transpose", ["c1"], ["t"], perm=[0, 1, 3, 2]),
             helper.make_node("Conv", ["x", "w1"], ["c2"], pads=[1] * 4),
             helper.make_node("Conv", ["c2", "w2"], ["c3"], pads=[1] * 4),
             helper.make_node("Conv", ["c3", "w3"], ["c4"], pads=[1] * 4),
             helper.make_node("Transpose", ["t"], ["tt"], perm=[0, 1, 3, 2]),
             helper.make_node("Add", ["tt", "c4"], ["y"])]
    m = pox.load(_model(nodes, [("x", (2, 4, 6, 6))], ["y"], ws).SerializeToString())
    plan = m.plan(2)
    assert [n.op for n in plan.graph.nodes].count("Transpose") == 2
    assert sum(s[4] >= 0 for s in plan.steps) == 3  # c1, c2, c3 (c4 carries the Add: the output)
    for _ in range(3):
        x = RNG.standard_normal((2, 4, 6, 6)).astype(np.float32)
        c4 = _conv(_conv(_conv(x, ws["w1"]), ws["w2"]), ws["w3"])
        np.testing.assert_allclose(m(x), _conv(x, ws["w0"]) + c4, rtol=1e-5, atol=1e-5)


def test_outputs_are_fresh_and_inputs_untouched():
    """A graph output that views a conv's result (Flatten) is never in the arena: results of
    earlier calls keep their values, and the input is not written."""
    w = _w(3, 2, 3, 3)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["y"])]
    m = pox.load(_model(nodes, [("x", (1, 2, 5, 5))], ["y"], {"w": w}).SerializeToString())
    xs = [RNG.standard_normal((1, 2, 5, 5)).astype(np.float32) for _ in range(3)]
    copies = [x.copy() for x in xs]
    ys = [m(x) for x in xs]
    for x, x0, y in zip(xs, copies, ys):
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_allclose(y, np.maximum(_conv(x, w), 0).reshape(1, -1), rtol=1e-5, atol=1e-6)


def test_arena_blocks_start_on_cache_lines():
    """Each arena block starts on a 64-byte boundary, so a blocked pixel (16 floats) is one cache
    line; whatever alignment numpy's allocator happens to give."""
    ws = {"w0": _w(16, 3, 3, 3), "w1": _w(16, 16, 3, 3), "w2": _w(16, 16, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1] * 4),
             helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["ar", "w1"], ["b"], pads=[1] * 4),
             helper.make_node("Relu", ["b"], ["br"]),
             helper.make_node("Conv", ["br", "w2"], ["y"])]
    m = pox.load(_model(nodes, [("x", (1, 3, 16, 16))], ["y"], ws).SerializeToString())
    plan = m.plan(1)
    for _ in range(8):  # fresh arenas: each borrow allocates new blocks
        views = plan._borrow_arena()
        starts = [v.ctypes.data for v in views if v is not None]
        assert starts and all(a % 64 == 0 for a in starts)


def test_concurrent_runs_get_their_own_arena():
    ws = {"w0": _w(8, 3, 3, 3), "w1": _w(8, 8, 3, 3), "w2": _w(4, 16, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1] * 4),
             helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["ar", "w1"], ["b"], pads=[1] * 4),
             helper.make_node("Concat", ["ar", "b"], ["c"], axis=1),
             helper.make_node("Conv", ["c", "w2"], ["y"])]
    m = pox.load(_model(nodes, [("x", (1, 3, 32, 32))], ["y"], ws).SerializeToString())
    xs = [RNG.standard_normal((2, 3, 32, 32)).astype(np.float32) for _ in range(4)]
    want = [m(x) for x in xs]
    got, errors = [[] for _ in xs], []

    def worker(k):
        try:
            for _ in range(20):
                got[k].append(m(xs[k]))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(len(xs)):
        for y in got[k]:
            np.testing.assert_array_equal(y, want[k])
    assert 1 <= len(m.plan(2)._arenas) <= len(xs)


@pytest.mark.parametrize("fn", ["fused", "bf16"])
def test_conv_out_argument(fn):
    x = RNG.standard_normal((2, 4, 5, 5)).astype(np.float32)
    w = _w(32, 4, 3, 3)
    args = (x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0)
    call = getattr(_core, "conv2d_fwd_fused" if fn == "fused" else "conv2d_fwd_bf16")
    want = call(*args)
    out = np.full((2, 32, 5, 5), np.nan, np.float32)
    assert call(*args, out=out) is out
    np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match="out has shape"):
        call(*args, out=np.empty((2, 32, 5, 4), np.float32))
    with pytest.raises(ValueError, match="out has dtype"):
        call(*args, out=np.empty((2, 32, 5, 5)))
    with pytest.raises(ValueError, match="C-contiguous"):
        call(*args, out=np.empty((2, 32, 5, 10), np.float32)[..., ::2])
    ro = np.empty((2, 32, 5, 5), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        call(*args, out=ro)
    with pytest.raises(TypeError, match="out must be a numpy array"):
        call(*args, out=[0.0])
    big = np.zeros(2 * 32 * 25 + 2 * 4 * 25, np.float32)
    xs, ys = big[:200].reshape(2, 4, 5, 5), big[200:].reshape(2, 32, 5, 5)
    xs[...] = x
    with pytest.raises(ValueError, match="share memory"):
        call(xs, *args[1:], residual=None, out=big[100:100 + 1600].reshape(2, 32, 5, 5))
    np.testing.assert_array_equal(call(xs, *args[1:], out=ys), want)


def _fire(extra_reader=False):
    """SqueezeNet's fire module: squeeze 1x1, then 1x1 and 3x3 expands concatenated on channels."""
    ws = {"ws": _w(4, 6, 1, 1), "we1": _w(5, 4, 1, 1), "we3": _w(7, 4, 3, 3), "wo": _w(3, 12, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "ws"], ["s"]),
             helper.make_node("Relu", ["s"], ["sr"]),
             helper.make_node("Conv", ["sr", "we1"], ["e1"]),
             helper.make_node("Conv", ["sr", "we3"], ["e3"], pads=[1] * 4),
             helper.make_node("Concat", ["e1", "e3"], ["c"], axis=-3),
             helper.make_node("Conv", ["c", "wo"], ["y"])]
    outs = ["y"]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["e3"], ["e3r"]))
        outs.append("e3r")
    return pox.load(_model(nodes, [("x", (1, 6, 9, 8))], outs, ws).SerializeToString()), ws


def _fire_ref(x, ws):
    s = np.maximum(_conv(x, ws["ws"], 0), 0)
    e1, e3 = _conv(s, ws["we1"], 0), _conv(s, ws["we3"])
    return _conv(np.concatenate([e1, e3], axis=1), ws["wo"], 0), e3


@pytest.mark.parametrize("extra_reader", [False, True])
def test_convs_write_into_their_concat_at_batch_1(extra_reader):
    from pyconv.inference.executor import _written

    m, ws = _fire(extra_reader)
    for batch in (1, 2, 1):
        x = RNG.standard_normal((batch, 6, 9, 8)).astype(np.float32)
        got = m(x)
        y, e3 = _fire_ref(x, ws)
        np.testing.assert_allclose(got[0] if extra_reader else got, y, rtol=1e-5, atol=1e-5)
        if extra_reader:
            np.testing.assert_allclose(got[1], np.maximum(e3, 0), rtol=1e-5, atol=1e-5)
        plan = m.plan(batch)
        ops = {n.op: fn for n, (fn, *_) in zip(plan.graph.nodes, plan.steps)}
        if batch > 1:  # read only by a conv: split into it (passes.split_concats)
            assert "Concat" not in ops
        else:
            assert (ops["Concat"] is _written) == (not extra_reader)


def test_small_plane_convs_at_batch_1_run_im2col_on_packed_weights():
    """Where "auto" gives the direct kernel to a single image on a small plane, the graph runs
    im2col on weights packed at load (and says so in its rows); other batches keep auto's choice."""
    w = _w(256, 64, 3, 3)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 4)]
    m = pox.load(_model(nodes, [("x", (1, 64, 13, 13))], ["y"], {"w": w}).SerializeToString())
    for batch in (1, 2):
        x = RNG.standard_normal((batch, 64, 13, 13)).astype(np.float32)
        auto = _core.conv2d_choose_algo(x.shape, w.shape, (1, 1), (1,) * 4, (1, 1), 1, 0, 0)
        row = m.plan(batch).rows()[0]
        assert row["algorithm"] == ("im2col" if batch == 1 and auto == "direct" else auto)
        np.testing.assert_allclose(m(x), _conv(x, w), rtol=1e-5, atol=1e-4)
