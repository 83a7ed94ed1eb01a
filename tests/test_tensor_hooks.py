"""Gradients of intermediate tensors: ``Tensor.retain_grad()`` and ``Tensor.register_hook()``
(what the live training page uses for per-layer activation gradients), against finite
differences and, when importable, torch's own retain_grad."""
import numpy as np
import pytest

pyconv = pytest.importorskip("pyconv")
import pyconv.functional as F  # noqa: E402
from pyconv import nn  # noqa: E402
from pyconv.tensor import Tensor  # noqa: E402


def _net(rng):
    x = Tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 3, 3)) * 0.3, requires_grad=True)
    return x, w


def test_retain_grad_keeps_an_intermediate_gradient(rng):
    x, w = _net(rng)
    y = F.conv2d(x, w, padding=1)
    y.retain_grad()
    z = F.relu(y)
    z.retain_grad()
    loss = (z * z).sum()
    loss.backward()
    assert y.retains_grad and z.retains_grad
    np.testing.assert_allclose(z.grad, 2 * z.data, rtol=1e-12)
    np.testing.assert_allclose(y.grad, 2 * z.data * (y.data > 0), rtol=1e-12)
    assert x.grad is not None and w.grad is not None  # leaves still get theirs


def test_without_retain_grad_intermediates_stay_empty(rng):
    x, w = _net(rng)
    y = F.conv2d(x, w)
    y.sum().backward()
    assert y.grad is None and not y.retains_grad


def test_retained_gradient_of_a_tensor_used_twice_is_the_sum(rng):
    x, _ = _net(rng)
    y = x * 2.0
    y.retain_grad()
    (y * 3.0 + y * y).sum().backward()
    np.testing.assert_allclose(y.grad, 3.0 + 2 * y.data, rtol=1e-12)


def test_retain_grad_accumulates_across_backward_calls(rng):
    x, _ = _net(rng)
    y = x * 1.0
    y.retain_grad()
    y.sum().backward()
    y2 = y * 2.0
    y2.sum().backward()
    np.testing.assert_allclose(y.grad, np.full(y.shape, 3.0))


def test_retain_grad_on_a_tensor_without_grad_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(3)).retain_grad()
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(3)).register_hook(lambda g: None)


def test_hook_sees_the_complete_gradient_and_can_replace_it(rng):
    x, w = _net(rng)
    y = F.conv2d(x, w, padding=1)
    seen = []
    handle = y.register_hook(lambda g: seen.append(g.copy()))
    y.sum().backward()
    assert len(seen) == 1 and np.array_equal(seen[0], np.ones(y.shape))
    g_before = x.grad.copy()
    handle.remove()
    x.grad = None
    y.register_hook(lambda g: 2 * g)  # doubles everything upstream of y
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * g_before, rtol=1e-12)
    assert len(seen) == 1  # the removed hook did not run again


def test_hook_on_a_leaf_runs_before_accumulation(rng):
    x, _ = _net(rng)
    x.register_hook(lambda g: g * 0.0)
    (x * x).sum().backward()
    assert not x.grad.any()


def test_hook_returning_a_wrong_shape_is_an_error(rng):
    x, _ = _net(rng)
    y = x * 1.0
    y.register_hook(lambda g: g[:1])
    with pytest.raises(RuntimeError, match="hook returned shape"):
        y.sum().backward()


def test_per_layer_gradients_of_a_cnn_with_forward_hooks_match_finite_differences(rng):
    """What the page does: forward hooks retain every layer's output, one backward fills them."""
    pyconv.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(3 * 2 * 2, 4)).double()
    outs = {}

    def keep(name):
        def hook(module, inputs, output):
            output.retain_grad()
            outs[name] = output
        return hook

    for name, m in model.named_children():
        m.register_forward_hook(keep(name))
    x = rng.standard_normal((1, 1, 4, 4))
    target = np.array([2])
    loss = F.cross_entropy(model(Tensor(x, requires_grad=True)), target)
    loss.backward()
    assert set(outs) == {"0", "1", "2", "3", "4"}
    # d loss / d logits against finite differences through the last layer alone
    logits = outs["4"].data.copy()
    eps, num = 1e-6, np.zeros_like(logits)
    for i in range(logits.shape[1]):
        lp, lm = logits.copy(), logits.copy()
        lp[0, i] += eps
        lm[0, i] -= eps
        num[0, i] = (F.cross_entropy(lp, target) - F.cross_entropy(lm, target)) / (2 * eps)
    np.testing.assert_allclose(outs["4"].grad, num, rtol=1e-6, atol=1e-9)
    # the ReLU's gradient is the conv output's gradient where the conv output is positive
    np.testing.assert_allclose(outs["0"].grad, outs["1"].grad * (outs["0"].data > 0), rtol=1e-12)


def test_retain_grad_matches_torch(rng):
    torch = pytest.importorskip("torch")
    xa = rng.standard_normal((2, 3, 5, 5))
    wa = rng.standard_normal((4, 3, 3, 3))
    x, w = Tensor(xa, requires_grad=True), Tensor(wa, requires_grad=True)
    y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
    y.retain_grad()
    (y * y).sum().backward()
    tx, tw = torch.tensor(xa, requires_grad=True), torch.tensor(wa, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(torch.relu(torch.nn.functional.conv2d(tx, tw, padding=1)), 2)
    ty.retain_grad()
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.grad, ty.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
