"""max_pool2d / avg_pool2d forward and backward against the reference (and torch)."""

import numpy as np
import pytest

import cases
import torch_oracles as oracle
from pyconv import _reference as ref
from conftest import check_close

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

DTYPES = cases.DTYPES
seeded = cases.seeded
DT_IDS = ["f32", "f64"]
AVG_VARIANTS = [(True, None), (False, None), (True, 3), (False, 2)]   # (count_include_pad, divisor_override)
BAD_SIZE = r"kernel_size|input|padding|dilation"


def distinct(shape, key):
    """Distinct float32-exact values (no ties) in random order."""
    n = int(np.prod(shape))
    return (seeded("distinct", key).permutation(n).reshape(shape) / 4.0 - n / 8.0)


# --------------------------------------------------------------------------
# cached references for the sweep (dtype independent: data is float32-exact)
# --------------------------------------------------------------------------
_REF = {}


def sweep_refs(geom, ceil_mode, H, W):
    key = (geom, ceil_mode, H, W)
    if key not in _REF:
        k, s, p, d = geom
        x = distinct((2, 3, H, W), key)
        oh, ow = ref.pool2d_output_shape((H, W), k, s, p, d, ceil_mode)
        if oh < 1 or ow < 1:
            _REF[key] = (x, None)
            return _REF[key]
        y, idx = ref.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
        gy = seeded("gy", key).uniform(-1, 1, y.shape).astype(np.float32).astype(np.float64)
        r = dict(y=y, idx=idx, gy=gy, empty=ref.max_pool2d_has_empty_window((H, W), k, s, p, d, ceil_mode))
        r["gx"] = None if r["empty"] else ref.max_pool2d_grad(gy, x, k, s, p, d, ceil_mode)
        if d == 1:
            for cip, div in AVG_VARIANTS:
                r["avg", cip, div] = ref.avg_pool2d(x, k, s, p, ceil_mode, cip, div)
                r["avg_grad", cip, div] = ref.avg_pool2d_grad(gy, x.shape, k, s, p, ceil_mode, cip, div)
        _REF[key] = (x, r)
    return _REF[key]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("ceil_mode", [False, True], ids=["floor", "ceil"])
@pytest.mark.parametrize("geom", cases.POOL_GEOMS, ids=cases.pool_geom_id)
def test_pool_sweep(geom, ceil_mode, dtype, isa, poison):
    """kernel 1..4, stride 1..3, pad 0..k//2, dilation 1..2, sizes 1..9, ceil/floor."""
    k, s, p, d = geom
    ks = (k, k) if k % 2 else k          # int and tuple forms both in use
    for H, W in cases.POOL_SIZES:
        x64, r = sweep_refs(geom, ceil_mode, H, W)
        x = x64.astype(dtype)
        msg = f"{cases.pool_geom_id(geom)} ceil={ceil_mode} H={H} W={W} isa={isa}"
        if r is None:   # kernel larger than the padded input
            with pytest.raises(ValueError, match=BAD_SIZE):
                F.max_pool2d(x, ks, s, p, d, ceil_mode)
            if d == 1:
                with pytest.raises(ValueError, match=BAD_SIZE):
                    F.avg_pool2d(x, ks, s, p, ceil_mode)
            continue
        x0 = x.copy()
        assert tuple(F.pool2d_output_shape(x.shape, ks, s, p, d, ceil_mode)) == r["y"].shape, msg
        y = F.max_pool2d(x, ks, s, p, d, ceil_mode)
        check_close(y, r["y"], dtype=dtype, case=msg)
        y2, idx = F.max_pool2d(x, ks, s, p, d, ceil_mode, return_indices=True)
        np.testing.assert_array_equal(y2, y, err_msg=msg)
        assert idx.dtype == np.int64 and idx.shape == y.shape, msg
        gy = r["gy"].astype(dtype)
        if not r["empty"]:
            np.testing.assert_array_equal(idx, r["idx"], err_msg=msg)
            kk = k * k  # max number of windows sharing an input element
            check_close(F.max_pool2d_grad(gy, x, ks, s, p, d, ceil_mode), r["gx"],
                        dtype=dtype, k=kk, case=msg + " grad")
            check_close(F.max_pool2d_grad(gy, x, ks, s, p, d, ceil_mode, indices=idx), r["gx"],
                        dtype=dtype, k=kk, case=msg + " grad(indices)")
        if d == 1:
            for cip, div in AVG_VARIANTS:
                m2 = f"{msg} count_include_pad={cip} divisor_override={div}"
                a = F.avg_pool2d(x, ks, s, p, ceil_mode, cip, div)
                check_close(a, r["avg", cip, div], dtype=dtype, k=k * k, case=m2)
                ga = F.avg_pool2d_grad(gy, x.shape, ks, s, p, ceil_mode, cip, div)
                check_close(ga, r["avg_grad", cip, div], dtype=dtype, k=k * k, case=m2 + " grad")
        np.testing.assert_array_equal(x, x0, err_msg="input modified")
        np.testing.assert_array_equal(gy, r["gy"].astype(dtype), err_msg="grad_output modified")


