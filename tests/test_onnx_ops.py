"""Every ONNX operator pyconv.onnx runs, one node at a time, against onnx's ReferenceEvaluator
(and onnxruntime where it accepts the attributes), with hypothesis-drawn attributes for the
convolutions and pools: every auto_pad mode, asymmetric pads, ceil mode, count_include_pad,
dilations and groups."""
import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnx.reference")

import hypothesis_profiles  # noqa: F401,E402
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx_util import check, one_node  # noqa: E402

import pyconv.onnx as pox  # noqa: E402

AUTO_PAD = ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]
_EXAMPLES = settings(max_examples=30)


def _rand(seed, *shape, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


@st.composite
def conv_case(draw, transpose=False):
    g = draw(st.integers(1, 3))
    cin, cout = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h, w = draw(st.integers(2, 9)), draw(st.integers(2, 9))
    auto = draw(st.sampled_from(AUTO_PAD))
    attrs = dict(strides=[sh, sw], dilations=[dh, dw], group=g, kernel_shape=[kh, kw])
    if auto == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, 2)) for _ in range(4)]
    else:
        attrs["auto_pad"] = auto
    if transpose:
        attrs["output_padding"] = [draw(st.integers(0, sh - 1)), draw(st.integers(0, sw - 1))]
        if auto != "NOTSET" and draw(st.booleans()):
            attrs.pop("output_padding")
    bias = draw(st.booleans())
    n = draw(st.integers(1, 2))
    return n, cin, cout, h, w, attrs, bias, draw(st.integers(0, 2**16))


