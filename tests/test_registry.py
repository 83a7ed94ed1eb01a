"""The registry (cpp/include/pyconv/registry.def) and what hangs off it: every algorithm, direction
and ISA has compiled kernels, implementation-list entries that run, Python names that read it, and
test parametrisations that cover it; pyconv/_core.pyi declares exactly the module's public API."""
import ast
import importlib
import os

import pytest

import cases
import conftest
import pyconv
from pyconv import _core
from pyconv import functional as F
from pyconv._reference import ConvCase

check = importlib.import_module("pyconv.check")  # pyconv.check is also the function

ALGOS = [a for a in _core.algorithms() if a != "auto"]
DIRECTIONS = _core.directions()
FLOAT_COMPILED = [i for i in _core.compiled_isas() if i in pyconv._runtime.FLOAT_ISAS]
# A layer every algorithm applies to in every direction (3x3, stride 1, enough channels and tiles).
LAYER = dict(input_shape=(2, 16, 16, 16), weight_shape=(16, 16, 3, 3), stride=(1, 1), pads=(1, 1, 1, 1),
             dilation=(1, 1), groups=1, padding_mode="zeros")


def test_registry_lists():
    assert _core.algorithms()[0] == "auto" and len(set(_core.algorithms())) == len(_core.algorithms())
    assert DIRECTIONS == ["fwd", "bwd_data", "bwd_weight"]
    assert _core.padding_modes()[0] == "zeros"
    assert set(_core.compiled_isas()) <= set(_core.isas()) and _core.isas()[0] == "scalar"


def test_python_reads_the_registry():
    assert F.CONV_ALGORITHMS == tuple(_core.algorithms())
    assert F.PADDING_MODES == tuple(_core.padding_modes())
    assert [F._ALGO_CODE[a] for a in _core.algorithms()] == list(range(len(_core.algorithms())))
    assert pyconv._runtime.ISAS == tuple(_core.isas())
    from pyconv.cli import build_parser
    bench = build_parser()._subparsers._group_actions[0].choices["bench"]
    algo = next(a for a in bench._actions if a.dest == "algo")
    assert list(algo.choices) == _core.algorithms()


def test_kernel_rows_read_every_column():
    rows = _core.kernels()
    assert [r["name"] for r in rows] == pyconv.kernels()
    for r in rows:
        assert set(r) == {"name", "family", "op", "direction", "algo", "isa"}
        assert r["isa"] in _core.compiled_isas()
        assert r["name"].endswith("_" + r["isa"])
        if r["op"] == "conv2d":
            assert r["algo"] in ALGOS + ["eltwise"], r
            assert r["direction"] in DIRECTIONS + ["any", "bwd_bias"], r


def test_float_isas_and_the_bfloat16_levels():
    assert pyconv._runtime.FLOAT_ISAS == tuple(i for i in _core.isas() if i not in ("avx512_bf16", "amx"))
    assert _core.isas()[-2:] == ["avx512_bf16", "amx"]  # above every float level
    rows = _core.kernels()
    assert {r["isa"] for r in rows} == set(_core.compiled_isas())
    for level in ("avx512_bf16", "amx"):  # they serve precision="bfloat16" only
        if level in _core.compiled_isas():
            assert [r["name"] for r in rows if r["isa"] == level] == ["conv2d_fwd_bf16_" + level]


@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_has_kernels_on_every_isa(algo):
    for isa in FLOAT_COMPILED:
        assert any(r["op"] == "conv2d" and r["algo"] == algo and r["isa"] == isa for r in _core.kernels()), isa


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_direction_has_kernels(direction):
    for isa in FLOAT_COMPILED:
        assert any(r["op"] == "conv2d" and r["direction"] == direction and r["isa"] == isa for r in _core.kernels())


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("algo", ALGOS)
def test_every_algorithm_has_an_implementation_list_entry(algo, direction):
    plan = _core.conv2d_plan(**LAYER, direction=direction, algo=algo)
    assert plan["algo"] == algo and not plan["fallback"], plan
    assert plan["entry"].startswith(f"conv2d_{direction}_"), plan


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_auto_walks_the_algorithm_the_selection_picks(direction):
    dcode = DIRECTIONS.index(direction)
    picked = _core.conv2d_choose_algo(LAYER["input_shape"], LAYER["weight_shape"], LAYER["stride"], LAYER["pads"],
                                      LAYER["dilation"], 1, 0, dcode)
    assert _core.conv2d_plan(**LAYER, direction=direction)["algo"] == picked


def test_forced_algorithm_falls_back_explicitly():
    plan = _core.conv2d_plan(**dict(LAYER, weight_shape=(16, 16, 2, 2)), direction="fwd", algo="winograd")
    assert plan["fallback"] and plan["algo"] == "im2col"
    assert [why for _, why in plan["skipped"]][:2] == [
        "needs a 3x3 kernel",
        "needs groups 1 and a 3x3 dilated stride-1 kernel or a kernel spanning 3 strides each way"]


def test_phase_split_winograd_runs_5x5_stride_2():
    """The case pyconv check used to grade with the non-Winograd tolerance (issue 13)."""
    kw = dict(LAYER, input_shape=(2, 8, 32, 32), weight_shape=(16, 8, 5, 5), stride=(2, 2), pads=(2, 2, 2, 2))
    for d in ("fwd", "bwd_weight"):
        plan = _core.conv2d_plan(**kw, direction=d, algo="winograd")
        assert plan["algo"] == "winograd" and plan["entry"].endswith("(phases)"), plan
    case = ConvCase(2, 8, 32, 32, 16, 5, 5, stride=2, padding=2)
    assert check._runs_winograd(case, "winograd", "fwd")


def test_test_parametrisations_cover_the_registry():
    assert set(cases.ALGOS) == set(_core.algorithms())
    assert set(cases.MODES) == set(_core.padding_modes())
    assert len(cases.DIRECTIONS) == len(DIRECTIONS)
    assert {conftest._DIR_CODE[d] for d in cases.DIRECTIONS} == set(range(len(DIRECTIONS)))
    assert set(check.ISAS) == set(_core.isas())
    assert set(check.available_isas()) <= set(_core.compiled_isas())
    assert {c.mode for c in check.CONV_CASES} == set(_core.padding_modes())


def _stub_names():
    path = os.path.join(os.path.dirname(pyconv.__file__), "_core.pyi")
    tree = ast.parse(open(path, encoding="utf-8").read())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets)
    return names


def test_stub_declares_exactly_the_module():
    public = {n for n in dir(_core) if not n.startswith("_")} | {"__version__"}
    helpers = {"Shape4", "Pair", "Pads4", "KernelRow", "Conv2dPlan"}  # stub-only type names
    stub = _stub_names()
    assert public - stub == set(), "missing from _core.pyi"
    assert stub - helpers - public == set(), "in _core.pyi but not in _core"
