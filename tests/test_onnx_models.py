"""Whole models through pyconv.onnx: ResNet-18, MobileNetV2, SqueezeNet 1.1 and a VGG-11-style net
exported from torch (opset 17) against torch; the fused graph against the unfused one; pyconv.nn
models exported and read back by onnxruntime and by pyconv.onnx.load."""
import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("onnx")

import onnx  # noqa: E402

import pyconv  # noqa: E402
import pyconv.nn as nn  # noqa: E402
import pyconv.onnx as pox  # noqa: E402
from pyconv.tensor import Tensor, no_grad  # noqa: E402

try:
    import onnxruntime as ort
except ImportError:  # pragma: no cover
    ort = None

ROOT = pathlib.Path(__file__).resolve().parents[1]
TORCH_NETS = ["resnet18", "mobilenet_v2", "squeezenet1_1", "vgg11_narrow"]


def _rel_close(got, want, rtol):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
    assert err <= rtol, f"max error {err:.3g} x max|want| > {rtol}"


def _torch_net(name):
    torch = pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("torch_models", ROOT / "benchmarks" / "torch_models.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    tnn = torch.nn
    torch.manual_seed(0)
    if name == "vgg11_narrow":  # VGG-11's layer pattern at 1/8 of its widths (a 500 MB file otherwise)
        layers, c = [], 3
        for v in [8, "M", 16, "M", 32, 32, "M", 64, 64, "M", 64, 64, "M"]:
            if v == "M":
                layers.append(tnn.MaxPool2d(2, 2))
            else:
                layers += [tnn.Conv2d(c, v, 3, padding=1), tnn.ReLU(inplace=True)]
                c = v
        model = tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 32), tnn.ReLU(True),
                               tnn.Dropout(), tnn.Linear(32, 10))
    else:
        model = zoo.MODELS[name](num_classes=10)
    for m in model.modules():  # BatchNorm statistics that matter
        if isinstance(m, tnn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch = pytest.importorskip("torch")
    out = {}
    folder = tmp_path_factory.mktemp("onnx_models")

    def get(name):
        if name not in out:
            model = _torch_net(name)
            path = folder / f"{name}.onnx"
            torch.onnx.export(model, torch.zeros(1, 3, 64, 64), str(path), opset_version=17, dynamo=False,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
            out[name] = model, path
        return out[name]
    return get


@pytest.mark.parametrize("name", TORCH_NETS)
def test_torch_export_equals_torch(exported, name):
    torch = pytest.importorskip("torch")
    model, path = exported(name)
    m = pox.load(path)
    assert m.inputs == [("input", (1, 3, 64, 64))] and m.outputs == ["logits"] and m.opset == 17
    for batch in (1, 3):  # the declared batch, then another one (re-specialised)
        x = np.random.default_rng(batch).standard_normal((batch, 3, 64, 64)).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        _rel_close(m(x), want, 1e-4)


@pytest.mark.parametrize("name", TORCH_NETS)
def test_fused_graph_equals_unfused(exported, name):
    _, path = exported(name)
    fused, plain = pox.load(path), pox.load(path, fuse=False)
    ops = [n.op for n in fused.graph.nodes]
    made_by = {o: n.op for n in fused.graph.nodes for o in n.outputs}
    # every activation after a conv went into the conv's epilogue
    assert not [n for n in fused.graph.nodes if n.op in ("Relu", "Clip") and made_by.get(n.inputs[0]) == "Conv"]
    assert any(n.epilogue for n in fused.graph.nodes)
    assert not any(n.epilogue for n in plain.graph.nodes)
    if name == "resnet18":
        assert "Add" not in ops and sum(1 for n in fused.graph.nodes if ("add", 3) in n.epilogue) == 8
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    _rel_close(fused(x), plain(x), 1e-6)


def test_summary_and_buffer_plan(exported):
    _, path = exported("resnet18")
    m = pox.load(path)
    s = m.summary()
    text = str(s)
    assert "peak" in text and ("im2col" in text or "winograd" in text or "direct" in text)
    assert s.params == sum(int(np.prod(v.shape)) for v in m.graph.initializers.values())
    assert s.flops > 1e8
    plan = m.plan()
    assert 0 < plan.peak_bytes < plan.all_bytes / 2  # freed and reused by liveness
    assert any(plan.inplace) or all(n.op in ("Conv", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm")
                                    for n in plan.graph.nodes)
    assert m.plan(4).peak_bytes > plan.peak_bytes  # a plan per batch size


# --------------------------------------------------------------------------- export round trips


def _every_layer_net():
    pyconv.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect", bias=False), nn.LeakyReLU(0.1),
        nn.Conv2d(8, 8, 3, padding="same", padding_mode="replicate", groups=2, dilation=2),
        nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
        nn.LocalResponseNorm(3), nn.LocalResponseNorm(3, region="within_channel"), nn.Scale(8, bias=True),
        nn.CaffeBatchNorm2d(8, use_global_stats=True),
        nn.Maxout(2), nn.Tanh(), nn.AdaptiveMaxPool2d(3), nn.AvgPool2d(2, 1, divisor_override=3), nn.Sigmoid(),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(16, 10), nn.Softmax(1))


def _graph_net():
    pyconv.manual_seed(1)
    return nn.Graph([
        ("stem", nn.Conv2d(3, 6, 3, padding=1), "input"),
        ("a", nn.Conv2d(6, 6, 1), "stem"),
        ("b", nn.Conv2d(6, 6, 3, padding=1), "stem"),
        ("sum", nn.Eltwise("sum", coeffs=[0.5, 2.0]), ["a", "b"]),
        ("prod", nn.Eltwise("prod"), ["a", "b"]),
        ("max", nn.Eltwise("max"), ["a", "b", "sum"]),
        ("cat", nn.Concat(1), ["sum", "prod", "max"]),
        ("pool", nn.AdaptiveAvgPool2d((3, 2)), "cat"),
        ("flat", nn.Flatten(), "pool"),
        ("fc", nn.Linear(108, 5), "flat"),
    ])


def _pyconv_out(model, x):
    model.eval()
    with no_grad():
        return model(Tensor(x)).data


@pytest.mark.parametrize("opset", [11, 13, 17, 18, onnx.defs.onnx_opset_version()])
@pytest.mark.parametrize("net", ["every_layer", "graph"])
def test_export_round_trip(tmp_path, net, opset):
    model = _every_layer_net() if net == "every_layer" else _graph_net()
    x = np.random.default_rng(2).standard_normal((2, 3, 14, 14)).astype(np.float32)
    want = _pyconv_out(model, x)
    path = tmp_path / "net.onnx"
    proto = pox.export(model, path, input_shape=(1, 3, 14, 14), opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == opset
    _rel_close(pox.load(path)(x), want, 1e-5)
    if ort is not None and opset <= 21:  # onnxruntime 1.2x implements opsets up to 21-23
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        _rel_close(sess.run(None, {"input": x})[0], want, 1e-5)


def test_export_linear_over_last_axis_and_old_opset(tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Linear(3, 5))
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 5)).astype(np.float32)
    want = _pyconv_out(model, x)
    for opset in (7, 9):
        proto = pox.export(model, tmp_path / "lin.onnx", (2, 5, 5), opset=opset)
        assert [n.op_type for n in proto.graph.node] == ["Conv", "Relu", "MatMul", "Add", "Identity"]
        _rel_close(pox.load(tmp_path / "lin.onnx")(x), want, 1e-5)


def test_loaded_export_folds_batchnorm_and_fuses_the_residual(tmp_path):
    pyconv.manual_seed(4)
    model = nn.Graph([
        ("conv", nn.Conv2d(4, 4, 3, padding=1), "input"),
        ("bn", nn.BatchNorm2d(4), "conv"),
        ("add", nn.Eltwise("sum"), ["bn", "input"]),
        ("relu", nn.ReLU(), "add"),
    ])
    bn = model["bn"]
    bn._buffers["running_mean"][:] = [0.1, -0.2, 0.3, 0.0]
    bn._buffers["running_var"][:] = [0.5, 1.5, 2.0, 1.0]
    x = np.random.default_rng(5).standard_normal((2, 4, 6, 6)).astype(np.float32)
    want = _pyconv_out(model, x)
    pox.export(model, tmp_path / "res.onnx", (1, 4, 6, 6))
    m = pox.load(tmp_path / "res.onnx")
    (conv,) = m.graph.nodes
    assert conv.op == "Conv" and conv.epilogue == (("add", 3), ("Relu", ()))
    assert conv.fused == ("bn", "add", "relu")
    _rel_close(m(x), want, 1e-5)


# --------------------------------------------------------------------------- the command line


def test_cli_predict_summary_bench(exported, tmp_path, capsys):
    from PIL import Image

    from pyconv.cli import main

    _, path = exported("squeezenet1_1")
    img = tmp_path / "cat.png"
    Image.fromarray((np.random.default_rng(0).random((80, 100, 3)) * 255).astype(np.uint8)).save(img)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(10)))
    assert main(["predict", str(path), str(img), "--labels", str(labels), "--size", "70", "--mean", "0.485,0.456,0.406",
                 "--std", "0.229,0.224,0.225", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "top 3 of 10 classes" in out and "centre 64x64 cropped" in out and out.count("  class") == 3
    assert main(["summary", str(path), "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "(batch 2)" in out and "peak" in out and "2x10" in out.replace("2x10x1x1", "")
    engines = ["pyconv"] + (["onnxruntime"] if ort is not None else [])
    assert main(["bench", str(path), "--batch", "1", "--repeats", "2", "--engines", *engines]) == 0
    out = capsys.readouterr().out
    assert "each engine in its own process" in out and "load + optimise" in out
    assert ("onnxruntime/pyconv" in out) == (ort is not None)


def test_cli_errors(exported, tmp_path, capsys):
    from pyconv.cli import main

    _, path = exported("squeezenet1_1")
    assert main(["predict", str(path), str(tmp_path / "none.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    img = tmp_path / "x.png"
    from PIL import Image
    Image.new("RGB", (64, 64)).save(img)
    assert main(["predict", str(path), str(img), "--labels", str(labels)]) == 1
    assert "has 2 labels but the model scores 10 classes" in capsys.readouterr().err
    assert main(["predict", str(path), str(img), "--mean", "1,2"]) == 1
    assert "--mean has 2 values but the model takes 3 channels" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nonsense")
    assert main(["summary", str(bad)]) == 1
    assert "not a readable ONNX model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["bench", str(path), "--batch", "0"])
    assert e.value.code == 2