def test_stride_none_means_kernel(pc):
    x = distinct((1, 2, 9, 8), "stride-none")
    for ks in (2, (3, 2)):
        np.testing.assert_array_equal(F.max_pool2d(x, ks), F.max_pool2d(x, ks, ks))
        np.testing.assert_array_equal(F.avg_pool2d(x, ks), F.avg_pool2d(x, ks, ks))
        np.testing.assert_array_equal(F.max_pool2d(x, ks), ref.max_pool2d(x, ks))
        gy = np.ones(ref.max_pool2d(x, ks).shape)
        np.testing.assert_array_equal(F.max_pool2d_grad(gy, x, ks), ref.max_pool2d_grad(gy, x, ks))
        np.testing.assert_allclose(F.avg_pool2d_grad(gy, x.shape, ks), ref.avg_pool2d_grad(gy, x.shape, ks))
        assert tuple(F.pool2d_output_shape(x.shape, ks)) == ref.pool2d_output_shape(x.shape, ks)


# --------------------------------------------------------------------------
# ties / NaN / infinities (SIMD max paths must follow torch's scalar rule)
# --------------------------------------------------------------------------
def special_input(name, shape=(2, 3, 9, 33)):
    rng = seeded("special", name)
    if name == "ties":
        return rng.integers(0, 3, shape).astype(np.float64)
    if name == "nan":
        x = rng.uniform(-1, 1, shape)
        x[rng.random(shape) < 0.15] = np.nan
        return x
    if name == "neginf":
        x = np.full(shape, -np.inf)
        x[rng.random(shape) < 0.1] = 1.0
        return x
    if name == "mixed":
        x = rng.integers(-2, 3, shape).astype(np.float64)
        u = rng.random(shape)
        x[u < 0.1] = np.nan
        x[(u >= 0.1) & (u < 0.25)] = -np.inf
        x[(u >= 0.25) & (u < 0.3)] = np.inf
        return x
    if name == "signed_zero":
        return rng.choice([0.0, -0.0], shape) * rng.integers(0, 2, shape)
    raise AssertionError(name)


SPECIAL_GEOMS = [(2, 2, 0, 1, False), (3, 1, 1, 1, True), (3, 2, 1, 2, True),
                 ((2, 3), (1, 2), (1, 1), 1, False), (4, 3, 2, 1, True), ((1, 4), 1, (0, 2), (1, 2), False)]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("geom", SPECIAL_GEOMS, ids=str)
