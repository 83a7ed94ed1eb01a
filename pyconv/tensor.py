"""Tensor: a numpy array that records the operations applied to it, for reverse-mode autograd.

``Tensor`` wraps an ``ndarray`` (``.data``); with ``requires_grad=True`` every operation on it
builds a graph node (a :class:`Function`) and ``loss.backward()`` fills ``.grad`` of the leaves
with numpy arrays. Each op in ``pyconv.functional`` accepts Tensors and then records itself
(through the hook :mod:`pyconv.autograd` registers); its backward calls the C++ gradient kernels,
computing only the gradients that are needed. The elementwise, reduction and shape ops that
Tensor's own methods record are defined here, after :class:`Function`; the layer ops are in
:mod:`pyconv.autograd`.
"""
import contextlib
import threading

import numpy as np

from . import functional

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "tensor"]

_state = threading.local()


def is_grad_enabled():
    """False inside ``with pyconv.no_grad():`` (per thread, as in PyTorch)."""
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def _grad_mode(enabled):
    old = is_grad_enabled()
    _state.enabled = enabled
    try:
        yield
    finally:
        _state.enabled = old


def no_grad():
    """Context manager: operations inside record no graph (inference, optimiser updates)."""
    return _grad_mode(False)


def enable_grad():
    """Context manager: re-enable graph recording inside a ``no_grad`` block."""
    return _grad_mode(True)


def _as_data(value, dtype=None):
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, np.ndarray):  # shared, like torch.from_numpy
        return value if dtype is None else value.astype(dtype, copy=False)
    if isinstance(value, np.generic):  # numpy scalars (0-d results of ops) keep their dtype
        return np.asarray(value, dtype=dtype)
    arr = np.asarray(value, dtype=dtype)
    if dtype is None and arr.dtype == np.float64:
        arr = arr.astype(np.float32)  # Python floats default to float32, as torch.tensor does
    return arr


class RemovableHandle:
    """Adds ``hook`` to the dict ``hooks``; ``remove()`` takes it out again (what
    ``Tensor.register_hook`` and ``Module.register_forward_hook`` return)."""

    def __init__(self, hooks, hook):
        self._hooks, self._key = hooks, object()
        hooks[self._key] = hook

    def remove(self):
        self._hooks.pop(self._key, None)


