"""Helpers shared by the operator modules: shape-info records and error messages naming the node."""
import numpy as np

from .graph import GraphError

_F32 = np.dtype(np.float32)


class Info:
    __slots__ = ("shape", "dtype", "const")

    def __init__(self, shape, dtype, const=None):
        self.shape, self.dtype, self.const = tuple(int(d) for d in shape), np.dtype(dtype), const


def _err(node, msg):
    return GraphError(f"{node.where()}: {msg}")


def _const(node, ins, k, what):
    if k >= len(ins) or ins[k] is None:
        return None
    if ins[k].const is None:
        raise _err(node, f"input {k} ({what}, {node.inputs[k]!r}) must be a constant (or computed from shapes "
                         "only): pyconv runs graphs whose shapes are fixed at load")
    return ins[k].const


def _ints(v):
    return [int(i) for i in np.asarray(v).reshape(-1)]


def _axis(node, axis, ndim, what="axis"):
    if not -ndim <= axis < max(ndim, 1):
        raise _err(node, f"{what}={axis} is out of range for a {ndim}-D input")
    return axis % max(ndim, 1)
