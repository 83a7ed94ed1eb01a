"""Call, fallback and copy counters of pyconv.torch: ``stats()`` and ``reset_stats()``.

Plain dict increments (the GIL makes them safe enough for counters); nothing is counted while
torch.compile or torch.export traces, since the traced graph does not run this Python code.
"""
import copy
from collections import Counter

_KINDS = ("Conv2d", "MaxPool2d", "AvgPool2d")
_stats = {}


def _fresh():
    _stats.clear()
    for kind in _KINDS:
        _stats[kind] = {"calls": 0, "pyconv": 0, "fallbacks": 0, "reasons": Counter()}
    _stats["copies"] = Counter()        # "op argument" -> tensors copied to NCHW-contiguous (channels_last, views)
    _stats["not_converted"] = {}        # qualified module name -> why convert() left it to torch


_fresh()


def count_call(kind):
    s = _stats[kind]
    s["calls"] += 1
    s["pyconv"] += 1


def count_fallback(kind, reason):
    s = _stats[kind]
    s["calls"] += 1
    s["fallbacks"] += 1
    s["reasons"][reason] += 1


def count_copy(op):
    _stats["copies"][op] += 1


def note_not_converted(name, reason):
    _stats["not_converted"][name] = reason


def stats():
    """Counters since import (or the last :func:`reset_stats`), a copy::

        {"Conv2d": {"calls": 10, "pyconv": 8, "fallbacks": 2, "reasons": {"dtype torch.float16": 2}},
         "MaxPool2d": {...}, "AvgPool2d": {...},
         "copies": {"conv2d input": 1},           # tensors that were not NCHW-contiguous (one copy each)
         "not_converted": {"features.3": "MyConv overrides forward"}}

    ``calls`` counts module calls in eager mode (compiled and exported graphs call the ops
    directly and are not counted); ``reasons`` says why each fallback ran torch instead.
    """
    out = copy.deepcopy(_stats)
    for kind in _KINDS:
        out[kind]["reasons"] = dict(out[kind]["reasons"])
    out["copies"] = dict(out["copies"])
    return out


def reset_stats():
    """Zero every counter of :func:`stats`."""
    _fresh()
