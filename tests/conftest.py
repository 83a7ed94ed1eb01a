"""Shared fixtures: seeded rng, ISA cap, output poisoning, tolerant compare."""

import math
import zlib

import numpy as np
import pytest

import cases
import hypothesis_profiles  # noqa: F401  (profiles must exist before the hypothesis plugin loads one)


def pytest_configure(config):
    # expected noise: the numpy reference computing with NaN/Inf on purpose, and
    # torch's note about asymmetric 'same' padding for even kernels
    config.addinivalue_line(
        "filterwarnings", "ignore:invalid value encountered:RuntimeWarning:reference")
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


def tolerances(dtype, k=1, scale=1.0):
    """(rtol, atol) for a result that is a sum of k terms of magnitude ~scale."""
    root = math.sqrt(max(int(k), 1))
    if np.dtype(dtype) == np.float32:
        return 1e-4, 1e-5 * root * scale
    return 1e-10, 1e-11 * root * scale


def check_close(got, expected, *, dtype, k=1, scale=1.0, case=""):
    """Assert pyconv result `got` matches float64 `expected` (shape, dtype, values).

    NaN must match NaN, infinities must match exactly.
    """
    assert isinstance(got, np.ndarray), f"{case}: result is {type(got)}"
    assert got.shape == tuple(expected.shape), f"{case}: shape {got.shape} != {expected.shape}"
    assert got.dtype == np.dtype(dtype), f"{case}: dtype {got.dtype} != {np.dtype(dtype)}"
    rtol, atol = tolerances(dtype, k, scale)
    np.testing.assert_allclose(got.astype(np.float64), expected, rtol=rtol, atol=atol,
                               equal_nan=True, err_msg=str(case))


@pytest.fixture
def assert_close():
    return check_close
