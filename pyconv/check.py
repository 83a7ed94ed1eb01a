"""Self-test: run every compiled kernel path on this CPU against a small float64 reference.

``pyconv.check()`` (or ``python -m pyconv check``) runs convolution (forward, input gradient,
weight gradient; every algorithm), max/average pooling (forward and backward), ReLU and the
conv bias gradient in float32
and float64, once per instruction set this CPU can run (every compiled ISA up to
``pyconv.cpu_isa()``), on a few small shapes that exercise padding modes, stride, dilation and
groups, and compares each result with the float64 reference shipped in :mod:`pyconv._reference`
(the one the tests use; no test files needed). Useful when a user reports a wrong result on a new machine.

The ISA cap is restored afterwards. Takes about a second.
"""
import math
from dataclasses import dataclass

import numpy as np

from . import _core, _reference
from . import functional as F
from .functional.conv import _round_bf16
from ._reference import ConvCase
from ._runtime import BF16_ISAS, FLOAT_ISAS, ISAS
from ._utils import DIRECTIONS, _pair



@dataclass(frozen=True)
class Row:
    """One checked kernel path: max |pyconv - reference| against its tolerance."""
    op: str           # "conv2d", "max_pool2d", "avg_pool2d", "relu"
    direction: str    # "fwd", "bwd_data", "bwd_weight", "bwd_bias" (conv) or "fwd", "bwd"
    algo: str         # conv algorithm, "-" for pooling
    isa: str
    dtype: str
    shape: str        # shape id
    max_error: float
    tolerance: float
    passed: bool
    note: str = ""    # why it failed, beyond the error (exception, shape, indices)


class CheckResult:
    """Rows of a :func:`check` run; ``.ok`` is True when every row passed."""

    def __init__(self, rows, isas):
        self.rows = list(rows)
        self.isas = list(isas)

    @property
    def ok(self):
        return bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def failures(self):
        return [r for r in self.rows if not r.passed]

    def __bool__(self):
        return self.ok

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def table(self):
        head = ("op", "direction", "algo", "isa", "dtype", "shape", "max error", "tolerance", "result")
        body = [(r.op, r.direction, r.algo, r.isa, r.dtype, r.shape, f"{r.max_error:.3g}", f"{r.tolerance:.3g}",
                 "ok" if r.passed else "FAIL" + (f" ({r.note})" if r.note else "")) for r in self.rows]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*row).rstrip() for row in body]
        return "\n".join(lines)

    def summary(self):
        n, bad = len(self.rows), len(self.failures)
        verdict = "all passed" if self.ok else f"{bad} FAILED"
        return f"pyconv check: {n} kernel paths on ISAs {', '.join(self.isas)}: {verdict}"

    def __repr__(self):
        return f"<CheckResult ok={self.ok} rows={len(self.rows)} failures={len(self.failures)}>"


# --------------------------------------------------------------------------- geometry


def _conv_geom(case):
    n, c, h, w = case.input_shape
    k, cg, r, s = case.weight_shape
    (sh, sw), (dh, dw) = _pair(case.stride), _pair(case.dilation)
    _, _, oh, ow = case.output_shape
    return n, c, h, w, k, cg, r, s, sh, sw, dh, dw, case.pads, oh, ow


# --------------------------------------------------------------------------- shapes

CONV_CASES = [
    ConvCase(2, 3, 9, 11, 4, 3, 3, padding=1, name="n2c3h9w11-k4r3s3-p1"),
    ConvCase(1, 4, 8, 13, 6, 3, 2, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, mode="reflect",
             name="n1c4h8w13-k6r3s2-s2x1p1x0d1x2g2-reflect"),
    ConvCase(2, 4, 7, 9, 4, 3, 3, padding="same", groups=4, mode="circular", name="n2c4h7w9-k4r3s3-same-dw-circular"),
    ConvCase(1, 3, 10, 17, 5, 5, 5, stride=2, padding=2, mode="replicate", name="n1c3h10w17-k5r5s5-s2p2-replicate"),
    ConvCase(2, 17, 5, 33, 9, 1, 1, name="n2c17h5w33-k9r1s1-pointwise"),
    # depthwise on a narrow plane, channels past a vector block (direct: the channel-blocked kernels)
    ConvCase(2, 20, 7, 7, 20, 5, 5, stride=2, padding=2, groups=20, name="n2c20h7w7-k20r5s5-s2p2-dw"),
    # stride 1, more filters than a register tile holds (direct: the register-blocked kernels)
    ConvCase(2, 6, 6, 21, 29, 2, 5, padding=(1, 2), dilation=(1, 2), name="n2c6h6w21-k29r2s5-p1x2d1x2"),
]

