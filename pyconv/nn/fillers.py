"""Initial values by name, as model files give them (Caffe's fillers, plus ConvNetJS's).

A filler is a dict ``{"type": ..., fields}``: ``constant`` (value, default 0), ``uniform``
(min 0, max 1), ``gaussian`` (mean 0, std 1), ``xavier`` (uniform in +-sqrt(3 / n)), ``msra``
(gaussian with std sqrt(2 / n)), where n is the fan-in (``variance_norm`` ``"FAN_IN"``, the
default), the fan-out (``"FAN_OUT"``) or their mean (``"AVERAGE"``) as Caffe computes them
(fan-in = elements / shape[0], fan-out = elements / shape[1]), and ``lecun`` (gaussian with std
sqrt(1 / fan_in): ConvNetJS's initialisation of conv and fc weights).
"""
import math
import numbers

import numpy as np

from ..random import default_generator
from ..tensor import no_grad

__all__ = ["FILLERS", "check_filler", "fill_"]

FILLERS = {
    "constant": {"value": 0.0},
    "uniform": {"min": 0.0, "max": 1.0},
    "gaussian": {"mean": 0.0, "std": 1.0},
    "xavier": {"variance_norm": "FAN_IN"},
    "msra": {"variance_norm": "FAN_IN"},
    "lecun": {},
}
_NORMS = ("FAN_IN", "FAN_OUT", "AVERAGE")


def check_filler(spec, what="filler"):
    """The filler with its defaults filled in; ValueError naming the mistake."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"{what}: expected an object with a 'type' ({', '.join(FILLERS)}), got {spec!r}")
    kind = spec["type"]
    if kind not in FILLERS:
        raise ValueError(f"{what}: unknown filler type {kind!r}; known: {', '.join(FILLERS)}")
    fields = dict(FILLERS[kind])
    unknown = sorted(set(spec) - set(fields) - {"type"})
    if unknown:
        raise ValueError(f"{what}: filler {kind!r} has no field(s) {', '.join(unknown)}"
                         + (f"; its fields: {', '.join(fields)}" if fields else ""))
    for k, v in spec.items():
        if k == "type":
            continue
        if k == "variance_norm":
            if v not in _NORMS:
                raise ValueError(f"{what}: variance_norm must be one of {', '.join(_NORMS)}, got {v!r}")
        elif not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v):
            raise ValueError(f"{what}: {k} must be a finite number, got {v!r}")
        fields[k] = v
    if kind == "gaussian" and fields["std"] < 0:
        raise ValueError(f"{what}: std must be >= 0, got {fields['std']}")
    if kind == "uniform" and fields["min"] > fields["max"]:
        raise ValueError(f"{what}: min {fields['min']} is greater than max {fields['max']}")
    return dict(fields, type=kind)


def fill_(param, spec, generator=None):
    """Fill ``param`` (a Parameter / Tensor) in place from the filler ``spec``; returns it."""
    spec = check_filler(spec)
    gen = generator or default_generator()
    shape = param.shape
    count = int(np.prod(shape)) if shape else 1
    fan_in = count / shape[0] if len(shape) >= 1 and shape[0] else 1
    fan_out = count / shape[1] if len(shape) >= 2 and shape[1] else fan_in
    n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}[spec.get("variance_norm", "FAN_IN")]
    kind = spec["type"]
    if kind == "constant":
        values = np.full(shape, spec["value"])
    elif kind == "uniform":
        values = gen.uniform(spec["min"], spec["max"], shape)
    elif kind == "gaussian":
        values = gen.normal(spec["mean"], spec["std"], shape)
    elif kind == "xavier":
        scale = math.sqrt(3.0 / n)
        values = gen.uniform(-scale, scale, shape)
    elif kind == "msra":
        values = gen.normal(0.0, math.sqrt(2.0 / n), shape)
    else:  # lecun
        values = gen.normal(0.0, math.sqrt(1.0 / fan_in), shape)
    with no_grad():
        param.data[...] = values
    return param
