"""relu / relu_grad against the reference and torch."""

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


SPECIALS = np.array([np.nan, -1.0, 0.0, -0.0, 2.0, np.inf, -np.inf, 1e-30, -1e-30, 3.5])


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape", [(1,), (7,), (33,), (3, 17), (2, 3, 15), (2, 3, 5, 9), (0, 3, 4, 4)],
                         ids=lambda s: "x".join(map(str, s)))
def test_relu_fwd_grad(shape, dtype, isa, poison):
    x64 = u(shape, "relu", shape)
    if x64.size:
        x64.reshape(-1)[: min(x64.size, SPECIALS.size)] = SPECIALS[: min(x64.size, SPECIALS.size)]
    gy64 = u(shape, "relu-gy", shape)
    if gy64.size > 3:
        gy64.reshape(-1)[2] = np.nan       # masked to 0 where x <= 0 (x is 0 there)
    x, gy = x64.astype(dtype), gy64.astype(dtype)
    x0, gy0 = x.copy(), gy.copy()
    y = F.relu(x)
    check_close(y, ref.relu(x64), dtype=dtype, case=str(shape))
    g = F.relu_grad(gy, x)
    check_close(g, ref.relu_grad(gy64, x64), dtype=dtype, case=str(shape))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(gy, gy0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_relu_against_torch(dtype):
    torch = pytest.importorskip("torch")
    x = np.concatenate([SPECIALS, u((40,), "relu-torch")]).reshape(2, 5, 5).astype(dtype)
    gy = u(x.shape, "relu-torch-gy").astype(dtype)
    gy.reshape(-1)[1:4] = np.nan
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(xt)
    yt.backward(torch.tensor(gy))
    np.testing.assert_array_equal(F.relu(x), yt.detach().numpy())
    np.testing.assert_array_equal(F.relu_grad(gy, x), xt.grad.numpy())


@pytest.mark.parametrize("kind", ["strided", "negative", "fortran"])
def test_relu_noncontiguous(kind, rng):
    x = rng.standard_normal((3, 4, 9))
    gy = rng.standard_normal((3, 4, 9))

    def lay(a):
        if kind == "strided":
            return np.repeat(a, 2, axis=-1)[..., ::2]
        if kind == "negative":
            return a[::-1, :, ::-1].copy()[::-1, :, ::-1]
        return np.asfortranarray(a)

    np.testing.assert_array_equal(F.relu(lay(x)), F.relu(x))
    np.testing.assert_array_equal(F.relu_grad(lay(gy), lay(x)), F.relu_grad(gy, x))
