"""Caffe prototxt model files: known volumes and parameter counts of Caffe's own nets (computed by
hand from the layer definitions and Caffe's output-size rules, written in as numbers), Caffe's
pooling and LRN semantics against direct transcriptions of its C++ loops, a branching net that
trains, and one clear message (layer and line) for every unsupported or malformed file."""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import pyconv
from pyconv import models, nn, summary
from pyconv.formats import caffe
from pyconv.models import ModelSpecError
from pyconv.tensor import Tensor

DATA = os.path.join(os.path.dirname(__file__), "data")


def _rows(name, shape):
    spec = models.spec_for(os.path.join(DATA, name))
    s = summary(models.build_model(spec, shape, 10), shape)
    return spec, s, {r.name: (r.output_shape, r.params) for r in s.rows}


# ------------------------------------------------------------------ known answers

# LeNet (examples/mnist/lenet.prototxt): 28 -5+1-> 24 -pool 2/2-> 12 -5+1-> 8 -pool-> 4; params
# (5*5*1 + 1) * 20 = 520, (5*5*20 + 1) * 50 = 25,050, (800 + 1) * 500 = 400,500, (500 + 1) * 10 = 5,010.
LENET = {"conv1": ((20, 24, 24), 520), "pool1": ((20, 12, 12), 0), "conv2": ((50, 8, 8), 25050),
         "pool2": ((50, 4, 4), 0), "ip1": ((500,), 400500), "relu1": ((500,), 0), "ip2": ((10,), 5010)}


@pytest.mark.parametrize("name", ["lenet.prototxt", "lenet_train_test.prototxt"])
def test_lenet_volumes_and_parameters(name):
    spec, s, rows = _rows(name, (1, 28, 28))
    for layer, want in LENET.items():
        assert rows[layer] == want, layer
    assert s.total_params == 431080
    assert spec["output"] == "ip2" and "prob" not in rows  # the deploy net's output Softmax is left out
    if name == "lenet.prototxt":
        assert spec["input_shape"] == [1, 28, 28] and spec["name"] == "LeNet"
    else:  # the Data layers declare no shape; they are noted, as are the TEST-only Accuracy and the loss
        assert "input_shape" not in spec and spec["input"] == "data"
        text = " ".join(spec["notes"])
        assert "data layers (mnist) are not read" in text and "accuracy" in text and "loss" in text


def test_cifar10_quick_legacy_form():
    """cifar10_quick in the V1 form (layers { type: CONVOLUTION ... }): pool1 is MAX 3x3 stride 2,
    rounded up by Caffe: ceil((32 - 3) / 2) + 1 = 16 (torch's floor would give 15); pool2 and
    pool3 (AVE 3/2): ceil(13 / 2) + 1 = 8 and ceil(5 / 2) + 1 = 4. Params (5*5*3 + 1) * 32 = 2,432,
    (5*5*32 + 1) * 32 = 25,632, (5*5*32 + 1) * 64 = 51,264, (1024 + 1) * 64 = 65,600, (64 + 1) * 10 = 650."""
    spec, s, rows = _rows("cifar10_quick_train_test.prototxt", (3, 32, 32))
    want = {"conv1": ((32, 32, 32), 2432), "pool1": ((32, 16, 16), 0), "relu1": ((32, 16, 16), 0),
            "conv2": ((32, 16, 16), 25632), "pool2": ((32, 8, 8), 0), "conv3": ((64, 8, 8), 51264),
            "pool3": ((64, 4, 4), 0), "ip1": ((64,), 65600), "ip2": ((10,), 650)}
    for layer, w in want.items():
        assert rows[layer] == w, layer
    assert s.total_params == 145578
    nodes = {n["name"]: n for n in spec["nodes"]}
    assert nodes["pool2"]["type"] == "AvgPool2d" and nodes["pool2"]["ceil_mode"] is True
    assert nodes["conv1"]["weight_init"] == {"type": "gaussian", "std": 0.0001}
    assert any("blobs_lr / weight_decay" in n for n in spec["notes"])