POOL_CASES = [
    dict(id="n2c3h9w35-k3s2p1-ceil", x=(2, 3, 9, 35), k=(3, 3), s=(2, 2), p=(1, 1), d=(1, 1), ceil=True,
         count_include_pad=False, divisor_override=None),
    dict(id="n1c2h8w19-k2x3s1p1d2x1", x=(1, 2, 8, 19), k=(2, 3), s=(1, 1), p=(1, 1), d=(2, 1), ceil=False,
         count_include_pad=True, divisor_override=None),
    dict(id="n1c2h7w18-k2s2-div5", x=(1, 2, 7, 18), k=(2, 2), s=(2, 2), p=(0, 0), d=(1, 1), ceil=True,
         count_include_pad=True, divisor_override=5),
]


def _data(shape, seed):
    """Distinct float32-exact values in [-1, 1) (no ties in max pooling)."""
    size = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    vals = (rng.permutation(size) + rng.uniform(0.1, 0.9, size)) / max(size, 1) * 2 - 1
    return vals.astype(np.float32).astype(np.float64).reshape(shape)


def _tol(dtype, k, winograd=False):
    return _reference.tolerances(dtype, k, algo="winograd" if winograd else None)


def _runs_winograd(case, algo, direction, dtype=np.float32):
    """True when conv2d with `algo` computes `direction` of this case by Winograd (the C++ plan)."""
    pads = _conv_geom(case)[12]
    return _core.conv2d_plan(case.input_shape, case.weight_shape, _pair(case.stride), pads, _pair(case.dilation),
                             case.groups, case.mode, direction, algo, np.dtype(dtype).itemsize)["algo"] == "winograd"


def available_isas():
    """Compiled ISAs with float kernels this CPU can run, lowest first."""
    best = _core.cpu_isa()
    compiled = list(_core.compiled_isas())
    top = ISAS.index(best) if best in ISAS else 0
    return [i for i in FLOAT_ISAS if i in compiled and ISAS.index(i) <= top]


def _compare(got, expected, dtype, k, exact_ints=None, winograd=False):
    """(max error, tolerance, passed, note)."""
    rtol, atol = _tol(dtype, k, winograd)
    tol = atol + rtol * float(np.max(np.abs(expected), initial=0.0))
    if not isinstance(got, np.ndarray) or got.shape != expected.shape:
        return math.inf, tol, False, f"shape {getattr(got, 'shape', type(got).__name__)} != {expected.shape}"
    if got.dtype != dtype:
        return math.inf, tol, False, f"dtype {got.dtype} != {np.dtype(dtype).name}"
    diff = np.abs(got.astype(np.float64) - expected)
    err = float(np.max(diff, initial=0.0)) if not np.isnan(diff).any() else math.inf
    ok = bool(np.all(diff <= atol + rtol * np.abs(expected)))
    note = "" if ok else ("NaN in result" if math.isinf(err) else "")
    if exact_ints is not None and ok:
        gi, ei = exact_ints
        if not np.array_equal(gi, ei):
            return err, tol, False, "indices differ"
    return err, tol, ok, note


def _run_row(rows, fields, thunk, expected, dtype, k, ints=None, winograd=False):
    try:
        got = thunk()
        if ints is not None:
            got, gi = got
            err, tol, ok, note = _compare(got, expected, dtype, k, (gi, ints))
        else:
            err, tol, ok, note = _compare(got, expected, dtype, k, winograd=winograd)
    except Exception as exc:  # a kernel that raises is a failed row, not a crashed check
        err, tol, ok, note = math.inf, math.nan, False, f"{type(exc).__name__}: {exc}"
    rows.append(Row(*fields, max_error=err, tolerance=tol, passed=ok, note=note))


