"""Autograd: every Tensor op and every functional op on Tensors against centred finite
differences in float64, plus the graph semantics (accumulation, reuse, no_grad, detach, only the
needed gradients, errors) and numpy-in/numpy-out for the functional API."""

import operator

import numpy as np
import pytest

pyconv = pytest.importorskip("pyconv")
import pyconv.functional as F  # noqa: E402
from pyconv.tensor import Tensor, enable_grad, is_grad_enabled, no_grad  # noqa: E402


# --------------------------------------------------------------------------- helpers


def numeric_grad(f, x, eps=1e-6):
    """Centred finite differences of the scalar function f() w.r.t. the array x (mutated in place)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        fp = f()
        x[idx] = old - eps
        fm = f()
        x[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


def gradcheck(fn, *arrays, wrt=None, seed=0, eps=1e-6, rtol=1e-6, atol=1e-8):
    """Compare autograd with finite differences for fn(*Tensors) -> Tensor, in float64.

    The output is contracted with a fixed random array r: the checked scalar is sum(fn(...) * r),
    so ``out.backward(r)`` must give its gradient. Inputs not in ``wrt`` do not require grad and
    must get no gradient.
    """
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    wrt = tuple(range(len(arrays))) if wrt is None else tuple(wrt)
    tensors = [Tensor(a.copy(), requires_grad=i in wrt) for i, a in enumerate(arrays)]
    out = fn(*tensors)
    assert isinstance(out, Tensor), type(out)
    assert out.requires_grad and not out.is_leaf
    assert out.dtype == np.float64, f"float64 inputs gave a {out.dtype} output"
    r = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(r)

    def f():
        with no_grad():
            y = fn(*[Tensor(a) for a in arrays])
        return float(np.sum(np.asarray(y.data, dtype=np.float64) * r))

    for i, t in enumerate(tensors):
        if i not in wrt:
            assert t.grad is None, f"input {i} does not require grad but got one"
            continue
        assert t.grad is not None, f"input {i} got no gradient"
        assert isinstance(t.grad, np.ndarray) and t.grad.shape == arrays[i].shape
        assert t.grad.dtype == np.float64, t.grad.dtype
        num = numeric_grad(f, arrays[i], eps)
        np.testing.assert_allclose(t.grad, num, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")
    return out


def rand(shape, seed=0, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape)


def away_from_zero(shape, seed=0, margin=0.2):
    """Values in ±[margin, 1]: safe for division and kinks."""
    rng = np.random.default_rng(seed)
    return rng.uniform(margin, 1.0, shape) * rng.choice([-1.0, 1.0], shape)


# --------------------------------------------------------------------------- elementwise arithmetic

BINOPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}
BROADCAST_SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((4,), (3, 4)),
    ((3, 1), (1, 4)),
    ((2, 3, 4), (3, 1)),
    ((1, 4), (2, 3, 1)),
    ((3, 4), ()),
    ((), (3, 4)),
]


@pytest.mark.parametrize("op", list(BINOPS))
@pytest.mark.parametrize("sa,sb", BROADCAST_SHAPES, ids=lambda s: "x".join(map(str, s)) or "scalar")
def test_binop_tensor_tensor_broadcasting(op, sa, sb):
    a = away_from_zero(sa, 1)
    b = away_from_zero(sb, 2)
    gradcheck(BINOPS[op], a, b)


@pytest.mark.parametrize("op", list(BINOPS))
@pytest.mark.parametrize("wrt", [(0,), (1,)], ids=["only_a", "only_b"])
def test_binop_one_side_requires_grad(op, wrt):
    gradcheck(BINOPS[op], away_from_zero((3, 1), 3), away_from_zero((1, 4), 4), wrt=wrt)


@pytest.mark.parametrize("op", list(BINOPS))
@pytest.mark.parametrize("side", ["tensor_op_numpy", "numpy_op_tensor"])
@pytest.mark.parametrize("sa,sb", [((3, 4), (4,)), ((4,), (3, 4)), ((3, 4), (3, 4))], ids=str)
def test_binop_with_numpy_operand(op, side, sa, sb):
    other = away_from_zero(sb, 5)
    f = BINOPS[op]
    if side == "tensor_op_numpy":
        out = gradcheck(lambda t: f(t, other), away_from_zero(sa, 6))
    else:
        out = gradcheck(lambda t: f(other, t), away_from_zero(sa, 6))
    assert out.shape == np.broadcast_shapes(sa, sb)


@pytest.mark.parametrize("op", list(BINOPS))
@pytest.mark.parametrize("scalar", [2.5, -3, np.float64(0.75)], ids=["float", "int", "np_float64"])
@pytest.mark.parametrize("side", ["tensor_op_scalar", "scalar_op_tensor"])
def test_binop_with_scalar_operand(op, scalar, side):
    f = BINOPS[op]
    g = (lambda t: f(t, scalar)) if side == "tensor_op_scalar" else (lambda t: f(scalar, t))
    gradcheck(g, away_from_zero((2, 3), 7))


def test_numpy_left_operand_gives_tensor():
    t = Tensor(np.ones(3), requires_grad=True)
    a = np.arange(3.0)
    for res in (a + t, a - t, a * t, a / t, a @ Tensor(np.ones((3, 2)), requires_grad=True)):
        assert isinstance(res, Tensor) and res.requires_grad


def test_float32_tensor_with_python_scalar_stays_float32():
    t = Tensor(np.ones(3, np.float32), requires_grad=True)
    for res in (t + 1.5, 2.0 * t, t / 3, 1 - t, t ** 2, -t):
        assert res.dtype == np.float32


def test_zero_dim_float64_ops_keep_float64():
    # torch keeps a 0-d float64 tensor float64 through arithmetic; a scalar loss is 0-d
    a = Tensor(np.array(0.7), requires_grad=True)
    results = {
        "a*3": a * 3, "a+a": a + a, "a-1": a - 1, "a/2": a / 2, "2/a": 2 / a, "-a": -a,
        "a**2": a ** 2, "exp": a.exp(), "log": a.log(), "sum": a.sum(), "mean": a.mean(),
    }
    bad = {k: str(v.dtype) for k, v in results.items() if v.dtype != np.float64}
    assert not bad, f"0-d float64 inputs gave other dtypes: {bad}"


def test_zero_dim_scalar_chain_gradient():
    # a typical loss tail: (mean of something) * scale + reg, all 0-d in float64
    gradcheck(lambda x: (x * x).mean() * 0.5 + x.sum().exp() * 1e-3, rand((2, 3), 8))


# --------------------------------------------------------------------------- unary ops


def test_neg():
    gradcheck(lambda t: -t, rand((3, 4), 9))


@pytest.mark.parametrize("p", [2, 3, 0.5, -1.5, 1])
def test_pow(p):
    gradcheck(lambda t: t ** p, rand((3, 4), 10, 0.3, 2.0))


def test_pow_with_negative_base_integer_exponent():
    gradcheck(lambda t: t ** 3, away_from_zero((5,), 11))


def test_pow_tensor_exponent_is_type_error():
    t = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError):
        t ** Tensor(np.ones(3))


def test_exp():
    gradcheck(lambda t: t.exp(), rand((3, 4), 12))


def test_log():
    gradcheck(lambda t: t.log(), rand((3, 4), 13, 0.2, 3.0))


def test_exp_log_composition():
    gradcheck(lambda t: (t.exp() + 1).log(), rand((4, 2), 14))


# --------------------------------------------------------------------------- matmul

MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (3, 4, 2)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=str)
def test_matmul(sa, sb):
    out = gradcheck(operator.matmul, rand(sa, 15), rand(sb, 16))
    assert out.shape == np.matmul(np.ones(sa), np.ones(sb)).shape


def test_matmul_vector_dot_backward():
    # 1-D @ 1-D gives a 0-d result; torch: grad a = b, grad b = a
    a = Tensor(np.array([1.0, 2.0, 3.0], np.float32), requires_grad=True)
    b = Tensor(np.array([4.0, -5.0, 6.0], np.float32), requires_grad=True)
    out = a @ b
    assert out.shape == () and out.item() == 12.0
    out.backward()
    np.testing.assert_array_equal(a.grad, b.data)
    np.testing.assert_array_equal(b.grad, a.data)


@pytest.mark.parametrize("wrt", [(0,), (1,)])
def test_matmul_one_side(wrt):
    gradcheck(operator.matmul, rand((2, 3, 4), 17), rand((4, 5), 18), wrt=wrt)


def test_matmul_with_numpy_operand():
    w = rand((4, 5), 19)
    gradcheck(lambda t: t @ w, rand((3, 4), 20))
    gradcheck(lambda t: w.T @ t, rand((4, 2), 21))


# --------------------------------------------------------------------------- reductions and shapes


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (-1, 0)], ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_mean(reduce, axis, keepdims):
    x = rand((2, 3, 4), 22)
    out = gradcheck(lambda t: getattr(t, reduce)(axis=axis, keepdims=keepdims), x)
    assert out.shape == getattr(x, reduce)(axis=axis, keepdims=keepdims).shape


@pytest.mark.parametrize(
    "fn",
    [
        lambda t: t.reshape(6, 4),
        lambda t: t.reshape((4, -1)),
        lambda t: t.reshape([24]),
        lambda t: t.view(2, 12),
        lambda t: t.flatten(),
        lambda t: t.flatten(1),
        lambda t: t.flatten(0, 1),
        lambda t: t.flatten(-2, -1),
    ],
    ids=["reshape_args", "reshape_tuple", "reshape_list", "view", "flatten", "flatten1", "flatten01",
         "flatten_neg"],
)
def test_reshape_flatten(fn):
    gradcheck(fn, rand((2, 3, 4), 23))


def test_flatten_shapes_match_torch_rules():
    t = Tensor(np.zeros((2, 3, 4, 5)))
    assert t.flatten().shape == (120,)
    assert t.flatten(1).shape == (2, 60)
    assert t.flatten(1, 2).shape == (2, 12, 5)
    assert t.flatten(-3, -2).shape == (2, 12, 5)


INDICES = {
    "int": 1,
    "neg_int": -1,
    "slice": (slice(None), slice(1, 3)),
    "step": (Ellipsis, slice(None, None, 2)),
    "fancy_repeats": [0, 0, 2, 0],
    "fancy_2d": np.array([[0, 1], [1, 1]]),
    "fancy_pairs_repeats": ([0, 2, 2, 0], [1, 3, 3, 1]),
    "bool_mask": np.array([True, False, True]),
    "none_newaxis": (None, 1),
    "mixed": (slice(None), [3, 3, 0]),
}


@pytest.mark.parametrize("name", list(INDICES))
def test_getitem(name):
    idx = INDICES[name]
    x = rand((3, 4), 24)
    out = gradcheck(lambda t: t[idx], x)
    assert out.shape == x[idx].shape


def test_getitem_with_tensor_index_and_repeats():
    idx = Tensor(np.array([1, 1, 1, 0]))
    x = Tensor(rand((3, 2), 25), requires_grad=True)
    x[idx].sum().backward()
    np.testing.assert_array_equal(x.grad, [[1, 1], [3, 3], [0, 0]])


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4), (5,)], ids=str)
def test_transpose(shape):
    out = gradcheck(lambda t: t.T, rand(shape, 26))
    assert out.shape == shape[::-1]


def test_astype_round_trip_gradient_dtype():
    x = Tensor(rand((3, 4), 27), requires_grad=True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32 and y.requires_grad
    z = (y * 2).double()
    assert z.dtype == np.float64
    r = np.random.default_rng(0).standard_normal((3, 4))
    z.backward(r)
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad, 2 * r.astype(np.float32).astype(np.float64), rtol=1e-6)


def test_astype_float64_gradcheck():
    gradcheck(lambda t: t.astype(np.float64) * t.astype("float64").double(), rand((3,), 28))


# --------------------------------------------------------------------------- functional ops on Tensors

CONV_CASES = [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(0, 2)),
    dict(dilation=2, padding=2),
    dict(groups=2),
    dict(groups=4, padding=1),  # depthwise
    dict(padding=1, padding_mode="reflect"),
    dict(padding=(2, 1), padding_mode="replicate", stride=2),
    dict(padding=2, padding_mode="circular", dilation=(1, 2)),
    dict(padding="same", kernel=(2, 3)),
    dict(padding="same", padding_mode="reflect", dilation=2),
    dict(padding="valid"),
    dict(bias=False, stride=3, padding=1, groups=2),
    dict(unbatched=True, padding=1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_conv2d_gradients(case):
    case = dict(case)
    kernel = case.pop("kernel", (3, 3))
    bias = case.pop("bias", True)
    unbatched = case.pop("unbatched", False)
    groups = case.get("groups", 1)
    c_in, c_out = 4, 4
    x = rand((c_in, 7, 6) if unbatched else (2, c_in, 7, 6), 30)
    w = rand((c_out, c_in // groups) + kernel, 31)
    arrays = [x, w] + ([rand((c_out,), 32)] if bias else [])

    def fn(xt, wt, bt=None):
        return F.conv2d(xt, wt, bt, **case)

    out = gradcheck(fn, *arrays)
    assert out.shape == F.conv2d(*arrays, **case).shape


@pytest.mark.parametrize("algo", ["direct", "im2col"])
def test_conv2d_gradients_each_algorithm(algo):
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2, algo=algo),
              rand((2, 4, 6, 6), 33), rand((6, 2, 3, 3), 34), rand((6,), 35))


@pytest.mark.parametrize("wrt", [(0,), (1,), (2,), (1, 2)], ids=["x", "w", "b", "wb"])
def test_conv2d_partial_requires_grad(wrt):
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1), rand((1, 2, 5, 5), 36), rand((3, 2, 3, 3), 37),
              rand((3,), 38), wrt=wrt)


def test_conv2d_numpy_input_tensor_weight():
    x = rand((2, 3, 5, 5), 39)
    gradcheck(lambda w: F.conv2d(x, w, None, padding=1), rand((2, 3, 3, 3), 40))


MAXPOOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2)),
    dict(kernel_size=2, dilation=2),
    dict(kernel_size=3, stride=2, ceil_mode=True),
]


@pytest.mark.parametrize("case", MAXPOOL_CASES, ids=str)
@pytest.mark.parametrize("unbatched", [False, True])
def test_max_pool2d_gradient(case, unbatched):
    # distinct values (a permutation) keep the argmax away from ties for the finite differences
    shape = (3, 7, 7) if unbatched else (2, 3, 7, 7)
    x = np.random.default_rng(41).permutation(int(np.prod(shape))).reshape(shape) / 10.0
    gradcheck(lambda t: F.max_pool2d(t, **case), x)


def test_max_pool2d_return_indices_with_tensor():
    x = Tensor(rand((1, 2, 4, 4), 42), requires_grad=True)
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    ref_out, ref_idx = F.max_pool2d(x.data, 2, return_indices=True)
    assert isinstance(out, Tensor) and out.requires_grad
    np.testing.assert_array_equal(out.data, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)


AVGPOOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=1, padding=(1, 1), ceil_mode=True, count_include_pad=False),
    dict(kernel_size=2, divisor_override=3),
]


@pytest.mark.parametrize("case", AVGPOOL_CASES, ids=str)
def test_avg_pool2d_gradient(case):
    gradcheck(lambda t: F.avg_pool2d(t, **case), rand((2, 3, 7, 6), 43))


def test_relu_gradient():
    gradcheck(F.relu, away_from_zero((2, 3, 4), 44, margin=0.01))
    gradcheck(lambda t: t.relu(), away_from_zero((5,), 45, margin=0.01))


@pytest.mark.parametrize("x_shape", [(5, 4), (4,), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradient(x_shape, bias):
    arrays = [rand(x_shape, 46), rand((3, 4), 47)] + ([rand((3,), 48)] if bias else [])
    gradcheck(lambda x, w, b=None: F.linear(x, w, b), *arrays)


@pytest.mark.parametrize("out_size,in_hw", [(1, (5, 5)), ((3, 2), (7, 5)), ((None, 2), (4, 5)), (4, (4, 4)),
                                            ((5, 3), (3, 2))], ids=str)
def test_adaptive_avg_pool2d_gradient(out_size, in_hw):
    out = gradcheck(lambda t: F.adaptive_avg_pool2d(t, out_size), rand((2, 3) + in_hw, 49))
    torch = pytest.importorskip("torch")
    exp = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(rand((2, 3) + in_hw, 49)), out_size)
    np.testing.assert_allclose(out.data, exp.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
def test_batch_norm_training_gradient(affine, track):
    x = rand((3, 2, 4, 3), 50, -2, 3)
    rm, rv = rand((2,), 51), rand((2,), 52, 0.5, 2)

    def fn(xt, wt=None, bt=None):
        m, v = (rm.copy(), rv.copy()) if track else (None, None)
        return F.batch_norm(xt, m, v, wt, bt, training=True, momentum=0.1, eps=1e-5)

    arrays = [x] + ([rand((2,), 53, 0.5, 1.5), rand((2,), 54)] if affine else [])
    gradcheck(fn, *arrays)


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_eval_gradient(affine):
    rm, rv = rand((3,), 55), rand((3,), 56, 0.5, 2)

    def fn(xt, wt=None, bt=None):
        return F.batch_norm(xt, rm, rv, wt, bt, training=False, eps=1e-3)

    arrays = [rand((2, 3, 3, 3), 57)] + ([rand((3,), 58, 0.5, 1.5), rand((3,), 59)] if affine else [])
    gradcheck(fn, *arrays)
    # eval leaves the running statistics alone
    np.testing.assert_array_equal(rm, rand((3,), 55))


def test_batch_norm_training_updates_running_stats_like_torch():
    torch = pytest.importorskip("torch")
    x = rand((4, 3, 5, 5), 60, -1, 3)
    rm, rv = np.zeros(3), np.ones(3)
    y = F.batch_norm(Tensor(x, requires_grad=True), rm, rv, training=True, momentum=0.2)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    ty = torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.2)
    np.testing.assert_allclose(y.data, ty.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12, atol=1e-14)


CE_CASES = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(weight=True),
    dict(weight=True, reduction="sum"),
    dict(weight=True, reduction="none"),
    dict(ignore_index=2),
    dict(ignore_index=2, weight=True),
    dict(ignore_index=-100, reduction="none"),
    dict(label_smoothing=0.2),
    dict(label_smoothing=0.1, reduction="sum"),
    dict(label_smoothing=0.3, reduction="none", ignore_index=2),
    dict(label_smoothing=0.25, ignore_index=0),
]


@pytest.mark.parametrize("case", CE_CASES, ids=str)
def test_cross_entropy_gradient_and_value(case):
    case = dict(case)
    target = np.array([0, 2, 1, 3, 2, 0])
    weight = rand((4,), 61, 0.2, 2.0) if case.pop("weight", False) else None
    logits = rand((6, 4), 62, -2, 2)
    out = gradcheck(lambda t: F.cross_entropy(t, target, weight=weight, **case), logits)
    torch = pytest.importorskip("torch")
    exp = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(target),
                                            weight=None if weight is None else torch.tensor(weight), **case)
    np.testing.assert_allclose(out.data, exp.numpy(), rtol=1e-12, atol=1e-14)


def test_cross_entropy_tensor_target_and_unbatched():
    logits = rand((4,), 63)
    gradcheck(lambda t: F.cross_entropy(t, Tensor(np.array(2))), logits)


@pytest.mark.parametrize("p", [0.3, 0.5, 1.0])
def test_dropout_gradient_fixed_generator(p):
    x = rand((4, 5), 64)

    def fn(t):
        return F.dropout(t, p, training=True, generator=np.random.default_rng(123))

    out = gradcheck(fn, x)
    keep = np.random.default_rng(123).random(x.shape) >= p
    expected = np.where(keep, x / (1 - p), 0.0) if p < 1 else np.zeros_like(x)
    np.testing.assert_allclose(out.data, expected, rtol=1e-15)


def test_dropout_p0_is_identity_with_gradient():
    t = Tensor(rand((3, 3), 65), requires_grad=True)
    out = F.dropout(t, 0.0, training=True, generator=np.random.default_rng(0))
    np.testing.assert_array_equal(out.data, t.data)
    (out * 2).sum().backward()
    np.testing.assert_array_equal(t.grad, np.full((3, 3), 2.0))


def test_dropout_eval_is_identity_with_tensor():
    t = Tensor(rand((3, 3), 65), requires_grad=True)
    out = F.dropout(t, 0.5, training=False)
    np.testing.assert_array_equal(np.asarray(out.data if isinstance(out, Tensor) else out), t.data)


def test_small_cnn_end_to_end_gradient():
    x = rand((2, 2, 6, 6), 66)
    target = np.array([1, 0])

    def fn(xt, w1, b1, w2, b2):
        h = F.relu(F.conv2d(xt, w1, b1, padding=1))
        h = F.max_pool2d(h, 2)
        h = h.reshape(h.shape[0], -1)
        return F.cross_entropy(F.linear(h, w2, b2), target)

    gradcheck(fn, x, rand((3, 2, 3, 3), 67), rand((3,), 68), rand((2, 27), 69), rand((2,), 70), rtol=1e-5)


# --------------------------------------------------------------------------- graph semantics


def test_gradient_accumulates_across_backward_calls():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [2, 4, 6])
    first = x.grad
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [5, 7, 9])
    np.testing.assert_allclose(first, [2, 4, 6])  # accumulation does not write into an old grad array
    x.zero_grad()
    assert x.grad is None


def test_backward_twice_on_same_graph_accumulates():
    w = Tensor(np.array([[1.0, -2.0], [0.5, 3.0]]), requires_grad=True)
    loss = F.linear(np.array([[1.0, 2.0]]), w).sum()
    loss.backward()
    g1 = w.grad.copy()
    loss.backward()
    np.testing.assert_allclose(w.grad, 2 * g1)


def test_tensor_used_twice():
    gradcheck(lambda x: x * x, rand((3,), 71))
    gradcheck(lambda x: (x.exp() + x * 2) * x, rand((2, 2), 72))
    x = Tensor(np.array([2.0]), requires_grad=True)
    y = x * 3
    (y + y * y).sum().backward()  # d/dx (3x + 9x^2) = 3 + 18x
    np.testing.assert_allclose(x.grad, [39.0])


def test_diamond_graph_and_same_input_twice_in_one_op():
    x = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    (x @ x).sum().backward()
    np.testing.assert_allclose(x.grad, np.ones((2, 2)) @ x.data.T + x.data.T @ np.ones((2, 2)))
    gradcheck(lambda t: F.conv2d(t, t[:, :, :2, :2]), rand((2, 2, 4, 4), 73))


def test_intermediate_tensors_get_no_grad():
    x = Tensor(np.ones(3), requires_grad=True)
    y = x * 2
    y.sum().backward()
    assert y.grad is None and not y.is_leaf
    assert x.is_leaf


def test_no_grad_records_nothing():
    x = Tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    w = Tensor(np.ones((1, 1, 3, 3)), requires_grad=True)
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        outs = [x * 2, x + w.sum(), F.conv2d(x, w), F.relu(x), F.max_pool2d(x, 2), x.reshape(-1), x[0], x.T,
                x.exp(), F.avg_pool2d(x, 2), F.adaptive_avg_pool2d(x, 1)]
    assert is_grad_enabled()
    for o in outs:
        assert isinstance(o, Tensor)
        assert not o.requires_grad and o.is_leaf
    with pytest.raises(RuntimeError):
        outs[0].sum().backward()


def test_no_grad_restores_state_after_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert is_grad_enabled()


def test_enable_grad_inside_no_grad():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with no_grad():
        with enable_grad():
            y = x * x
        z = x * x
    assert y.requires_grad and not z.requires_grad
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


def test_grad_mode_is_per_thread():
    import threading

    seen = []
    with no_grad():
        t = threading.Thread(target=lambda: seen.append(is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_detach():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * 3
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d.grad is None
    assert np.shares_memory(d.data, y.data)
    (d * x).sum().backward()  # the detached factor is a constant
    np.testing.assert_allclose(x.grad, [3.0, 6.0])


def test_only_needed_gradients_conv_input(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("conv2d_grad_input called although the input does not require grad")

    monkeypatch.setattr(F, "conv2d_grad_input", boom)
    w = Tensor(rand((2, 3, 3, 3), 74), requires_grad=True)
    b = Tensor(rand((2,), 75), requires_grad=True)
    for x in (rand((1, 3, 5, 5), 76), Tensor(rand((1, 3, 5, 5), 76))):
        F.conv2d(x, w, b, padding=1).sum().backward()
    assert w.grad is not None and b.grad is not None


def test_only_needed_gradients_conv_weight_and_bias(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("weight/bias gradient computed for a frozen parameter")

    monkeypatch.setattr(F, "conv2d_grad_weight", boom)
    monkeypatch.setattr(F, "conv2d_grad_bias", boom)
    x = Tensor(rand((1, 3, 5, 5), 77), requires_grad=True)
    F.conv2d(x, rand((2, 3, 3, 3), 78), Tensor(rand((2,), 79))).sum().backward()
    assert x.grad is not None


def test_only_needed_gradients_linear(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("linear_grad_input called although the input does not require grad")

    monkeypatch.setattr(F, "linear_grad_input", boom)
    w = Tensor(rand((2, 3), 80), requires_grad=True)
    F.linear(rand((4, 3), 81), w).sum().backward()
    assert w.grad.shape == (2, 3)


def test_only_needed_gradients_first_layer_of_a_model(monkeypatch):
    nn = pytest.importorskip("pyconv.nn")

    def boom(*a, **k):
        raise AssertionError("conv2d_grad_input called for the model input")

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    monkeypatch.setattr(F, "conv2d_grad_input", boom)
    out = model(np.ones((2, 1, 6, 6), np.float32))
    nn.CrossEntropyLoss()(out, np.array([0, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_backward_non_scalar_needs_grad_argument():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError):
        y.backward()
    y.backward(np.full((2, 3), 0.5))
    np.testing.assert_allclose(x.grad, np.ones((2, 3)))
    y2 = x * 2
    y2.backward(Tensor(np.ones((2, 3))))
    np.testing.assert_allclose(x.grad, 3 * np.ones((2, 3)))


def test_backward_grad_shape_mismatch_raises():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises((ValueError, RuntimeError)):
        (x * 2).backward(np.ones((3, 2)))


def test_backward_on_one_element_tensor_defaults_to_one():
    x = Tensor(np.array([3.0]), requires_grad=True)
    (x * x).backward()
    np.testing.assert_allclose(x.grad, [6.0])


def test_backward_on_a_leaf():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    x.backward(np.array([3.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_backward_without_requires_grad_raises():
    with pytest.raises(RuntimeError):
        Tensor(np.ones(3)).sum().backward()
    with pytest.raises(RuntimeError):
        Tensor(np.array(1.0)).backward()


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_requires_grad_on_non_float_is_type_error(dtype):
    with pytest.raises(TypeError):
        Tensor(np.ones(3, dtype), requires_grad=True)
    with pytest.raises(TypeError):
        Tensor(np.ones(3, dtype)).requires_grad_()


def test_requires_grad_on_int_list_is_type_error():
    with pytest.raises(TypeError):
        Tensor([1, 2, 3], requires_grad=True)


def test_python_float_data_is_float32_numpy_keeps_dtype():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(np.ones(2)).dtype == np.float64
    assert Tensor(np.ones(2, np.float32)).dtype == np.float32


def test_deep_chain_does_not_hit_recursion_limit():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(3000):
        y = y + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0])


# --------------------------------------------------------------------------- numpy in -> numpy out

NUMPY_OPS = {
    "conv2d": lambda x: F.conv2d(x, np.ones((2, 3, 3, 3)), np.zeros(2), padding=1),
    "max_pool2d": lambda x: F.max_pool2d(x, 2),
    "avg_pool2d": lambda x: F.avg_pool2d(x, 2),
    "relu": F.relu,
    "linear": lambda x: F.linear(x.reshape(2, -1), np.ones((4, 48)), np.zeros(4)),
    "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, (2, 1)),
    "batch_norm_train": lambda x: F.batch_norm(x, np.zeros(3), np.ones(3), training=True),
    "batch_norm_eval": lambda x: F.batch_norm(x, np.zeros(3), np.ones(3), np.ones(3), np.zeros(3)),
    "dropout": lambda x: F.dropout(x, 0.5, generator=np.random.default_rng(0)),
    "cross_entropy": lambda x: F.cross_entropy(x.reshape(2, -1), np.array([0, 5])),
}


@pytest.mark.parametrize("name", list(NUMPY_OPS))
def test_functional_numpy_in_numpy_out(name):
    x = rand((2, 3, 4, 4), 82)
    out = NUMPY_OPS[name](x)
    assert isinstance(out, np.ndarray) and not isinstance(out, Tensor), type(out)
    assert out.dtype == np.float64
    # the same op on a Tensor that does not require grad gives a Tensor with the same values, no graph
    t_out = NUMPY_OPS[name](Tensor(x))
    assert isinstance(t_out, Tensor) and not t_out.requires_grad
    np.testing.assert_allclose(t_out.data, out, rtol=1e-14, atol=1e-14)