def test_caffenet_volumes_and_parameters():
    """CaffeNet deploy: 227 -11/4-> 55 -pool 3/2 (ceil((55-3)/2)+1)-> 27 -LRN, conv 5 pad 2 group 2-> 27
    -pool-> 13 -conv 3 pad 1 x3-> 13 -pool-> 6; params 34,944 + 307,456 + 885,120 + 663,936 + 442,624 +
    37,752,832 + 16,781,312 + 4,097,000 = 60,965,224."""
    spec, s, rows = _rows("caffenet_deploy.prototxt", (3, 227, 227))
    want = {"conv1": ((96, 55, 55), 34944), "pool1": ((96, 27, 27), 0), "norm1": ((96, 27, 27), 0),
            "conv2": ((256, 27, 27), 307456), "pool2": ((256, 13, 13), 0), "norm2": ((256, 13, 13), 0),
            "conv3": ((384, 13, 13), 885120), "conv4": ((384, 13, 13), 663936), "conv5": ((256, 13, 13), 442624),
            "pool5": ((256, 6, 6), 0), "fc6": ((4096,), 37752832), "drop6": ((4096,), 0), "fc7": ((4096,), 16781312),
            "fc8": ((1000,), 4097000)}
    for layer, w in want.items():
        assert rows[layer] == w, layer
    assert s.total_params == 60965224
    assert spec["input_shape"] == [3, 227, 227]
    nodes = {n["name"]: n for n in spec["nodes"]}
    assert nodes["conv2"]["groups"] == 2 and nodes["norm1"] == dict(
        nodes["norm1"], type="LocalResponseNorm", size=5, alpha=0.0001, beta=0.75, k=1.0)


def test_summary_command_prints_caffes_volumes():
    env = dict(os.environ, PYCONV_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "pyconv", "summary", "--model",
                        os.path.join(DATA, "cifar10_quick_train_test.prototxt")],
                       capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert '(Caffe prototxt, net "CIFAR10_quick"), input 3x32x32 (CxHxW; the default)' in first
    assert "pool1: MaxPool2d            32x16x16" in r.stdout and "total params: 145,578" in r.stdout
    assert "note: data layers (cifar) are not read" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pyconv", "summary", "--model", os.path.join(DATA, "lenet.prototxt")],
                       capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    assert "input 1x28x28 (CxHxW; declared by the file)" in r.stdout and "total params: 431,080" in r.stdout


# ------------------------------------------------------------------ Caffe's semantics


def _caffe_pool(x, pool, k, s, p, ceil=True):
    """Caffe's PoolingLayer: Reshape's output size and Forward_cpu's loops, transcribed."""
    n, c, h, w = x.shape
    rnd = np.ceil if ceil else np.floor
    ph_ = int(rnd((h + 2 * p - k) / s)) + 1
    pw_ = int(rnd((w + 2 * p - k) / s)) + 1
    if p:
        if (ph_ - 1) * s >= h + p:
            ph_ -= 1
        if (pw_ - 1) * s >= w + p:
            pw_ -= 1
    out = np.zeros((n, c, ph_, pw_))
    for i in range(ph_):
        for j in range(pw_):
            hs, ws = i * s - p, j * s - p
            if pool == "MAX":
                he, we = min(hs + k, h), min(ws + k, w)
                out[:, :, i, j] = x[:, :, max(hs, 0):he, max(ws, 0):we].max(axis=(2, 3))
            else:
                he, we = min(hs + k, h + p), min(ws + k, w + p)
                size = (he - hs) * (we - ws)
                out[:, :, i, j] = x[:, :, max(hs, 0):min(he, h), max(ws, 0):min(we, w)].sum(axis=(2, 3)) / size
    return out


POOLS = [(32, 3, 2, 0), (32, 2, 2, 0), (7, 3, 2, 1), (6, 3, 4, 1), (2, 3, 3, 1), (13, 3, 2, 1), (9, 2, 3, 1),
         (10, 5, 3, 2), (5, 5, 1, 2), (55, 3, 2, 0), (8, 3, 2, 0)]


