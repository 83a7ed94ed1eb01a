"""pyconv.nn: Module API, state_dict, repr (== torch's), initialisation, Dropout, BatchNorm2d,
Sequential, construction errors, float64."""

import io

import numpy as np
import pytest

pyconv = pytest.importorskip("pyconv")
import pyconv.nn as nn  # noqa: E402
from pyconv.random import manual_seed  # noqa: E402
from pyconv.tensor import Tensor  # noqa: E402


def rand(shape, seed=0, lo=-1.0, hi=1.0, dtype=np.float32):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(dtype)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(np.ones(1, np.float32))
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(2 * 3 * 3, 3)
        self.flatten = nn.Flatten()

    def forward(self, x):
        return self.head(self.flatten(self.features(x))) * self.scale


# --------------------------------------------------------------------------- Module API


def test_parameters_order_and_names_sequential():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3, bias=False), nn.Flatten(), nn.Linear(8, 3))
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "4.weight", "4.bias"]
    params = list(m.parameters())
    assert len(params) == 5
    assert params[0] is m[0].weight and params[2] is m[2].weight and params[4] is m[4].bias
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in params)


def test_named_parameters_nested_module():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
                     "head.weight", "head.bias"]
    assert [n for n, _ in net.named_parameters(recurse=False)] == ["scale"]


def test_shared_parameter_listed_once():
    lin = nn.Linear(3, 3)
    m = nn.Sequential(lin, nn.ReLU(), lin)
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias"]


def test_children_and_modules():
    net = Net()
    assert list(net.children()) == [net.features, net.head, net.flatten]
    assert [n for n, _ in net.named_children()] == ["features", "head", "flatten"]
    mods = list(net.modules())
    assert mods[0] is net
    assert mods[1:] == [net.features, net.features[0], net.features[1], net.features[2], net.features[3],
                        net.head, net.flatten]
    assert [n for n, _ in net.named_modules()] == ["", "features", "features.0", "features.1", "features.2",
                                                    "features.3", "head", "flatten"]


def test_train_eval_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert net.train() is net
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not any(m.training for m in net.modules())


def test_zero_grad():
    net = Net()
    out = net(rand((2, 1, 8, 8), 1))
    nn.CrossEntropyLoss()(out, np.array([0, 2])).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_num_parameters_lecture_formula():
    # (F*F*C + 1) * K
    assert nn.Conv2d(3, 10, 5).num_parameters() == (5 * 5 * 3 + 1) * 10
    assert nn.Conv2d(4, 8, 3, groups=2, bias=False).num_parameters() == 3 * 3 * 2 * 8
    assert nn.Linear(7, 3).num_parameters() == 7 * 3 + 3


def test_parameter_is_a_copying_tensor_that_requires_grad():
    a = np.ones(3, np.float32)
    p = nn.Parameter(a)
    assert isinstance(p, Tensor) and p.requires_grad and p.is_leaf
    p.data[0] = 5
    assert a[0] == 1
    assert repr(p).startswith("Parameter containing:")
    assert not nn.Parameter(a, requires_grad=False).requires_grad


def test_setattr_registers_and_reassigns():
    m = nn.Module()
    m.w = nn.Parameter(np.zeros(2, np.float32))
    m.sub = nn.Linear(2, 2)
    assert [n for n, _ in m.named_parameters()] == ["w", "sub.weight", "sub.bias"]
    m.w = nn.Parameter(np.ones(3, np.float32))
    assert m.w.shape == (3,)
    del m.sub
    assert [n for n, _ in m.named_parameters()] == ["w"]
    with pytest.raises(AttributeError):
        m.nothing


# --------------------------------------------------------------------------- state_dict


def test_state_dict_keys_and_buffers():
    net = Net()
    sd = net.state_dict()
    assert set(sd) == {"scale", "features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
                       "features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked",
                       "head.weight", "head.bias"}
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    np.testing.assert_array_equal(sd["features.1.running_mean"], np.zeros(2))
    np.testing.assert_array_equal(sd["features.1.running_var"], np.ones(2))
    assert sd["features.1.num_batches_tracked"].shape == () and sd["features.1.num_batches_tracked"] == 0
    assert sd["features.1.num_batches_tracked"].dtype == np.int64
    assert sd["features.0.weight"].dtype == np.float32


