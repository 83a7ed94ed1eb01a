"""The ``pyconv::*`` torch operators: schemas, CPU kernels, fake kernels, autograd and vmap rules.

Registered with ``torch.library.Library("pyconv", "DEF")`` + ``Library.impl(..., "CPU")``, the
cheapest Python registration path measured (``benchmarks/torch_ops.py``), then
``torch.library.register_fake`` (output shapes from pyconv.functional's shape helpers, or the same
arithmetic on symbolic sizes), ``torch.library.register_autograd`` and
``torch.library.register_vmap``. Every op is functional (new outputs, inputs never modified), so
torch.compile, torch.export, AOT autograd and torch.func see them as opaque leaves.

Ops (all arguments explicit; the padding ``same`` flag means ``padding="same"`` and then
``padding`` is ignored)::

    pyconv::conv2d(input, weight, bias?, stride[2], padding[2], dilation[2], groups, padding_mode, algo, same)
    pyconv::conv2d_grad_input(grad_output, weight, input_size, stride, padding, dilation, groups, padding_mode, algo, same)
    pyconv::conv2d_grad_weight(input, grad_output, weight_size, stride, padding, dilation, groups, padding_mode, algo, same)
    pyconv::max_pool2d(input, kernel_size[2], stride[2], padding[2], dilation[2], ceil_mode) -> (out, int64 indices)
    pyconv::max_pool2d_backward(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode)
    pyconv::avg_pool2d(input, kernel_size[2], stride[2], padding[2], ceil_mode, count_include_pad, divisor_override?)
    pyconv::avg_pool2d_backward(grad_output, input_size, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                divisor_override?)

The gradient ops have autograd formulas too (each is linear in its tensor inputs: its adjoint
is one of the other ops), so double backward and ``torch.autograd.gradgradcheck`` work.
"""
import torch

from .. import functional as F
from . import _kernels

NAMESPACE = "pyconv"
_lib = torch.library.Library(NAMESPACE, "DEF")  # kept alive for as long as the ops are wanted

_CONV_TAIL = "int[2] stride, int[2] padding, int[2] dilation, int groups, str padding_mode, str algo, bool same"
_SCHEMAS = {
    "conv2d": f"conv2d(Tensor input, Tensor weight, Tensor? bias, {_CONV_TAIL}) -> Tensor",
    "conv2d_grad_input": f"conv2d_grad_input(Tensor grad_output, Tensor weight, SymInt[] input_size, {_CONV_TAIL}) -> Tensor",
    "conv2d_grad_weight": f"conv2d_grad_weight(Tensor input, Tensor grad_output, SymInt[] weight_size, {_CONV_TAIL}) -> Tensor",
    "max_pool2d": "max_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, "
                  "bool ceil_mode) -> (Tensor, Tensor)",
    "max_pool2d_backward": "max_pool2d_backward(Tensor grad_output, Tensor input, Tensor indices, int[2] kernel_size, "
                           "int[2] stride, int[2] padding, int[2] dilation, bool ceil_mode) -> Tensor",
    "avg_pool2d": "avg_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, bool ceil_mode, "
                  "bool count_include_pad, int? divisor_override) -> Tensor",
    "avg_pool2d_backward": "avg_pool2d_backward(Tensor grad_output, SymInt[] input_size, int[2] kernel_size, "
                           "int[2] stride, int[2] padding, bool ceil_mode, bool count_include_pad, "
                           "int? divisor_override) -> Tensor",
}
for _name, _schema in _SCHEMAS.items():
    _lib.define(_schema)
    _lib.impl(_name, getattr(_kernels, _name), "CPU")

_ops = torch.ops.pyconv
conv2d = _ops.conv2d.default
conv2d_grad_input = _ops.conv2d_grad_input.default
conv2d_grad_weight = _ops.conv2d_grad_weight.default
max_pool2d = _ops.max_pool2d.default
max_pool2d_backward = _ops.max_pool2d_backward.default
avg_pool2d = _ops.avg_pool2d.default
avg_pool2d_backward = _ops.avg_pool2d_backward.default


# --------------------------------------------------------------------------- fake kernels


def _static(dims):
    return all(type(d) is int for d in dims)


def _check_dtypes(fn, first_name, first, *others):
    """pyconv.functional's dtype messages, also while tracing (fake tensors carry no data)."""
    if first.dtype not in _kernels._FLOATS:
        raise TypeError(f"{fn}: {first_name} must be float32 or float64, got dtype {str(first.dtype)[6:]}")
    for name, t in others:
        if t is not None and t.dtype != first.dtype:
            raise TypeError(f"{fn}: {name} has dtype {str(t.dtype)[6:]} but {first_name} has dtype "
                            f"{str(first.dtype)[6:]}; pass tensors of one float dtype")


