"""pyconv.torch: the torch.library ops, pyconv's torch.nn modules, convert(), and the torch
machinery around them (opcheck, gradcheck, torch.compile, torch.export, vmap, DDP, pickling),
each checked against torch's own oracle: eager torch.nn and torch.library.opcheck."""
import copy
import importlib.util
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import pyconv.torch as pt  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ops = pt.ops
F64 = torch.float64
ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


@pytest.fixture(autouse=True)
def _fresh_stats():
    pt.reset_stats()
    yield


def small_net(dtype=torch.float32, bias=True):
    """Every converted kind and the option combinations that matter, small enough for gradcheck."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
        nn.Conv2d(4, 6, 3, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, padding_mode="reflect"),
        nn.Tanh(), nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False),
        nn.Conv2d(6, 6, 2, padding="same", padding_mode="circular"),
        nn.Flatten(), nn.LazyLinear(3)).to(dtype)


# --------------------------------------------------------------------------- packaging


def test_import_pyconv_does_not_import_torch():
    code = "import sys, pyconv, pyconv.functional, pyconv.nn; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=tempfile.gettempdir())


@pytest.mark.parametrize("first", ["torch", "pyconv"])
def test_import_order(first):
    code = (f"import {first}; import pyconv.torch as pt, torch; m = pt.convert(torch.nn.Conv2d(2, 3, 3)); "
            "y = m(torch.ones(1, 2, 5, 5)); assert y.shape == (1, 3, 3, 3); assert pt.stats()['Conv2d']['pyconv'] == 1")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=tempfile.gettempdir())


# --------------------------------------------------------------------------- opcheck per op

CONV_CASES = {  # id: (input shape, weight shape, stride, padding, dilation, groups, padding_mode, same)
    "3x3": ((2, 3, 7, 7), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1, "zeros", False),
    "strided-asym": ((2, 4, 9, 8), (6, 4, 3, 2), (2, 1), (1, 0), (1, 1), 1, "zeros", False),
    "dilated-groups": ((1, 4, 9, 9), (6, 2, 3, 3), (1, 2), (2, 1), (2, 1), 2, "zeros", False),
    "depthwise": ((2, 4, 6, 6), (4, 1, 3, 3), (2, 2), (1, 1), (1, 1), 4, "zeros", False),
    "reflect": ((1, 2, 6, 7), (3, 2, 3, 3), (1, 1), (2, 1), (1, 1), 1, "reflect", False),
    "replicate": ((1, 2, 5, 5), (3, 2, 3, 3), (2, 2), (1, 2), (1, 1), 1, "replicate", False),
    "circular-same-even": ((1, 2, 5, 6), (3, 2, 2, 4), (1, 1), (0, 0), (1, 1), 1, "circular", True),
    "unbatched-1x1": ((3, 5, 5), (2, 3, 1, 1), (1, 1), (0, 0), (1, 1), 1, "zeros", False),
}


def _rand(shape, dtype, grad=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, dtype=dtype, generator=g).requires_grad_(grad)


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(CONV_CASES), ids=list(CONV_CASES))
def test_opcheck_conv2d(case, dtype):
    xs, ws, stride, padding, dilation, groups, mode, same = CONV_CASES[case]
    x, w, b = _rand(xs, dtype), _rand(ws, dtype, seed=1), _rand(ws[:1], dtype, seed=2)
    args = (stride, padding, dilation, groups, mode, "auto", same)
    torch.library.opcheck(ops.conv2d, (x, w, b) + args)
    y = ops.conv2d(x, w, b, *args)
    g = _rand(y.shape, dtype, seed=3)
    torch.library.opcheck(ops.conv2d_grad_input, (g, w, list(x.shape)) + args)
    torch.library.opcheck(ops.conv2d_grad_weight, (x, g, list(w.shape)) + args)


POOL_CASES = {  # id: (input shape, kernel, stride, padding, dilation, ceil_mode)
    "2x2": ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1), False),
    "3x3-s2-pad-ceil": ((1, 2, 9, 10), (3, 3), (2, 2), (1, 1), (1, 1), True),
    "asym-dilated": ((2, 2, 9, 8), (3, 2), (2, 1), (1, 1), (2, 1), False),
    "unbatched": ((3, 7, 7), (3, 3), (2, 2), (0, 1), (1, 1), True),
}


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(POOL_CASES), ids=list(POOL_CASES))
def test_opcheck_max_pool2d(case, dtype):
    xs, k, s, p, d, ceil = POOL_CASES[case]
    x = _rand(xs, dtype)
    torch.library.opcheck(ops.max_pool2d, (x, k, s, p, d, ceil))
    y, idx = ops.max_pool2d(x, k, s, p, d, ceil)
    g = _rand(y.shape, dtype, seed=3)
    torch.library.opcheck(ops.max_pool2d_backward, (g, x.detach(), idx, k, s, p, d, ceil))


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(POOL_CASES), ids=list(POOL_CASES))
@pytest.mark.parametrize("cip,div", [(True, None), (False, None), (True, 3)], ids=["cip", "nocip", "div3"])
def test_opcheck_avg_pool2d(case, dtype, cip, div):
    xs, k, s, p, _, ceil = POOL_CASES[case]
    x = _rand(xs, dtype)
    torch.library.opcheck(ops.avg_pool2d, (x, k, s, p, ceil, cip, div))
    y = ops.avg_pool2d(x, k, s, p, ceil, cip, div)
    g = _rand(y.shape, dtype, seed=3)
    torch.library.opcheck(ops.avg_pool2d_backward, (g, list(x.shape), k, s, p, ceil, cip, div))


# --------------------------------------------------------------------------- ops against torch


@pytest.mark.parametrize("case", list(CONV_CASES), ids=list(CONV_CASES))
def test_conv2d_module_matches_torch(case):
    xs, ws, stride, padding, dilation, groups, mode, same = CONV_CASES[case]
    torch.manual_seed(0)
    ref = nn.Conv2d(xs[-3], ws[0], ws[2:], stride, "same" if same else padding, dilation, groups,
                    padding_mode=mode).double()
    conv = pt.convert(ref)
    assert isinstance(conv, pt.Conv2d) and conv.weight is ref.weight
    x = _rand(xs, F64)
    y, y_ref = conv(x), ref(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    g = _rand(y.shape, F64, seed=5)
    grads = torch.autograd.grad(y, (x, ref.weight, ref.bias), g)
    grads_ref = torch.autograd.grad(y_ref, (x, ref.weight, ref.bias), g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert pt.stats()["Conv2d"] == {"calls": 1, "pyconv": 1, "fallbacks": 0, "reasons": {}}


@pytest.mark.parametrize("case", list(POOL_CASES), ids=list(POOL_CASES))
def test_pool_modules_match_torch(case):
    xs, k, s, p, d, ceil = POOL_CASES[case]
    x = _rand(xs, F64)
    for ref in (nn.MaxPool2d(k, s, p, d, return_indices=True, ceil_mode=ceil),
                nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=False)):
        mod = pt.convert(ref)
        out, out_ref = mod(x), ref(x)
        if isinstance(ref, nn.MaxPool2d):
            assert torch.equal(out[1], out_ref[1])  # torch's indices: ih * W + iw per plane
            out, out_ref = out[0], out_ref[0]
        torch.testing.assert_close(out, out_ref, rtol=1e-12, atol=0)
        g = _rand(out.shape, F64, seed=7)
        torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(out_ref, x, g)[0],
                                   rtol=1e-12, atol=1e-14)


def test_gradcheck_converted_model():
    model = pt.convert(small_net(F64))
    x = _rand((2, 3, 9, 9), F64)
    model(x)  # materialise the LazyLinear
    assert torch.autograd.gradcheck(model, (x,))
    s = pt.stats()
    assert s["Conv2d"]["fallbacks"] == 0 and s["Conv2d"]["pyconv"] > 0
    assert s["MaxPool2d"]["pyconv"] > 0 and s["AvgPool2d"]["pyconv"] > 0


def test_gradgradcheck_ops():
    x, w, b = _rand((1, 2, 5, 5), F64), _rand((3, 2, 3, 3), F64, seed=1), _rand((3,), F64, seed=2)
    args = ((2, 1), (1, 1), (1, 1), 1, "replicate", "auto", False)
    assert torch.autograd.gradgradcheck(lambda x, w, b: ops.conv2d(x, w, b, *args), (x, w, b))
    assert torch.autograd.gradgradcheck(lambda x: ops.max_pool2d(x, (2, 2), (1, 1), (1, 1), (1, 1), False)[0], (x,))
    assert torch.autograd.gradgradcheck(lambda x: ops.avg_pool2d(x, (3, 2), (2, 1), (1, 1), True, False, None), (x,))


def test_layout_and_views_give_torch_results_with_one_counted_copy():
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 5, 3, padding=1)
    conv = pt.convert(ref)
    base = torch.randn(2, 4, 10, 12)
    for x in (base.to(memory_format=torch.channels_last), base[:, :, 1:-1, ::2], base.transpose(2, 3)):
        before = x.clone()
        xg = x.detach().requires_grad_()
        y = conv(xg)
        assert y.is_contiguous()
        torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
        y.sum().backward()  # the all-ones gradient is an expanded (stride 0) tensor: copied too
        assert torch.equal(x, before)  # inputs never modified
    assert pt.stats()["copies"] == {"conv2d input": 3, "conv2d grad_output": 3}


def test_channels_last_model():
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2)).to(memory_format=torch.channels_last)
    model = pt.convert(ref)
    x = torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last).requires_grad_()
    y = model(x)
    torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-6)
    (gx,) = torch.autograd.grad(y.square().sum(), x)
    torch.testing.assert_close(gx, torch.autograd.grad(ref(x).square().sum(), x)[0], rtol=1e-5, atol=1e-5)
    assert pt.stats()["copies"] == {"conv2d input": 1, "conv2d weight": 1}


def test_inference_mode_and_backward_hooks():
    model = pt.convert(nn.Sequential(nn.Conv2d(2, 3, 3), nn.AvgPool2d(2)))
    x = torch.randn(1, 2, 6, 6)
    with torch.inference_mode():
        y = model(x)
    torch.testing.assert_close(y, model(x).detach())
    seen = []
    model[0].register_full_backward_hook(lambda m, gin, gout: seen.append(gout[0].shape))
    model(x.requires_grad_()).sum().backward()
    assert seen == [(1, 3, 4, 4)]


def test_outputs_stay_in_the_graph():
    conv = pt.Conv2d(2, 3, 3)
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    y = conv(x)
    assert y.requires_grad and y.grad_fn is not None
    with torch.no_grad():
        assert not conv(x).requires_grad
    frozen = pt.Conv2d(2, 3, 3).requires_grad_(False)
    assert frozen(x).requires_grad  # input still needs grad
    assert not frozen(x.detach()).requires_grad


# --------------------------------------------------------------------------- modules and convert


def test_modules_are_torch_modules():
    conv = pt.Conv2d(3, 8, 3, stride=2, padding=1, bias=False, algo="im2col")
    assert isinstance(conv, nn.Conv2d) and conv.algo == "im2col"
    assert repr(conv) == "Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False, algo='im2col')"
    assert repr(pt.MaxPool2d(2)) == repr(nn.MaxPool2d(2))
    assert list(pt.AvgPool2d(3).state_dict()) == []
    with pytest.raises(ValueError, match="algo"):
        pt.Conv2d(3, 8, 3, algo="fft")
    with pytest.raises(ValueError, match="algo"):
        pt.convert(nn.Conv2d(3, 8, 3), algo="fft")


def test_convert_keeps_parameters_state_dict_and_optimizer():
    torch.manual_seed(0)
    model = small_net()
    x = torch.randn(2, 3, 9, 9)
    model(x)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(x).sum().backward()
    opt.step()
    conv = pt.convert(model, algo="direct")
    assert type(model[0]) is nn.Conv2d and type(conv[0]) is pt.Conv2d  # inplace=False: original untouched
    assert conv is not model and conv[0] is not model[0]
    assert all(a is b for a, b in zip(model.parameters(), conv.parameters()))
    assert list(conv.state_dict()) == list(model.state_dict())
    assert [m.algo for m in conv.modules() if isinstance(m, pt.Conv2d)] == ["direct"] * 3
    opt.zero_grad()
    conv(x).sum().backward()  # the optimizer built on the original parameters steps the converted model
    assert all(p.grad is not None for p in model.parameters())
    opt.step()
    # a converted model's state_dict loads into the original class and back
    fresh = small_net()
    fresh(x)
    fresh.load_state_dict(conv.state_dict())
    torch.testing.assert_close(fresh(x), conv(x), rtol=1e-5, atol=1e-6)
    again = pt.convert(small_net())
    again(x)
    again.load_state_dict(fresh.state_dict())
    torch.testing.assert_close(again(x), fresh(x), rtol=1e-5, atol=1e-6)
    assert pt.convert(model, inplace=True) is model and type(model[3]) is pt.Conv2d


def test_hooks_are_kept():
    calls = []
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2))
    model[0].register_forward_pre_hook(lambda m, a: calls.append(("pre", type(m).__name__)))
    model[0].register_forward_hook(lambda m, a, y: calls.append(("post", tuple(y.shape))))
    handle = model[1].register_forward_hook(lambda m, a, y: y * 2)  # a hook that replaces the output
    copied = pt.convert(model)
    inplace = pt.convert(copy.deepcopy(model), inplace=True)
    x = torch.randn(1, 1, 6, 6)
    torch.testing.assert_close(copied(x), model(x))
    assert calls == [("pre", "Conv2d"), ("post", (1, 2, 4, 4))] * 2
    assert isinstance(inplace[0], pt.Conv2d) and len(inplace[0]._forward_hooks) == 1
    handle.remove()  # handles act on the module they were registered on
    assert len(model[1]._forward_hooks) == 0 and len(copied[1]._forward_hooks) == 1


def test_deepcopy_and_pickle_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    model = pt.convert(small_net())
    x = torch.randn(2, 3, 9, 9)
    y = model(x)
    twin = copy.deepcopy(model)
    assert type(twin[0]) is pt.Conv2d and twin[0].weight is not model[0].weight
    torch.testing.assert_close(twin(x), y)
    path = tmp_path / "model.pt"
    torch.save({"model": model, "x": x, "y": y.detach()}, path)
    code = ("import sys, torch; d = torch.load(sys.argv[1], weights_only=False); m = d['model']; "
            "import pyconv.torch as pt; assert type(m[0]) is pt.Conv2d, type(m[0]); "
            "torch.testing.assert_close(m(d['x']), d['y']); assert pt.stats()['Conv2d']['pyconv'] == 3")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120, cwd=tempfile.gettempdir())


class PlainSubclassConv(nn.Conv2d):
    """A subclass that only adds state: safe to compute with pyconv."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tag = "mine"


class OwnForwardConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) + 1


def test_convert_subclasses_where_safe():
    model = nn.Sequential(PlainSubclassConv(2, 3, 3), OwnForwardConv(3, 3, 1), nn.Conv1d(3, 3, 1),
                          nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 2, 3, padding=1)))
    x = torch.randn(1, 2, 7, 7)
    ref = model[3](model[1](model[0](x)))
    conv = pt.convert(model)
    assert isinstance(conv[0], pt.Conv2d) and isinstance(conv[0], PlainSubclassConv) and conv[0].tag == "mine"
    assert type(conv[1]) is OwnForwardConv and type(conv[2]) is nn.Conv1d
    assert isinstance(conv[3], pt.Conv2d) and nn.utils.parametrize.is_parametrized(conv[3])
    assert pt.stats()["not_converted"] == {"1": "OwnForwardConv overrides forward"}
    y = conv[3](conv[1](conv[0](x)))
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    y.sum().backward()  # weight_norm's parameters get gradients through pyconv's weight gradient
    assert conv[3].parametrizations.weight.original0.grad is not None
    assert pt.stats()["Conv2d"]["pyconv"] == 2
    # a derived class pickles as a reference to the user's class and is derived again on loading
    blob = pickle.dumps(conv[0])
    from pyconv.torch import _convert as convert_module
    convert_module._derived.clear()
    loaded = pickle.loads(blob)
    assert isinstance(loaded, PlainSubclassConv) and isinstance(loaded, pt.Conv2d) and loaded.tag == "mine"
    torch.testing.assert_close(loaded(x), conv[0](x))