def test_state_dict_is_a_snapshot():
    lin = nn.Linear(2, 2)
    sd = lin.state_dict()
    sd["weight"][...] = 42
    assert not (lin.weight.data == 42).any()


def test_state_dict_without_running_stats_or_affine():
    bn = nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    assert dict(bn.state_dict()) == {}
    assert list(bn.parameters()) == []
    bn2 = nn.BatchNorm2d(3, affine=False)
    assert list(bn2.state_dict()) == ["running_mean", "running_var", "num_batches_tracked"]


def test_load_state_dict_round_trip():
    manual_seed(10)
    a = Net()
    x = rand((4, 1, 8, 8), 2)
    a(x)  # moves BatchNorm running statistics and num_batches_tracked
    a(x * 2)
    manual_seed(11)
    b = Net()
    # go through an .npz file as a user would
    buf = io.BytesIO()
    np.savez(buf, **a.state_dict())
    buf.seek(0)
    b.load_state_dict(dict(np.load(buf)))
    for (ka, va), (kb, vb) in zip(sorted(a.state_dict().items()), sorted(b.state_dict().items())):
        assert ka == kb
        np.testing.assert_array_equal(va, vb, err_msg=ka)
        assert va.dtype == vb.dtype, ka
    assert int(b.state_dict()["features.1.num_batches_tracked"]) == 2
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)
    a.train(), b.train()
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_keeps_parameter_objects():
    lin = nn.Linear(2, 3)
    w = lin.weight
    lin.load_state_dict({"weight": np.ones((3, 2), np.float32), "bias": np.zeros(3, np.float32)})
    assert lin.weight is w
    np.testing.assert_array_equal(lin.weight.data, np.ones((3, 2)))