@pytest.mark.parametrize("name", ["ties", "nan", "neginf", "mixed", "signed_zero"])
def test_max_pool_special_values(name, geom, dtype, isa, poison):
    k, s, p, d, cm = geom
    x64 = special_input(name)
    x = x64.astype(dtype)
    y_ref, idx_ref = ref.max_pool2d(x64, k, s, p, d, cm, return_indices=True)
    y, idx = F.max_pool2d(x, k, s, p, d, cm, return_indices=True)
    msg = f"{name} {geom} isa={isa}"
    check_close(y, y_ref, dtype=dtype, case=msg)
    np.testing.assert_array_equal(idx, idx_ref, err_msg=msg)
    gy = seeded("gy", name).uniform(-1, 1, y.shape).astype(dtype)
    g_ref = ref.max_pool2d_grad(gy, x64, k, s, p, d, cm)
    check_close(F.max_pool2d_grad(gy, x, k, s, p, d, cm), g_ref, dtype=dtype, k=16, case=msg)
    check_close(F.max_pool2d_grad(gy, x, k, s, p, d, cm, indices=idx), g_ref, dtype=dtype, k=16, case=msg)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name", ["nan", "mixed"])
def test_max_pool_special_values_vs_torch(name, dtype):
    pytest.importorskip("torch")
    x64 = special_input(name, (1, 2, 7, 17))
    for k, s, p, d, cm in SPECIAL_GEOMS:
        ty, tidx, _ = oracle.torch_max_pool2d(x64, None, k, s, p, d, cm)
        y, idx = F.max_pool2d(x64.astype(dtype), k, s, p, d, cm, return_indices=True)
        check_close(y, ty, dtype=dtype, case=str((k, s, p, d, cm)))
        np.testing.assert_array_equal(idx, tidx)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("name", ["nan", "mixed"])
def test_avg_pool_nan_inf_propagate(name, dtype, isa, poison):
    x64 = special_input(name)
    x = x64.astype(dtype)
    for k, s, p, _, cm in SPECIAL_GEOMS:
        for cip, div in AVG_VARIANTS:
            msg = f"{name} {(k, s, p, cm, cip, div)} isa={isa}"
            y_ref = ref.avg_pool2d(x64, k, s, p, cm, cip, div)
            assert np.isnan(y_ref).any()
            check_close(F.avg_pool2d(x, k, s, p, cm, cip, div), y_ref, dtype=dtype, k=16, case=msg)
            gy = special_input(name, y_ref.shape)
            check_close(F.avg_pool2d_grad(gy.astype(dtype), x.shape, k, s, p, cm, cip, div),
                        ref.avg_pool2d_grad(gy, x.shape, k, s, p, cm, cip, div),
                        dtype=dtype, k=16, case=msg + " grad")


# --------------------------------------------------------------------------
# grad with explicit indices is honoured (not recomputed)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("geom", SPECIAL_GEOMS, ids=str)
def test_max_pool_grad_uses_given_indices(geom, dtype, poison):
    k, s, p, d, cm = geom
    x64 = distinct((2, 3, 8, 11), ("idx", geom))
    _, argmin = ref.max_pool2d(-x64, k, s, p, d, cm, return_indices=True)   # valid, but not the argmax
    gy = seeded("gy", geom).uniform(-1, 1, argmin.shape)
    expected = ref.max_pool2d_grad(gy, x64, k, s, p, d, cm, indices=argmin)
    assert not np.allclose(expected, ref.max_pool2d_grad(gy, x64, k, s, p, d, cm))
    got = F.max_pool2d_grad(gy.astype(dtype), x64.astype(dtype), k, s, p, d, cm, indices=argmin)
    check_close(got, expected, dtype=dtype, k=16, case=str(geom))


