"""Argument checking shared by every functional op, the memoised specs, and the Tensor hook.

``pyconv.functional`` takes numpy arrays; it also takes Tensors (the README promises it) without
importing the tensor layer above it: that layer registers itself here (:func:`register_tensor_layer`)
and each op asks :func:`recorder` whether an argument is a registered Tensor, which turns the
call into the layer's recording ``Function``.
"""
import math
import os

import numpy as np

from .._utils import _is_int

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_MAX_NUMEL = 1 << 59  # the C++ core's limit: byte sizes stay far from int64 overflow

_tensor_layer = None  # (Tensor type, namespace of its Functions), set by register_tensor_layer


def register_tensor_layer(tensor_type, functions):
    """Called once by pyconv.autograd: ops given a ``tensor_type`` argument then return
    ``functions.<Op>.apply(...)`` (a recorded Tensor) instead of an array."""
    global _tensor_layer
    _tensor_layer = (tensor_type, functions)


def recorder(*args):
    """The registered Functions when any argument is a registered Tensor, else None."""
    if _tensor_layer is not None:
        tensor_type, functions = _tensor_layer
        for a in args:
            if isinstance(a, tensor_type):
                return functions
    return None


def data(a):
    """A Tensor argument's array (``.data``); anything else unchanged."""
    if _tensor_layer is not None and isinstance(a, _tensor_layer[0]):
        return a.data
    return a


def _int(fn, name, v, minimum):
    if not _is_int(v):
        raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__} {v!r}")
    v = int(v)
    if v < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {v}")
    return v




def _array(fn, name, a):
    """A float32/float64 ndarray view of `a` (no copy; contiguity is handled by _contig)."""
    if not isinstance(a, np.ndarray):
        if a is None or isinstance(a, (str, bytes, dict, set)):
            raise TypeError(f"{fn}: {name} must be a float32 or float64 array, got {type(a).__name__}")
        a = np.asarray(a)
    if a.dtype not in _FLOATS:
        raise TypeError(f"{fn}: {name} must be float32 or float64, got dtype {a.dtype}")
    return a


def _same_dtype(fn, first_name, first, *others):
    for name, a in others:
        if a is not None and a.dtype != first.dtype:
            raise TypeError(
                f"{fn}: {name} has dtype {a.dtype} but {first_name} has dtype {first.dtype}; "
                "pass arrays of one float dtype"
            )


def _ndim(fn, name, a, allowed):
    if a.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{fn}: {name} must be {want}, got {a.ndim}-D array of shape {a.shape}")


def _contig(a):
    """C-contiguous, aligned, native-endian; a no-op for arrays that already are."""
    f = a.flags
    if f.c_contiguous and f.aligned and a.dtype.isnative:
        return a
    return np.require(a, dtype=a.dtype.newbyteorder("="), requirements=["C", "A"])


def _check_numel(fn, name, shape):
    if math.prod(shape) > _MAX_NUMEL or max(shape) > _MAX_NUMEL:
        raise ValueError(f"{fn}: {name} {tuple(shape)} is too large: its size overflows (limit {_MAX_NUMEL} elements)")


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: let the allocator decide
        return None


_PHYS_MEM = _physical_memory()


def _check_alloc(fn, what, shape, dtype, extra_bytes=0):
    """MemoryError (before allocating) for a result larger than this machine's memory: with
    overcommit the allocation would succeed and the process be killed when it is filled.
    ``extra_bytes`` per element count companions allocated with it (max-pool indices)."""
    nbytes = math.prod(shape) * (np.dtype(dtype).itemsize + extra_bytes)
    if _PHYS_MEM is not None and nbytes > _PHYS_MEM:
        raise MemoryError(f"{fn}: the {what} of shape {tuple(shape)} ({np.dtype(dtype).name}) needs "
                          f"{nbytes / 2**30:.1f} GiB, more than this machine's {_PHYS_MEM / 2**30:.1f} GiB of memory")


def _shape(fn, name, shape, allowed_ndims):
    """A user-given shape tuple: ints, batch >= 0, every other dimension >= 1."""
    if isinstance(shape, np.ndarray):
        shape = shape.tolist()
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{fn}: {name} must be a tuple of ints, got {type(shape).__name__} {shape!r}")
    if len(shape) not in allowed_ndims:
        want = " or ".join(str(d) for d in allowed_ndims)
        raise ValueError(f"{fn}: {name} must have {want} entries, got {tuple(shape)!r}")
    if not all(_is_int(d) for d in shape):
        raise TypeError(f"{fn}: {name} must be a tuple of ints, got {tuple(shape)!r}")
    shape = tuple(int(d) for d in shape)
    batched = len(shape) == max(allowed_ndims)
    for i, d in enumerate(shape):
        if d < (0 if (batched and i == 0) else 1):
            raise ValueError(f"{fn}: {name} entries must be >= 1 (batch >= 0), got {shape!r}")
    _check_numel(fn, name, shape)
    return shape


def _batched(shape):
    return shape if len(shape) == 4 else (1,) + tuple(shape)


def _unbatch(a, was_3d):
    return a[0] if was_3d else a


def _choice(fn, name, v, choices):
    if not isinstance(v, str) or v not in choices:
        raise ValueError(f"{fn}: {name} must be one of {', '.join(map(repr, choices))}; got {v!r}")
    return v




def _key(args):
    # Values plus their types, so that True and 1 (equal hashes) never share an entry.
    return args, tuple(tuple(map(type, a)) if type(a) in (tuple, list) else type(a) for a in args)


_SPECS = {}


def _spec(cls, *args):
    """cls(*args), memoised per distinct argument values: a layer called in a loop validates once.
    Invalid arguments raise every time (exceptions are not cached)."""
    try:
        key = (cls, _key(args))
        spec = _SPECS.get(key)  # lists among the args make this raise TypeError
    except TypeError:  # unhashable argument: validate without the cache (and report it)
        return cls(*args)
    if spec is None:
        spec = cls(*args)
        if len(_SPECS) > 4096:
            _SPECS.clear()
        _SPECS[key] = spec
    return spec



def _grad_output(fn, spec, grad_output, dtype_ref_name=None, dtype_ref=None):
    """grad_output checked against the op's output shape (and the dtype of another argument)."""
    g = _array(fn, "grad_output", grad_output)
    if dtype_ref is not None:
        _same_dtype(fn, dtype_ref_name, dtype_ref, ("grad_output", g))
    want = spec.out_shape()
    if tuple(g.shape) != tuple(want):
        raise ValueError(f"{fn}: grad_output must have the output shape {tuple(want)}, got {g.shape}")
    return _contig(g.reshape(spec.output_shape))