def _conv_rows(isa, rows, refs):
    for case in CONV_CASES:
        x, wt, b, gy, (y_ref, dx_ref, dw_ref) = refs[case.id][:5]
        t, bt, lf, rt = case.pads
        fold = 1 if case.mode == "zeros" else (1 + t + bt) * (1 + lf + rt)  # border pixels fold back
        kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups,
                  padding_mode=case.mode)
        red = {d: case.reduction_length(d) * (fold if d == "bwd_data" else 1) for d in DIRECTIONS}
        for dtype in (np.float32, np.float64):
            xs, ws, bs, gys = (a.astype(dtype) for a in (x, wt, b, gy))
            for algo in F.CONV_ALGORITHMS:
                base = ("conv2d",)
                tail = (algo, isa, np.dtype(dtype).name, case.id)
                _run_row(rows, base + ("fwd",) + tail, lambda: F.conv2d(xs, ws, bs, **kw, algo=algo),
                         y_ref, dtype, red["fwd"], winograd=_runs_winograd(case, algo, "fwd", dtype))
                _run_row(rows, base + ("bwd_data",) + tail,
                         lambda: F.conv2d_grad_input(gys, ws, xs.shape, **kw, algo=algo), dx_ref, dtype,
                         red["bwd_data"], winograd=_runs_winograd(case, algo, "bwd_data", dtype))
                _run_row(rows, base + ("bwd_weight",) + tail,
                         lambda: F.conv2d_grad_weight(xs, gys, ws.shape, **kw, algo=algo), dw_ref, dtype,
                         red["bwd_weight"])


def _pool_rows(isa, rows, refs):
    for case in POOL_CASES:
        x, gy, (y_ref, idx_ref, dx_ref), avg = refs[case["id"]]
        geo = (case["k"], case["s"], case["p"])
        kk = case["k"][0] * case["k"][1]
        for dtype in (np.float32, np.float64):
            xs, gys = x.astype(dtype), gy.astype(dtype)
            tail = ("-", isa, np.dtype(dtype).name, case["id"])
            _run_row(rows, ("max_pool2d", "fwd") + tail,
                     lambda: F.max_pool2d(xs, *geo, case["d"], case["ceil"], return_indices=True), y_ref, dtype, 1,
                     ints=idx_ref)
            _run_row(rows, ("max_pool2d", "bwd") + tail,
                     lambda: F.max_pool2d_grad(gys, xs, *geo, case["d"], case["ceil"]), dx_ref, dtype, kk)
            if avg is None:
                continue
            a_y, a_dx = avg
            extra = (case["ceil"], case["count_include_pad"], case["divisor_override"])
            _run_row(rows, ("avg_pool2d", "fwd") + tail, lambda: F.avg_pool2d(xs, *geo, *extra), a_y, dtype, kk)
            _run_row(rows, ("avg_pool2d", "bwd") + tail,
                     lambda: F.avg_pool2d_grad(gys, xs.shape, *geo, *extra), a_dx, dtype, kk)


def _eltwise_rows(isa, rows):
    """ReLU forward/backward and the conv bias gradient (sizes with vector tails)."""
    x = _data((3, 5, 7, 9), 300)
    x[0, 0, 0, :2] = (0.0, -0.0)
    g = _data(x.shape, 301)
    relu, relu_g = _reference.relu(x), _reference.relu_grad(g, x)
    for dtype in (np.float32, np.float64):
        xs, gs = x.astype(dtype), g.astype(dtype)
        tail = ("-", isa, np.dtype(dtype).name, "n3c5h7w9")
        _run_row(rows, ("relu", "fwd") + tail, lambda: F.relu(xs), relu, dtype, 1)
        _run_row(rows, ("relu", "bwd") + tail, lambda: F.relu_grad(gs, xs), relu_g, dtype, 1)
        _run_row(rows, ("conv2d", "bwd_bias") + tail, lambda: F.conv2d_grad_bias(gs), _reference.conv2d_grad_bias(g), dtype,
                 x.size // x.shape[1])


def _bf16_rows(isa, rows, refs):
    """precision="bfloat16" forward (the AMX tiles at level amx, vdpbf16ps at avx512_bf16, the
    float32 path below) against
    the float64 convolution of the bfloat16-rounded operands."""
    for case in CONV_CASES:
        x, wt, b = refs[case.id][:3]
        kw = dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups,
                  padding_mode=case.mode)
        xs, ws, bs = (a.astype(np.float32) for a in (x, wt, b))
        rounded = refs[case.id][5]
        _run_row(rows, ("conv2d", "fwd", "bfloat16", isa, "float32", case.id),
                 lambda: F.conv2d(xs, ws, bs, precision="bfloat16", **kw), rounded, np.float32,
                 case.reduction_length("fwd"))