def test_load_state_dict_shape_mismatch_names_key_and_shapes():
    net = Net()
    sd = net.state_dict()
    sd["head.weight"] = np.zeros((4, 18), np.float32)
    with pytest.raises(ValueError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    assert "head.weight" in msg and "(3, 18)" in msg and "(4, 18)" in msg


def test_load_state_dict_buffer_shape_mismatch():
    net = Net()
    sd = net.state_dict()
    sd["features.1.running_var"] = np.ones(5, np.float32)
    with pytest.raises(ValueError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    assert "features.1.running_var" in msg and "(2,)" in msg and "(5,)" in msg


def test_load_state_dict_missing_key():
    net = Net()
    sd = net.state_dict()
    del sd["features.0.bias"]
    with pytest.raises(ValueError, match=r"features\.0\.bias"):
        net.load_state_dict(sd)


def test_load_state_dict_missing_buffer_key():
    net = Net()
    sd = net.state_dict()
    del sd["features.1.running_mean"]
    with pytest.raises(ValueError, match=r"features\.1\.running_mean"):
        net.load_state_dict(sd)


def test_load_state_dict_unexpected_key():
    net = Net()
    sd = net.state_dict()
    sd["head.extra"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"head\.extra"):
        net.load_state_dict(sd)


def test_load_state_dict_non_strict_ignores_extra_and_missing():
    lin = nn.Linear(2, 3)
    lin.load_state_dict({"weight": np.ones((3, 2), np.float32), "junk": np.zeros(1)}, strict=False)
    np.testing.assert_array_equal(lin.weight.data, np.ones((3, 2)))


# --------------------------------------------------------------------------- repr == torch's

REPR_CASES = {
    "conv": lambda m: m.Conv2d(3, 8, 3),
    "conv_rect_stride_pad": lambda m: m.Conv2d(3, 8, (3, 5), stride=2, padding=1),
    "conv_tuple_args": lambda m: m.Conv2d(3, 8, (1, 3), stride=(1, 2), padding=(0, 1)),
    "conv_nobias": lambda m: m.Conv2d(3, 8, 3, bias=False),
    "conv_dil_groups_reflect": lambda m: m.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2, padding_mode="reflect"),
    "conv_depthwise_circular": lambda m: m.Conv2d(4, 4, 3, padding=1, groups=4, padding_mode="circular",
                                                  bias=False),
    "conv_replicate": lambda m: m.Conv2d(2, 2, 3, padding=(1, 0), padding_mode="replicate"),
    "conv_same": lambda m: m.Conv2d(3, 8, 3, padding="same"),
    "conv_valid": lambda m: m.Conv2d(3, 8, 3, padding="valid"),
    "conv_dilation_only": lambda m: m.Conv2d(3, 8, 3, dilation=(2, 1)),
    "linear": lambda m: m.Linear(10, 5),
    "linear_nobias": lambda m: m.Linear(10, 5, bias=False),
    "maxpool": lambda m: m.MaxPool2d(2),
    "maxpool_full": lambda m: m.MaxPool2d(3, 2, 1),
    "maxpool_tuple": lambda m: m.MaxPool2d((2, 3), stride=(1, 2), dilation=2, ceil_mode=True),
    "avgpool": lambda m: m.AvgPool2d(2),
    "avgpool_full": lambda m: m.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
    "avgpool_divisor": lambda m: m.AvgPool2d((2, 2), divisor_override=3),
    "adaptive": lambda m: m.AdaptiveAvgPool2d(1),
    "adaptive_tuple": lambda m: m.AdaptiveAvgPool2d((2, 3)),
    "relu": lambda m: m.ReLU(),
    "relu_inplace": lambda m: m.ReLU(inplace=True),
    "flatten": lambda m: m.Flatten(),
    "flatten_args": lambda m: m.Flatten(0, 2),
    "dropout": lambda m: m.Dropout(),
    "dropout_p": lambda m: m.Dropout(0.25),
    "dropout_inplace": lambda m: m.Dropout(p=0.1, inplace=True),
    "bn": lambda m: m.BatchNorm2d(16),
    "bn_args": lambda m: m.BatchNorm2d(8, eps=1e-3, momentum=0.01),
    "bn_no_affine": lambda m: m.BatchNorm2d(4, affine=False),
    "bn_no_track": lambda m: m.BatchNorm2d(4, track_running_stats=False),
    "bn_cma": lambda m: m.BatchNorm2d(4, momentum=None),
    "ce": lambda m: m.CrossEntropyLoss(),
    "sequential_empty": lambda m: m.Sequential(),
    "sequential_nested": lambda m: m.Sequential(
        m.Conv2d(3, 8, 3, padding=1), m.BatchNorm2d(8), m.ReLU(),
        m.Sequential(m.MaxPool2d(2), m.Sequential(m.Dropout(0.2), m.Flatten())),
        m.Linear(8 * 4 * 4, 10)),
}


@pytest.mark.parametrize("name", list(REPR_CASES))
def test_repr_matches_torch(name):
    torch = pytest.importorskip("torch")
    assert repr(REPR_CASES[name](nn)) == repr(REPR_CASES[name](torch.nn))


def test_repr_custom_module_matches_torch():
    torch = pytest.importorskip("torch")

    def make(m):
        class Net(m.Module):
            def __init__(self):
                super().__init__()
                self.features = m.Sequential(m.Conv2d(1, 2, 3), m.ReLU())
                self.head = m.Linear(2, 3)

        return Net()

    assert repr(make(nn)) == repr(make(torch.nn))


# --------------------------------------------------------------------------- initialisation


def _check_uniform(a, bound, name):
    a = np.asarray(a, dtype=np.float64).ravel()
    n = a.size
    assert np.abs(a).max() <= bound, f"{name}: values outside ±{bound}"
    assert np.abs(a).max() > 0.98 * bound, f"{name}: does not reach the bound"
    sd = bound / np.sqrt(3)
    assert abs(a.mean()) < 5 * sd / np.sqrt(n), f"{name}: mean {a.mean()}"
    assert abs(a.std() / sd - 1) < 0.03, f"{name}: std {a.std()} vs {sd}"
    counts, _ = np.histogram(a, bins=10, range=(-bound, bound))
    assert np.all(np.abs(counts - n / 10) < 0.15 * n / 10), f"{name}: not flat: {counts}"


def test_conv2d_init_distribution():
    manual_seed(0)
    conv = nn.Conv2d(64, 32, 3)
    bound = 1 / np.sqrt(64 * 9)
    assert conv.weight.dtype == np.float32 and conv.bias.dtype == np.float32
    _check_uniform(conv.weight.data, bound, "weight")
    assert np.abs(conv.bias.data).max() <= bound and conv.bias.data.std() > 0
    grouped = nn.Conv2d(64, 64, 3, groups=4, bias=False)
    _check_uniform(grouped.weight.data, 1 / np.sqrt(16 * 9), "grouped weight")  # fan_in uses in_channels/groups


def test_linear_init_distribution():
    manual_seed(1)
    lin = nn.Linear(500, 400)
    bound = 1 / np.sqrt(500)
    _check_uniform(lin.weight.data, bound, "weight")
    assert np.abs(lin.bias.data).max() <= bound
    assert abs(lin.bias.data.std() / (bound / np.sqrt(3)) - 1) < 0.15


def test_init_shapes_names_and_bounds_match_torch():
    torch = pytest.importorskip("torch")
    for make in (lambda m: m.Conv2d(6, 4, (3, 2), groups=2), lambda m: m.Linear(30, 7)):
        ours, theirs = make(nn), make(torch.nn)
        bound = 1 / np.sqrt(np.prod(theirs.weight.shape[1:]))  # fan_in
        ours_named, theirs_named = list(ours.named_parameters()), list(theirs.named_parameters())
        assert [n for n, _ in ours_named] == [n for n, _ in theirs_named]
        for (n, p), (_, tp) in zip(ours_named, theirs_named):
            assert p.shape == tuple(tp.shape) and p.dtype == np.float32, n
            assert np.abs(p.data).max() <= bound, n
            assert tp.detach().abs().max().item() <= bound, n


def test_manual_seed_makes_init_reproducible():
    def build():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(5, 2))

    manual_seed(123)
    a = build().state_dict()
    manual_seed(123)
    b = build().state_dict()
    manual_seed(124)
    c = build().state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["0.weight"], c["0.weight"])


