"""ConvNetJS layer_defs model files: the CIFAR-10 and MNIST demos' nets with the volumes ConvNetJS
computes (written in as numbers), its pooling size rule, its desugaring (activation, drop_prob,
softmax's fc) and initialisation, telling its JSON from pyconv's, and clear messages."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pyconv
from pyconv import models, nn, summary
from pyconv.formats import convnetjs
from pyconv.models import ModelSpecError

DATA = os.path.join(os.path.dirname(__file__), "data")


def _build(layers, shape=None):
    spec = models.spec_for(layers if not isinstance(layers, str) else os.path.join(DATA, layers))
    if isinstance(layers, list):
        spec = convnetjs.translate(layers, "<test>")
    shape = shape or tuple(spec["input_shape"])
    return spec, summary(models.build_model(spec, shape, 10), shape)


def test_cifar10_demo_volumes_and_parameters():
    """demo/cifar10.html (read from its JavaScript): 32x32x3 -conv 5x5 pad 2-> 32x32x16 -pool 2/2->
    16x16x16 -> 16x16x20 -> 8x8x20 -> 8x8x20 -> 4x4x20 -> fc 10; params (5*5*3+1)*16 = 1,216,
    (5*5*16+1)*20 = 8,020, (5*5*20+1)*20 = 10,020, (320+1)*10 = 3,210: 22,466."""
    spec, s = _build("convnetjs_cifar10.js")
    assert spec["input_shape"] == [3, 32, 32]
    vols = [(r.layer, r.output_shape, r.params) for r in s.rows]
    assert vols == [
        ("Conv2d", (16, 32, 32), 1216), ("ReLU", (16, 32, 32), 0), ("MaxPool2d", (16, 16, 16), 0),
        ("Conv2d", (20, 16, 16), 8020), ("ReLU", (20, 16, 16), 0), ("MaxPool2d", (20, 8, 8), 0),
        ("Conv2d", (20, 8, 8), 10020), ("ReLU", (20, 8, 8), 0), ("MaxPool2d", (20, 4, 4), 0),
        ("Flatten", (320,), 0), ("Linear", (10,), 3210)]
    assert s.total_params == 22466
    # the same net as pyconv's built-in convnetjs-cifar
    builtin = summary(models.build_model("convnetjs-cifar", (3, 32, 32), 10), (3, 32, 32))
    assert [r.output_shape for r in builtin.rows] == [r.output_shape for r in s.rows]
    text = " ".join(spec["notes"])
    assert "the demo's trainer (method: adadelta, batch_size: 4, l2_decay: 0.0001) is not applied" in text


def test_mnist_demo_volumes_and_parameters():
    """demo/mnist.html as JSON: 24x24x1 -> conv 8 -> 24x24x8 -> pool 2/2 -> 12x12x8 -> conv 16 ->
    12x12x16 -> pool 3/3: floor((12 - 3)/3 + 1) = 4 -> 4x4x16 -> fc 10; params 208 + 3,216 + 2,570."""
    spec, s = _build("convnetjs_mnist.json")
    assert [r.output_shape for r in s.rows if r.layer != "ReLU"] == [(8, 24, 24), (8, 12, 12), (16, 12, 12),
                                                                      (16, 4, 4), (256,), (10,)]
    assert s.total_params == 5994


@pytest.mark.parametrize("size,sx,stride,pad", [(32, 2, 2, 0), (12, 3, 3, 0), (13, 3, 2, 1), (7, 2, None, 0),
                                                (10, 3, 3, 1), (5, 5, 1, 2), (9, 4, 2, 0), (31, 3, 2, 0)])
def test_pool_size_rule_is_convnetjs(size, sx, stride, pad):
    """convnet_layers_pool.js: out_sx = Math.floor((in_sx + pad * 2 - sx) / stride + 1), stride 2 by
    default; windows start at -pad, padding never wins the max."""
    d = {"type": "pool", "sx": sx, "pad": pad}
    if stride is not None:
        d["stride"] = stride
    layers = [{"type": "input", "out_sx": size, "out_sy": size, "out_depth": 2}, d]
    spec, s = _build(layers)
    want = int(np.floor((size + pad * 2 - sx) / (stride or 2) + 1))
    assert s.rows[0].output_shape == (2, want, want)
    # ConvNetJS's max loop, transcribed
    x = np.random.default_rng(size).standard_normal((1, 2, size, size))
    out = np.full((1, 2, want, want), -np.inf)
    st = stride or 2
    for i in range(want):
        for j in range(want):
            for fy in range(sx):
                for fx in range(sx):
                    oy, ox = i * st - pad + fy, j * st - pad + fx
                    if 0 <= oy < size and 0 <= ox < size:
                        out[:, :, i, j] = np.maximum(out[:, :, i, j], x[:, :, oy, ox])
    m = models.build_model(spec, (2, size, size), 10).double()
    np.testing.assert_array_equal(m(x), out)


def test_desugaring_and_initialisation():
    """activation and drop_prob add layers after a conv / fc; relu biases start at 0.1 (bias_pref),
    others at 0; weights N(0, 1/fan_in); softmax is an fc of num_classes."""
    layers = [{"type": "input", "out_sx": 6, "out_sy": 4, "out_depth": 3},
              {"type": "conv", "sx": 3, "sy": 1, "filters": 64, "activation": "relu", "drop_prob": 0.5},
              {"type": "conv", "sx": 3, "filters": 8, "pad": 1, "stride": 2, "activation": "maxout", "group_size": 4},
              {"type": "lrn", "k": 2, "n": 3, "alpha": 1e-4, "beta": 0.75},
              {"type": "fc", "num_neurons": 300, "activation": "tanh", "bias_pref": 0.5},
              {"type": "fc", "filters": 6, "activation": "sigmoid"},
              {"type": "dropout"},
              {"type": "softmax", "num_classes": 10}]
    spec = convnetjs.translate(layers, "<test>")
    pyconv.manual_seed(0)
    m = models.build_model(spec, (3, 4, 6), 10)
    kinds = [type(x).__name__ for x in m]
    assert kinds == ["Conv2d", "ReLU", "Dropout", "Conv2d", "Maxout", "LocalResponseNorm", "Flatten", "Linear", "Tanh",
                     "Linear", "Sigmoid", "Dropout", "Linear"]
    conv = m[0]
    assert conv.kernel_size == (1, 3) and (conv.bias.data == np.float32(0.1)).all()
    assert abs(conv.weight.data.std() - np.sqrt(1 / 9)) < 0.03
    assert m[3].stride == (2, 2) and m[4].group_size == 4 and (m[3].bias.data == 0).all()
    assert m[7].in_features == 2 * 2 * 2 and (m[7].bias.data == np.float32(0.5)).all()
    assert m[2].p == 0.5 and m[11].p == 0.5 and m[-1].out_features == 10
    s = summary(m, (3, 4, 6))
    assert s.rows[0].output_shape == (64, 4, 4) and s.rows[3].output_shape == (8, 2, 2)
    assert s.rows[4].output_shape == (2, 2, 2)


def test_a_json_file_is_told_apart_by_content(tmp_path):
    def write(doc, name="m.json"):
        p = tmp_path / name
        p.write_text(json.dumps(doc))
        return str(p)

    # pyconv's own (torch names; its short aliases conv/pool/fc too)
    own = write([{"type": "conv", "out_channels": 4, "kernel_size": 3}, {"type": "relu"}, {"type": "pool",
                 "kernel_size": 2}, {"type": "fc", "out_features": "classes"}])
    assert isinstance(models.spec_for(own), list)
    # ConvNetJS's (an input layer first, ConvNetJS fields), also inside a {"layers": [...]} table
    js = write({"layers": [{"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1},
                           {"type": "fc", "num_neurons": 10}]})
    assert models.spec_for(js)["source"] == "convnetjs"
    mixed = write([{"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1},
                   {"type": "Conv2d", "out_channels": 4, "kernel_size": 3}])
    with pytest.raises(ModelSpecError, match=r"mixes ConvNetJS layer_defs \(layer 0: type 'input'\) with pyconv's "
                                             r"torch-named layers \(layer 1: out_channels\)"):
        models.spec_for(mixed)
    neither = write([{"class_name": "Dense", "units": 10}])
    with pytest.raises(ModelSpecError, match="neither a pyconv layer list .* nor ConvNetJS layer_defs"):
        models.spec_for(neither)
    saved = write({"layers": [{"layer_type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1}]})
    with pytest.raises(ModelSpecError, match=r"is a saved ConvNetJS net \(net.toJSON\(\)"):
        models.spec_for(saved)


ERRORS = [
    ([{"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1}, {"type": "svm", "num_classes": 10}],
     r"layer_defs\[1\] \(svm\): the svm loss is not supported"),
    ([{"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1}, {"type": "fc", "num_neurons": 1},
      {"type": "regression", "num_neurons": 1}], r"layer_defs\[2\] \(regression\): the regression loss"),
    ([{"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1}, {"type": "conv", "sx": 3, "filtres": 4}],
     r"layer_defs\[1\] \(conv\): unknown field\(s\) filtres.*layer_defs\[1\] \(conv\): filters must be a positive"),
    ([{"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1}, {"type": "fc", "num_neurons": 4,
                                                                   "activation": "elu"}],
     r"activation 'elu' is not a ConvNetJS activation"),
    ([{"type": "input", "out_sx": 8, "out_sy": 8}, {"type": "relu"}], r"layer_defs\[0\] \(input\): out_depth must be"),
    ([{"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1}, {"type": "lrn", "k": 1, "n": 4, "alpha": 1,
                                                                   "beta": 1}], r"n 4 is even"),
    ([{"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1}, {"type": "lrn", "n": 3}],
     r"lrn layer needs k, alpha, beta"),
    ([{"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1}, {"type": "pool", "sx": 2, "pad": 2}],
     r"pad 2 with sx 2"),
    ([{"type": "conv", "sx": 3, "filters": 4}], r"layer_defs\[0\] \(conv\): the first layer must be the input"),
    ([{"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1}, {"type": "softmax", "num_classes": 3},
      {"type": "relu"}], r"softmax is ConvNetJS's loss layer and must come last"),
    ([{"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1}, {"type": "conv2", "sx": 3}],
     r"unknown ConvNetJS layer type 'conv2'"),
]


@pytest.mark.parametrize("layers,match", ERRORS)
def test_unsupported_layer_defs_are_listed(layers, match, tmp_path):
    p = tmp_path / "net.json"
    p.write_text(json.dumps(layers))
    with pytest.raises(ModelSpecError, match=match) as info:
        models.spec_for(str(p))
    assert str(info.value).startswith(f"{p}: ") and "\n" not in str(info.value)


def test_javascript_mistakes_name_the_line(tmp_path):
    p = tmp_path / "net.js"
    p.write_text("layer_defs = [];\nlayer_defs.push({type:'input', out_sx:8, out_sy:8, out_depth:1});\n"
                 "layer_defs.push({type:'conv' sx:3});\n")
    with pytest.raises(ModelSpecError, match=r"line 3: expected ',' or '}', got 'sx'"):
        models.spec_for(str(p))
    p.write_text("layer_defs = [];\nlayer_defs.push({type:'input', out_sx:8, out_sy:8, out_depth:1});\n"
                 "layer_defs.push({type:'conv', sx:3, filters:4, sy:-1});\n")
    with pytest.raises(ModelSpecError, match=r"layer_defs\[1\] \(conv\), line 3: sy must be a positive integer"):
        models.spec_for(str(p))
    p.write_text("var x = 3;\n")
    with pytest.raises(ModelSpecError, match="not a model file pyconv reads"):
        models.spec_for(str(p))


def test_class_count_mismatch_names_num_classes():
    spec = models.spec_for(os.path.join(DATA, "convnetjs_mnist.json"))
    with pytest.raises(ModelSpecError, match=r"layer_defs\[5\] \(softmax\) gives 10 outputs, but the npz data set has "
                                             r"4 classes: make the last layer num_classes: 4"):
        models.build_classifier(spec, (1, 24, 24), 4, dataset="npz")


def test_lrn_is_convnetjs_formula():
    """convnet_layers_normalization.js: den = k + alpha / n * sum over [i - floor(n/2), i + floor(n/2)]."""
    layers = [{"type": "input", "out_sx": 2, "out_sy": 2, "out_depth": 7},
              {"type": "lrn", "k": 2, "n": 5, "alpha": 0.1, "beta": 0.75}]
    m = models.build_model(convnetjs.translate(layers, "<t>"), (7, 2, 2), 10)
    x = np.random.default_rng(1).standard_normal((1, 7, 2, 2))
    want = np.empty_like(x)
    for i in range(7):
        den = sum(x[:, j] ** 2 for j in range(max(0, i - 2), min(i + 2, 6) + 1)) * 0.1 / 5 + 2
        want[:, i] = x[:, i] / den ** 0.75
    np.testing.assert_allclose(m(x), want, rtol=1e-12)


def test_cli_trains_the_cifar_demo_file_on_npz(tmp_path):
    """pyconv train --model demo.js with 3x32x32 data; summary reads the declared input."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((40, 3, 32, 32), dtype=np.float32), y=rng.integers(0, 10, 40))
    env = dict(os.environ, PYCONV_NUM_THREADS="1")
    model = os.path.join(DATA, "convnetjs_cifar10.js")
    r = subprocess.run([sys.executable, "-m", "pyconv", "train", "--model", model, "--dataset", "npz", "--data-dir",
                        str(tmp_path / "d.npz"), "--epochs", "1", "--quiet", "--no-plots", "--out",
                        str(tmp_path / "r")],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "(22,466 parameters)" in r.stdout and "demo's trainer" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pyconv", "summary", "--model", model], capture_output=True, text=True,
                       env=env, cwd=tmp_path)
    assert r.returncode == 0 and "(ConvNetJS layer_defs), input 3x32x32 (CxHxW; declared by the file)" in r.stdout
    assert "total params: 22,466" in r.stdout


def test_readme_examples_give_the_summaries_shown(tmp_path):
    """The README's prototxt and ConvNetJS examples, and every line of the summaries it prints."""
    import re

    text = open(os.path.join(os.path.dirname(DATA), "..", "README.md"), encoding="utf-8").read()
    shown = re.findall(r"```\n(model file .*?)```", text, re.S)
    for lang, name, out in (("prototxt", "cifar10_quick.prototxt", shown[0]),
                            ("javascript", "demo_layers.js", shown[1])):
        (block,) = re.findall(rf"```{lang}\n(.*?)```", text, re.S)
        (tmp_path / name).write_text(block)
        r = subprocess.run([sys.executable, "-m", "pyconv", "summary", "--model", name], capture_output=True,
                           text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        # the algorithm columns depend on the CPU; the rest must be as shown
        drop = lambda line: re.sub(r"\s+\S+/\S+/\S+\s+(?:[\d.]+ KiB|none)$", "", line.rstrip())  # noqa: E731
        real = [drop(line) for line in r.stdout.splitlines()]
        for line in out.splitlines():
            assert line == "..." or drop(line) in real, line
