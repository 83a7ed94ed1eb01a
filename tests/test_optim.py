"""pyconv.optim: state_dict round trip, hyper-parameter validation, zero_grad, a short training
run that learns, and bitwise reproducibility under manual_seed."""

import io

import numpy as np
import pytest

pyconv = pytest.importorskip("pyconv")
import pyconv.nn as nn  # noqa: E402
import pyconv.optim as optim  # noqa: E402
from pyconv.random import manual_seed  # noqa: E402
from pyconv.tensor import Tensor  # noqa: E402


def tiny_cnn(dropout=0.0):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Dropout(dropout), nn.Linear(4 * 4 * 4, 2))


def separable_data(n=64, seed=0):
    """Class 0: a bright left half; class 1: a bright right half; plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.5, (n, 1, 8, 8)).astype(np.float32)
    x[y == 0, :, :, :4] += 1.0
    x[y == 1, :, :, 4:] += 1.0
    return x, y


def step(model, opt, x, y):
    opt.zero_grad()
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    opt.step()
    return float(loss.item())


def npz_round_trip(d):
    buf = io.BytesIO()
    np.savez(buf, **d)
    buf.seek(0)
    return dict(np.load(buf))


# --------------------------------------------------------------------------- state_dict

CONFIGS = {
    "sgd_momentum": ("SGD", dict(lr=0.05, momentum=0.9)),
    "sgd_nesterov_wd": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "sgd_dampening": ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3)),
    "adam": ("Adam", dict(lr=0.01)),
    "adam_wd": ("Adam", dict(lr=0.01, weight_decay=0.01, betas=(0.8, 0.9))),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_round_trip_continues_identically(name):
    cls, kw = CONFIGS[name]
    x, y = separable_data(16, 1)
    manual_seed(0)
    a = tiny_cnn()
    opt_a = getattr(optim, cls)(a.parameters(), **kw)
    for _ in range(3):
        step(a, opt_a, x, y)
    model_state = npz_round_trip(a.state_dict())
    opt_state = npz_round_trip(opt_a.state_dict())
    assert set(opt_state) >= {"lr", "step_count"}

    manual_seed(1)  # different initial weights: everything must come from the checkpoint
    b = tiny_cnn()
    opt_b = getattr(optim, cls)(b.parameters(), **kw)
    b.load_state_dict(model_state)
    opt_b.load_state_dict(opt_state)
    for i in range(4):
        la, lb = step(a, opt_a, x, y), step(b, opt_b, x, y)
        assert la == lb, f"loss differs at step {i}"
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=n)
    assert opt_a.step_count == opt_b.step_count == 7


def test_load_state_dict_restores_lr():
    p = nn.Parameter(np.zeros(2, np.float32))
    opt = optim.SGD([p], lr=0.1)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    state = opt.state_dict()
    opt2 = optim.SGD([nn.Parameter(np.zeros(2, np.float32))], lr=0.1)
    opt2.load_state_dict(state)
    assert opt2.lr == pytest.approx(0.05)


def test_load_state_dict_shape_mismatch_raises():
    p = nn.Parameter(np.ones(3, np.float32))
    p.grad = np.ones(3, np.float32)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    state = opt.state_dict()
    other = optim.SGD([nn.Parameter(np.ones(4, np.float32))], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError):
        other.load_state_dict(state)


def test_load_state_dict_too_many_parameters_raises():
    ps = [nn.Parameter(np.ones(2, np.float32)) for _ in range(2)]
    for p in ps:
        p.grad = np.ones(2, np.float32)
    opt = optim.Adam(ps)
    opt.step()
    with pytest.raises(ValueError):
        optim.Adam([nn.Parameter(np.ones(2, np.float32))]).load_state_dict(opt.state_dict())


# --------------------------------------------------------------------------- validation


def _p():
    return [nn.Parameter(np.zeros(2, np.float32))]


INVALID = {
    "sgd_lr": lambda: optim.SGD(_p(), lr=-0.1),
    "sgd_momentum": lambda: optim.SGD(_p(), lr=0.1, momentum=-0.5),
    "sgd_weight_decay": lambda: optim.SGD(_p(), lr=0.1, weight_decay=-1e-4),
    "sgd_nesterov_no_momentum": lambda: optim.SGD(_p(), lr=0.1, nesterov=True),
    "sgd_nesterov_dampening": lambda: optim.SGD(_p(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
    "adam_lr": lambda: optim.Adam(_p(), lr=-1e-3),
    "adam_eps": lambda: optim.Adam(_p(), eps=-1e-8),
    "adam_beta1_one": lambda: optim.Adam(_p(), betas=(1.0, 0.999)),
    "adam_beta2_one": lambda: optim.Adam(_p(), betas=(0.9, 1.0)),
    "adam_beta1_negative": lambda: optim.Adam(_p(), betas=(-0.1, 0.999)),
    "adam_weight_decay": lambda: optim.Adam(_p(), weight_decay=-0.01),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_hyper_parameters_raise_value_error(name):
    # each of these is a ValueError in torch.optim too
    with pytest.raises(ValueError):
        INVALID[name]()


@pytest.mark.parametrize("cls", ["SGD", "Adam"])
def test_empty_params_raise(cls):
    with pytest.raises(ValueError):
        getattr(optim, cls)([], lr=0.1)
    with pytest.raises(ValueError):
        getattr(optim, cls)((p for p in []), lr=0.1)
    with pytest.raises(ValueError):
        getattr(optim, cls)(nn.ReLU().parameters(), lr=0.1)


def test_non_tensor_params_raise_type_error():
    with pytest.raises(TypeError):
        optim.SGD([np.zeros(3)], lr=0.1)


def test_params_generator_is_consumed_once_and_kept():
    model = tiny_cnn()
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = separable_data(8)
    before = [p.data.copy() for p in model.parameters()]
    step(model, opt, x, y)
    assert all(not np.array_equal(b, p.data) for b, p in zip(before, model.parameters()))


# --------------------------------------------------------------------------- zero_grad and step


def test_zero_grad():
    model = tiny_cnn()
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = separable_data(8)
    nn.CrossEntropyLoss()(model(x), y).backward()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_step_skips_parameters_without_grad_and_keeps_them_leaves():
    a = nn.Parameter(np.ones(2, np.float32))
    b = nn.Parameter(np.ones(2, np.float32))
    a.grad = np.full(2, 0.5, np.float32)
    for opt in (optim.SGD([a, b], lr=0.1, momentum=0.9, weight_decay=0.1), optim.Adam([a, b], weight_decay=0.1)):
        before_b = b.data.copy()
        opt.step()
        np.testing.assert_array_equal(b.data, before_b)
        assert a.is_leaf and a.requires_grad and b.is_leaf
        assert a.dtype == np.float32


def test_plain_sgd_update_rule():
    p = nn.Parameter(np.array([1.0, -2.0]))
    p.grad = np.array([0.5, 0.25])
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [0.95, -2.025])


def test_adam_first_step_moves_by_lr():
    # with bias correction, Adam's first step is lr * sign(grad) (up to eps)
    p = nn.Parameter(np.array([1.0, -2.0, 3.0]))
    p.grad = np.array([0.5, -1e-3, 20.0])
    optim.Adam([p], lr=0.01).step()
    np.testing.assert_allclose(p.data, [0.99, -1.99, 2.99], rtol=1e-6)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("cls,kw", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01))], ids=["sgd", "adam"])
def test_training_run_decreases_loss(cls, kw):
    manual_seed(3)
    model = tiny_cnn()
    x, y = separable_data(64, 4)
    opt = getattr(optim, cls)(model.parameters(), **kw)
    losses = [step(model, opt, x, y) for _ in range(30)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    model.eval()
    acc = (np.asarray(model(x).data).argmax(axis=1) == y).mean()
    assert acc >= 0.9, acc


def _seeded_run(seed):
    manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Dropout(0.3), nn.Linear(64, 2))
    opt = optim.Adam(model.parameters(), lr=0.01)
    sched = optim.StepLR(opt, step_size=3, gamma=0.5)
    x, y = separable_data(32, 5)
    losses = []
    for _ in range(8):
        losses.append(step(model, opt, x, y))
        sched.step()
    return losses, model.state_dict()


def test_same_seed_gives_bitwise_identical_results():
    l1, s1 = _seeded_run(42)
    l2, s2 = _seeded_run(42)
    assert l1 == l2
    assert list(s1) == list(s2)
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k], err_msg=k)
    l3, _ = _seeded_run(43)
    assert l3 != l1


def test_training_in_float64():
    manual_seed(0)
    model = tiny_cnn().double()
    x, y = separable_data(16, 6)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = [step(model, opt, x.astype(np.float64), y) for _ in range(10)]
    assert losses[-1] < losses[0]
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert all(isinstance(p, Tensor) for p in model.parameters())


# --------------------------------------------------------------------------- schedules


def test_step_lr_values():
    opt = optim.SGD(_p(), lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.1)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(5):
        opt.step()
        sched.step()
        lrs.append(opt.lr)
    np.testing.assert_allclose(lrs, [1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_values():
    opt = optim.SGD(_p(), lr=1.0)
    sched = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.0)
    lrs = []
    for _ in range(4):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    np.testing.assert_allclose(lrs, [(1 + np.cos(np.pi * e / 4)) / 2 for e in range(1, 5)], atol=1e-15)


@pytest.mark.parametrize("cls", ["SGD", "Adam"])
def test_state_dict_round_trip_with_zero_dim_parameter(cls):
    # a learnable scalar (0-d parameter, e.g. a temperature) must resume exactly like any other
    kw = dict(lr=0.1, momentum=0.9) if cls == "SGD" else dict(lr=0.1)

    def run(reload_at):
        p = nn.Parameter(np.array(1.0))
        opt = getattr(optim, cls)([p], **kw)
        for i in range(4):
            p.grad = np.array(float(i + 1))
            opt.step()
            if i == reload_at:
                state = npz_round_trip(opt.state_dict())
                opt = getattr(optim, cls)([p], **kw)
                opt.load_state_dict(state)
        return p.data.item()

    assert run(reload_at=1) == run(reload_at=None)