def test_batchnorm_init():
    bn = nn.BatchNorm2d(5)
    np.testing.assert_array_equal(bn.weight.data, np.ones(5))
    np.testing.assert_array_equal(bn.bias.data, np.zeros(5))
    np.testing.assert_array_equal(bn.running_mean, np.zeros(5))
    np.testing.assert_array_equal(bn.running_var, np.ones(5))


# --------------------------------------------------------------------------- Dropout


def test_dropout_eval_is_identity():
    d = nn.Dropout(0.5).eval()
    x = rand((4, 5), 3)
    np.testing.assert_array_equal(np.asarray(d(x)), x)
    t = Tensor(x, requires_grad=True)
    out = d(t)
    np.testing.assert_array_equal(out.data, x)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_train_zeroes_about_p_and_scales(p):
    manual_seed(5)
    d = nn.Dropout(p)
    x = np.ones(200_000, np.float32)
    y = np.asarray(d(x))
    assert y.dtype == np.float32 and y.shape == x.shape
    frac = (y == 0).mean()
    assert abs(frac - p) < 0.01, frac
    kept = y[y != 0]
    np.testing.assert_allclose(kept, 1 / (1 - p), rtol=1e-6)
    assert abs(y.mean() - 1) < 0.02  # expectation preserved


def test_dropout_train_gradient_uses_the_same_mask():
    manual_seed(6)
    x = Tensor(rand((50, 40), 4, 0.5, 1.0), requires_grad=True)
    y = nn.Dropout(0.4)(x)
    y.sum().backward()
    zero = y.data == 0
    assert zero.any() and (~zero).any()
    np.testing.assert_array_equal(x.grad == 0, zero)
    np.testing.assert_allclose(x.grad[~zero], 1 / 0.6, rtol=1e-6)


def test_dropout_p_edge_cases():
    x = rand((10, 10), 5, 0.5, 1)
    np.testing.assert_array_equal(np.asarray(nn.Dropout(0.0)(x)), x)
    assert not np.asarray(nn.Dropout(1.0)(x)).any()


def test_dropout_reproducible_with_manual_seed():
    x = np.ones((30, 30), np.float32)
    manual_seed(9)
    a = np.asarray(nn.Dropout()(x))
    manual_seed(9)
    b = np.asarray(nn.Dropout()(x))
    np.testing.assert_array_equal(a, b)


def test_sequential_eval_disables_dropout():
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.9))
    x = rand((3, 4), 6)
    m.eval()
    np.testing.assert_array_equal(m(x), m(x))


# --------------------------------------------------------------------------- BatchNorm2d