@_EXAMPLES
@given(conv_case())
def test_conv(case):
    n, cin, cout, h, w, attrs, bias, seed = case
    kh, kw = attrs["kernel_shape"]
    dh, dw = attrs["dilations"]
    p = attrs.get("pads", [0] * 4)
    if attrs.get("auto_pad") in (None, "VALID"):
        assume(h + p[0] + p[2] >= dh * (kh - 1) + 1 and w + p[1] + p[3] >= dw * (kw - 1) + 1)
    x = _rand(seed, n, cin, h, w)
    consts = [("w", _rand(seed + 1, cout, cin // attrs["group"], kh, kw))]
    if bias:
        consts.append(("b", _rand(seed + 2, cout)))
    check("Conv", [("x", x)], consts, attrs)


@_EXAMPLES
@given(conv_case(transpose=True))
def test_conv_transpose(case):
    n, cin, cout, h, w, attrs, bias, seed = case
    kh, kw = attrs["kernel_shape"]
    (sh, sw), (dh, dw) = attrs["strides"], attrs["dilations"]
    p = attrs.get("pads", [0] * 4)
    op = attrs.get("output_padding", [0, 0])
    full = (sh * (h - 1) + op[0] + dh * (kh - 1) + 1, sw * (w - 1) + op[1] + dw * (kw - 1) + 1)
    assume(full[0] - p[0] - p[2] >= 1 and full[1] - p[1] - p[3] >= 1)
    if attrs.get("auto_pad", "NOTSET") != "NOTSET":
        assume(full[0] >= h * sh and full[1] >= w * sw)
    x = _rand(seed, n, cin, h, w)
    consts = [("w", _rand(seed + 1, cin, cout // attrs["group"], kh, kw))]
    if bias:
        consts.append(("b", _rand(seed + 2, cout)))
    # onnxruntime places SAME_* padding of ConvTranspose differently from the reference, whose
    # ConvTranspose cannot do groups (onnx 1.2x): each oracle where it holds
    same = attrs.get("auto_pad", "NOTSET") != "NOTSET"
    assume(not (same and attrs["group"] > 1))
    check("ConvTranspose", [("x", x)], consts, attrs, use_ort=not same, use_ref=attrs["group"] == 1)


def test_conv_transpose_output_shape():
    x = _rand(0, 1, 2, 4, 5)
    # the reference evaluator's col2im refuses output_shape with padding: onnxruntime is the oracle
    y = check("ConvTranspose", [("x", x)], [("w", _rand(1, 2, 3, 3, 3))], dict(strides=[2, 2], output_shape=[8, 10]),
              use_ref=False)[0]
    assert y.shape == (1, 3, 8, 10)


@st.composite
def pool_case(draw, avg):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dil = [1, 1] if avg and draw(st.booleans()) else [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    h, w = draw(st.integers(3, 10)), draw(st.integers(3, 10))
    auto = draw(st.sampled_from(AUTO_PAD))
    attrs = dict(kernel_shape=[kh, kw], strides=[sh, sw])
    if dil != [1, 1]:
        attrs["dilations"] = dil
    if auto == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)),
                         draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))]
        attrs["ceil_mode"] = int(draw(st.booleans()))
    else:
        attrs["auto_pad"] = auto
    if avg:
        attrs["count_include_pad"] = int(draw(st.booleans()))
    return h, w, attrs, draw(st.integers(0, 2**16))


def _pool_fits(h, w, attrs):
    k, d, s = attrs["kernel_shape"], attrs.get("dilations", [1, 1]), attrs["strides"]
    p = attrs.get("pads", [0] * 4)
    if attrs.get("auto_pad") in (None, "NOTSET", "VALID"):
        return h + p[0] + p[2] >= d[0] * (k[0] - 1) + 1 and w + p[1] + p[3] >= d[1] * (k[1] - 1) + 1
    # SAME with windows that skip input pixels needs a negative total padding, where the oracles
    # disagree (the reference crops the start or fails, onnxruntime refuses); pyconv pads 0 (TF's rule)
    return all((-(-n // s[i]) - 1) * s[i] + d[i] * (k[i] - 1) + 1 >= n for i, n in enumerate((h, w)))


def _spec_pads(h, w, attrs):
    """The explicit pads [top, left, bottom, right] the spec gives a SAME_* pool."""
    k, d, s = attrs["kernel_shape"], attrs.get("dilations", [1, 1]), attrs["strides"]
    begin, end = [], []
    for i, n in enumerate((h, w)):
        total = max(0, (-(-n // s[i]) - 1) * s[i] + d[i] * (k[i] - 1) + 1 - n)
        small = total // 2
        begin.append(small if attrs["auto_pad"] == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return begin + end


def _check_pool(op, h, w, attrs, seed, opset):
    x = _rand(seed, 2, 3, h, w)
    if attrs.get("auto_pad", "NOTSET") != "NOTSET" and "dilations" in attrs:
        # Dilated auto_pad pools: onnx's reference sizes VALID outputs by the undilated kernel and
        # misplaces SAME_LOWER windows, onnxruntime pads SAME by the undilated kernel; so pyconv is
        # checked against the spec's explicit pads, which are checked against both oracles
        explicit = {k: v for k, v in attrs.items() if k != "auto_pad"}
        explicit["pads"] = _spec_pads(h, w, attrs) if attrs["auto_pad"] != "VALID" else [0, 0, 0, 0]
        want = check(op, [("x", x)], attrs=explicit, opset=opset)[0]
        model, feeds = one_node(op, [("x", x)], attrs=attrs, opset=opset)
        np.testing.assert_array_equal(pox.load(model)(x), want)
        return
    # onnx's reference MaxPool also shrinks SAME_LOWER outputs with strides > 1 (1x1 for 3x3,
    # stride 2; the spec and onnxruntime: ceil(3/2) = 2): onnxruntime is the oracle there
    bad_ref = op == "MaxPool" and attrs.get("auto_pad") == "SAME_LOWER" and max(attrs["strides"]) > 1
    check(op, [("x", x)], attrs=attrs, opset=opset, use_ref=not bad_ref)


@_EXAMPLES
@given(pool_case(avg=False))
def test_max_pool(case):
    h, w, attrs, seed = case
    assume(_pool_fits(h, w, attrs))
    _check_pool("MaxPool", h, w, attrs, seed, 12)


@_EXAMPLES
@given(pool_case(avg=True))
def test_average_pool(case):
    h, w, attrs, seed = case
    assume(_pool_fits(h, w, attrs))
    _check_pool("AveragePool", h, w, attrs, seed, 19 if "dilations" in attrs else 17)  # dilations: opset 19


def test_pool_defaults_follow_onnx():
    # strides default to 1 (torch: the kernel size) and count_include_pad to 0 (torch: True)
    x = _rand(3, 1, 2, 5, 5)
    y = check("AveragePool", [("x", x)], attrs=dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]))[0]
    assert y.shape == (1, 2, 5, 5)
    np.testing.assert_allclose(y[0, 0, 0, 0], x[0, 0, :2, :2].mean(), rtol=1e-6)
    assert check("MaxPool", [("x", x)], attrs=dict(kernel_shape=[2, 2]))[0].shape == (1, 2, 4, 4)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op):
    check(op, [("x", _rand(0, 2, 3, 5, 4))])


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn(size):
    # onnx's reference LRN loops over the batch instead of the channels (onnx 1.2x), which is
    # right when N == C; onnxruntime takes odd sizes only
    check("LRN", [("x", _rand(size, 5, 5, 3, 3))], attrs=dict(size=size, alpha=0.01, beta=0.6, bias=1.5))


def test_batch_norm_and_instance_norm():
    x = _rand(0, 2, 3, 4, 4)
    bn = [("s", _rand(1, 3, lo=0.5)), ("b", _rand(2, 3)), ("m", _rand(3, 3)), ("v", _rand(4, 3, lo=0.5, hi=2))]
    check("BatchNormalization", [("x", x)], bn, attrs=dict(epsilon=1e-3))
    check("BatchNormalization", [("x", x)], bn, opset=7, use_ref=False)  # the reference's BN-6 returns a tuple
    check("InstanceNormalization", [("x", x)], bn[:2], attrs=dict(epsilon=1e-4), rtol=1e-4, atol=1e-5)


ACTS = [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("LeakyRelu", {}), ("Sigmoid", {}),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("HardSwish", {}), ("Tanh", {}), ("Elu", {"alpha": 0.7}),
        ("Selu", {}), ("Softmax", {"axis": 1}), ("Softmax", {}), ("LogSoftmax", {"axis": 2}), ("LogSoftmax", {})]


@pytest.mark.parametrize("op,attrs", ACTS, ids=[f"{o}-{a}" for o, a in ACTS])
def test_activation(op, attrs):
    check(op, [("x", _rand(0, 2, 3, 4, 5, lo=-4, hi=4))], attrs=attrs, opset=14)


@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_softmax_before_opset13_flattens_to_2d(axis):
    # onnx's reference applies opset 13's per-axis rule at every opset: onnxruntime is the oracle
    x = _rand(axis, 2, 3, 2, 4)
    y = check("Softmax", [("x", x)], attrs={"axis": axis}, opset=11, use_ref=False)[0]
    np.testing.assert_allclose(y.reshape(int(np.prod(x.shape[:axis])), -1).sum(axis=1), 1, rtol=1e-6)
    check("LogSoftmax", [("x", x)], attrs={"axis": axis}, opset=11, use_ref=False)


def test_prelu_and_clip():
    x = _rand(0, 2, 3, 4, 4, lo=-8, hi=8)
    check("PRelu", [("x", x)], [("slope", _rand(1, 3, 1, 1))])
    check("Clip", [("x", x)], [("lo", np.float32(0)), ("hi", np.float32(6))], opset=13)
    check("Clip", [("x", x)], [("lo", None), ("hi", np.float32(1))], opset=13)
    check("Clip", [("x", x)], attrs=dict(min=-1.0, max=2.0), opset=7)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum"])
def test_binary_broadcast(op):
    a = _rand(0, 2, 3, 4, 5, lo=0.5, hi=2)
    check(op, [("a", a), ("b", _rand(1, 3, 1, 5, lo=0.5, hi=2))])
    check(op, [("a", a)], [("b", _rand(2, 5, lo=0.5, hi=2))])


def test_variadic_sum():
    xs = [(f"x{i}", _rand(i, 2, 3)) for i in range(3)]
    check("Sum", xs)
    check("Max", xs)


def test_gemm_and_matmul():
    a = _rand(0, 4, 6)
    check("Gemm", [("a", a)], [("b", _rand(1, 5, 6)), ("c", _rand(2, 5))], attrs=dict(transB=1))
    check("Gemm", [("a", a)], [("b", _rand(1, 6, 5)), ("c", _rand(2, 4, 5))], attrs=dict(alpha=0.5, beta=2.0))
    check("Gemm", [("a", _rand(3, 6, 4))], [("b", _rand(1, 6, 5))], attrs=dict(transA=1), opset=13)
    check("MatMul", [("a", _rand(0, 2, 3, 4, 6))], [("b", _rand(1, 6, 5))])
    check("MatMul", [("a", _rand(0, 3, 6))], [("b", _rand(1, 6))])
    check("MatMul", [("a", _rand(0, 6))], [("b", _rand(1, 2, 6, 5))])


SHAPE_CASES = [
    ("Concat", [("a", (2, 3, 4)), ("b", (2, 1, 4))], [], {"axis": 1}, 17),
    ("Concat", [("a", (2, 3, 4)), ("b", (2, 3, 2))], [], {"axis": -1}, 11),
    ("Split", [("x", (2, 6, 3))], [("split", np.array([1, 2, 3], np.int64))], {"axis": 1}, 13),
    ("Split", [("x", (2, 6, 3))], [], {"axis": 1, "split": [4, 2]}, 11),
    ("Slice", [("x", (4, 6, 5))], [("s", np.array([1, -4], np.int64)), ("e", np.array([100, -1], np.int64)),
                                   ("a", np.array([0, 2], np.int64)), ("st", np.array([2, 1], np.int64))], {}, 13),
    ("Slice", [("x", (4, 6, 5))], [("s", np.array([-1], np.int64)), ("e", np.array([-100], np.int64)),
                                   ("a", np.array([1], np.int64)), ("st", np.array([-2], np.int64))], {}, 13),
    ("Slice", [("x", (4, 6, 5))], [], {"starts": [1, 0], "ends": [3, 2], "axes": [0, 2]}, 9),
    ("Reshape", [("x", (2, 3, 4))], [("s", np.array([0, -1], np.int64))], {}, 13),
    ("Flatten", [("x", (2, 3, 4, 5))], [], {"axis": 2}, 13),
    ("Flatten", [("x", (2, 3, 4, 5))], [], {}, 13),
    ("Flatten", [("x", (2, 3, 4, 5))], [], {"axis": -1}, 13),
    ("Flatten", [("x", (2, 3, 4, 5))], [], {"axis": 0}, 13),
    ("Transpose", [("x", (2, 3, 4))], [], {"perm": [2, 0, 1]}, 13),
    ("Transpose", [("x", (2, 3, 4))], [], {}, 13),
    ("Squeeze", [("x", (2, 1, 4, 1))], [("a", np.array([3], np.int64))], {}, 13),
    ("Squeeze", [("x", (2, 1, 4, 1))], [], {"axes": [1]}, 11),
    ("Squeeze", [("x", (2, 1, 4, 1))], [], {}, 13),
    ("Unsqueeze", [("x", (2, 4))], [("a", np.array([0, -1], np.int64))], {}, 13),
    ("Unsqueeze", [("x", (2, 4))], [], {"axes": [1]}, 11),
    ("Gather", [("x", (5, 3))], [("i", np.array([[0, -1], [2, 4]], np.int64))], {"axis": 0}, 13),
    ("Gather", [("x", (5, 3))], [("i", np.array(1, np.int64))], {"axis": 1}, 13),
    ("Pad", [("x", (1, 2, 4, 4))], [("p", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)),
                                    ("v", np.array(1.5, np.float32))], {"mode": "constant"}, 13),
    ("Pad", [("x", (1, 2, 4, 4))], [("p", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))], {"mode": "reflect"}, 13),
    ("Pad", [("x", (1, 2, 4, 4))], [("p", np.array([0, 0, 3, 2, 0, 0, 2, 1], np.int64))], {"mode": "edge"}, 13),
    ("Pad", [("x", (1, 2, 4, 4))], [], {"mode": "constant", "pads": [0, 0, 1, 1, 0, 0, 1, 1], "value": 2.0}, 7),
    ("ReduceMean", [("x", (2, 3, 4, 5))], [("a", np.array([2, 3], np.int64))], {}, 18),
    ("ReduceMean", [("x", (2, 3, 4, 5))], [], {"axes": [1], "keepdims": 0}, 13),
    ("ReduceMean", [("x", (2, 3, 4, 5))], [], {}, 13),
    ("ReduceMax", [("x", (2, 3, 4, 5))], [("a", np.array([1], np.int64))], {"keepdims": 0}, 18),
    ("Identity", [("x", (2, 3))], [], {}, 13),
    ("Dropout", [("x", (2, 3))], [], {}, 13),
    ("Dropout", [("x", (2, 3))], [], {"ratio": 0.3}, 7),
]


@pytest.mark.parametrize("op,ins,consts,attrs,opset", SHAPE_CASES,
                         ids=[f"{c[0]}-opset{c[4]}-{i}" for i, c in enumerate(SHAPE_CASES)])
def test_shape_ops(op, ins, consts, attrs, opset):
    inputs = [(k, _rand(i, *s)) for i, (k, s) in enumerate(ins)]
    n_out = len(attrs.get("split", [])) or (len(consts[0][1]) if op == "Split" and consts else 1)
    check(op, inputs, consts, attrs, opset=opset, n_out=n_out)


RESIZE = [
    ({"mode": "nearest"}, [1, 1, 2, 2], None),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, [1, 1, 1.5, 2.5],
     None),
    ({"mode": "nearest", "coordinate_transformation_mode": "align_corners", "nearest_mode": "round_prefer_ceil"},
     None, [1, 2, 7, 3]),
    ({"mode": "nearest", "coordinate_transformation_mode": "pytorch_half_pixel", "nearest_mode": "ceil"}, [1, 1, 0.6, 2],
     None),
    ({"mode": "nearest", "coordinate_transformation_mode": "tf_half_pixel_for_nn"}, [1, 1, 3, 1], None),
]


@pytest.mark.parametrize("attrs,scales,sizes", RESIZE, ids=[str(i) for i in range(len(RESIZE))])
def test_resize_nearest(attrs, scales, sizes):
    consts = [("roi", None), ("scales", None if scales is None else np.array(scales, np.float32))]
    if sizes is not None:
        consts.append(("sizes", np.array(sizes, np.int64)))
    check("Resize", [("x", _rand(0, 1, 2, 5, 4))], consts, attrs, opset=13)


def test_resize_opset10_takes_scales_as_second_input():
    check("Resize", [("x", _rand(0, 1, 2, 3, 4))], [("scales", np.array([1, 1, 2, 2], np.float32))],
          {"mode": "nearest"}, opset=10)


def test_shape_chain_is_folded():
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as exporters emit for flatten
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import pyconv.onnx as pox
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "zero1"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    m = pox.load(model.SerializeToString())
    assert [n.op for n in m.graph.nodes] == ["Reshape"]
    for n in (1, 4):  # refolded for each batch size
        x = _rand(n, n, 2, 3)
        np.testing.assert_array_equal(m(x), x.reshape(n, 6))


def test_constant_and_constant_of_shape():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import pyconv.onnx as pox
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.float32([1, 2, 3]))),
             helper.make_node("Constant", [], ["f"], value_float=0.5),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["z"], value=numpy_helper.from_array(np.float32([2]))),
             helper.make_node("Add", ["x", "c"], ["a"]),
             helper.make_node("Mul", ["a", "f"], ["b"]),
             helper.make_node("Add", ["b", "z"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    x = _rand(0, 2, 3)
    np.testing.assert_allclose(pox.load(model)(x), (x + [1, 2, 3]) * 0.5 + 2, rtol=1e-6)
    np.testing.assert_allclose(pox.load(model)(x), onnx.reference.ReferenceEvaluator(model).run(None, {"x": x})[0])