def test_lazy_module_is_converted_once_initialised():
    lazy = nn.Sequential(nn.LazyConv2d(4, 3))
    pt.convert(lazy)
    assert "0" in pt.stats()["not_converted"]
    lazy(torch.randn(1, 2, 5, 5))  # becomes an nn.Conv2d
    assert type(pt.convert(lazy)[0]) is pt.Conv2d


# --------------------------------------------------------------------------- fallbacks and bad input


def test_fallbacks_are_counted():
    half = pt.convert(nn.Sequential(nn.Conv2d(2, 3, 3), nn.MaxPool2d(2), nn.AvgPool2d(1)).to(torch.bfloat16))
    x = torch.randn(1, 2, 6, 6, dtype=torch.bfloat16)
    assert half(x).dtype == torch.bfloat16
    meta = pt.convert(nn.Conv2d(2, 3, 3, device="meta"))
    assert meta(torch.empty(1, 2, 6, 6, device="meta")).shape == (1, 3, 4, 4)
    cpu = pt.convert(nn.Conv2d(2, 3, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cpu(torch.randn(1, 2, 6, 6)).dtype == torch.bfloat16
    s = pt.stats()
    assert s["Conv2d"] == {"calls": 3, "pyconv": 0, "fallbacks": 3,
                           "reasons": {"dtype bfloat16": 1, "weight on meta": 1, "autocast": 1}}
    assert s["MaxPool2d"]["reasons"] == {"dtype bfloat16": 1} and s["AvgPool2d"]["fallbacks"] == 1
    pt.reset_stats()
    assert pt.stats()["Conv2d"]["calls"] == 0


def test_float16_model_falls_back():
    model = pt.convert(nn.Sequential(nn.Conv2d(2, 3, 3), nn.AvgPool2d(2))).half()
    x = torch.randn(1, 2, 6, 6).half()
    torch.testing.assert_close(model(x).float(), nn.functional.avg_pool2d(
        nn.functional.conv2d(x.float(), model[0].weight.float(), model[0].bias.float()), 2), rtol=1e-2, atol=1e-2)
    assert pt.stats()["Conv2d"]["reasons"] == {"dtype float16": 1}


def test_unknown_padding_mode_falls_back():
    conv = pt.Conv2d(1, 1, 3, padding=1)
    conv.padding_mode = "mirror"  # not pyconv's: torch decides (here: it has no such mode either)
    with pytest.raises(Exception):
        conv(torch.randn(1, 1, 4, 4))
    assert pt.stats()["Conv2d"]["reasons"] == {"padding_mode 'mirror'": 1}


def test_bad_input_gets_pyconv_messages():
    conv = pt.Conv2d(3, 4, 3)
    with pytest.raises(TypeError, match=r"conv2d: weight has dtype float32 but input has dtype float64"):
        conv(torch.randn(1, 3, 5, 5, dtype=F64))
    with pytest.raises(TypeError, match=r"conv2d: input must be float32 or float64, got dtype int64"):
        conv(torch.ones(1, 3, 5, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"conv2d: input has 2 channels but weight expects 3"):
        conv(torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"conv2d: input must be 3-D or 4-D, got 2-D"):
        conv(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"conv2d: kernel .* is larger than the padded input"):
        conv(torch.randn(1, 3, 2, 5))
    with pytest.raises(ValueError, match=r"conv2d: input is on device meta but the weight is on the CPU"):
        conv(torch.empty(1, 3, 5, 5, device="meta"))
    with pytest.raises(ValueError, match=r"max_pool2d: padding should be at most half of kernel_size"):
        pt.MaxPool2d(2, padding=2)(torch.randn(1, 1, 6, 6))
    with pytest.raises(ValueError, match=r"avg_pool2d: output size .* is too small"):
        pt.AvgPool2d(5)(torch.randn(1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d_grad_input: grad_output must have the output shape"):
        ops.conv2d_grad_input(torch.randn(1, 4, 2, 2), conv.weight.detach(), [1, 3, 5, 5], (1, 1), (0, 0), (1, 1), 1,
                              "zeros", "auto", False)
    assert pt.stats()["Conv2d"]["fallbacks"] == 0


# --------------------------------------------------------------------------- compile, export, vmap


def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    model = pt.convert(small_net())
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    y = model(x)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # raises on any graph break
    yc = compiled(x)
    torch.testing.assert_close(yc, y)
    g = torch.randn_like(y)
    params = [x] + list(model.parameters())
    for a, b in zip(torch.autograd.grad(yc, params, g), torch.autograd.grad(y, params, g)):
        torch.testing.assert_close(a, b)
    graph = []
    torch.compile(model, fullgraph=True, backend=lambda gm, _: graph.append(gm) or gm)(x)
    assert "torch.ops.pyconv.conv2d" in graph[0].code and "torch.ops.pyconv.max_pool2d" in graph[0].code


@pytest.mark.skipif(ASAN, reason="inductor compiles and loads C++ of its own; not under the ASan preload")
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor's imports
def test_compile_inductor():
    model = pt.convert(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()))
    x = torch.randn(2, 2, 6, 6)
    torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x))


def test_export_round_trip(tmp_path):
    torch.manual_seed(0)
    model = pt.convert(small_net()).eval()
    x = torch.randn(2, 3, 9, 9)
    y = model(x)
    ep = torch.export.export(model, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"pyconv.conv2d.default", "pyconv.max_pool2d.default", "pyconv.avg_pool2d.default"} <= targets
    torch.testing.assert_close(ep.module()(x), y)
    path = tmp_path / "model.pt2"
    torch.export.save(ep, path)
    loaded = torch.export.load(path)
    torch.testing.assert_close(loaded.module()(x), y)
    dynamic = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    x5 = torch.randn(5, 3, 9, 9)
    torch.testing.assert_close(dynamic.module()(x5), model(x5))


def test_vmap():
    torch.manual_seed(0)
    model = pt.convert(small_net(F64))
    xs = torch.randn(4, 2, 3, 9, 9, dtype=F64)
    expected = torch.stack([model(x) for x in xs])
    torch.testing.assert_close(torch.func.vmap(model)(xs), expected)
    # a batched weight runs the op once per element
    w = torch.randn(3, 4, 3, 3, 3, dtype=F64)
    x = torch.randn(2, 3, 6, 6, dtype=F64)
    got = torch.func.vmap(lambda w: ops.conv2d(x, w, None, (1, 1), (1, 1), (1, 1), 1, "zeros", "auto", False))(w)
    torch.testing.assert_close(got, torch.stack([nn.functional.conv2d(x, wi, padding=1) for wi in w]))


# --------------------------------------------------------------------------- DDP


def test_ddp_two_processes(tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        import torch_ddp_worker as worker
    finally:
        sys.path.remove(str(HERE))
    store = tmp_path / "store"
    outs = [tmp_path / f"rank{r}.pt" for r in range(2)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYCONV_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(HERE / "torch_ddp_worker.py"), str(r), "2", str(store),
                               str(outs[r])], env=env, cwd=tmp_path) for r in range(2)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    model, x, y = worker.model_and_data()
    worker.train(pt.convert(model), x, y)  # one process, the whole batch
    expected = model.state_dict()
    for out in outs:
        got = torch.load(out)
        assert list(got) == list(expected)
        for k in expected:
            torch.testing.assert_close(got[k], expected[k], rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- the model zoo


def _zoo():
    spec = importlib.util.spec_from_file_location("torch_models", ROOT / "benchmarks" / "torch_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "vgg11", "squeezenet1_1"])
def test_zoo_eval_logits_equal_torch(name):
    zoo = _zoo()
    torch.manual_seed(0)
    model = zoo.MODELS[name]().eval()
    assert sum(p.numel() for p in model.parameters()) == zoo.PARAMETERS[name]
    for m in model.modules():  # random BatchNorm statistics, so that the folding-free path is exercised
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        got = pt.convert(model)(x)
    scale = expected.abs().max()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * float(scale))
    s = pt.stats()
    n_conv = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert s["Conv2d"]["pyconv"] == n_conv and s["Conv2d"]["fallbacks"] == 0


def test_zoo_resnet18_training_gradients_equal_torch():
    zoo = _zoo()
    torch.manual_seed(0)
    model = zoo.resnet18(num_classes=10).double()
    x = torch.randn(2, 3, 32, 32, dtype=F64)
    target = torch.tensor([1, 7])
    loss = nn.functional.cross_entropy(model(x), target)
    expected = torch.autograd.grad(loss, list(model.parameters()))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    conv = pt.convert(model)
    got = torch.autograd.grad(nn.functional.cross_entropy(conv(x), target), list(conv.parameters()))
    for a, b in zip(got, expected):  # float64; BatchNorm over 2 images at 1x1 amplifies rounding
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8 * float(b.abs().max()))