def test_batchnorm_train_uses_batch_stats_and_updates_running():
    bn = nn.BatchNorm2d(3, momentum=0.1)
    x = rand((4, 3, 5, 5), 7, -1, 3)
    y = np.asarray(bn(x))
    mean = x.astype(np.float64).mean(axis=(0, 2, 3))
    var = x.astype(np.float64).var(axis=(0, 2, 3))
    exp = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, exp, rtol=1e-4, atol=1e-5)
    n = 4 * 5 * 5
    np.testing.assert_allclose(bn.running_mean, 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
    assert int(bn.state_dict()["num_batches_tracked"]) == 1


def test_batchnorm_eval_uses_running_stats():
    bn = nn.BatchNorm2d(2, eps=1e-3)
    rm, rv = np.array([0.5, -1.0], np.float32), np.array([2.0, 0.25], np.float32)
    w, b = np.array([1.5, -0.5], np.float32), np.array([0.1, 0.2], np.float32)
    bn.load_state_dict({"weight": w, "bias": b, "running_mean": rm, "running_var": rv,
                        "num_batches_tracked": np.array(7)})
    bn.eval()
    x = rand((3, 2, 4, 4), 8)
    y = np.asarray(bn(x))
    exp = (x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-3) * w[None, :, None, None] \
        + b[None, :, None, None]
    np.testing.assert_allclose(y, exp, rtol=1e-5, atol=1e-6)
    # eval does not touch the statistics
    np.testing.assert_array_equal(bn.running_mean, rm)
    np.testing.assert_array_equal(bn.running_var, rv)
    assert int(bn.state_dict()["num_batches_tracked"]) == 7


def test_batchnorm_cumulative_average_momentum_none():
    bn = nn.BatchNorm2d(2, momentum=None)
    x1, x2 = rand((2, 2, 3, 3), 9), rand((2, 2, 3, 3), 10, 0, 4)
    bn(x1)
    bn(x2)
    m = (x1.mean(axis=(0, 2, 3)) + x2.mean(axis=(0, 2, 3))) / 2
    np.testing.assert_allclose(bn.running_mean, m, rtol=1e-5, atol=1e-6)


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    bn = nn.BatchNorm2d(2, affine=False, track_running_stats=False).eval()
    x = rand((3, 2, 4, 4), 11, 1, 5)
    y = np.asarray(bn(x))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-3)


# --------------------------------------------------------------------------- Sequential


def test_sequential_indexing_slicing_len_iter():
    layers = [nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 3)]
    s = nn.Sequential(*layers)
    assert len(s) == 5
    assert list(s) == layers
    assert s[0] is layers[0] and s[-1] is layers[-1] and s[2] is layers[2]
    sub = s[1:3]
    assert isinstance(sub, nn.Sequential) and len(sub) == 2
    assert list(sub) == layers[1:3]  # slicing shares the modules
    assert list(s[::2]) == layers[::2]
    with pytest.raises(IndexError):
        s[5]
    s.append(nn.ReLU())
    assert len(s) == 6 and [n for n, _ in s.named_children()][-1] == "5"


def test_sequential_forward_chains_modules():
    s = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = rand((5, 4), 12)
    h = np.maximum(x @ s[0].weight.data.T + s[0].bias.data, 0)
    np.testing.assert_allclose(np.asarray(s(x)), h @ s[2].weight.data.T + s[2].bias.data, rtol=1e-5, atol=1e-6)


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError):
        nn.Sequential(nn.ReLU(), lambda x: x)


# --------------------------------------------------------------------------- layer behaviour


def test_flatten_numpy_and_tensor():
    x = rand((2, 3, 4, 5), 13)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    t = nn.Flatten()(Tensor(x, requires_grad=True))
    assert isinstance(t, Tensor) and t.shape == (2, 60) and t.requires_grad


def test_maxpool_return_indices():
    out, idx = nn.MaxPool2d(2, return_indices=True)(rand((1, 1, 4, 4), 14))
    assert out.shape == (1, 1, 2, 2) and idx.shape == (1, 1, 2, 2) and idx.dtype.kind == "i"


def test_linear_on_batched_3d_input():
    lin = nn.Linear(4, 3)
    assert lin(rand((2, 5, 4), 15)).shape == (2, 5, 3)


def test_cross_entropy_loss_module_matches_functional():
    F = pyconv.functional
    x = rand((5, 4), 16, dtype=np.float64)
    t = np.array([0, 1, 3, 3, 2])
    w = np.array([1.0, 2.0, 0.5, 1.0])
    for kw in (dict(), dict(weight=w), dict(ignore_index=3, reduction="sum"), dict(label_smoothing=0.1)):
        np.testing.assert_allclose(np.asarray(nn.CrossEntropyLoss(**kw)(x, t)),
                                   np.asarray(F.cross_entropy(x, t, **kw)), rtol=1e-14)


