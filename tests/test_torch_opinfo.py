"""PyTorch's own OpInfo sample inputs for conv2d, max_pool2d and avg_pool2d, through pyconv.functional.

Every sample (both dtypes) must give torch's result, with the argument forms torch accepts
(``padding=(1,)``, ``stride=()`` ...). The one form torch accepts by accident, a negative
``divisor_override``, must be refused with a message that says so.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
try:
    from torch.testing._internal.common_methods_invocations import op_db
except Exception as exc:  # pragma: no cover - torch's test internals need expecttest
    pytest.skip(f"torch's OpInfo database is not importable: {exc}", allow_module_level=True)

import pyconv.functional as F  # noqa: E402

OPS = {"nn.functional.conv2d": F.conv2d, "nn.functional.max_pool2d": F.max_pool2d,
       "nn.functional.avg_pool2d": F.avg_pool2d}
OPINFOS = {op.name: op for op in op_db if op.name in OPS and op.variant_test_name == ""}
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def _np(v):
    return v.numpy() if isinstance(v, torch.Tensor) else v


def _divisor(name, sample):
    if name != "nn.functional.avg_pool2d":
        return None
    args = list(sample.args)
    return sample.kwargs.get("divisor_override", args[5] if len(args) > 5 else None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(OPS))
def test_opinfo_samples_agree_with_torch(name, dtype):
    op, fn = OPINFOS[name], OPS[name]
    failures, count, refused = [], 0, 0
    for sample in op.sample_inputs("cpu", dtype, requires_grad=False):
        count += 1
        args = [_np(a) for a in sample.args]
        kwargs = {k: _np(v) for k, v in sample.kwargs.items()}
        where = f"input {tuple(sample.input.shape)} args {sample.args!r} kwargs {sample.kwargs!r}"
        div = _divisor(name, sample)
        if div is not None and div < 0:
            # torch's acceptance of a negative divisor is an accident: pyconv refuses it, saying so
            with pytest.raises(ValueError, match=r"divisor_override must be positive.*torch"):
                fn(sample.input.numpy(), *args, **kwargs)
            refused += 1
            continue
        expected = op.op(sample.input, *sample.args, **sample.kwargs)
        try:
            got = fn(sample.input.numpy(), *args, **kwargs)
        except (ValueError, TypeError) as exc:
            failures.append(f"{where}: refused: {exc}")
            continue
        pairs = zip(got, expected) if isinstance(expected, tuple) else [(got, expected)]
        for g, e in pairs:
            e = e.numpy()
            if g.shape != e.shape or g.dtype != e.dtype and e.dtype.kind == "f":
                failures.append(f"{where}: shape/dtype {g.shape} {g.dtype} vs torch {e.shape} {e.dtype}")
            elif not np.allclose(g, e, equal_nan=True, **TOL[dtype]):
                failures.append(f"{where}: max |diff| {np.nanmax(np.abs(g - e))}")
    assert count >= 5, f"only {count} samples: torch's OpInfo changed"
    assert not failures, f"{len(failures)} of {count} samples differ:\n" + "\n".join(failures[:20])
    if name == "nn.functional.avg_pool2d":
        assert refused >= 1  # the negative-divisor sample is still among torch's samples