def _conv_out_size(fn, input_size, weight_size, stride, padding, dilation, groups, same):
    """conv2d's output size; pyconv's shape helper (and its messages) for static spatial sizes."""
    input_size, weight_size = tuple(input_size), tuple(weight_size)
    if len(input_size) not in (3, 4):
        raise ValueError(f"{fn}: input must be 3-D or 4-D, got {len(input_size)}-D tensor of shape {input_size}")
    if len(weight_size) != 4:
        raise ValueError(f"{fn}: weight must be 4-D, got {len(weight_size)}-D tensor of shape {weight_size}")
    batched = len(input_size) == 4
    c, k, cg = input_size[-3], weight_size[0], weight_size[1]
    if _static((c, k, cg)):
        if c != cg * groups or k % groups:
            raise ValueError(f"{fn}: input has {c} channels but weight expects {cg * groups} (weight.shape[1] * groups "
                             f"= {cg} * {groups}), and groups must divide out_channels = {k}")
    else:
        torch._check(c == cg * groups, lambda: f"{fn}: input channels must equal weight.shape[1] * groups")
    if _static(input_size[-3:] + weight_size):
        out = F.conv2d_output_shape((1,) + input_size[-3:], weight_size, tuple(stride),
                                    "same" if same else tuple(padding), tuple(dilation))
        return (input_size[0],) + tuple(out[1:]) if batched else tuple(out[1:])
    hw = []
    for i in range(2):
        n, r = input_size[-2 + i], weight_size[2 + i]
        hw.append(n if same else (n + 2 * padding[i] - dilation[i] * (r - 1) - 1) // stride[i] + 1)
    return ((input_size[0],) if batched else ()) + (k, hw[0], hw[1])


def _pool_out_size(fn, input_size, kernel_size, stride, padding, dilation, ceil_mode):
    input_size = tuple(input_size)
    if len(input_size) not in (3, 4):
        raise ValueError(f"{fn}: input must be 3-D or 4-D, got {len(input_size)}-D tensor of shape {input_size}")
    if _static(input_size[-3:]):
        out = F.pool2d_output_shape((1,) + input_size[-3:], tuple(kernel_size), tuple(stride), tuple(padding),
                                    tuple(dilation), ceil_mode)
        return input_size[:-3] + tuple(out[1:])
    hw = []
    for i in range(2):
        n, k, s, p, d = input_size[-2 + i], kernel_size[i], stride[i], padding[i], dilation[i]
        span = n + 2 * p - d * (k - 1) - 1
        if ceil_mode:  # torch's rule: the last window must start inside the input or the left padding
            o = (span + s - 1) // s + 1
            o = torch.sym_ite((o - 1) * s >= n + p, o - 1, o)
        else:
            o = span // s + 1
        hw.append(o)
    return input_size[:-2] + (hw[0], hw[1])


@torch.library.register_fake("pyconv::conv2d", lib=_lib)
def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups, padding_mode, algo, same):
    _check_dtypes("conv2d", "input", input, ("weight", weight), ("bias", bias))
    return input.new_empty(_conv_out_size("conv2d", input.shape, weight.shape, stride, padding, dilation, groups, same))


@torch.library.register_fake("pyconv::conv2d_grad_input", lib=_lib)
def _conv2d_grad_input_fake(grad_output, weight, input_size, stride, padding, dilation, groups, padding_mode, algo,
                            same):
    _check_dtypes("conv2d_grad_input", "weight", weight, ("grad_output", grad_output))
    return grad_output.new_empty(input_size)


@torch.library.register_fake("pyconv::conv2d_grad_weight", lib=_lib)
def _conv2d_grad_weight_fake(input, grad_output, weight_size, stride, padding, dilation, groups, padding_mode, algo,
                             same):
    _check_dtypes("conv2d_grad_weight", "input", input, ("grad_output", grad_output))
    return input.new_empty(weight_size)