# --------------------------------------------------------------------------- construction errors

CTOR_ERRORS = {
    "conv_in_groups": lambda: nn.Conv2d(3, 4, 3, groups=2),
    "conv_out_groups": lambda: nn.Conv2d(4, 3, 3, groups=2),
    "conv_zero_in": lambda: nn.Conv2d(0, 3, 3),
    "conv_zero_out": lambda: nn.Conv2d(3, 0, 3),
    "conv_zero_groups": lambda: nn.Conv2d(3, 3, 3, groups=0),
    "conv_padding_mode": lambda: nn.Conv2d(3, 3, 3, padding_mode="mirror"),
    "conv_same_strided": lambda: nn.Conv2d(3, 3, 3, stride=2, padding="same"),
    "conv_padding_string": lambda: nn.Conv2d(3, 3, 3, padding="full"),
    "conv_kernel_zero": lambda: nn.Conv2d(3, 3, 0),
    "conv_negative_padding": lambda: nn.Conv2d(3, 3, 3, padding=-1),
    "conv_stride_zero": lambda: nn.Conv2d(3, 3, 3, stride=0),
    "linear_zero": lambda: nn.Linear(0, 3),
    "dropout_p_big": lambda: nn.Dropout(1.5),
    "dropout_p_negative": lambda: nn.Dropout(-0.1),
    "maxpool_padding": lambda: nn.MaxPool2d(2, padding=2),
    "avgpool_padding": lambda: nn.AvgPool2d(3, padding=2),
}


@pytest.mark.parametrize("name", list(CTOR_ERRORS))
def test_construction_errors(name):
    with pytest.raises(ValueError):
        CTOR_ERRORS[name]()


def test_groups_error_message_names_values():
    with pytest.raises(ValueError, match="groups") as e:
        nn.Conv2d(3, 4, 3, groups=2)
    assert "3" in str(e.value) and "2" in str(e.value)


def test_forward_shape_error_is_value_error():
    with pytest.raises(ValueError):
        nn.Conv2d(3, 4, 3)(rand((1, 2, 8, 8), 17))
    with pytest.raises(ValueError):
        nn.Linear(4, 2)(rand((3, 5), 18))


# --------------------------------------------------------------------------- float64


def test_double_casts_parameters_and_buffers():
    net = Net()
    assert net.double() is net
    for n, p in net.named_parameters():
        assert p.dtype == np.float64, n
    sd = net.state_dict()
    assert sd["features.1.running_mean"].dtype == np.float64
    assert sd["features.1.running_var"].dtype == np.float64
    assert sd["features.1.num_batches_tracked"].dtype == np.int64
    x = rand((2, 1, 8, 8), 19, dtype=np.float64)
    out = net(x)
    assert out.dtype == np.float64
    nn.CrossEntropyLoss()(out, np.array([1, 2])).backward()
    for n, p in net.named_parameters():
        assert p.grad is not None and p.grad.dtype == np.float64, n
    assert net.features[1].running_mean.dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    assert net(x.astype(np.float32)).dtype == np.float32


def test_double_keeps_parameter_identity():
    lin = nn.Linear(2, 2)
    w = lin.weight
    lin.double()
    assert lin.weight is w and w.dtype == np.float64


def test_assigning_an_array_to_a_buffer_name_replaces_the_buffer():
    # torch.nn.Module.__setattr__: assigning to a registered buffer's name updates the buffer
    bn = nn.BatchNorm2d(3)
    bn.running_mean = np.full(3, 2.0, np.float32)
    assert "running_mean" in bn.state_dict()
    np.testing.assert_array_equal(bn.state_dict()["running_mean"], np.full(3, 2.0))
    y = np.asarray(bn.eval()(np.full((1, 3, 2, 2), 2.0, np.float32)))
    np.testing.assert_allclose(y, 0.0, atol=1e-6)


def test_dtype_keyword_creates_float64_layers():
    conv = nn.Conv2d(2, 3, 3, dtype=np.float64)
    lin = nn.Linear(4, 2, dtype=np.float64)
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    assert conv.weight.dtype == conv.bias.dtype == lin.weight.dtype == bn.weight.dtype == np.float64
    assert bn.running_mean.dtype == bn.running_var.dtype == np.float64
    x = rand((1, 2, 5, 5), 20, dtype=np.float64)
    assert bn(conv(x)).dtype == np.float64
