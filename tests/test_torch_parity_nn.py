"""Parity with PyTorch in float64: the same networks (weights copied through state_dict) give the
same outputs, loss, input and parameter gradients and BatchNorm buffers; optimisers and LR
schedules follow torch.optim step for step."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pyconv = pytest.importorskip("pyconv")
import pyconv.nn as nn  # noqa: E402
import pyconv.optim as optim  # noqa: E402
from pyconv.random import manual_seed  # noqa: E402
from pyconv.tensor import Tensor  # noqa: E402

RTOL, ATOL = 1e-9, 1e-12


def rand(shape, seed, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape)


def copy_to_torch(model, tmodel):
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})


def copy_to_pyconv(tmodel, model):
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})


def cs231n(m):
    return m.Sequential(
        m.Conv2d(3, 8, 5, padding=2), m.ReLU(), m.MaxPool2d(2),
        m.Conv2d(8, 16, 3, padding=1), m.ReLU(), m.MaxPool2d(2),
        m.Flatten(), m.Linear(16 * 4 * 4, 10),
    )


def bn_net(m):
    return m.Sequential(
        m.Conv2d(3, 8, 3, padding=1), m.BatchNorm2d(8), m.ReLU(), m.Dropout(0.0), m.AvgPool2d(2),
        m.Conv2d(8, 12, 3, padding=1, bias=False), m.BatchNorm2d(12, momentum=0.3), m.ReLU(),
        m.AdaptiveAvgPool2d((2, 2)), m.Flatten(), m.Linear(48, 5),
    )


def exotic_features(m):
    return m.Sequential(
        m.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, groups=2, padding_mode="reflect"), m.ReLU(),
        m.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="circular"),
        m.Conv2d(8, 6, (2, 3), padding="same", padding_mode="replicate", bias=False), m.ReLU(),
        m.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        m.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        m.Conv2d(6, 6, (3, 1), stride=(1, 2), dilation=(1, 1), padding=(1, 0), padding_mode="zeros"),
        m.Flatten(),
    )


def exotic(m):
    feats = exotic_features(m)
    n = exotic_features(nn)(np.zeros((1, 4, 15, 13), np.float32)).shape[1]
    feats.append(m.Linear(n, 4))
    return feats


MODELS = {
    "cs231n": (cs231n, (4, 3, 16, 16), 10, {}),
    "bn_dropout_adaptive_avgpool": (bn_net, (6, 3, 12, 10), 5, {}),
    "groups_dilation_stride_reflect": (exotic, (3, 4, 15, 13), 4, dict(label_smoothing=0.1)),
}


def run_both(name, seed=0, direction="pyconv_to_torch"):
    make, x_shape, classes, loss_kw = MODELS[name]
    manual_seed(seed)
    torch.manual_seed(seed)
    model, tmodel = make(nn).double(), make(torch.nn).double()
    if direction == "pyconv_to_torch":
        copy_to_torch(model, tmodel)
    else:
        copy_to_pyconv(tmodel, model)
    x = rand(x_shape, seed + 1)
    target = np.random.default_rng(seed + 2).integers(0, classes, x_shape[0])
    xt = Tensor(x.copy(), requires_grad=True)
    out = model(xt)
    loss = nn.CrossEntropyLoss(**loss_kw)(out, target)
    loss.backward()
    txt = torch.tensor(x, requires_grad=True)
    tout = tmodel(txt)
    tloss = torch.nn.CrossEntropyLoss(**loss_kw)(tout, torch.tensor(target))
    tloss.backward()
    return model, tmodel, (xt, out, loss), (txt, tout, tloss)


@pytest.mark.parametrize("direction", ["pyconv_to_torch", "torch_to_pyconv"])
@pytest.mark.parametrize("name", list(MODELS))
def test_forward_loss_and_gradients_match_torch(name, direction):
    model, tmodel, (xt, out, loss), (txt, tout, tloss) = run_both(name, direction=direction)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg="output")
    np.testing.assert_allclose(loss.data, tloss.item(), rtol=RTOL, atol=ATOL, err_msg="loss")
    np.testing.assert_allclose(xt.grad, txt.grad.numpy(), rtol=RTOL, atol=ATOL, err_msg="input grad")
    tparams = dict(tmodel.named_parameters())
    names = [n for n, _ in model.named_parameters()]
    assert names == list(tparams)
    for n, p in model.named_parameters():
        assert p.grad is not None, n
        assert p.grad.dtype == np.float64, n
        np.testing.assert_allclose(p.grad, tparams[n].grad.numpy(), rtol=RTOL, atol=ATOL, err_msg=n)
    # buffers (BatchNorm running statistics, num_batches_tracked) after one training forward
    tsd = tmodel.state_dict()
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v, tsd[k].numpy(), rtol=RTOL, atol=ATOL, err_msg=k)


@pytest.mark.parametrize("name", list(MODELS))
def test_eval_mode_matches_torch(name):
    model, tmodel, *_ = run_both(name, seed=3)
    model.eval(), tmodel.eval()
    x = rand(MODELS[name][1], 4)
    with torch.no_grad():
        expected = tmodel(torch.tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", list(MODELS))
def test_state_dict_keys_and_order_match_torch(name):
    make = MODELS[name][0]
    sd, tsd = make(nn).state_dict(), make(torch.nn).state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        assert sd[k].shape == tuple(tsd[k].shape), k
        assert sd[k].dtype == tsd[k].numpy().dtype, k


def test_sequential_slice_keeps_keys_like_torch():
    s = cs231n(nn)
    ts = cs231n(torch.nn)
    assert list(s[3:].state_dict()) == list(ts[3:].state_dict())
    assert repr(s[3:]) == repr(ts[3:])


# --------------------------------------------------------------------------- optimisers

def tiny(m):
    return m.Sequential(m.Conv2d(2, 4, 3, padding=1), m.ReLU(), m.MaxPool2d(2), m.Flatten(), m.Linear(64, 3))


OPTIMISERS = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd_momentum": ("SGD", dict(lr=0.1, momentum=0.9)),
    "sgd_nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": ("SGD", dict(lr=0.1, weight_decay=0.01)),
    "sgd_dampening": ("SGD", dict(lr=0.1, momentum=0.8, dampening=0.5)),
    "sgd_all": ("SGD", dict(lr=0.07, momentum=0.9, weight_decay=0.05, nesterov=True)),
    "adam": ("Adam", dict(lr=0.01)),
    "adam_weight_decay": ("Adam", dict(lr=0.01, weight_decay=0.1)),
    "adam_betas_eps": ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
}


def train_both(opt_name, kw, steps=6, schedule=None):
    manual_seed(7)
    model, tmodel = tiny(nn).double(), tiny(torch.nn).double()
    copy_to_torch(model, tmodel)
    opt = getattr(optim, opt_name)(model.parameters(), **kw)
    topt = getattr(torch.optim, opt_name)(tmodel.parameters(), **kw)
    sched = tsched = None
    if schedule is not None:
        cls, skw = schedule
        sched = getattr(optim, cls)(opt, **skw)
        tsched = getattr(torch.optim.lr_scheduler, cls)(topt, **skw)
    x = rand((8, 2, 8, 8), 8)
    target = np.random.default_rng(9).integers(0, 3, 8)
    for step in range(steps):
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), target)
        loss.backward()
        opt.step()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(target))
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(loss.data, tloss.item(), rtol=1e-9, err_msg=f"loss at step {step}")
        if sched is not None:
            sched.step()
            tsched.step()
        tparams = dict(tmodel.named_parameters())
        for n, p in model.named_parameters():
            np.testing.assert_allclose(p.data, tparams[n].detach().numpy(), rtol=1e-9, atol=1e-12,
                                       err_msg=f"{n} after step {step + 1}")


@pytest.mark.parametrize("name", list(OPTIMISERS))
def test_optimiser_steps_match_torch(name):
    train_both(*OPTIMISERS[name])


def test_sgd_momentum_with_step_lr_matches_torch():
    train_both("SGD", dict(lr=0.1, momentum=0.9), steps=6, schedule=("StepLR", dict(step_size=2, gamma=0.5)))


def test_adam_with_cosine_matches_torch():
    train_both("Adam", dict(lr=0.02), steps=6, schedule=("CosineAnnealingLR", dict(T_max=4, eta_min=1e-3)))


def test_default_hyper_parameters_match_torch():
    import inspect

    for name in ("SGD", "Adam"):
        ours = inspect.signature(getattr(optim, name)).parameters
        theirs = inspect.signature(getattr(torch.optim, name)).parameters
        for arg, p in ours.items():
            if arg == "params":
                continue
            assert arg in theirs, f"{name}: {arg} is not a torch argument"
            assert p.default == theirs[arg].default, f"{name}.{arg}: {p.default} != {theirs[arg].default}"


SCHEDULES = {
    "step_3_half": ("StepLR", dict(step_size=3, gamma=0.5)),
    "step_1_default_gamma": ("StepLR", dict(step_size=1)),
    "cosine_10": ("CosineAnnealingLR", dict(T_max=10)),
    "cosine_4_eta_min": ("CosineAnnealingLR", dict(T_max=4, eta_min=0.01)),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_lr_schedule_matches_torch(name):
    cls, kw = SCHEDULES[name]
    p = nn.Parameter(np.zeros(2))
    tp = torch.zeros(2, requires_grad=True)
    opt = optim.SGD([p], lr=0.3, momentum=0.9)
    topt = torch.optim.SGD([tp], lr=0.3, momentum=0.9)
    sched = getattr(optim, cls)(opt, **kw)
    tsched = getattr(torch.optim.lr_scheduler, cls)(topt, **kw)
    got, want = [sched.get_last_lr()[0]], [tsched.get_last_lr()[0]]
    for _ in range(12):
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        got.append(sched.get_last_lr()[0])
        want.append(tsched.get_last_lr()[0])
        assert opt.lr == got[-1]
        np.testing.assert_allclose(topt.param_groups[0]["lr"], want[-1])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)


def test_state_dict_with_a_shared_module_matches_torch():
    # torch lists a module reused at two positions under both names (named_parameters lists it once)
    lin, tlin = nn.Linear(2, 2), torch.nn.Linear(2, 2)
    s, ts = nn.Sequential(lin, nn.ReLU(), lin), torch.nn.Sequential(tlin, torch.nn.ReLU(), tlin)
    assert [n for n, _ in s.named_parameters()] == [n for n, _ in ts.named_parameters()]
    assert list(s.state_dict()) == list(ts.state_dict())
    s.load_state_dict({k: v.detach().numpy() for k, v in ts.state_dict().items()})
    np.testing.assert_array_equal(lin.weight.data, tlin.weight.detach().numpy())


def test_frozen_parameters_in_optimiser_match_torch():
    # fine-tuning: torch.optim accepts parameters with requires_grad=False and leaves them alone
    manual_seed(12)
    model, tmodel = tiny(nn).double(), tiny(torch.nn).double()
    copy_to_torch(model, tmodel)
    for p in model[0].parameters():
        p.requires_grad_(False)
    for p in tmodel[0].parameters():
        p.requires_grad_(False)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    x, target = rand((8, 2, 8, 8), 13), np.random.default_rng(14).integers(0, 3, 8)
    frozen = model[0].weight.data.copy()
    for _ in range(3):
        opt.zero_grad()
        nn.CrossEntropyLoss()(model(x), target).backward()
        opt.step()
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tmodel(torch.tensor(x)), torch.tensor(target)).backward()
        topt.step()
    np.testing.assert_array_equal(model[0].weight.data, frozen)
    tparams = dict(tmodel.named_parameters())
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.data, tparams[n].detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=n)
