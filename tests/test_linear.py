"""linear (+ gradients) against the reference and torch."""

import numpy as np
import pytest

import cases
from pyconv import _reference as ref
from conftest import check_close

pyconv = pytest.importorskip("pyconv")
F = pyconv.functional

DTYPES = cases.DTYPES
seeded, u = cases.seeded, cases.u
DT_IDS = ["f32", "f64"]


LINEAR_SHAPES = [  # (batch, in_features, out_features)
    (1, 1, 1), (3, 7, 8), (2, 8, 9), (5, 9, 7), (4, 15, 16), (3, 16, 17), (2, 17, 15), (6, 33, 33), (1, 64, 10),
    (1, 40, 19), (4, 100, 13), (2, 200, 37),  # batch <= 4: the matrix-vector kernel (row blocks and tails)
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bio", LINEAR_SHAPES, ids=lambda t: "b{}i{}o{}".format(*t))
def test_linear(bio, bias, dtype, isa, poison):
    n, fi, fo = bio
    x64, w64, b64 = u((n, fi), "lx", bio), u((fo, fi), "lw", bio), u((fo,), "lb", bio)
    gy64 = u((n, fo), "lgy", bio)
    x, w, b, gy = (a.astype(dtype) for a in (x64, w64, b64, gy64))
    saved = [a.copy() for a in (x, w, b, gy)]
    msg = f"{bio} bias={bias} isa={isa}"
    y = F.linear(x, w, b if bias else None)
    check_close(y, ref.linear(x64, w64, b64 if bias else None), dtype=dtype, k=fi + 1, case=msg)
    check_close(F.linear_grad_input(gy, w), ref.linear_grad_input(gy64, w64), dtype=dtype, k=fo, case=msg)
    check_close(F.linear_grad_weight(x, gy), ref.linear_grad_weight(x64, gy64), dtype=dtype, k=n, case=msg)
    check_close(F.linear_grad_bias(gy), ref.linear_grad_bias(gy64), dtype=dtype, k=n, case=msg)
    for a, a0 in zip((x, w, b, gy), saved):
        np.testing.assert_array_equal(a, a0, err_msg="input modified")


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_linear_against_torch(dtype):
    torch = pytest.importorskip("torch")
    x, w, b = (u(s, "lt", s).astype(dtype) for s in ((5, 12), (7, 12), (7,)))
    gy = u((5, 7), "lt-gy").astype(dtype)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.linear(xt, wt, bt)
    yt.backward(torch.tensor(gy))
    check_close(F.linear(x, w, b), yt.detach().numpy().astype(np.float64), dtype=dtype, k=13)
    check_close(F.linear_grad_input(gy, w), xt.grad.numpy().astype(np.float64), dtype=dtype, k=7)
    check_close(F.linear_grad_weight(x, gy), wt.grad.numpy().astype(np.float64), dtype=dtype, k=5)
    check_close(F.linear_grad_bias(gy), bt.grad.numpy().astype(np.float64), dtype=dtype, k=5)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_linear_empty_batch(dtype, poison):
    x = np.zeros((0, 6), dtype)
    w = np.ones((4, 6), dtype)
    b = np.ones(4, dtype)
    y = F.linear(x, w, b)
    assert y.shape == (0, 4) and y.dtype == dtype
    gy = np.zeros((0, 4), dtype)
    gx = F.linear_grad_input(gy, w)
    assert gx.shape == (0, 6) and gx.dtype == dtype
    gw = F.linear_grad_weight(x, gy)
    assert gw.dtype == dtype
    np.testing.assert_array_equal(gw, np.zeros((4, 6)))
    gb = F.linear_grad_bias(gy)
    assert gb.dtype == dtype
    np.testing.assert_array_equal(gb, np.zeros(4))


@pytest.mark.parametrize("lead", [(), (2, 3)], ids=["1d", "3d"])
def test_linear_other_leading_dims(lead):
    """torch.nn.functional.linear takes (*, in_features)."""
    x64, w64, b64 = u(lead + (6,), "lead", lead), u((4, 6), "lead-w"), u((4,), "lead-b")
    gy64 = u(lead + (4,), "lead-gy", lead)
    check_close(F.linear(x64, w64, b64), ref.linear(x64, w64, b64), dtype=np.float64, k=7)
    check_close(F.linear_grad_input(gy64, w64), ref.linear_grad_input(gy64, w64), dtype=np.float64, k=4)
    if lead:
        check_close(F.linear_grad_weight(x64, gy64), ref.linear_grad_weight(x64, gy64), dtype=np.float64, k=6)
        check_close(F.linear_grad_bias(gy64), ref.linear_grad_bias(gy64), dtype=np.float64, k=6)


@pytest.mark.parametrize("kind", ["strided", "negative", "fortran"])
def test_linear_noncontiguous(kind, rng):
    x, w, b, gy = (rng.standard_normal(s) for s in ((5, 9), (6, 9), (6,), (5, 6)))

    def lay(a):
        if kind == "strided":
            return np.repeat(a, 3, axis=-1)[..., 1::3]
        if kind == "negative":
            flip = (slice(None, None, -1),) * a.ndim
            return a[flip].copy()[flip]
        return np.asfortranarray(a)

    np.testing.assert_array_equal(F.linear(lay(x), lay(w), lay(b)), F.linear(x, w, b))
    np.testing.assert_array_equal(F.linear_grad_input(lay(gy), lay(w)), F.linear_grad_input(gy, w))
    np.testing.assert_array_equal(F.linear_grad_weight(lay(x), lay(gy)), F.linear_grad_weight(x, gy))
    np.testing.assert_array_equal(F.linear_grad_bias(lay(gy)), F.linear_grad_bias(gy))


def test_linear_nan_inf_propagate():
    x, w, b = u((3, 5), "ln-x"), u((4, 5), "ln-w"), u((4,), "ln-b")
    x[0, 1], x[2, 3] = np.nan, np.inf
    check_close(F.linear(x, w, b), ref.linear(x, w, b), dtype=np.float64, k=6)
    gy = u((3, 4), "ln-gy")
    gy[1, 2] = -np.inf
    check_close(F.linear_grad_input(gy, w), ref.linear_grad_input(gy, w), dtype=np.float64, k=4)
    check_close(F.linear_grad_weight(x, gy), ref.linear_grad_weight(x, gy), dtype=np.float64, k=3)
    check_close(F.linear_grad_bias(gy), ref.linear_grad_bias(gy), dtype=np.float64, k=3)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5])
def test_linear_small_batch_threads_and_rows(batch, dtype, isa):
    """Batches of 1-4 run the matrix-vector kernel split over output features: the same bits at 1
    and 2 threads, and each row as if computed alone."""
    rng = np.random.default_rng(batch)
    x = rng.uniform(-1, 1, (batch, 1283)).astype(dtype)
    w = rng.uniform(-1, 1, (1001, 1283)).astype(dtype)
    b = rng.uniform(-1, 1, 1001).astype(dtype)
    outs = {}
    for threads in (1, 2):
        pyconv.set_num_threads(threads)
        try:
            outs[threads] = F.linear(x, w, b)
        finally:
            pyconv.set_num_threads(2)
    assert outs[1].tobytes() == outs[2].tobytes()
    if batch <= 4:
        for i in range(batch):
            assert F.linear(x[i:i + 1], w, b).tobytes() == outs[1][i:i + 1].tobytes()
    check_close(outs[1], ref.linear(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)), dtype=dtype,
                k=1284, case=f"batch {batch} isa={isa}")