@pytest.mark.parametrize("size,k,s,p", POOLS)
@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_pooling_is_caffes(pool, size, k, s, p):
    """Output size (CEIL, the last window inside the input or its leading padding) and the AVE
    divisor (the window clipped to the padded input) exactly as Caffe computes them."""
    text = (f'input: "data" input_shape {{ dim: 1 dim: 2 dim: {size} dim: {size} }}\n'
            f'layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool" '
            f'pooling_param {{ pool: {pool} kernel_size: {k} stride: {s} pad: {p} }} }}')
    spec = caffe.translate(text)
    x = np.random.default_rng(size * k + s).standard_normal((2, 2, size, size))
    m = models.build_model(spec, (2, size, size), 10).double()
    np.testing.assert_allclose(m(Tensor(x)).data, _caffe_pool(x, pool, k, s, p), rtol=1e-12, atol=1e-14)


def test_pooling_sizes_known_answers():
    """By hand: ceil((32-3)/2)+1 = 16; with pad 1 on 6, k 3, s 4: ceil(5/4)+1 = 3 but the last window
    would start at 8 >= 6 + 1, so 2; FLOOR mode: floor(29/2)+1 = 15; global pooling: 1x1."""
    def out(size, params):
        text = (f'input: "data" input_dim: 1 input_dim: 1 input_dim: {size} input_dim: {size}\n'
                f'layers {{ name: "p" type: POOLING bottom: "data" top: "p" pooling_param {{ {params} }} }}')
        return models.build_model(caffe.translate(text), (1, size, size), 10)(np.zeros((1, 1, size, size))).shape[2:]

    assert out(32, "pool: MAX kernel_size: 3 stride: 2") == (16, 16)
    assert out(6, "pool: MAX kernel_size: 3 stride: 4 pad: 1") == (2, 2)
    assert out(32, "pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR") == (15, 15)
    assert out(7, "pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1") == (3, 6)
    assert out(9, "pool: AVE global_pooling: true") == (1, 1)
    assert out(9, "pool: MAX global_pooling: true") == (1, 1)


def test_convolution_and_inner_product_parameters():
    """By hand, for a 4x9x9 input: kernel_h 3 kernel_w 1, stride_h 2, pad_w 1, dilation 2, group 2, no
    bias: H = floor((9 - 2*(3-1) - 1)/2) + 1 = 3, W = floor((9 + 2 - 1)/1) + 1 = 11, 6 * (4/2) * 3 * 1 = 36
    weights; an InnerProduct without bias after it: 6*3*11 * 7 = 1,386."""
    text = ('input: "data" input_dim: 1 input_dim: 4 input_dim: 9 input_dim: 9\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 6 '
            'kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_w: 1 dilation: 2 group: 2 bias_term: false } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "c" top: "ip" inner_product_param { num_output: 7 '
            'bias_term: false } }')
    s = summary(models.build_model(caffe.translate(text), (4, 9, 9), 10), (4, 9, 9))
    rows = {r.name: (r.output_shape, r.params) for r in s.rows}
    assert rows["c"] == ((6, 3, 11), 36) and rows["ip"] == ((7,), 1386)


def test_data_layers_are_skipped_with_a_note():
    """ImageData (its size: crop_size, else new_height/new_width), MemoryData and HDF5Data give the input."""
    layer = 'layer {{ name: "d" type: "{}" top: "data" top: "label" {} }}\n'
    relu = 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
    for kind, params, shape in (
            ("ImageData", 'image_data_param { source: "list.txt" new_height: 40 new_width: 30 }', [3, 40, 30]),
            ("ImageData", 'image_data_param { source: "l" is_color: false } transform_param { crop_size: 28 }',
             None),
            ("ImageData", 'image_data_param { source: "l" is_color: false crop_size: 28 }', [1, 28, 28]),
            ("MemoryData", "memory_data_param { batch_size: 4 channels: 2 height: 5 width: 6 }", [2, 5, 6]),
            ("HDF5Data", 'hdf5_data_param { source: "train.txt" batch_size: 10 }', None)):
        spec = caffe.translate(layer.format(kind, params) + relu)
        assert spec.get("input_shape") == shape, kind
        assert spec["input"] == "data" and any("data layers (d) are not read" in n for n in spec["notes"])


