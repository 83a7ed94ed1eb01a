"""The zoo's layer lists (pyconv/zoo.py) against the models' published sizes, and its report."""
import pytest

from pyconv import bench, zoo

# torchvision's parameter totals; the zoo counts conv weights (+ bias where the conv has one), so
# add each model's BatchNorm affine parameters (2 per channel of every conv without bias) and its
# fully-connected classifier.
TOTALS = {"resnet18": (11_689_512, 513_000), "resnet50": (25_557_032, 2_049_000),
          "mobilenet_v2": (3_504_872, 1_281_000), "efficientnet_b0": (5_288_548, 1_281_000),
          "squeezenet1_1": (1_235_496, 0), "vgg11": (132_863_336, 123_642_856)}
CONVS = {"resnet18": 20, "resnet50": 53, "mobilenet_v2": 52, "efficientnet_b0": 81, "squeezenet1_1": 26, "vgg11": 8}
LAST = {"resnet18": 7, "resnet50": 7, "mobilenet_v2": 7, "efficientnet_b0": 7, "squeezenet1_1": 13, "vgg11": 14}


@pytest.mark.parametrize("model", list(zoo.MODELS))
def test_parameters_match_the_published_totals(model):
    layers = zoo.conv_layers(model)
    total, fc = TOTALS[model]
    bn = 0 if model in ("squeezenet1_1", "vgg11") else 2 * sum(l.k for l in layers if not l.bias)
    assert zoo.parameters(model) + bn + fc == total
    assert len(layers) == CONVS[model]
    assert layers[-1].out_size() == LAST[model]
    assert sum(n for _, n in zoo.distinct(model)) == len(layers)


def test_depthwise_layers_are_depthwise():
    dw = [l for l in zoo.conv_layers("efficientnet_b0") if l.groups > 1]
    assert len(dw) == 16 and all(l.groups == l.c == l.k for l in dw)
    assert {l.r for l in dw} == {3, 5} and {l.stride for l in dw} == {1, 2}
    assert any(l.c == 1152 and l.h == 7 and l.r == 5 for l in dw)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown zoo model 'resnet9'"):
        zoo.conv_layers("resnet9")


def test_zoo_suite_and_report():
    names = [c.name for c in bench.ZOO]
    assert len(names) == len(set(names))
    assert {c.n for c in bench.ZOO} == set(zoo.BATCHES)
    rows = []
    for c in bench.ZOO:
        for d in bench.DIRECTIONS:
            rows.append(dict(case=c.name, direction=d, algo="auto", ms=1.0, torch_ms=2.0, ratio=2.0))
    report = bench.zoo_report(rows)
    lines = report.splitlines()
    assert sum(line.startswith("resnet18 ") for line in lines) == 2
    r18 = next(line for line in lines if line.startswith("resnet18 ") and line.split()[1] == "1")
    # 20 convs at 1 ms each: 20 ms inference, 60 ms training, torch twice that
    assert r18.split()[2:4] == ["20.00", "40.00"] and r18.split()[5:7] == ["60.00", "120.00"]
