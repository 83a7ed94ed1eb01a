"""Self-test: run every compiled kernel path on this CPU against a small float64 reference.

``pyconv.check()`` (or ``python -m pyconv check``) runs convolution (forward, input gradient,
weight gradient; every algorithm), max/average pooling (forward and backward), ReLU and the
conv bias gradient in float32
and float64, once per instruction set this CPU can run (every compiled ISA up to
``pyconv.cpu_isa()``), on a few small shapes that exercise padding modes, stride, dilation and
groups, and compares each result with a compact numpy float64 reference written here (no test
files needed). Useful when a user reports a wrong result on a new machine.

The ISA cap is restored afterwards. Takes about a second.
"""
import math
from dataclasses import dataclass

import numpy as np

from . import _core
from . import functional as F

ISA_ORDER = ("scalar", "avx2", "avx512")
_NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


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


# --------------------------------------------------------------------------- reference (float64)


def _pads(padding, r, s, dilation):
    (dh, dw) = dilation
    if padding == "same":
        th, tw = dh * (r - 1), dw * (s - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = padding
    return ph, ph, pw, pw


def _pad(x, pads, mode, value=0.0):
    t, b, l, r = pads
    width = ((0, 0), (0, 0), (t, b), (l, r))
    if mode == "zeros":
        return np.pad(x, width, mode="constant", constant_values=value)
    return np.pad(x, width, mode=_NP_MODE[mode])


def _conv_geom(case):
    n, c, h, w = case["x"]
    k, cg, r, s = case["w"]
    sh, sw = case["stride"]
    dh, dw = case["dilation"]
    pads = _pads(case["padding"], r, s, case["dilation"])
    oh = (h + pads[0] + pads[1] - dh * (r - 1) - 1) // sh + 1
    ow = (w + pads[2] + pads[3] - dw * (s - 1) - 1) // sw + 1
    return n, c, h, w, k, cg, r, s, sh, sw, dh, dw, pads, oh, ow


def _taps(case):
    """(r, s, rows slice, cols slice) of every kernel tap in the padded input."""
    n, c, h, w, k, cg, r, s, sh, sw, dh, dw, pads, oh, ow = _conv_geom(case)
    for i in range(r):
        for j in range(s):
            yield i, j, slice(i * dh, i * dh + sh * (oh - 1) + 1, sh), slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)


def ref_conv(case, x, wt, b, gy):
    """float64 (y, dx, dw) by explicit padding and a loop over the kernel taps."""
    n, c, h, w, k, cg, r, s, sh, sw, dh, dw, pads, oh, ow = _conv_geom(case)
    g = case["groups"]
    kg = k // g
    xp = _pad(x, pads, case["mode"])
    wg = wt.reshape(g, kg, cg, r, s)
    gyg = gy.reshape(n, g, kg, oh, ow)
    y = np.zeros((n, g, kg, oh, ow))
    dxp = np.zeros((n, g, cg) + xp.shape[2:])
    dwt = np.zeros((g, kg, cg, r, s))
    for i, j, rows, cols in _taps(case):
        xs = xp[:, :, rows, cols].reshape(n, g, cg, oh, ow)
        y += np.einsum("ngchw,gkc->ngkhw", xs, wg[..., i, j])
        dxp[:, :, :, rows, cols] += np.einsum("ngkhw,gkc->ngchw", gyg, wg[..., i, j])
        dwt[..., i, j] = np.einsum("ngchw,ngkhw->gkc", xs, gyg)
    y = y.reshape(n, k, oh, ow) + b[None, :, None, None]
    # fold the padded-input gradient back through the padding's index map
    dxp = dxp.reshape(n, c, *xp.shape[2:])
    t, bt, lf, rt = pads
    rmap = _pad(np.arange(h, dtype=np.float64)[None, None, :, None], (t, bt, 0, 0), case["mode"], -1)[0, 0, :, 0]
    cmap = _pad(np.arange(w, dtype=np.float64)[None, None, None, :], (0, 0, lf, rt), case["mode"], -1)[0, 0, 0, :]
    rmap, cmap = rmap.astype(np.int64), cmap.astype(np.int64)
    tmp = np.zeros((n, c, h, dxp.shape[3]))
    np.add.at(tmp, (slice(None), slice(None), rmap[rmap >= 0]), dxp[:, :, rmap >= 0, :])
    dx = np.zeros((n, c, h, w))
    np.add.at(dx, (slice(None), slice(None), slice(None), cmap[cmap >= 0]), tmp[:, :, :, cmap >= 0])
    return y, dx, dwt.reshape(k, cg, r, s)