def test_lrn_is_caffes_cross_channel_formula():
    """Caffe's CrossChannelForward: scale = k + alpha / size * (sum of squares over the padded
    window), top = bottom * scale^-beta; CaffeNet's norm1 parameters."""
    x = np.random.default_rng(12).standard_normal((2, 9, 3, 3)) * 20
    size, alpha, beta, k = 5, 0.0001, 0.75, 1.0
    pre = (size - 1) // 2
    padded = np.zeros((2, 9 + size - 1, 3, 3))
    padded[:, pre:pre + 9] = x * x
    scale = k + alpha / size * np.stack([padded[:, c:c + size].sum(axis=1) for c in range(9)], axis=1)
    text = ('input: "data" input_dim: 1 input_dim: 9 input_dim: 3 input_dim: 3 layer { name: "n" type: "LRN" '
            'bottom: "data" top: "n" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }')
    m = models.build_model(caffe.translate(text), (9, 3, 3), 10)
    np.testing.assert_allclose(m(x), x * scale ** -beta, rtol=1e-12)


def test_in_place_layers_and_branches_build_the_graph():
    spec = models.spec_for(os.path.join(DATA, "branches.prototxt"))
    nodes = {n["name"]: n for n in spec["nodes"]}
    assert nodes["stem_relu"]["inputs"] == ["stem_scale"]  # in place: each layer replaces the blob "stem"
    assert nodes["residual"]["inputs"] == ["b1x1_relu", "stem_relu"]
    assert nodes["residual"]["coeffs"] == [1.0, 0.5] and nodes["widest"]["operation"] == "max"
    assert nodes["stem_relu"] == dict(nodes["stem_relu"], type="LeakyReLU", negative_slope=0.1)
    assert nodes["stem_bn"]["type"] == "CaffeBatchNorm2d" and nodes["stem_scale"]["bias"] is True
    assert nodes["gap"]["type"] == "AdaptiveAvgPool2d" and spec["output"] == "scores"
    m = models.build_classifier(spec, (1, 8, 8), 10)
    s = summary(m, (1, 8, 8))
    rows = {r.name: (r.output_shape, r.params) for r in s.rows}
    assert rows["block"] == ((16, 8, 8), 0) and rows["pool"] == ((16, 4, 4), 0)  # ceil((8-3)/2)+1 = 4
    assert rows["stem"] == ((8, 8, 8), 80) and rows["stem_scale"] == ((8, 8, 8), 16)
    assert rows["fc"] == ((10,), 2570) and rows["fc_gap"] == ((10,), 170) and s.total_params == 3492


