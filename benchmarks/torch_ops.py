"""Per-call cost of the ways to put pyconv's conv2d behind torch, for a tiny layer (where the
registration overhead is all there is) and a ResNet-18 layer (where the kernel dominates).

    python benchmarks/torch_ops.py [--threads 2] [--repeat 7]

Paths (the benchmark registers its own copies under the namespace ``pyconv_bench``):
  torch             torch.nn.functional.conv2d
  numpy             pyconv.functional.conv2d on numpy arrays (no torch at all: the floor)
  library+ra        torch.library.Library.define + impl("CPU") + register_fake + register_autograd
  library+manual    Library.define + impl("CPU") + register_fake, autograd as a kernel of our own
                    at the Autograd key: a torch.autograd.Function (forward/setup_context/backward)
                    that redispatches below autograd (functorch-compatible)
  custom_op         torch.library.custom_op + register_fake + register_autograd
  autograd.Function a bare torch.autograd.Function calling pyconv.functional directly (not an
                    op: torch.compile / torch.export would graph-break on it)
  pyconv.torch      what pyconv.torch.Conv2d runs (torch.ops.pyconv.conv2d), called as the op
Figures: the best of --repeat rounds (paths interleaved within a round) of the mean per call, in
microseconds: the cost of a call itself, without what other processes on a shared machine add. "fwd+bwd" is forward + backward of output.sum() (input and weight gradients).
"""
import argparse
import os
import sys
import time

import torch

import pyconv
import pyconv.functional as F
import pyconv.torch as pt

_lib = torch.library.Library("pyconv_bench", "DEF")
_TAIL = "int[2] stride, int[2] padding"
for _n, _s in (("conv2d_ra", f"conv2d_ra(Tensor input, Tensor weight, {_TAIL}) -> Tensor"),
               ("conv2d_manual", f"conv2d_manual(Tensor input, Tensor weight, {_TAIL}) -> Tensor"),
               ("grad_input", f"grad_input(Tensor g, Tensor weight, SymInt[] input_size, {_TAIL}) -> Tensor"),
               ("grad_weight", f"grad_weight(Tensor input, Tensor g, SymInt[] weight_size, {_TAIL}) -> Tensor")):
    _lib.define(_s)


def _np(t):
    return t.detach().numpy() if t.is_contiguous() else t.detach().contiguous().numpy()


def _fwd(input, weight, stride, padding):
    return torch.from_numpy(F.conv2d(_np(input), _np(weight), None, tuple(stride), tuple(padding)))


def _gi(g, weight, input_size, stride, padding):
    return torch.from_numpy(F.conv2d_grad_input(_np(g), _np(weight), tuple(input_size), tuple(stride), tuple(padding)))


def _gw(input, g, weight_size, stride, padding):
    return torch.from_numpy(F.conv2d_grad_weight(_np(input), _np(g), tuple(weight_size), tuple(stride),
                                                 tuple(padding)))


for _n, _f in (("conv2d_ra", _fwd), ("conv2d_manual", _fwd), ("grad_input", _gi), ("grad_weight", _gw)):
    _lib.impl(_n, _f, "CPU")


def _fake(input, weight, stride, padding):
    return input.new_empty(F.conv2d_output_shape(tuple(input.shape), tuple(weight.shape), tuple(stride),
                                                 tuple(padding)))


torch.library.register_fake("pyconv_bench::conv2d_ra", _fake, lib=_lib)
torch.library.register_fake("pyconv_bench::conv2d_manual", _fake, lib=_lib)
torch.library.register_fake("pyconv_bench::grad_input", lambda g, w, s, *a: g.new_empty(s), lib=_lib)
torch.library.register_fake("pyconv_bench::grad_weight", lambda x, g, s, *a: x.new_empty(s), lib=_lib)
_ops = torch.ops.pyconv_bench


def _setup(ctx, inputs, output):
    input, weight, stride, padding = inputs
    ctx.args = (stride, padding)
    ctx.sizes = (tuple(input.shape), tuple(weight.shape))
    ctx.save_for_backward(input if ctx.needs_input_grad[1] else None, weight if ctx.needs_input_grad[0] else None)


def _backward(ctx, g):
    x, w = ctx.saved_tensors
    gx = _ops.grad_input.default(g, w, ctx.sizes[0], *ctx.args) if ctx.needs_input_grad[0] else None
    gw = _ops.grad_weight.default(x, g, ctx.sizes[1], *ctx.args) if ctx.needs_input_grad[1] else None
    return gx, gw, None, None