# --------------------------------------------------------------------------
# against torch directly (a subset)
# --------------------------------------------------------------------------
TORCH_POOL_GEOMS = [g for i, g in enumerate(cases.POOL_GEOMS) if i % 3 == 0]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("geom", TORCH_POOL_GEOMS, ids=cases.pool_geom_id)
def test_pool_against_torch(geom, dtype):
    pytest.importorskip("torch")
    k, s, p, d = geom
    for cm in (False, True):
        for H, W in [(5, 8), (9, 4), (7, 7)]:
            if min(ref.pool2d_output_shape((H, W), k, s, p, d, cm)) < 1:
                continue
            if ref.max_pool2d_has_empty_window((H, W), k, s, p, d, cm):
                continue
            x64 = distinct((2, 2, H, W), (geom, H, W, "torch"))
            x = x64.astype(dtype)
            msg = f"{geom} ceil={cm} H={H} W={W}"
            gy = seeded(msg).uniform(-1, 1, ref.pool2d_output_shape((2, 2, H, W), k, s, p, d, cm))
            ty, tidx, tgx = oracle.torch_max_pool2d(x64, gy, k, s, p, d, cm)
            y, idx = F.max_pool2d(x, k, s, p, d, cm, return_indices=True)
            check_close(y, ty, dtype=dtype, case=msg)
            np.testing.assert_array_equal(idx, tidx, err_msg=msg)
            check_close(F.max_pool2d_grad(gy.astype(dtype), x, k, s, p, d, cm), tgx,
                        dtype=dtype, k=k * k, case=msg)
            if d != 1:
                continue
            for cip, div in AVG_VARIANTS:
                ta, tga = oracle.torch_avg_pool2d(x64, gy, k, s, p, cm, cip, div)
                check_close(F.avg_pool2d(x, k, s, p, cm, cip, div), ta, dtype=dtype, k=k * k, case=msg)
                check_close(F.avg_pool2d_grad(gy.astype(dtype), x.shape, k, s, p, cm, cip, div), tga,
                            dtype=dtype, k=k * k, case=msg)


# --------------------------------------------------------------------------
# layouts, unbatched, empty batch, SIMD-edge widths / channels
# --------------------------------------------------------------------------
def layouts(a):
    flip = (slice(None, None, -1),) * a.ndim
    big = np.full(tuple(2 * n + 1 for n in a.shape), -7 if a.dtype.kind == "i" else np.nan, a.dtype)
    strided = big[(slice(1, None, 2),) * a.ndim]
    strided[...] = a
    buf = np.zeros(a.nbytes + 1, np.uint8)
    unaligned = buf[1:].view(a.dtype).reshape(a.shape)
    unaligned[...] = a
    readonly = a.copy()
    readonly.flags.writeable = False
    out = {"strided": strided, "negative": a[flip].copy()[flip], "fortran": np.asfortranarray(a),
           "unaligned": unaligned, "readonly": readonly}
    if a.ndim == 4:
        out["channels_last"] = np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return out