def test_branching_prototxt_trains():
    """A few Adam steps on the digits with the Concat / Eltwise net lower the loss."""
    from pyconv import data, optim

    pyconv.manual_seed(0)
    train, _ = data.load_digits()
    x, y = train.x[:128], train.y[:128]
    m = models.build_classifier(os.path.join(DATA, "branches.prototxt"), (1, 8, 8), 10)
    opt = optim.Adam(m.parameters(), lr=5e-3)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for step in range(12):
        xb, yb = x[(step % 4) * 32:(step % 4 + 1) * 32], y[(step % 4) * 32:(step % 4 + 1) * 32]
        loss = loss_fn(m(Tensor(xb)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses
    m.eval()
    with pyconv.no_grad():
        full = loss_fn(m(Tensor(x)), y).item()
    assert full < losses[0]


def test_prototxt_through_every_cli_command(tmp_path):
    """train, eval and predict with a prototxt (and its checkpoints); --resume rebuilds it too."""
    env = dict(os.environ, PYCONV_NUM_THREADS="1")
    model = os.path.join(DATA, "branches.prototxt")
    run = lambda *a: subprocess.run([sys.executable, "-m", "pyconv", *a], capture_output=True, text=True,  # noqa
                                    env=env, cwd=tmp_path)
    r = run("train", "--model", model, "--epochs", "2", "--train-size", "256", "--test-size", "64", "--quiet",
            "--no-plots", "--out", "run")
    assert r.returncode == 0, r.stderr
    assert "(3,492 parameters)" in r.stdout and "pyconv train: note: training-only layers (loss)" in r.stderr
    r = run("eval", "run/checkpoint.npz")
    assert r.returncode == 0 and "accuracy" in r.stdout, r.stderr
    from PIL import Image

    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(tmp_path / "img.png")
    r = run("predict", "run/best.npz", "img.png")
    assert r.returncode == 0 and "top 3 of 10 classes" in r.stdout, r.stderr
    from pyconv.checkpoint import load_model

    m, meta = load_model(tmp_path / "run" / "checkpoint.npz")
    assert isinstance(m, nn.Graph) and meta["model_spec"]["source"] == "caffe"
    r = run("train", "--model", os.path.join(DATA, "lenet.prototxt"), "--epochs", "1", "--out", "")
    assert r.returncode == 1 and 'layer "conv2" (Convolution), line 33' in r.stderr
    assert "declares an input of 1x28x28 (CxHxW); the digits images are 1x8x8" in r.stderr
    r = run("train", "--model", os.path.join(DATA, "caffenet_deploy.prototxt"), "--epochs", "1", "--out", "")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) <= 4


def test_class_count_mismatch_names_num_output(tmp_path):
    p = tmp_path / "net.prototxt"
    p.write_text('input: "data" input_dim: 1 input_dim: 1 input_dim: 8 input_dim: 8\n'
                 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                 'inner_product_param { num_output: 5 } }\n')
    with pytest.raises(ModelSpecError, match=r'layer "fc" \(InnerProduct\), line 2 gives 5 outputs, but the digits '
                                             r"data set has 10 classes: make the last layer num_output: 10"):
        models.build_classifier(str(p), (1, 8, 8), 10, dataset="digits")


# ------------------------------------------------------------------ errors: one message, layer and line

NET = 'name: "n"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
CONV = 'layer {{\n  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"\n  {}\n}}\n'

ERRORS = [
    # unsupported layer types and parameters
    (NET + 'layer {\n  name: "up" type: "Deconvolution" bottom: "data" top: "up"\n}\n',
     r'line 7: layer "up" \(Deconvolution\): layer type .Deconvolution. is not supported'),
    (NET + CONV.format("convolution_param { num_output: 4 kernel_size: 3 axis: 2 }"),
     r'line 9: layer "conv1" \(Convolution\): convolution_param.axis 2 is not supported'),
    (NET + CONV.format("convolution_param { num_output: 4 kernel_size: 3 kernel_size: 3 kernel_size: 3 }"),
     r"line 9: .*kernel_size has 3 values"),
    (NET + CONV.format("convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: \"bilinear\" } }"),
     r"line 9: .*weight_filler type 'bilinear' is not supported"),
    (NET + CONV.format('convolution_param { num_output: 4 kernel_size: 3 }\n  param { name: "shared" }'),
     r'line 10: layer "conv1" \(Convolution\): param \{ name: .shared. \} shares weights'),
    (NET + CONV.format("convolution_param { num_output: 4 kernel_size: 3 }\n  propagate_down: false"),
     r"line 10: .*propagate_down: false"),
    (NET + 'layer {\n  name: "p" type: "Pooling" bottom: "data" top: "p"\n  pooling_param { pool: STOCHASTIC '
     'kernel_size: 2 }\n}\n', r'line 9: layer "p" \(Pooling\): pooling_param.pool STOCHASTIC is not supported'),
    (NET + 'layer {\n  name: "p" type: "Pooling" bottom: "data" top: "p"\n  pooling_param { pool: MAX '
     'kernel_size: 3 pad: 2 }\n}\n', r"line 9: .*pad 2 with kernel size 3: pyconv's pooling"),
    (NET + 'layer {\n  name: "n" type: "LRN" bottom: "data" top: "n"\n  lrn_param { local_size: 4 }\n}\n',
     r'line 9: layer "n" \(LRN\): lrn_param.local_size 4'),
    (NET + 'layer {\n  name: "s" type: "Scale" bottom: "data" bottom: "data" top: "s"\n}\n',
     r"line 7: .*Scale with a second bottom"),
    (NET + 'layer {\n  name: "l" type: "EuclideanLoss" bottom: "data" bottom: "data" top: "l"\n}\n',
     r"line 7: .*the EuclideanLoss loss is not supported"),
    (NET + 'layer {\n  name: "e" type: "Eltwise" bottom: "data" bottom: "data" top: "e"\n  eltwise_param '
     '{ operation: MAX coeff: 1 coeff: 2 }\n}\n', r"line 9: .*coeff applies to SUM only"),
    (NET + 'layer {\n  name: "c" type: "Concat" bottom: "data" bottom: "data" top: "c"\n  concat_param { axis: 0 }'
     '\n}\n', r"line 9: .*along axis 0"),
    (NET + 'layers {\n  name: "old" type: CONVOLUTION bottom: "data" top: "old"\n  layer { name: "v0" }\n}\n',
     r'line 7: layer "old" \(Convolution\): the V0 form'),
    (NET + CONV.format('convolution_param { num_output: 4 kernel_size: 3 }\n  blobs { data: 1 }'),
     r"line 10: .*holds weights \(blobs\)"),
    # mistakes Caffe itself refuses
    (NET + CONV.format("convolution_param { num_output: 4 kernal_size: 3 }"),
     r"line 9: layer \"conv1\" \(Convolution\): convolution_param.kernal_size: Caffe's ConvolutionParameter has "
     r"no field 'kernal_size' \(did you mean 'kernel_size'\?\)"),
    (NET + CONV.format("convolution_param { kernel_size: 3 }"), r"line 7: .*num_output is required"),
    (NET + CONV.format("convolution_param { num_output: 4 kernel_size: 3 kernel_h: 3 kernel_w: 3 }"),
     r"kernel_size OR kernel_h and kernel_w; not both"),
    (NET + 'layer {\n  name: "r" type: "ReLU" bottom: "dta" top: "r"\n}\n',
     r'line 7: layer "r" \(ReLU\): bottom .dta. is not the top of an earlier layer or an input \(known blobs: data\)'),
    ('layer {\n  name: "r" type: "ReLU" bottom: "data" top: "r"\n}\n', r'line 1: layer "r" \(ReLU\): bottom .data.'),
    (NET + 'layer {\n  name: "r" type: "ReLU" bottom: "data" top: "r"\n  include { phase: TRAIN } exclude { phase: '
     'TEST }\n}\n', r"line 7: .*both include and exclude"),
    (NET + 'layer {\n  name: "r" type: "ReLU" bottom: "data" top: "r" top: "r2"\n}\n', r"line 7: .*has 2 tops"),
    ('name: "n"\ninput: "a"\ninput: "b"\ninput_dim: 1\ninput_dim: 1\ninput_dim: 4\ninput_dim: 4\ninput_dim: 1\n'
     'input_dim: 1\ninput_dim: 4\ninput_dim: 4\nlayer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "e" }\n',
     r"the net reads 2 inputs \(a, b\); pyconv's models take one image"),
]


def _error(text, tmp_path):
    """The one-line message a prototxt of ``text`` is refused with (it starts with the file's name)."""
    p = tmp_path / "net.prototxt"
    p.write_text(text)
    with pytest.raises(ModelSpecError) as info:
        models.spec_for(str(p))
    msg = str(info.value)
    assert msg.startswith(f"{p}: ") and "\n" not in msg
    return msg


@pytest.mark.parametrize("text,match", ERRORS)
def test_unsupported_and_invalid_nets_are_listed_with_layer_and_line(text, match, tmp_path):
    msg = _error(text, tmp_path)
    assert re.search(match, msg), msg


def test_all_problems_are_listed_at_once(tmp_path):
    msg = _error(NET + 'layer {\n  name: "a" type: "Crop" bottom: "data" top: "a"\n}\n'
                 'layer {\n  name: "b" type: "PReLU" bottom: "data" top: "b"\n}\n'
                 + CONV.format("convolution_param { num_output: 4 kernel_size: 3 dilation: 2 engine: CUDNN "
                               "force_nd_im2col: true }"), tmp_path)
    assert "2 things pyconv cannot load" in msg and 'line 7: layer "a" (Crop)' in msg
    assert 'line 10: layer "b" (PReLU)' in msg and "conv1" not in msg  # dilation and engine are fine


MALFORMED = [
    ('layer {\n  name: "c" type: "ReLU"\n  bottom: "data" top "c"\n}\n',
     r"line 3, column 22: expected ':' or '\{' after the field name 'top'"),
    ('layer {\n  name: "c" type: "ReLU" bottom: "data" top: "c"\n', r"line 3, column 1: the message opened at line 1 "
                                                                     r"is not closed"),
    ('layer {\n  name: "c\n}\n', r"line 2, column 9: a string that does not end on its line"),
    ('layer {\n  name: "c" type: "Convolution"\n  convolution_param { num_output: 2.5 }\n}\n',
     r'line 3, column 35 \(in layer "c"\): num_output: expected an integer, got 2.5'),
    ('layer {\n  name: "c" type: "Pooling"\n  pooling_param { pool: MIN }\n}\n',
     r"line 3, column 25 \(in layer \"c\"\): pool: MIN is not one of MAX, AVE, STOCHASTIC"),
    ('layer {\n  name: "c" type: "ReLU" relu_param { negative_slope: 0.1 negative_slope: 0.2 }\n}\n',
     r"line 2, column 59 .*negative_slope is given more than once"),
    ('layer {\n  name: "c" type: "ReLU" bottom: 3\n}\n', r"line 2, column 34 .*bottom: expected a quoted string"),
    ('layer {\n  name: "c" type: "ReLU" } }\n', r"line 2, column 28: expected a field name"),
    ('layer {\n  name: "c" @\n}\n', r"line 2, column 13: unexpected character '@'"),
    ('base_lr: 0.01\nnet: "train_val.prototxt"\n', r"this is a Caffe solver prototxt"),
    ('# nothing but a comment\n', r"no layer \{ \}"),
]


@pytest.mark.parametrize("text,match", MALFORMED)
def test_malformed_files_name_the_line(text, match, tmp_path):
    msg = _error(text, tmp_path)
    assert re.search(match, msg), msg


def test_cli_reports_a_bad_prototxt_in_one_line(tmp_path):
    p = tmp_path / "net.prototxt"
    p.write_text(ERRORS[0][0])
    for cmd in (["summary", "--model", str(p)], ["train", "--model", str(p), "--out", ""]):
        r = subprocess.run([sys.executable, "-m", "pyconv", *cmd], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert 'layer "up" (Deconvolution)' in r.stderr


def test_text_format_details():
    """protobuf's text format as Caffe writes it: colon before a brace, <...>, lists, comments,
    separators, concatenated strings with escapes, hex and float forms, numeric enum values."""
    text = ('name: "a" \'b\\x41\'  # comment\ninput: "data"; input_shape: < dim: [1, 0x3, 8, 8] >\n'
            'layer: { name: "p" type: "Pooling" bottom: "data" top: "p", pooling_param { pool: 1 kernel_size: 2 '
            'stride: 2 } }\nlayer { name: "r" type: "ReLU" bottom: "p" top: "p" relu_param { negative_slope: 1e-1f } }')
    spec = caffe.translate(text)
    assert spec["name"] == "abA" and spec["input_shape"] == [3, 8, 8]
    assert [n["type"] for n in spec["nodes"]] == ["AvgPool2d", "LeakyReLU"]
    assert spec["nodes"][1]["negative_slope"] == pytest.approx(0.1)