@torch.library.register_fake("pyconv::max_pool2d", lib=_lib)
def _max_pool2d_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    _check_dtypes("max_pool2d", "input", input)
    size = _pool_out_size("max_pool2d", input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return input.new_empty(size), input.new_empty(size, dtype=torch.int64)


@torch.library.register_fake("pyconv::max_pool2d_backward", lib=_lib)
def _max_pool2d_backward_fake(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    _check_dtypes("max_pool2d_grad", "input", input, ("grad_output", grad_output))
    return grad_output.new_empty(input.shape)


@torch.library.register_fake("pyconv::avg_pool2d", lib=_lib)
def _avg_pool2d_fake(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    _check_dtypes("avg_pool2d", "input", input)
    return input.new_empty(_pool_out_size("avg_pool2d", input.shape, kernel_size, stride, padding, (1, 1), ceil_mode))


@torch.library.register_fake("pyconv::avg_pool2d_backward", lib=_lib)
def _avg_pool2d_backward_fake(grad_output, input_size, kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override):
    _check_dtypes("avg_pool2d_grad", "grad_output", grad_output)
    return grad_output.new_empty(input_size)


# --------------------------------------------------------------------------- autograd
# setup_context saves a tensor only when a gradient that needs it is wanted (ctx.needs_input_grad).
# Sizes are kept as ctx attributes (symbolic under torch.compile, which is fine).


def _bias_grad(grad):
    return grad.sum(dim=(0, 2, 3) if grad.dim() == 4 else (1, 2))


def _conv2d_setup(ctx, inputs, output):
    input, weight, bias, *ctx.conv_args = inputs
    need_x, need_w, _ = ctx.needs_input_grad[:3]
    ctx.input_size, ctx.weight_size = tuple(input.shape), tuple(weight.shape)
    ctx.save_for_backward(input if need_w else None, weight if need_x else None)


def _conv2d_backward(ctx, grad):
    grad = _kernels.contiguous(grad, "conv2d grad_output")  # one copy for both gradients
    input, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx = conv2d_grad_input(grad, weight, ctx.input_size, *ctx.conv_args) if need_x else None
    gw = conv2d_grad_weight(input, grad, ctx.weight_size, *ctx.conv_args) if need_w else None
    gb = _bias_grad(grad) if need_b else None
    return (gx, gw, gb) + (None,) * 7


def _conv2d_grad_input_setup(ctx, inputs, output):
    grad_output, weight, input_size, *ctx.conv_args = inputs
    need_g, need_w = ctx.needs_input_grad[:2]
    ctx.weight_size = tuple(weight.shape)
    ctx.save_for_backward(weight if need_g else None, grad_output if need_w else None)


def _conv2d_grad_input_backward(ctx, v):
    # <conv2d_grad_input(g, w), v> = <g, conv2d(v, w)> = <conv2d_grad_weight(v, g), w>
    weight, grad_output = ctx.saved_tensors
    need_g, need_w = ctx.needs_input_grad[:2]
    gg = conv2d(v, weight, None, *ctx.conv_args) if need_g else None
    gw = conv2d_grad_weight(v, grad_output, ctx.weight_size, *ctx.conv_args) if need_w else None
    return (gg, gw) + (None,) * 8


def _conv2d_grad_weight_setup(ctx, inputs, output):
    input, grad_output, weight_size, *ctx.conv_args = inputs
    need_x, need_g = ctx.needs_input_grad[:2]
    ctx.input_size = tuple(input.shape)
    ctx.save_for_backward(grad_output if need_x else None, input if need_g else None)


def _conv2d_grad_weight_backward(ctx, u):
    # <conv2d_grad_weight(x, g), u> = <g, conv2d(x, u)> = <conv2d_grad_input(g, u), x>
    grad_output, input = ctx.saved_tensors
    need_x, need_g = ctx.needs_input_grad[:2]
    gx = conv2d_grad_input(grad_output, u, ctx.input_size, *ctx.conv_args) if need_x else None
    gg = conv2d(input, u, None, *ctx.conv_args) if need_g else None
    return (gx, gg) + (None,) * 8


def _max_pool2d_setup(ctx, inputs, output):
    input, *ctx.pool_args = inputs
    if ctx.needs_input_grad[0]:
        ctx.save_for_backward(input, output[1])


def _max_pool2d_backward(ctx, grad, _grad_indices):
    grad = _kernels.contiguous(grad, "max_pool2d grad_output")
    input, indices = ctx.saved_tensors
    return (max_pool2d_backward(grad, input, indices, *ctx.pool_args),) + (None,) * 5


def _gather_windows(v, indices):
    """v's values at the pooling windows' maxima (the adjoint of routing gradients to them)."""
    flat = indices.flatten(-2)
    out = v.flatten(-2).gather(-1, flat.clamp(min=0))
    return torch.where(flat >= 0, out, torch.zeros((), dtype=v.dtype)).view(indices.shape)


def _max_pool2d_backward_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[2] if ctx.needs_input_grad[0] else None)


def _max_pool2d_backward_backward(ctx, v):
    (indices,) = ctx.saved_tensors
    # routing is piecewise constant in the pooled input: its derivative there is zero
    return (_gather_windows(v, indices) if ctx.needs_input_grad[0] else None,) + (None,) * 7


def _avg_pool2d_setup(ctx, inputs, output):
    input, *ctx.pool_args = inputs
    ctx.input_size = tuple(input.shape)


def _avg_pool2d_backward(ctx, grad):
    grad = _kernels.contiguous(grad, "avg_pool2d grad_output")
    return (avg_pool2d_backward(grad, ctx.input_size, *ctx.pool_args),) + (None,) * 6


def _avg_pool2d_backward_setup(ctx, inputs, output):
    ctx.pool_args = inputs[2:]


def _avg_pool2d_backward_backward(ctx, v):
    return (avg_pool2d(v, *ctx.pool_args),) + (None,) * 7


for _name, _backward, _setup in (
        ("conv2d", _conv2d_backward, _conv2d_setup),
        ("conv2d_grad_input", _conv2d_grad_input_backward, _conv2d_grad_input_setup),
        ("conv2d_grad_weight", _conv2d_grad_weight_backward, _conv2d_grad_weight_setup),
        ("max_pool2d", _max_pool2d_backward, _max_pool2d_setup),
        ("max_pool2d_backward", _max_pool2d_backward_backward, _max_pool2d_backward_setup),
        ("avg_pool2d", _avg_pool2d_backward, _avg_pool2d_setup),
        ("avg_pool2d_backward", _avg_pool2d_backward_backward, _avg_pool2d_backward_setup)):
    torch.library.register_autograd(f"{NAMESPACE}::{_name}", _backward, setup_context=_setup, lib=_lib)


# --------------------------------------------------------------------------- vmap
# Per-sample tensors batched by vmap are folded into the op's own batch dimension (one call); any
# other combination (e.g. a batched weight, or conv2d_grad_weight's per-sample gradients) runs the
# op once per vmapped element and stacks the results.


def _fold(t, dim, logical_ndim):
    """(..B at dim..) tensor of logical shape (N, C, H, W) or (C, H, W) -> a 4-D batch of B*N or B."""
    t = t.movedim(dim, 0)
    return t.flatten(0, 1) if logical_ndim == 4 else t


def _unfold(t, b, logical_ndim):
    return t.unflatten(0, (b, -1)) if logical_ndim == 4 else t


def _loop(op, info, in_dims, args):
    results = []
    for i in range(info.batch_size):
        results.append(op(*[a.select(d, i) if type(d) is int else a for a, d in zip(args, in_dims)]))
    if isinstance(results[0], tuple):
        return tuple(torch.stack(r) for r in zip(*results)), (0,) * len(results[0])
    return torch.stack(results), 0


def _make_vmap(op, per_sample, size_arg=None):
    """A vmap rule: fold when every batched argument is one of ``per_sample`` (indices of tensor
    arguments that carry the op's batch dimension), else loop."""
    def rule(info, in_dims, *args):
        batched = [i for i, d in enumerate(in_dims) if type(d) is int]  # list arguments get lists of None
        if not batched or any(i not in per_sample for i in batched):
            return _loop(op, info, in_dims, args)
        b = info.batch_size
        ref = args[batched[0]]
        ndim = ref.dim() - 1  # logical rank
        args = list(args)
        for i in per_sample:
            if args[i] is None:
                continue
            if type(in_dims[i]) is not int:  # unbatched companion of a batched argument: broadcast it
                args[i] = args[i].unsqueeze(0).expand(b, *args[i].shape)
                args[i] = _fold(args[i], 0, ndim)
            else:
                args[i] = _fold(args[i], in_dims[i], ndim)
        if size_arg is not None:
            size = list(args[size_arg])
            args[size_arg] = [b * size[0]] + size[1:] if len(size) == 4 else [b] + size
        out = op(*args)
        if isinstance(out, tuple):
            return tuple(_unfold(o, b, ndim) for o in out), (0,) * len(out)
        return _unfold(out, b, ndim), 0
    return rule


_VMAP = (  # op, the tensor arguments that carry its batch dimension, the size argument to scale
    ("conv2d", (0,), None),
    ("conv2d_grad_input", (0,), 2),
    ("conv2d_grad_weight", (), None),
    ("max_pool2d", (0,), None),
    ("max_pool2d_backward", (0, 1, 2), None),
    ("avg_pool2d", (0,), None),
    ("avg_pool2d_backward", (0,), 1))
for _name, _per_sample, _size_arg in _VMAP:
    torch.library.register_vmap(f"{NAMESPACE}::{_name}", _make_vmap(getattr(_ops, _name).default, _per_sample,
                                                                   _size_arg), lib=_lib)
