"""nn.Sequential runs ReLU followed by MaxPool2d as one op (relu of the pooled output; see
autograd.ReLUMaxPool2d). It must give exactly what the two modules give one after the other."""
import numpy as np
import pytest

pyconv = pytest.importorskip("pyconv")
from pyconv import nn  # noqa: E402

F = pyconv.functional


def _unfused(seq, x):
    for m in seq:
        x = m(x)
    return x


def _grads(seq, x, fused):
    t = pyconv.Tensor(x, requires_grad=True)
    out = seq(t) if fused else _unfused(seq, t)
    g = np.random.default_rng(1).standard_normal(out.shape).astype(x.dtype)
    (out * pyconv.Tensor(g)).sum().backward()
    return out.numpy(), t.grad.numpy() if hasattr(t.grad, "numpy") else np.asarray(t.grad)


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("pool", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1))])
def test_relu_max_pool_fusion_is_exact(dtype, pool, monkeypatch):
    calls = []
    fused_op = F._relu_max_pool2d
    monkeypatch.setattr(F, "_relu_max_pool2d", lambda *a, **k: calls.append(1) or fused_op(*a, **k))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 9, 10)).astype(dtype)
    x[0, 0, :4, :4] = -1.0            # windows whose maximum is negative
    x[0, 1, :2, :2] = 0.0             # ties at zero
    x[1, 2, 3:5, 3:5] = 0.75          # ties above zero
    x[2, 3, 1, 1] = np.nan            # NaN propagates, and its gradient passes
    x[2, 3, 5, 5] = -0.0
    seq = nn.Sequential(nn.ReLU(), nn.MaxPool2d(**pool))
    out_f, gx_f = _grads(seq, x, fused=True)
    out_u, gx_u = _grads(seq, x, fused=False)
    np.testing.assert_array_equal(out_f, out_u)
    np.testing.assert_array_equal(gx_f, gx_u)
    np.testing.assert_array_equal(seq(x), _unfused(seq, x))  # plain arrays too
    assert len(calls) == 2  # the Tensor and the array call ran fused


def test_fusion_keeps_hooks_and_other_geometries_unfused():
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    seen = []
    relu, pool = nn.ReLU(), nn.MaxPool2d(2)
    relu.register_forward_hook(lambda m, i, o: seen.append(np.asarray(o.numpy() if hasattr(o, "numpy") else o)))
    out = nn.Sequential(relu, pool)(x)
    assert len(seen) == 1 and seen[0].shape == x.shape          # the hook saw the full ReLU output
    np.testing.assert_array_equal(out, F.max_pool2d(F.relu(x), 2))
    for kw in (dict(dilation=2), dict(ceil_mode=True)):
        seq = nn.Sequential(nn.ReLU(), nn.MaxPool2d(3, stride=2, **kw))
        np.testing.assert_array_equal(seq(x), _unfused(seq, x))
