"""The layers the Caffe and ConvNetJS model files need (pyconv.ops, nn.LocalResponseNorm, Sigmoid,
Tanh, LeakyReLU, Softmax, Maxout, Scale, CaffeBatchNorm2d, AdaptiveMaxPool2d) and nn.Graph:
forward against torch where it has the op, backward by float64 finite differences, and Graph's
state_dict, modes, repr, errors and checkpoint round trips."""
import os

import numpy as np
import pytest

import pyconv
from pyconv import models, nn, ops
from pyconv.checkpoint import load_model, save_checkpoint
from pyconv.tensor import Tensor

try:
    import torch
except ImportError:  # pragma: no cover - torch is optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not importable")


def _numeric_grad(f, x, g, eps=1e-6):
    """d(sum(f(x) * g))/dx by central differences (float64)."""
    out = np.zeros_like(x)
    flat, gflat = x.reshape(-1), out.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = float((f(x) * g).sum())
        flat[i] = old - eps
        lo = float((f(x) * g).sum())
        flat[i] = old
        gflat[i] = (hi - lo) / (2 * eps)
    return out


def _check_grad(f_tensor, x, rtol=1e-6, atol=1e-8, seed=0):
    """Autograd's gradient of f against finite differences, with a random output gradient."""
    rng = np.random.default_rng(seed)
    t = Tensor(x.copy(), requires_grad=True)
    y = f_tensor(t)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    num = _numeric_grad(lambda a: f_tensor(Tensor(a)).data, x.copy(), g)
    np.testing.assert_allclose(t.grad, num, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ local response normalisation

LRN_CASES = [(1, 1e-4, 0.75, 1.0), (2, 0.3, 0.75, 2.0), (3, 1.0, 0.5, 1.0), (5, 1e-4, 0.75, 1.0), (5, 2.0, 1.5, 0.5),
             (6, 0.5, 0.75, 1.0), (9, 0.1, 0.75, 2.0)]


@needs_torch
@pytest.mark.parametrize("size,alpha,beta,k", LRN_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_response_norm_matches_torch(size, alpha, beta, k, dtype):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 7, 5, 4)).astype(dtype) * 2
    g = rng.standard_normal(x.shape).astype(dtype)
    m = nn.LocalResponseNorm(size, alpha, beta, k)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.LocalResponseNorm(size, alpha, beta, k)(tx)
    ty.backward(torch.tensor(g))
    px = Tensor(x, requires_grad=True)
    py = m(px)
    py.backward(g)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert py.dtype == dtype and px.grad.dtype == dtype
    np.testing.assert_allclose(py.data, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(px.grad, tx.grad.numpy(), rtol=10 * tol, atol=10 * tol)
    # 3-D (N, C, L) inputs too, as torch
    x3 = x[:, :, 0]
    np.testing.assert_allclose(ops.local_response_norm(x3, size, alpha, beta, k),
                               torch.nn.functional.local_response_norm(torch.tensor(x3), size, alpha, beta, k).numpy(),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("size,alpha,beta,k", LRN_CASES)
def test_local_response_norm_gradient_by_finite_differences(size, alpha, beta, k):
    x = np.random.default_rng(3).standard_normal((2, 6, 3, 2))
    _check_grad(lambda t: ops.local_response_norm(t, size, alpha, beta, k), x)


def test_local_response_norm_is_alexnets_formula():
    """b_c = a_c / (k + alpha/n * sum_{j = c - n/2}^{c + n/2} a_j^2)^beta, written out for n = 5."""
    x = np.random.default_rng(4).standard_normal((1, 8, 2, 2))
    n, alpha, beta, k = 5, 1e-2, 0.75, 2.0
    want = np.empty_like(x)
    for c in range(8):
        s = sum(x[:, j] ** 2 for j in range(max(0, c - 2), min(8, c + 3)))
        want[:, c] = x[:, c] / (k + alpha / n * s) ** beta
    np.testing.assert_allclose(nn.LocalResponseNorm(n, alpha, beta, k)(x), want, rtol=1e-13)


def test_local_response_norm_within_channel():
    """Caffe's WITHIN_CHANNEL: (1 + alpha/n^2 * sum over the n x n window of a^2)^-beta, zero padded."""
    x = np.random.default_rng(5).standard_normal((2, 3, 5, 6))
    n, alpha, beta = 3, 0.5, 0.75
    pad = np.pad(x ** 2, ((0, 0), (0, 0), (1, 1), (1, 1)))
    s = sum(pad[:, :, i:i + 5, j:j + 6] for i in range(3) for j in range(3))
    want = x * (1 + alpha / 9 * s) ** -beta
    m = nn.LocalResponseNorm(n, alpha, beta, 1.0, region="within_channel")
    np.testing.assert_allclose(m(x), want, rtol=1e-13)
    _check_grad(m, x[:1, :2])


def test_local_response_norm_argument_errors():
    with pytest.raises(ValueError, match="size must be a positive int"):
        nn.LocalResponseNorm(0)
    with pytest.raises(ValueError, match="beta must be a finite number"):
        nn.LocalResponseNorm(3, beta=float("nan"))
    with pytest.raises(ValueError, match="region must be one of"):
        nn.LocalResponseNorm(3, region="across")
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        ops.local_response_norm(np.zeros((2, 3)), 3)
    with pytest.raises(TypeError, match="floating-point"):
        ops.local_response_norm(np.zeros((1, 2, 3), np.int32), 3)


# ------------------------------------------------------------------ activations, joins, pooling


@needs_torch
def test_activations_match_torch():
    x = np.random.default_rng(6).standard_normal((3, 5, 4)) * 30  # large values: no overflow
    tx = torch.tensor(x)
    np.testing.assert_allclose(ops.sigmoid(x), torch.sigmoid(tx).numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(ops.tanh(x), torch.tanh(tx).numpy(), rtol=1e-12)
    np.testing.assert_allclose(ops.leaky_relu(x, 0.2), torch.nn.functional.leaky_relu(tx, 0.2).numpy())
    for dim in (0, 1, -1):
        np.testing.assert_allclose(ops.softmax(x, dim), torch.softmax(tx, dim).numpy(), rtol=1e-12)
    parts = [x[:, :2], x[:, 2:3], x[:, 3:]]
    np.testing.assert_array_equal(ops.cat(parts, 1), torch.cat([torch.tensor(p) for p in parts], 1).numpy())
    for size in (1, (2, 3), (None, 2)):
        np.testing.assert_array_equal(ops.adaptive_max_pool2d(x[None], size),
                                      torch.nn.functional.adaptive_max_pool2d(tx[None], size).numpy())


@pytest.mark.parametrize("fn", [
    ops.sigmoid, ops.tanh, lambda t: ops.leaky_relu(t, 0.1), lambda t: ops.softmax(t, 1),
    lambda t: ops.maxout(t, 2), lambda t: ops.maxout(t, 3), lambda t: ops.adaptive_max_pool2d(t, (2, 3)),
    lambda t: ops.cat([t, t * 2, t[:, :1]], 1), lambda t: ops.eltwise_max([t, -t, t * 0.5]),
], ids=["sigmoid", "tanh", "leaky_relu", "softmax", "maxout2", "maxout3", "adaptive_max", "cat", "eltwise_max"])
def test_op_gradients_by_finite_differences(fn):
    x = np.random.default_rng(7).standard_normal((2, 5, 3, 4))
    _check_grad(fn, x)


def test_maxout_is_convnetjs():
    """ConvNetJS's maxout: out depth floor(D / group_size), the max of each group of consecutive channels."""
    x = np.arange(2 * 7 * 2 * 2, dtype=np.float64).reshape(2, 7, 2, 2) % 5
    y = nn.Maxout(3)(x)
    assert y.shape == (2, 2, 2, 2)  # 7 // 3 = 2; the 7th channel is dropped
    np.testing.assert_array_equal(y[:, 0], x[:, 0:3].max(axis=1))
    np.testing.assert_array_equal(y[:, 1], x[:, 3:6].max(axis=1))
    assert nn.Maxout(2)(np.ones((4, 6))).shape == (4, 3)  # after an fc layer


def test_eltwise_max_follows_caffes_tie_rule():
    """Caffe: of the first two the first wins only when strictly greater; later ones when greater
    than the maximum so far. The gradient goes to the winner."""
    a, b, c = (Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True) for _ in range(3))
    b.data[:] = [1.0, 1.0, 3.0]
    c.data[:] = [1.0, 5.0, 3.0]
    y = ops.eltwise_max([a, b, c])
    y.backward(np.array([10.0, 20.0, 30.0]))
    np.testing.assert_array_equal(y.data, [1, 5, 3])
    np.testing.assert_array_equal(a.grad, [0, 0, 0])   # ties with b go to b
    np.testing.assert_array_equal(b.grad, [10, 0, 30])
    np.testing.assert_array_equal(c.grad, [0, 20, 0])  # ties with the maximum so far stay


def test_eltwise_and_concat_modules():
    x, y = np.full((1, 2, 2, 2), 2.0), np.full((1, 2, 2, 2), 3.0)
    np.testing.assert_array_equal(nn.Eltwise("sum", [1, -0.5])(x, y), x - 0.5 * y)
    np.testing.assert_array_equal(nn.Eltwise("prod")(x, y, y), x * y * y)
    assert nn.Concat(1)(x, y, x).shape == (1, 6, 2, 2)
    assert nn.Concat(1).output_shape((2, 2, 2), (3, 2, 2)) == (5, 2, 2)
    with pytest.raises(ValueError, match="coeffs apply to operation='sum' only"):
        nn.Eltwise("max", [1, 1])
    with pytest.raises(ValueError, match="shapes must be equal"):
        nn.Eltwise().output_shape((2, 2, 2), (2, 2, 3))
    with pytest.raises(ValueError, match="does not match input 0"):
        nn.Concat(1).output_shape((2, 2, 2), (2, 3, 2))


def test_scale_and_caffe_batch_norm():
    rng = np.random.default_rng(8)
    s = nn.Scale(3, bias=True)
    assert [k for k in s.state_dict()] == ["weight", "bias"] and s.num_parameters() == 6
    s.weight.data[:] = [1, 2, 3]
    s.bias.data[:] = [0, 1, 0]
    x = rng.standard_normal((2, 3, 2, 2))
    np.testing.assert_allclose(s(x), x * np.array([1, 2, 3])[:, None, None] + np.array([0, 1, 0])[:, None, None])
    _check_grad(lambda t: nn.Scale(3, bias=True)(t) * 1.5, x)

    # Caffe's moving average: S_t = mean_t + f * S_{t-1}, divided by the weights' sum F_t = 1 + f * F_{t-1}
    bn, f = nn.CaffeBatchNorm2d(3, moving_average_fraction=0.9, dtype=np.float64), 0.9
    assert bn.num_parameters() == 0
    acc_m, acc_v, weight = np.zeros(3), np.zeros(3), 0.0
    for step in range(4):
        xb = rng.standard_normal((4, 3, 2, 2)) * (step + 1) + step
        y = bn(Tensor(xb))
        m = xb.mean(axis=(0, 2, 3))
        v = xb.var(axis=(0, 2, 3))
        np.testing.assert_allclose(y.data, (xb - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5), rtol=1e-12)
        acc_m, acc_v, weight = m + f * acc_m, v * 16 / 15 + f * acc_v, 1 + f * weight
    np.testing.assert_allclose(bn.running_mean, acc_m / weight, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, acc_v / weight, rtol=1e-12)
    bn.eval()
    np.testing.assert_allclose(bn(xb), (xb - (acc_m / weight)[:, None, None]) /
                               np.sqrt((acc_v / weight)[:, None, None] + 1e-5), rtol=1e-12)
    frozen = nn.CaffeBatchNorm2d(3, use_global_stats=True, dtype=np.float64)  # the stored statistics even in training
    np.testing.assert_allclose(frozen(xb), xb / np.sqrt(1 + 1e-5), rtol=1e-12)
    assert frozen.num_batches_tracked == 0


# ------------------------------------------------------------------ nn.Graph


def _branchy():
    pyconv.manual_seed(0)
    return nn.Graph([
        ("conv1", nn.Conv2d(1, 4, 3, padding=1), "x"),
        ("bn", nn.BatchNorm2d(4), "conv1"),
        ("relu", nn.ReLU(), "bn"),
        ("side", nn.Conv2d(1, 4, 1), "x"),
        ("sum", nn.Eltwise("sum", [1.0, 0.5]), ["relu", "side"]),
        ("cat", nn.Concat(1), ["sum", "side"]),
        ("drop", nn.Dropout(0.5), "cat"),
        ("flat", nn.Flatten(), "drop"),
        ("fc", nn.Linear(8 * 4 * 4, 3), "flat"),
    ], inputs="x", output="fc")


def test_graph_runs_in_topological_order_with_autograd():
    g = _branchy()
    assert list(g.state_dict())[:3] == ["conv1.weight", "conv1.bias", "bn.weight"]
    assert g.num_parameters() == 4 * 9 + 4 + 8 + 4 * 1 + 4 + 8 * 16 * 3 + 3
    assert g.node_inputs("sum") == ["relu", "side"] and g["fc"].out_features == 3
    x = np.random.default_rng(9).standard_normal((5, 1, 4, 4)).astype(np.float32)
    g.eval()
    assert not g["drop"].training and not g["bn"].training
    y = g(Tensor(x))
    # the same computation written out
    c1 = g["conv1"](x)
    r = nn.ReLU()(g["bn"](c1))
    side = g["side"](x)
    want = g["fc"](np.concatenate([r + 0.5 * side, side], 1).reshape(5, -1))
    np.testing.assert_allclose(y.data, want, rtol=1e-5, atol=1e-6)
    g.train()
    loss = nn.CrossEntropyLoss()(g(Tensor(x)), np.array([0, 1, 2, 0, 1]))
    loss.backward()
    assert all(p.grad is not None for p in g.parameters())  # every branch got a gradient


def test_graph_repr_and_order():
    g = nn.Graph([("b", nn.ReLU(), "a"), ("a", nn.Sigmoid(), "in")], inputs="in")  # listed out of order
    assert g.order == ("a", "b") and g.output == "b"
    text = repr(g)
    assert text.splitlines()[0] == "Graph(inputs=in" and "(b): ReLU() <- a" in text and "output: b" in text
    two = nn.Graph([("s", nn.Sigmoid(), "in"), ("t", nn.Tanh(), "in")], inputs="in", output=["s", "t"])
    ys = two(np.zeros((1, 2)))
    assert isinstance(ys, tuple) and ys[0][0, 0] == 0.5 and ys[1][0, 0] == 0


@pytest.mark.parametrize("nodes,kw,match", [
    ([("a", nn.ReLU(), "b"), ("b", nn.ReLU(), "a")], {}, "form a cycle"),
    ([("a", nn.ReLU(), "nope")], {}, "reads 'nope', which is neither a node nor an input"),
    ([("a", nn.ReLU(), "input"), ("a", nn.ReLU(), "input")], {}, "used twice"),
    ([("input", nn.ReLU(), "input")], {}, "used twice"),
    ([("a.b", nn.ReLU(), "input")], {}, "without '.'"),
    ([("a", np.zeros(3), "input")], {}, "not a Module"),
    ([("a", nn.ReLU(), "input")], {"output": "z"}, "output 'z' is not a node"),
    ([], {}, "at least one node"),
])
def test_graph_errors(nodes, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nn.Graph(nodes, **kw)


def test_graph_checkpoint_round_trip(tmp_path):
    """A Graph built in Python is saved as its node table (no pickled code) and rebuilt by load_model."""
    g = _branchy()
    opt = pyconv.optim.Adam(g.parameters())
    x = np.random.default_rng(10).standard_normal((2, 1, 4, 4)).astype(np.float32)
    g(Tensor(x))  # BatchNorm statistics move
    path = tmp_path / "g.npz"
    save_checkpoint(path, g, opt, input_shape=(1, 4, 4))
    h, meta = load_model(path)
    assert isinstance(h, nn.Graph) and meta["num_classes"] == 3
    assert meta["model_spec"]["input"] == "x" and meta["model_spec"]["output"] == "fc"
    assert [n["name"] for n in meta["model_spec"]["nodes"]] == list(g.order)
    g.eval()
    np.testing.assert_array_equal(h(Tensor(x)).data, g(Tensor(x)).data)
    assert repr(h) == repr(g)


def test_graph_spec_file_and_layer_list_checks(tmp_path):
    """pyconv's own graph files: nodes with inputs (default: the node before), Flatten inserted
    before a Linear that reads a volume; mistakes name the node."""
    spec = {"input": "data", "nodes": [
        {"name": "c", "type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"name": "r", "type": "ReLU"},
        {"name": "s", "type": "Conv2d", "inputs": "data", "out_channels": 4, "kernel_size": 1},
        {"name": "cat", "type": "Concat", "inputs": ["r", "s"]},
        {"name": "lrn", "type": "LocalResponseNorm", "size": 3},
        {"name": "fc", "type": "Linear", "out_features": "classes"}]}
    p = tmp_path / "g.json"
    import json

    p.write_text(json.dumps(spec))
    m = models.build_classifier(str(p), (2, 5, 5), 7)
    assert m.order == ("c", "r", "s", "cat", "lrn", "fc_flatten", "fc") and m["fc"].in_features == 8 * 25
    bad = dict(spec, nodes=spec["nodes"][:3] + [{"name": "cat", "type": "Concat", "inputs": ["r", "later"]}])
    with pytest.raises(models.ModelSpecError, match="node 'cat': reads 'later', which no node is named"):
        models.build_model(bad, (2, 5, 5), 7)
    bad = dict(spec, nodes=[{"name": "e", "type": "Eltwise", "inputs": ["data", "data"], "operation": "min"}])
    with pytest.raises(models.ModelSpecError, match=r"node 'e': Eltwise: operation must be one of"):
        models.build_model(bad, (2, 5, 5), 7)
    with pytest.raises(models.ModelSpecError, match=r"layer 1 \(Concat\): Concat joins several inputs"):
        models.build_model([{"type": "ReLU"}, {"type": "Concat"}], (2, 5, 5), 7)
    with pytest.raises(models.ModelSpecError, match="ends in a 8x5x5 volume"):
        models.build_classifier(dict(spec, output="cat"), (2, 5, 5), 7)


def test_new_layer_types_in_layer_lists_round_trip(tmp_path):
    """Sequential models of the new layers are described by save_checkpoint and rebuilt."""
    layers = [{"type": "Conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1}, {"type": "LeakyReLU",
              "negative_slope": 0.2}, {"type": "LocalResponseNorm", "size": 3, "alpha": 0.01}, {"type": "Maxout"},
              {"type": "Sigmoid"}, {"type": "AdaptiveMaxPool2d", "output_size": 2}, {"type": "Tanh"},
              {"type": "Scale", "bias": True}, {"type": "Linear", "out_features": "classes"}, {"type": "Softmax",
                                                                                            "dim": 1}]
    m = models.build_model(layers, (1, 4, 4), 5)
    assert [type(x).__name__ for x in m][-3:] == ["Flatten", "Linear", "Softmax"]
    path = tmp_path / "s.npz"
    save_checkpoint(path, m, input_shape=(1, 4, 4))
    m2, meta = load_model(path)
    x = np.random.default_rng(11).standard_normal((2, 1, 4, 4)).astype(np.float32)
    m.eval()
    np.testing.assert_array_equal(m2(x), m(x))
    kinds = [entry["type"] for entry in meta["model_spec"]]
    assert "LocalResponseNorm" in kinds and "Maxout" in kinds and "Scale" in kinds


def test_fillers():
    from pyconv.nn.fillers import check_filler, fill_

    pyconv.manual_seed(1)
    w = nn.Parameter(np.zeros((64, 32, 3, 3), np.float32))
    fill_(w, {"type": "xavier"})  # U(+-sqrt(3 / fan_in)), fan_in = 32 * 9
    bound = np.sqrt(3 / 288)
    assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.95 * bound
    fill_(w, {"type": "msra", "variance_norm": "FAN_OUT"})  # N(0, 2 / fan_out), fan_out = 64 * 9
    assert abs(w.data.std() - np.sqrt(2 / 576)) < 0.05 * np.sqrt(2 / 576)
    fill_(w, {"type": "lecun"})  # ConvNetJS: N(0, 1 / fan_in)
    assert abs(w.data.std() - np.sqrt(1 / 288)) < 0.05 * np.sqrt(1 / 288)
    fill_(w, {"type": "constant", "value": 0.1})
    assert (w.data == np.float32(0.1)).all()
    with pytest.raises(ValueError, match="unknown filler type 'bilinear'"):
        check_filler({"type": "bilinear"})
    with pytest.raises(ValueError, match="filler 'constant' has no field"):
        check_filler({"type": "constant", "std": 1})


def test_readme_graph_examples(tmp_path):
    """The README's graph table and its nn.Graph equivalent build the same net."""
    import json
    import re

    text = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md"),
                encoding="utf-8").read()
    (table,) = [b for b in re.findall(r"```json\n(.*?)```", text, re.S) if '"nodes"' in b]
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "nn.Graph(" in b]
    from_file = models.build_classifier(json.loads(table), (3, 32, 32), 10)
    scope = {"nn": nn}
    exec(code, scope)
    g = scope["g"]
    assert {k: v.shape for k, v in g.state_dict().items()} == {
        k: v.shape for k, v in from_file.state_dict().items() if not k.startswith("fc_flatten")}
    assert g(Tensor(np.zeros((2, 3, 32, 32), np.float32))).shape == (2, 10)