def _references():
    conv, pool = {}, {}
    for i, case in enumerate(CONV_CASES):
        x, wt = _data(case.input_shape, 10 * i), _data(case.weight_shape, 10 * i + 1)
        b, gy = _data((case.k,), 10 * i + 2), _data(case.output_shape, 10 * i + 3)
        geo = case.args + (case.mode,)
        xr, wr = (_round_bf16(a.astype(np.float32)).astype(np.float64) for a in (x, wt))
        conv[case.id] = (x, wt, b, gy, (_reference.conv2d(x, wt, b, *geo),
                                        _reference.conv2d_grad_input(gy, wt, x.shape, *geo),
                                        _reference.conv2d_grad_weight(x, gy, wt.shape, *geo)),
                         _reference.conv2d(xr, wr, b.astype(np.float32).astype(np.float64), *geo))
    for i, case in enumerate(POOL_CASES):
        x = _data(case["x"], 100 + i)
        geo = (case["k"], case["s"], case["p"])
        gy = _data(_reference.pool2d_output_shape(x.shape, *geo, case["d"], case["ceil"]), 200 + i)
        y, idx = _reference.max_pool2d(x, *geo, case["d"], case["ceil"], return_indices=True)
        maxp = (y, idx, _reference.max_pool2d_grad(gy, x, *geo, case["d"], case["ceil"], indices=idx))
        avg = None
        if case["d"] == (1, 1):
            extra = (case["ceil"], case["count_include_pad"], case["divisor_override"])
            avg = (_reference.avg_pool2d(x, *geo, *extra), _reference.avg_pool2d_grad(gy, x.shape, *geo, *extra))
        pool[case["id"]] = (x, gy, maxp, avg)
    return conv, pool


def check(verbose=True, isas=None):
    """Run every compiled kernel path on this CPU against the float64 reference.

    Args:
        verbose: print the pass/fail table and a summary line.
        isas: restrict to these ISAs (default: every compiled ISA up to ``pyconv.cpu_isa()``).

    Returns:
        :class:`CheckResult` with ``.ok`` (all passed), ``.rows`` and ``.failures``.
    """
    run = available_isas()
    # the bfloat16-only levels this CPU and build have
    tiles = [i for i in BF16_ISAS if i in _core.compiled_isas() and ISAS.index(_core.cpu_isa()) >= ISAS.index(i)]
    if isas is not None:
        unknown = [i for i in isas if i not in run + tiles]
        if unknown:
            raise ValueError(f"check: isas {unknown} are not runnable here; available: {run + tiles}")
        run = [i for i in run if i in isas]
        tiles = [i for i in tiles if i in isas]
    conv_refs, pool_refs = _references()
    rows = []
    old_cap = _core.get_max_isa()
    try:
        for isa in run:
            _core.set_max_isa(isa)
            if _core.active_isa() != isa:  # pragma: no cover - a compiled table missing
                rows.append(Row("-", "-", "-", isa, "-", "-", math.inf, math.nan, False,
                                f"could not select ISA (active: {_core.active_isa()})"))
                continue
            _conv_rows(isa, rows, conv_refs)
            _pool_rows(isa, rows, pool_refs)
            _eltwise_rows(isa, rows)
            _bf16_rows(isa, rows, conv_refs)
        for isa in tiles:
            _core.set_max_isa(isa)
            _bf16_rows(isa, rows, conv_refs)
    finally:
        _core.set_max_isa(old_cap)
    result = CheckResult(rows, run + tiles)
    if verbose:
        print(result.table())
        print(result.summary())
    return result


def run(quiet=False, isas=None):
    """Print the check (the full table, or with ``quiet`` only failures and the summary) and return
    the exit status for ``pyconv check``: 0 if every kernel path passed, else 1."""
    result = check(verbose=not quiet, isas=isas)
    if quiet:
        for r in result.failures:
            print(f"FAIL {r.op} {r.direction} {r.algo} {r.isa} {r.dtype} {r.shape}: "
                  f"error {r.max_error:.3g} > tolerance {r.tolerance:.3g} {r.note}".rstrip())
        print(result.summary())
    return 0 if result.ok else 1


def add_arguments(parser):
    """The ``pyconv check`` options, for an argparse (sub)parser."""
    parser.add_argument("--quiet", action="store_true", help="print only the failures and the summary")
    action = parser.add_argument("--isa", action="append", choices=list(ISAS),
                                 help="check only this instruction set (repeatable)")
    action.shown_default = "every one this CPU runs"  # shown by pyconv's help formatter


def main(argv=None):
    """Standalone entry point: ``python -m pyconv.check [--quiet] [--isa ISA]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="pyconv check", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args.quiet, args.isa)


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