@pytest.mark.parametrize("kind", ["strided", "negative", "fortran", "unaligned", "readonly", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_pool_noncontiguous_equals_contiguous(dtype, kind):
    x = distinct((2, 5, 9, 11), "layout").astype(dtype)
    args = (3, 2, 1, 1, True)
    y, idx = F.max_pool2d(x, *args, return_indices=True)
    gy = seeded("layout-gy").uniform(-1, 1, y.shape).astype(dtype)
    gm = F.max_pool2d_grad(gy, x, *args)
    gmi = F.max_pool2d_grad(gy, x, *args, indices=idx)
    a = F.avg_pool2d(x, 3, 2, 1, True, False)
    ga = F.avg_pool2d_grad(gy, x.shape, 3, 2, 1, True, False)
    lx, lg, li = layouts(x)[kind], layouts(gy)[kind], layouts(idx)[kind]
    y2, idx2 = F.max_pool2d(lx, *args, return_indices=True)
    np.testing.assert_array_equal(y2, y, err_msg=kind)
    np.testing.assert_array_equal(idx2, idx, err_msg=kind)
    np.testing.assert_array_equal(F.max_pool2d_grad(lg, lx, *args), gm, err_msg=kind)
    np.testing.assert_array_equal(F.max_pool2d_grad(lg, lx, *args, indices=li),
                                  gmi, err_msg=kind)
    np.testing.assert_array_equal(F.avg_pool2d(lx, 3, 2, 1, True, False), a, err_msg=kind)
    np.testing.assert_array_equal(F.avg_pool2d_grad(lg, x.shape, 3, 2, 1, True, False), ga,
                                  err_msg=kind)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_pool_unbatched_3d(dtype, poison):
    x64 = distinct((3, 7, 10), "3d")
    x = x64.astype(dtype)
    args = ((3, 2), (2, 1), (1, 1), 1, True)
    y, idx = F.max_pool2d(x, *args, return_indices=True)
    y_ref, idx_ref = ref.max_pool2d(x64, *args, return_indices=True)
    assert y.ndim == 3 and idx.ndim == 3
    check_close(y, y_ref, dtype=dtype)
    np.testing.assert_array_equal(idx, idx_ref)
    gy = seeded("3d-gy").uniform(-1, 1, y.shape)
    g_ref = ref.max_pool2d_grad(gy, x64, *args)
    check_close(F.max_pool2d_grad(gy.astype(dtype), x, *args), g_ref, dtype=dtype, k=6)
    check_close(F.max_pool2d_grad(gy.astype(dtype), x, *args, indices=idx), g_ref, dtype=dtype, k=6)
    a_args = ((3, 2), (2, 1), (1, 1), True, False)
    check_close(F.avg_pool2d(x, *a_args), ref.avg_pool2d(x64, *a_args), dtype=dtype, k=6)
    check_close(F.avg_pool2d_grad(gy.astype(dtype), x.shape, *a_args),
                ref.avg_pool2d_grad(gy, x.shape, *a_args), dtype=dtype, k=6)
    assert tuple(F.pool2d_output_shape(x.shape, *args)) == y_ref.shape


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_pool_empty_batch(dtype, poison):
    x = np.zeros((0, 3, 6, 5), dtype)
    y, idx = F.max_pool2d(x, 2, 2, 1, 1, True, return_indices=True)
    assert y.shape == idx.shape == (0, 3, 4, 3) and y.dtype == dtype and idx.dtype == np.int64
    assert F.max_pool2d(x, 2).shape == (0, 3, 3, 2)
    gy = np.zeros((0, 3, 4, 3), dtype)
    g = F.max_pool2d_grad(gy, x, 2, 2, 1, 1, True)
    assert g.shape == x.shape and g.dtype == dtype
    g = F.max_pool2d_grad(gy, x, 2, 2, 1, 1, True, indices=idx)
    assert g.shape == x.shape and g.dtype == dtype
    a = F.avg_pool2d(x, 2, 2, 1, True)
    assert a.shape == (0, 3, 4, 3) and a.dtype == dtype
    ga = F.avg_pool2d_grad(gy, x.shape, 2, 2, 1, True)
    assert ga.shape == x.shape and ga.dtype == dtype
    assert tuple(F.pool2d_output_shape(x.shape, 2, 2, 1, 1, True)) == (0, 3, 4, 3)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("cw", [(c, w) for c, w in zip(cases.EDGE_VALUES, cases.EDGE_VALUES[::-1])],
                         ids=lambda t: f"c{t[0]}w{t[1]}")
def test_pool_simd_edges(cw, dtype, isa, poison):
    c, w = cw
    x64 = distinct((2, c, 5, w + 2), ("edge", c, w))
    x = x64.astype(dtype)
    for args in [(2, 1, 0, 1, False), (3, 2, 1, 1, True), ((1, 3), 1, (0, 1), (1, 2), True)]:
        msg = f"c={c} w={w} {args} isa={isa}"
        y_ref, idx_ref = ref.max_pool2d(x64, *args, return_indices=True)
        y, idx = F.max_pool2d(x, *args, return_indices=True)
        check_close(y, y_ref, dtype=dtype, case=msg)
        np.testing.assert_array_equal(idx, idx_ref, err_msg=msg)
        gy = seeded(msg).uniform(-1, 1, y.shape)
        check_close(F.max_pool2d_grad(gy.astype(dtype), x, *args),
                    ref.max_pool2d_grad(gy, x64, *args), dtype=dtype, k=9, case=msg)
        if args[3] == 1:
            k, s, p, _, cm = args
            check_close(F.avg_pool2d(x, k, s, p, cm), ref.avg_pool2d(x64, k, s, p, cm),
                        dtype=dtype, k=9, case=msg)
            check_close(F.avg_pool2d_grad(gy.astype(dtype), x.shape, k, s, p, cm),
                        ref.avg_pool2d_grad(gy, x.shape, k, s, p, cm), dtype=dtype, k=9, case=msg)
