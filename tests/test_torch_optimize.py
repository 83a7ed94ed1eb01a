"""pyconv.torch.optimize: torch models as the fused inference graph, checked against eager torch."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import pyconv.torch as pt  # noqa: E402
from torch import nn  # noqa: E402

torch.manual_seed(0)


def _randomise_bn(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


class Block(nn.Module):  # ResNet's basic block: conv-BN-ReLU-conv-BN + shortcut, ReLU
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) \
            if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.b1(self.c1(x)))
        out = self.b2(self.c2(out))
        out += self.down(x)
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(Block(8, 8, 1), Block(8, 16, 2))
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


class InvertedResidual(nn.Module):  # MobileNetV2: expand 1x1, depthwise 3x3, project 1x1, ReLU6
    def __init__(self, c, expand):
        super().__init__()
        h = c * expand
        self.conv = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(inplace=True),
                                  nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                  nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.conv(x)


class SqueezeExcite(nn.Module):  # EfficientNet's SE with SiLU and a sigmoid gate (a Mul)
    def __init__(self, c):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, 4, 1), nn.Conv2d(4, c, 1)

    def forward(self, x):
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(s))))
        return x * s


class Fire(nn.Module):  # SqueezeNet: squeeze 1x1, expand 1x1 and 3x3, concatenated
    def __init__(self, cin, s, e):
        super().__init__()
        self.sq, self.e1, self.e3 = nn.Conv2d(cin, s, 1), nn.Conv2d(s, e, 1), nn.Conv2d(s, e, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.sq(x))
        return torch.cat([torch.relu(self.e1(x)), torch.relu(self.e3(x))], 1)


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.Hardswish())
        self.ir = InvertedResidual(16, 4)
        self.se = SqueezeExcite(16)
        self.fire = Fire(16, 8, 12)
        self.pool = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(24 * 9 * 9, 5)

    def forward(self, x):
        x = self.pool(self.fire(self.se(self.ir(self.stem(x)))))
        return self.fc(self.drop(x.view(x.size(0), -1)))


class Unusual(nn.Module):  # a module and a function with no graph op: they stay torch's
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.head = nn.Conv2d(1, 2, 3, padding=2, dilation=2)

    def forward(self, x):
        y = self.shuffle(torch.tanh(self.conv(x)))
        return self.head(y), torch.sin(torch.clamp(y, -0.5, 0.5))


MODELS = {"resnet": TinyResNet, "mixed": Mixed}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("batch", [1, 3])
def test_optimized_model_equals_eager(name, batch):
    model = _randomise_bn(MODELS[name]())
    fast = pt.optimize(model)
    assert fast.kept_in_torch == ()  # every traced call has a graph op
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    y = fast(x)
    assert isinstance(y, torch.Tensor) and y.shape == ref.shape and y.dtype == torch.float32
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_folding_and_fusion_happened():
    fast = pt.optimize(_randomise_bn(TinyResNet()))
    ops = [n.op for n in fast.graph.nodes]
    assert "BatchNormalization" not in ops  # every BN follows a conv: folded
    rows = fast.summary(torch.randn(2, 3, 32, 32))
    text = repr(rows)
    assert "Relu" in text or "relu" in text.lower()
    plan_ops = [n.op for n in fast._plan([np.zeros((2, 3, 32, 32), np.float32)]).plan_for(((2, 3, 32, 32),)).graph.nodes]
    assert "Add" not in plan_ops and "Relu" not in plan_ops  # residual adds and ReLUs ride in conv epilogues


def test_calls_without_a_graph_op_stay_torch_and_several_outputs():
    model = Unusual().eval()
    fast = pt.optimize(model)
    assert set(fast.kept_in_torch) == {"shuffle", "sin"}
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        ref = model(x)
    ys = fast(x)
    assert isinstance(ys, tuple) and len(ys) == 2
    for y, r in zip(ys, ref):
        torch.testing.assert_close(y, r, rtol=1e-5, atol=1e-6)


def test_original_is_untouched_and_weights_are_copied():
    model = _randomise_bn(TinyResNet())
    before = copy.deepcopy(model.state_dict())
    fast = pt.optimize(model)
    x = torch.randn(1, 3, 32, 32)
    y0 = fast(x)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        model.fc.weight.mul_(2)  # a later change of the model does not reach the optimised copy
    torch.testing.assert_close(fast(x), y0)
    assert not model.training and type(model.stem[0]) is nn.Conv2d


def test_bad_models_and_inputs():
    with pytest.raises(ValueError, match="model.eval"):
        pt.optimize(TinyResNet())  # training mode
    with pytest.raises(TypeError, match="torch.nn.Module"):
        pt.optimize(lambda x: x)

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow: fx cannot trace it

    with pytest.raises(ValueError, match="torch.fx cannot trace Branchy"):
        pt.optimize(Branchy().eval())
    fast = pt.optimize(_randomise_bn(TinyResNet()))
    with pytest.raises(ValueError, match="CPU float32"):
        fast(torch.randn(1, 3, 32, 32, dtype=torch.float64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fast(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="Conv"):  # the graph's error names the node and the shapes
        fast(torch.randn(1, 4, 32, 32))
    with pytest.raises(TypeError, match="1 input"):
        fast(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32))


def test_other_input_sizes_are_specialised_on_first_use():
    model = _randomise_bn(TinyResNet())
    fast = pt.optimize(model)
    for shape in [(1, 3, 32, 32), (2, 3, 48, 40), (1, 3, 32, 32)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
    assert len(fast._compiled) == 2
