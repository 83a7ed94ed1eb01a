"""Bad input to pyconv.onnx: unsupported constructs reported at load, all at once, each with its
node's name and op type; malformed files, missing initializers, external data outside the
model's directory, run-time shape mismatches and bad export arguments each get one clear error."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import pyconv.nn as nn  # noqa: E402
import pyconv.onnx as pox  # noqa: E402


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in inputs],
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in outputs],
                          initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _w(name, *shape, dtype=np.float32):
    return numpy_helper.from_array(np.ones(shape, dtype), name)


def test_every_unsupported_construct_is_reported_at_once():
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv1d", kernel_shape=[3]),
             helper.make_node("LSTM", ["x"], ["b"], name="lstm"),
             helper.make_node("Relu", ["x"], ["c"], name="custom", domain="com.example"),
             helper.make_node("Resize", ["x", "", "s"], ["d"], name="resize", mode="linear"),
             helper.make_node("Conv", ["x", "h"], ["e"], name="half"),
             helper.make_node("BatchNormalization", ["x", "s4", "s4", "s4", "s4"], ["f"], name="bn", training_mode=1),
             helper.make_node("MaxPool", ["x"], ["g", "idx"], name="pool", kernel_shape=[2, 2]),
             helper.make_node("Relu", ["idx"], ["h2"], name="reads_indices"),
             helper.make_node("Pad", ["x", "p"], ["i"], name="pad", mode="mirror")]
    inits = [_w("w", 4, 4, 3), _w("h", 4, 4, 1, 1, dtype=np.float16), _w("s", 4), _w("s4", 4),
             numpy_helper.from_array(np.zeros(8, np.int64), "p")]
    model = _model(nodes, [("x", [1, 4, 8, 8])], ["a", "b", "c", "d", "e", "f", "h2", "i"], inits)
    with pytest.raises(pox.UnsupportedError) as e:
        pox.load(model.SerializeToString())
    msg = str(e.value)
    for needle in ("'conv1d' (Conv): kernel_shape=[3]", "'lstm' (LSTM): operator LSTM is not supported",
                   "'custom' (Relu): operator domain 'com.example'", "'resize' (Resize): mode='linear'",
                   "initializer 'h': dtype FLOAT16", "'bn' (BatchNormalization): training_mode=1",
                   "'pool' (MaxPool): outputs beyond the first", "'pad' (Pad): mode='mirror'"):
        assert needle in msg, (needle, msg)
    assert len(e.value.problems) == 8
    assert isinstance(e.value, ValueError)


def test_unknown_attribute_and_opset_range():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="r", foo=1)], [("x", [1, 2])], ["y"])
    with pytest.raises(pox.UnsupportedError, match=r"'r' \(Relu\): attribute\(s\) foo not supported"):
        pox.load(model)
    for opset in (6, 999):
        model = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 2])], ["y"], opset=opset)
        with pytest.raises(pox.UnsupportedError, match=f"opset {opset} is outside the supported range 7"):
            pox.load(model)


def test_dropout_in_training_mode_and_non_float_input():
    inits = [numpy_helper.from_array(np.array(True), "t"), numpy_helper.from_array(np.float32(0.5), "r")]
    model = _model([helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="drop")], [("x", [1, 2])], ["y"], inits)
    with pytest.raises(pox.UnsupportedError, match=r"'drop' \(Dropout\): training_mode must be a constant False"):
        pox.load(model)
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    with pytest.raises(pox.UnsupportedError, match="graph input 'x': only float32 tensors are supported, got INT64"):
        pox.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("data", [b"", b"\x00\x01garbage\xff" * 10, b"not a model at all"])
def test_malformed_bytes(data):
    with pytest.raises(pox.GraphError, match="ONNX model"):
        pox.load(data)


def test_truncated_file(tmp_path):
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", [1, 4, 8, 8])], ["y"], [_w("w", 4, 4, 3, 3)])
    raw = model.SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(pox.GraphError, match="not a readable ONNX model|no graph"):
        pox.load(tmp_path / "cut.onnx")


def test_bad_source_types_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ONNX model at"):
        pox.load(tmp_path / "absent.onnx")
    with pytest.raises(TypeError, match="expected a path, bytes or onnx.ModelProto, got int"):
        pox.load(42)


def test_missing_initializer_names_the_node():
    model = _model([helper.make_node("Conv", ["x", "weights"], ["y"], name="c1", kernel_shape=[3, 3])],
                   [("x", [1, 4, 8, 8])], ["y"])
    with pytest.raises(pox.GraphError, match=r"node 'c1' \(Conv\): input 'weights' is neither a graph input, an "
                                             r"initializer nor the output of a node"):
        pox.load(model)


def _external_model(tmp_path, location):
    w = _w("w", 4, 4, 3, 3)
    w.ClearField("float_data")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(4 * 4 * 9 * 4))):
        e = w.external_data.add()
        e.key, e.value = k, v
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"])], [("x", [1, 4, 8, 8])], ["y"], [w])
    path = tmp_path / "models" / "ext.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path, model


def test_external_data_inside_the_model_directory_is_read(tmp_path):
    path, _ = _external_model(tmp_path, "weights.bin")
    (path.parent / "weights.bin").write_bytes(np.full(4 * 4 * 9, 0.5, np.float32).tobytes())
    x = np.ones((1, 4, 8, 8), np.float32)
    np.testing.assert_allclose(pox.load(path)(x), np.full((1, 4, 6, 6), 18.0, np.float32))


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_outside_the_model_directory_is_refused(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 1024)
    path, _ = _external_model(tmp_path, location)
    with pytest.raises(pox.GraphError, match="lies outside the model's directory"):
        pox.load(path)


def test_external_data_missing_or_from_bytes(tmp_path):
    path, model = _external_model(tmp_path, "nowhere.bin")
    with pytest.raises(pox.GraphError, match="'nowhere.bin' does not exist"):
        pox.load(path)
    with pytest.raises(pox.GraphError, match="load the model from its path"):
        pox.load(model.SerializeToString())


def test_symbolic_dimensions():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["N", 3, "H", 8])], ["y"])
    with pytest.raises(pox.UnsupportedError, match=r"graph input 'x': dimension 2 is 'H' \(not fixed\); pass "
                                                   r"input_shapes="):
        pox.load(model)
    m = pox.load(model, input_shapes={"x": (2, 3, 5, 8)})
    assert m.inputs == [("x", (2, 3, 5, 8))]
    with pytest.raises(pox.UnsupportedError, match="input_shapes names 'z', which is not an input"):
        pox.load(model, input_shapes={"x": (2, 3, 5, 8), "z": (1,)})


def test_run_time_errors():
    model = _model([helper.make_node("Add", ["a", "b"], ["y"], name="add")], [("a", ["N", 3]), ("b", ["N", 3])],
                   ["y"])
    m = pox.load(model)
    a = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"takes 2 input\(s\) \(a, b\), got 1"):
        m(a)
    with pytest.raises(pox.GraphError, match=r"input 'b' must have shape \(N, 3\) \(any batch size N\), got \(2, 4\)"):
        m(a, np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match="input 'a' must be a float32 array, got str"):
        m("x", a)
    with pytest.raises(pox.GraphError, match=r"node 'add' \(Add\): the input shapes \(2, 3\), \(5, 3\) do not "
                                             "broadcast"):
        m(a, np.ones((5, 3), np.float32))
    np.testing.assert_array_equal(m(a, a.astype(np.float64)), 2 * a)  # other float types are converted


def test_batch_size_baked_into_a_reshape_is_named_at_run_time():
    shape = numpy_helper.from_array(np.array([1, 6], np.int64), "shape")
    model = _model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="flatten_b1")], [("x", ["N", 2, 3])],
                   ["y"], [shape])
    m = pox.load(model)
    assert m(np.ones((1, 2, 3), np.float32)).shape == (1, 6)
    with pytest.raises(pox.GraphError, match=r"node 'flatten_b1' \(Reshape\): cannot reshape \(4, 2, 3\) \(24 "
                                             r"elements\) to \(1, 6\)"):
        m(np.ones((4, 2, 3), np.float32))


def test_shape_mismatch_at_load_names_the_node():
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="c")], [("x", [1, 3, 8, 8])], ["y"],
                   [_w("w", 4, 4, 3, 3)])
    with pytest.raises(pox.GraphError, match=r"node 'c' \(Conv\): input \(1, 3, 8, 8\) has 3 channels but weight "
                                             r"\(4, 4, 3, 3\) with group=1 expects 4"):
        pox.load(model)


def test_export_errors(tmp_path):
    with pytest.raises(TypeError, match="model must be a pyconv.nn Module"):
        pox.export("net", tmp_path / "a.onnx", (1, 3, 8, 8))
    net = nn.Sequential(nn.Conv2d(3, 4, 3))
    for bad in (6, 10**3, 17.0, True):
        with pytest.raises(ValueError, match="opset must be an int in 7.."):
            pox.export(net, tmp_path / "a.onnx", (1, 3, 8, 8), opset=bad)
    with pytest.raises(ValueError, match=r"input_shape must be \(N, C, H, W\)"):
        pox.export(net, tmp_path / "a.onnx", (0, 3, 8, 8))
    cases = [
        (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular")), 17,
         r"layer '0' \(Conv2d\): padding_mode='circular' needs opset >= 19"),
        (nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), 7, r"layer '0' \(MaxPool2d\): ceil_mode needs opset >= 10"),
        (nn.Sequential(nn.CrossEntropyLoss()), 17, "CrossEntropyLoss is a loss"),
        (nn.Sequential(nn.LocalResponseNorm(4)), 17, "even size"),
        (nn.Sequential(nn.Concat()), 17, "use it inside an nn.Graph"),
        (nn.Sequential(nn.BatchNorm2d(3, track_running_stats=False)), 17, "batch statistics"),
    ]
    for model, opset, msg in cases:
        with pytest.raises(ValueError, match=msg):
            pox.export(model, tmp_path / "a.onnx", (1, 3, 8, 8), opset=opset)
    assert not (tmp_path / "a.onnx").exists()


def test_import_pyconv_does_not_import_onnx():
    code = "import sys, pyconv, pyconv.inference; assert 'onnx' not in sys.modules, 'onnx imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                         env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_nothing_in_the_file_is_executed(tmp_path):
    # string attributes and names are data: a node named like code, with a doc string and
    # metadata, loads and runs as the Relu it is
    marker = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    node = helper.make_node("Relu", ["x"], ["y"], name=code, doc_string=code)
    model = _model([node], [("x", [1, 2])], ["y"])
    model.metadata_props.add(key="run", value=code)
    y = pox.load(model.SerializeToString())(np.array([[-1, 2]], np.float32))
    np.testing.assert_array_equal(y, [[0, 2]])
    assert not marker.exists()

