"""Shared fixtures: seeded rng, ISA cap, output poisoning, tolerant compare."""

import math
import zlib

import numpy as np
import pytest

import cases
from pyconv._reference import tolerances
import hypothesis_profiles  # noqa: F401  (profiles must exist before the hypothesis plugin loads one)


def pytest_configure(config):
    # expected noise: the numpy reference computing with NaN/Inf on purpose, and
    # torch's note about asymmetric 'same' padding for even kernels
    config.addinivalue_line(
        "filterwarnings", "ignore:invalid value encountered:RuntimeWarning:pyconv._reference")
    config.addinivalue_line(
        "filterwarnings", "ignore:invalid value encountered:RuntimeWarning:numpy")
    config.addinivalue_line(
        "filterwarnings", "ignore:Using padding='same' with even kernel:UserWarning")


def pytest_generate_tests(metafunc):
    # every test that asks for `isa` runs once per SIMD path this CPU can run
    if "isa" in metafunc.fixturenames:
        metafunc.parametrize("isa", cases.available_isas(), indirect=True)


@pytest.fixture
def pc():
    """The pyconv module (skips if it is not built/installed yet)."""
    return pytest.importorskip("pyconv")


@pytest.fixture
def isa(request, pc):
    """Cap pyconv's ISA at request.param for the test, restore afterwards."""
    name = request.param
    prev = pc.set_max_isa(name)
    try:
        assert pc.get_max_isa() == name, (name, pc.get_max_isa(), pc.cpu_isa())
        yield name
    finally:
        pc.set_max_isa(prev)


@pytest.fixture
def poison(pc):
    """Fill every pyconv output buffer with NaN before kernels write it."""
    pc._core.set_poison(True)
    try:
        yield
    finally:
        pc._core.set_poison(False)


@pytest.fixture
def rng(request):
    """Generator seeded from the test id: deterministic, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


_DIR_CODE = {d: i for i, d in enumerate(cases.DIRECTIONS)}


def conv_algo_run(algo, direction, x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, mode="zeros"):
    """The algorithm pyconv runs for `algo=` (the C++ implementation lists' plan, float32)."""
    import pyconv
    F = pyconv.functional
    spec = F._ConvSpec("test", tuple(x_shape), tuple(w_shape), stride, padding, dilation, groups, mode)
    return pyconv._core.conv2d_plan(spec.input_shape, spec.weight_shape, spec.stride, spec.pads, spec.dilation, groups,
                                    mode, pyconv._core.directions()[_DIR_CODE[direction]], algo)["algo"]


def check_close(got, expected, *, dtype, k=1, scale=1.0, case="", algo=None):
    """Assert pyconv result `got` matches float64 `expected` (shape, dtype, values).

    NaN must match NaN, infinities must match exactly. `algo`: what computed it (conv_algo_run).
    """
    assert isinstance(got, np.ndarray), f"{case}: result is {type(got)}"
    assert got.shape == tuple(expected.shape), f"{case}: shape {got.shape} != {expected.shape}"
    assert got.dtype == np.dtype(dtype), f"{case}: dtype {got.dtype} != {np.dtype(dtype)}"
    rtol, atol = tolerances(dtype, k, scale, algo)
    if algo == "winograd" and not np.isfinite(expected).all():
        # A tile's inputs are mixed with weights of both signs: an inf turns its whole 4x4 output
        # tiles (or all 9 taps of a filter's weight gradient) into NaN (inf - inf). Non-finite
        # stays non-finite; the rest must still match.
        special = ~np.isfinite(expected)
        assert not np.isfinite(got[special]).any(), f"{case}: a NaN/inf did not propagate"
        keep = np.isfinite(got)
        got, expected = got[keep], expected[keep]
    np.testing.assert_allclose(got.astype(np.float64), expected, rtol=rtol, atol=atol,
                               equal_nan=True, err_msg=str(case))


@pytest.fixture
def assert_close():
    return check_close