class Tensor:
    """An ndarray plus autograd bookkeeping.

    Args:
        data: array-like. numpy arrays keep their dtype; Python numbers and lists of floats
            become float32 (as ``torch.tensor``).
        requires_grad: record operations and accumulate ``.grad`` for this leaf. Default: False.
    """

    __array_priority__ = 1000  # make ndarray (op) Tensor defer to Tensor's reflected ops
    _retains_grad = False  # class defaults: set per instance only by retain_grad() / register_hook()
    _hooks = None

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_data(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._ctx = None  # the Function that produced this tensor, if recorded

    # ------------------------------------------------------------------ basics
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def is_leaf(self):
        return self._ctx is None

    def numel(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def numpy(self):
        """The underlying array (shared, not copied), like ``tensor.detach().numpy()``."""
        return self.data

    def item(self):
        return self.data.item()

    def detach(self):
        """A new leaf Tensor sharing the data, with no graph and no gradient."""
        return Tensor(self.data)

    def requires_grad_(self, flag=True):
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(flag)
        return self

    def zero_grad(self):
        self.grad = None

    @property
    def retains_grad(self):
        """True when :meth:`retain_grad` asked for this non-leaf tensor's ``.grad``."""
        return self._retains_grad and self._ctx is not None

    def retain_grad(self):
        """Keep this intermediate tensor's gradient in ``.grad`` when ``backward()`` runs
        through it (leaves always get theirs), as ``torch.Tensor.retain_grad``."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")
        self._retains_grad = True

    def register_hook(self, hook):
        """Call ``hook(grad)`` with this tensor's complete gradient during ``backward()``; a
        returned array replaces the gradient passed on. Returns a handle with ``remove()``."""
        if not self.requires_grad:
            raise RuntimeError("register_hook() on a tensor that does not require grad")
        if self._hooks is None:
            self._hooks = {}
        return RemovableHandle(self._hooks, hook)

    def astype(self, dtype):
        return Cast.apply(self, dtype=np.dtype(dtype))

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        extra = ""
        if self._ctx is not None:
            extra = f", grad_fn=<{type(self._ctx).__name__}Backward>"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        return f"Tensor({body}, dtype={self.data.dtype}{extra})"

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    # ------------------------------------------------------------------ autograd
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` defaults to 1 for a one-element tensor (a loss); otherwise it is required.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (no leaf of it does)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() needs grad for a non-scalar tensor of shape {self.shape}")
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.data.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(): grad has shape {grad.shape}, expected {self.shape}")
        # Kahn's algorithm: count each tensor's consumers in the graph, then run a node once all
        # of them have delivered its gradient. Tensors are keys (identity hash).
        pending = {}
        stack = [self]
        while stack:  # iterative: deep nets must not hit the recursion limit
            ctx = stack.pop()._ctx
            if ctx is None:
                continue
            for p in ctx.parents:
                if isinstance(p, Tensor) and p.requires_grad:
                    n = pending.get(p)
                    if n is None:
                        stack.append(p)
                    pending[p] = 1 if n is None else n + 1
        grads = {self: grad}
        ready = [self]
        while ready:
            t = ready.pop()
            g = grads.pop(t, None)
            ctx = t._ctx
            if g is not None and t._hooks:
                g = t._run_hooks(g)
            if ctx is None:
                if g is not None:
                    t.grad = g.copy() if t.grad is None else t.grad + g
                continue
            if g is not None and t._retains_grad:
                t.grad = g.copy() if t.grad is None else t.grad + g
            in_grads = ctx.backward(g) if g is not None else ()
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            for i, p in enumerate(ctx.parents):
                if not (isinstance(p, Tensor) and p.requires_grad):
                    continue
                pg = in_grads[i] if i < len(in_grads) else None
                if pg is not None:
                    if type(pg) is not np.ndarray or pg.dtype != p.data.dtype:
                        pg = np.asarray(pg, dtype=p.data.dtype)
                    if pg.shape != p.data.shape:
                        raise RuntimeError(
                            f"{type(ctx).__name__}.backward returned a gradient of shape {pg.shape} for an input "
                            f"of shape {p.shape}"
                        )
                    prev = grads.get(p)
                    grads[p] = pg if prev is None else prev + pg
                n = pending[p] - 1
                pending[p] = n
                if n == 0:
                    ready.append(p)

    def _run_hooks(self, g):
        for hook in list(self._hooks.values()):
            out = hook(g)
            if out is not None:
                out = np.asarray(out.data if isinstance(out, Tensor) else out, dtype=self.data.dtype)
                if out.shape != self.data.shape:
                    raise RuntimeError(f"a gradient hook returned shape {out.shape} for a tensor of shape "
                                       f"{self.data.shape}")
                g = out
        return g

    # ------------------------------------------------------------------ ops
    def __add__(self, other):
        return Add.apply(self, other)

    def __radd__(self, other):
        return Add.apply(other, self)

    def __sub__(self, other):
        return Sub.apply(self, other)

    def __rsub__(self, other):
        return Sub.apply(other, self)

    def __mul__(self, other):
        return Mul.apply(self, other)

    def __rmul__(self, other):
        return Mul.apply(other, self)

    def __truediv__(self, other):
        return Div.apply(self, other)

    def __rtruediv__(self, other):
        return Div.apply(other, self)

    def __neg__(self):
        return Neg.apply(self)

    def __pow__(self, exponent):
        return Pow.apply(self, exponent=exponent)

    def __matmul__(self, other):
        return MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return MatMul.apply(other, self)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        return GetItem.apply(self, index=index)

    def sum(self, axis=None, keepdims=False):
        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return Mean.apply(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        nd = max(self.ndim, 1)
        s, e = start_dim % nd, end_dim % nd
        shape = self.shape[:s] + (-1,) + self.shape[e + 1:]
        return self.reshape(shape)

    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def relu(self):
        return functional.relu(self)

    def argmax(self, axis=None):
        return self.data.argmax(axis=axis)

    @property
    def T(self):
        return Transpose.apply(self)

    # Comparisons give plain boolean arrays (no gradient flows through them).
    def __eq__(self, other):
        return self.data == (other.data if isinstance(other, Tensor) else other)

    def __lt__(self, other):
        return self.data < (other.data if isinstance(other, Tensor) else other)

    def __gt__(self, other):
        return self.data > (other.data if isinstance(other, Tensor) else other)

    __hash__ = object.__hash__


def tensor(data, requires_grad=False, dtype=None):
    """Shorthand for ``Tensor(data, requires_grad, dtype)``."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


class Function:
    """One differentiable op: ``forward`` on arrays, ``backward`` from the output gradient.

    ``apply`` unwraps Tensors, runs ``forward``, and records the node only when grad mode is on
    and some input requires grad. ``self.needs_input_grad[i]`` tells ``backward`` which
    gradients to compute; it returns one gradient (or None) per positional input.
    """

    parents = ()

    @classmethod
    def apply(cls, *inputs, **kwargs):
        return cls.apply_with_ctx(*inputs, **kwargs)[0]

    @classmethod
    def apply_with_ctx(cls, *inputs, **kwargs):
        """Like :meth:`apply`, also returning the node (for what its forward saved, e.g. indices)."""
        ctx = cls()
        needs = ctx.needs_input_grad = tuple([isinstance(t, Tensor) and t.requires_grad for t in inputs])
        out = ctx.forward(*[t.data if isinstance(t, Tensor) else t for t in inputs], **kwargs)
        result = Tensor(out)
        if True in needs and is_grad_enabled():
            result.requires_grad = True
            result._ctx = ctx
            ctx.parents = inputs
        return result, ctx

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------- the ops of Tensor's methods


def _unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape`` (the inverse of numpy broadcasting)."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _shape(x):
    return np.shape(x)


# --------------------------------------------------------------------------- arithmetic


class Add(Function):
    def forward(self, a, b):
        self.shapes = (_shape(a), _shape(b))
        return np.add(a, b)

    def backward(self, g):
        return tuple(_unbroadcast(g, s) if need else None for s, need in zip(self.shapes, self.needs_input_grad))


class Sub(Function):
    def forward(self, a, b):
        self.shapes = (_shape(a), _shape(b))
        return np.subtract(a, b)

    def backward(self, g):
        ga = _unbroadcast(g, self.shapes[0]) if self.needs_input_grad[0] else None
        gb = _unbroadcast(-g, self.shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return np.multiply(a, b)

    def backward(self, g):
        ga = _unbroadcast(g * self.b, _shape(self.a)) if self.needs_input_grad[0] else None
        gb = _unbroadcast(g * self.a, _shape(self.b)) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return np.divide(a, b)

    def backward(self, g):
        ga = _unbroadcast(g / self.b, _shape(self.a)) if self.needs_input_grad[0] else None
        gb = _unbroadcast(-g * self.a / (self.b * self.b), _shape(self.b)) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return np.negative(a)

    def backward(self, g):
        return -g


class Pow(Function):
    def forward(self, a, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("Tensor ** Tensor is not supported; the exponent must be a number")
        self.a, self.p = a, exponent
        return np.power(a, exponent)

    def backward(self, g):
        return g * self.p * np.power(self.a, self.p - 1)


class Exp(Function):
    def forward(self, a):
        self.out = np.exp(a)
        return self.out

    def backward(self, g):
        return g * self.out


class Log(Function):
    def forward(self, a):
        self.a = a
        return np.log(a)

    def backward(self, g):
        return g / self.a


class MatMul(Function):
    def forward(self, a, b):
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim < 1 or b.ndim < 1:
            raise ValueError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        a, b = self.a, self.b
        # Promote 1-D operands to matrices as matmul does, then drop the added axes again.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = np.asarray(g)
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2 if b.ndim > 1 else 0)
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = _unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            gb = _unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb


class Cast(Function):
    def forward(self, a, dtype):
        self.dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return g.astype(self.dtype)


# --------------------------------------------------------------------------- reductions and shapes


class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return np.asarray(a.sum(axis=axis, keepdims=keepdims))

    def backward(self, g):
        if self.axis is not None and not self.keepdims:
            g = np.expand_dims(g, self.axis)
        return np.broadcast_to(g, self.shape).copy()


class Mean(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        out = np.asarray(a.mean(axis=axis, keepdims=keepdims))
        self.count = a.size // max(out.size, 1) if a.size else 1
        return out

    def backward(self, g):
        if self.axis is not None and not self.keepdims:
            g = np.expand_dims(g, self.axis)
        return np.broadcast_to(g / self.count, self.shape).copy()


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return g.reshape(self.shape)


class Transpose(Function):
    def forward(self, a):
        return a.T

    def backward(self, g):
        return g.T


class GetItem(Function):
    def forward(self, a, index):
        self.shape, self.index, self.dtype = a.shape, index, a.dtype
        return np.asarray(a[index])

    def backward(self, g):
        out = np.zeros(self.shape, self.dtype)
        np.add.at(out, self.index, g)  # repeated indices accumulate
        return out