def _pool_out(size, k, s, p, d, ceil):
    num = size + 2 * p - d * (k - 1) - 1
    if ceil:
        out = -(-num // s) + 1
        if (out - 1) * s >= size + p:
            out -= 1
        return out
    return num // s + 1


def ref_max_pool(case, x, gy):
    """float64 (y, indices, dx); windows scanned in row-major order (first maximum wins)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil = (case[key] for key in ("k", "s", "p", "d", "ceil"))
    oh, ow = _pool_out(h, kh, sh, ph, dh, ceil), _pool_out(w, kw, sw, pw, dw, ceil)
    y = np.full((n, c, oh, ow), -np.inf)
    idx = np.full((n, c, oh, ow), -1, np.int64)
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                ih = i * sh - ph + a * dh
                if not 0 <= ih < h:
                    continue
                for bb in range(kw):
                    iw = j * sw - pw + bb * dw
                    if not 0 <= iw < w:
                        continue
                    v = x[:, :, ih, iw]
                    take = (v > y[:, :, i, j]) | (idx[:, :, i, j] < 0)
                    y[:, :, i, j] = np.where(take, v, y[:, :, i, j])
                    idx[:, :, i, j] = np.where(take, ih * w + iw, idx[:, :, i, j])
    dx = np.zeros((n, c, h * w))
    for nn in range(n):
        for cc in range(c):
            np.add.at(dx[nn, cc], idx[nn, cc].ravel(), gy[nn, cc].ravel())
    return y, idx, dx.reshape(n, c, h, w)


def ref_avg_pool(case, x, gy):
    """float64 (y, dx) with PyTorch's divisor rules."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), ceil = (case[key] for key in ("k", "s", "p", "ceil"))
    cip, div = case["count_include_pad"], case["divisor_override"]
    oh, ow = _pool_out(h, kh, sh, ph, 1, ceil), _pool_out(w, kw, sw, pw, 1, ceil)
    y = np.zeros((n, c, oh, ow))
    dx = np.zeros((n, c, h, w))
    for i in range(oh):
        h0 = i * sh - ph
        h1 = min(h0 + kh, h + ph)
        for j in range(ow):
            w0 = j * sw - pw
            w1 = min(w0 + kw, w + pw)
            a0, a1, b0, b1 = max(h0, 0), min(h1, h), max(w0, 0), min(w1, w)
            d = div if div else ((h1 - h0) * (w1 - w0) if cip else (a1 - a0) * (b1 - b0))
            y[:, :, i, j] = x[:, :, a0:a1, b0:b1].sum(axis=(2, 3)) / d
            dx[:, :, a0:a1, b0:b1] += (gy[:, :, i, j] / d)[:, :, None, None]
    return y, dx


# --------------------------------------------------------------------------- shapes

CONV_CASES = [
    dict(id="n2c3h9w11-k4r3s3-p1", x=(2, 3, 9, 11), w=(4, 3, 3, 3), stride=(1, 1), padding=(1, 1),
         dilation=(1, 1), groups=1, mode="zeros"),
    dict(id="n1c4h8w13-k6r3s2-s2x1p1x0d1x2g2-reflect", x=(1, 4, 8, 13), w=(6, 2, 3, 2), stride=(2, 1),
         padding=(1, 0), dilation=(1, 2), groups=2, mode="reflect"),
    dict(id="n2c4h7w9-k4r3s3-same-dw-circular", x=(2, 4, 7, 9), w=(4, 1, 3, 3), stride=(1, 1), padding="same",
         dilation=(1, 1), groups=4, mode="circular"),
    dict(id="n1c3h10w17-k5r5s5-s2p2-replicate", x=(1, 3, 10, 17), w=(5, 3, 5, 5), stride=(2, 2), padding=(2, 2),
         dilation=(1, 1), groups=1, mode="replicate"),
    dict(id="n2c17h5w33-k9r1s1-pointwise", x=(2, 17, 5, 33), w=(9, 17, 1, 1), stride=(1, 1), padding=(0, 0),
         dilation=(1, 1), groups=1, mode="zeros"),
    # depthwise on a narrow plane, channels past a vector block (direct: the channel-blocked kernels)
    dict(id="n2c20h7w7-k20r5s5-s2p2-dw", x=(2, 20, 7, 7), w=(20, 1, 5, 5), stride=(2, 2), padding=(2, 2),
         dilation=(1, 1), groups=20, mode="zeros"),
    # stride 1, more filters than a register tile holds (direct: the register-blocked kernels)
    dict(id="n2c6h6w21-k29r2s5-p1x2d1x2", x=(2, 6, 6, 21), w=(29, 6, 2, 5), stride=(1, 1), padding=(1, 2),
         dilation=(1, 2), groups=1, mode="zeros"),
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


# Winograd F(4x4, 3x3) rounds about 20-40x more than the other algorithms in float32 (README,
# "Algorithms"); its rows get a wider absolute tolerance.
_WINOGRAD_F32_ATOL_FACTOR = 20


def _tol(dtype, k, winograd=False):
    root = math.sqrt(max(int(k), 1))
    if dtype == np.float32:
        return 1e-4, 1e-5 * root * (_WINOGRAD_F32_ATOL_FACTOR if winograd else 1)
    return 1e-10, 1e-11 * root


def _runs_winograd(case, algo, direction):
    """True when conv2d with `algo` computes `direction` of this case by Winograd."""
    n, c, h, w, k, cg, r, s, sh, sw, dh, dw, pads, oh, ow = _conv_geom(case)
    if algo == "auto":
        return _core.conv2d_choose_algo(case["x"], case["w"], case["stride"], pads, case["dilation"], case["groups"],
                                        F._MODE_CODE[case["mode"]], ("fwd", "bwd_data", "bwd_weight").index(direction)
                                        ) == "winograd"
    return (algo == "winograd" and (r, s, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1) and
            (direction == "fwd" or (direction == "bwd_data" and case["mode"] == "zeros")))


def available_isas():
    """Compiled ISAs this CPU can run, lowest first."""
    best = _core.cpu_isa()
    compiled = list(_core.compiled_isas())
    top = ISA_ORDER.index(best) if best in ISA_ORDER else 0
    return [i for i in ISA_ORDER if i in compiled and ISA_ORDER.index(i) <= top]


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
        x, wt, b, gy, (y_ref, dx_ref, dw_ref) = refs[case["id"]]
        n, c, h, w, k, cg, r, s, sh, sw, dh, dw, (t, bt, lf, rt), oh, ow = _conv_geom(case)
        fold = 1 if case["mode"] == "zeros" else (1 + t + bt) * (1 + lf + rt)  # border pixels fold back
        kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"],
                  padding_mode=case["mode"])
        red = {"fwd": cg * r * s, "bwd_data": (k // case["groups"]) * r * s * fold,
               "bwd_weight": gy.shape[0] * gy.shape[2] * gy.shape[3]}
        for dtype in (np.float32, np.float64):
            xs, ws, bs, gys = (a.astype(dtype) for a in (x, wt, b, gy))
            for algo in F.CONV_ALGORITHMS:
                base = ("conv2d",)
                tail = (algo, isa, np.dtype(dtype).name, case["id"])
                _run_row(rows, base + ("fwd",) + tail, lambda: F.conv2d(xs, ws, bs, **kw, algo=algo),
                         y_ref, dtype, red["fwd"], winograd=_runs_winograd(case, algo, "fwd"))
                _run_row(rows, base + ("bwd_data",) + tail,
                         lambda: F.conv2d_grad_input(gys, ws, xs.shape, **kw, algo=algo), dx_ref, dtype,
                         red["bwd_data"], winograd=_runs_winograd(case, algo, "bwd_data"))
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
    relu, relu_g = np.maximum(x, 0.0), np.where(x > 0, g, 0.0)
    for dtype in (np.float32, np.float64):
        xs, gs = x.astype(dtype), g.astype(dtype)
        tail = ("-", isa, np.dtype(dtype).name, "n3c5h7w9")
        _run_row(rows, ("relu", "fwd") + tail, lambda: F.relu(xs), relu, dtype, 1)
        _run_row(rows, ("relu", "bwd") + tail, lambda: F.relu_grad(gs, xs), relu_g, dtype, 1)
        _run_row(rows, ("conv2d", "bwd_bias") + tail, lambda: F.conv2d_grad_bias(gs), g.sum(axis=(0, 2, 3)), dtype,
                 x.size // x.shape[1])


def _references():
    conv, pool = {}, {}
    for i, case in enumerate(CONV_CASES):
        n, c, h, w, k, cg, r, s, sh, sw, dh, dw, pads, oh, ow = _conv_geom(case)
        x, wt = _data(case["x"], 10 * i), _data(case["w"], 10 * i + 1)
        b, gy = _data((k,), 10 * i + 2), _data((n, k, oh, ow), 10 * i + 3)
        conv[case["id"]] = (x, wt, b, gy, ref_conv(case, x, wt, b, gy))
    for i, case in enumerate(POOL_CASES):
        x = _data(case["x"], 100 + i)
        n, c, h, w = case["x"]
        oh = _pool_out(h, case["k"][0], case["s"][0], case["p"][0], case["d"][0], case["ceil"])
        ow = _pool_out(w, case["k"][1], case["s"][1], case["p"][1], case["d"][1], case["ceil"])
        gy = _data((n, c, oh, ow), 200 + i)
        avg = ref_avg_pool(case, x, gy) if case["d"] == (1, 1) else None
        pool[case["id"]] = (x, gy, ref_max_pool(case, x, gy), avg)
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
    if isas is not None:
        unknown = [i for i in isas if i not in run]
        if unknown:
            raise ValueError(f"check: isas {unknown} are not runnable here; available: {run}")
        run = [i for i in run if i in isas]
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
    finally:
        _core.set_max_isa(old_cap)
    result = CheckResult(rows, run)
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
    action = parser.add_argument("--isa", action="append", choices=list(ISA_ORDER),
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