torch.library.register_autograd("pyconv_bench::conv2d_ra", _backward, setup_context=_setup, lib=_lib)


class _Manual(torch.autograd.Function):
    @staticmethod
    def forward(*args):
        with torch._C._AutoDispatchBelowAutograd():
            return _ops.conv2d_manual.default(*args)

    setup_context = staticmethod(_setup)
    backward = staticmethod(_backward)


def _manual_autograd(*args):
    if torch.is_grad_enabled() and (args[0].requires_grad or args[1].requires_grad):
        return _Manual.apply(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return _ops.conv2d_manual.default(*args)


_lib.impl("conv2d_manual", _manual_autograd, "Autograd")


@torch.library.custom_op("pyconv_bench::conv2d_co", mutates_args=(), device_types="cpu")
def _custom(input: torch.Tensor, weight: torch.Tensor, stride: list[int], padding: list[int]) -> torch.Tensor:
    return _fwd(input, weight, stride, padding)


_custom.register_fake(_fake)
_custom.register_autograd(_backward, setup_context=_setup)


class _Bare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, stride, padding):
        ctx.save_for_backward(x, w)
        ctx.args = (stride, padding)
        return _fwd(x, w, stride, padding)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return _gi(g, w, x.shape, *ctx.args), _gw(x, g, w.shape, *ctx.args), None, None


def bench(name, xshape, wshape, padding, number, repeat):
    pad = (padding, padding)
    x = torch.randn(xshape, requires_grad=True)
    w = torch.randn(wshape, requires_grad=True)
    xn, wn = x.detach().numpy(), w.detach().numpy()
    s1 = (1, 1)
    paths = {
        "torch": lambda: torch.nn.functional.conv2d(x, w, None, 1, padding),
        "library+ra": lambda: _ops.conv2d_ra.default(x, w, s1, pad),
        "library+manual": lambda: _ops.conv2d_manual.default(x, w, s1, pad),
        "custom_op": lambda: _custom(x, w, s1, pad),
        "autograd.Function": lambda: _Bare.apply(x, w, s1, pad),
        "pyconv.torch": lambda: pt.ops.conv2d(x, w, None, s1, pad, s1, 1, "zeros", "auto", False),
    }
    cases = {("numpy", "no_grad fwd"): (lambda: F.conv2d(xn, wn, None, s1, pad), number)}
    for p, fn in paths.items():
        cases[(p, "no_grad fwd")] = (fn, number)
        cases[(p, "fwd (grad)")] = (fn, number)
        cases[(p, "fwd+bwd")] = ((lambda fn=fn: fn().sum().backward()), max(number // 4, 1))
    runs = {key: [] for key in cases}
    for _ in range(repeat + 1):  # the first round warms up
        for (p, col), (fn, n) in cases.items():
            with torch.set_grad_enabled(col != "no_grad fwd"):
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                runs[(p, col)].append((time.perf_counter() - t0) / n)
    print(f"\n{name}: input {xshape}, weight {wshape}, padding {padding}  (us per call)")
    cols = ("no_grad fwd", "fwd (grad)", "fwd+bwd")
    print(f"{'path':20s} " + " ".join(f"{c:>12s}" for c in cols))
    for p in ["numpy"] + list(paths):
        cells = [min(runs[(p, c)][1:]) * 1e6 if (p, c) in runs else None for c in cols]
        print(f"{p:20s} " + " ".join(f"{v:12.1f}" if v is not None else f"{'-':>12s}" for v in cells))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="wait up to this long for other processes to leave the cores idle")
    a = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_backend import wait_quiet

    wait_quiet(a.wait_quiet)
    torch.set_num_threads(a.threads)
    pyconv.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, pyconv {pyconv.__version__}, {a.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f}")
    bench("7x7 conv (the lecture's 7x7x3 input, eight 3x3 filters)", (1, 3, 7, 7), (8, 3, 3, 3), 0, 2000, a.repeat)
    bench("ResNet-18 layer1 conv (64 -> 64, 3x3, pad 1, 56x56), batch 1", (1, 64, 56, 56), (64, 64, 3, 3), 1, 20,
          a.repeat)
    bench("ResNet-18 layer1 conv, batch 8", (8, 64, 56, 56), (64, 64, 3, 3), 1, 4, a.repeat)


if __name__ == "__main__":
    main()
