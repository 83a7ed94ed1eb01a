"""``pyconv.torch.Conv2d``, ``MaxPool2d`` and ``AvgPool2d``: the torch.nn modules, computed by pyconv.

Each is a subclass of its torch.nn namesake (same constructor, parameters, state_dict keys, repr,
hooks, ``isinstance``); only the computation changes: ``Conv2d._conv_forward`` and the pools'
``forward`` call the ``pyconv::*`` ops. A call pyconv cannot run goes to torch's own code (a
*fallback*, counted with its reason in :func:`pyconv.torch.stats`):

* Conv2d: weight not on the CPU (cuda, meta, ...), weight dtype other than float32/float64
  (float16, bfloat16), a padding_mode pyconv does not have (torch's four it has), CPU autocast
  enabled (torch casts to bfloat16/float16 there).
* MaxPool2d / AvgPool2d: input not on the CPU, or dtype other than float32/float64.

Where pyconv runs, bad input gets pyconv's message: an input on another device than a CPU
Conv2d's weight, a dtype other than the weight's, a shape that does not fit (``ValueError`` /
``TypeError`` from pyconv.functional's checks).
"""
import torch
from torch import nn

from .. import functional as F
from .._utils import _pair
from . import _stats, ops
from ._kernels import contiguous

_FLOATS = (torch.float32, torch.float64)


def _counting():
    # compiled and exported graphs call the ops directly; do not trace the counters into them
    return not torch.compiler.is_compiling()


class _PyconvModule:
    """What the three modules share: pickling of the classes that convert() derives from torch.nn
    subclasses (they are derived again on unpickling)."""

    _pyconv_base = None  # set on classes derived by pyconv_class() from a torch.nn subclass

    def __reduce_ex__(self, protocol):
        base = type(self).__dict__.get("_pyconv_base")
        if base is None:
            return super().__reduce_ex__(protocol)
        state = self.__getstate__() if hasattr(self, "__getstate__") else self.__dict__  # Python < 3.11
        return _restore, (base,), state


def _restore(base):
    cls = pyconv_class(base)
    return cls.__new__(cls)


class Conv2d(_PyconvModule, nn.Conv2d):
    """``torch.nn.Conv2d`` computed by pyconv (forward and both gradients); ``algo`` (keyword-only,
    ``"auto"``, ``"direct"``, ``"im2col"`` or ``"winograd"``) picks pyconv's algorithm."""

    algo = "auto"

    def __init__(self, *args, algo="auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.algo = _check_algo(algo)

    def _conv_forward(self, input, weight, bias):
        reason = _conv_fallback(input, weight, self.padding_mode)
        if reason is not None:
            if _counting():
                _stats.count_fallback("Conv2d", reason)
            return super()._conv_forward(input, weight, bias)
        if _counting():
            _stats.count_call("Conv2d")
        input = contiguous(input, "conv2d input")  # the copy the backward then shares
        weight = contiguous(weight, "conv2d weight")  # a channels_last model's weights
        padding = self.padding
        if isinstance(padding, str):
            same, padding = padding == "same", (0, 0)
        else:
            same = False
        return ops.conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups, self.padding_mode,
                          self.algo, same)

    def extra_repr(self):
        s = super().extra_repr()
        return s if self.algo == "auto" else f"{s}, algo={self.algo!r}"


def _check_algo(algo):
    if algo not in F.CONV_ALGORITHMS:
        raise ValueError(f"Conv2d: algo must be one of {', '.join(map(repr, F.CONV_ALGORITHMS))}; got {algo!r}")
    return algo


def _conv_fallback(input, weight, padding_mode):
    """Why torch must compute this call (None: pyconv runs it), or raise pyconv's message."""
    dev = weight.device.type
    if dev != "cpu":
        return f"weight on {dev}"
    if weight.dtype not in _FLOATS:
        return f"dtype {str(weight.dtype)[6:]}"
    if padding_mode not in F.PADDING_MODES:  # a mode of a later torch
        return f"padding_mode {padding_mode!r}"
    if torch.is_autocast_enabled("cpu"):
        return "autocast"
    if input.device.type != "cpu":
        raise ValueError(f"conv2d: input is on device {input.device} but the weight is on the CPU, where pyconv "
                         "runs: move the input to the CPU (input.cpu()) or the module to the input's device")
    return None


def _pool_fallback(input):
    dev = input.device.type
    if dev != "cpu":
        return f"input on {dev}"
    if input.dtype not in _FLOATS:
        return f"dtype {str(input.dtype)[6:]}"
    return None


class MaxPool2d(_PyconvModule, nn.MaxPool2d):
    """``torch.nn.MaxPool2d`` computed by pyconv (indices as torch's: ``ih * W + iw`` per plane)."""


    def forward(self, input):
        reason = _pool_fallback(input)
        if reason is not None:
            if _counting():
                _stats.count_fallback("MaxPool2d", reason)
            return super().forward(input)
        if _counting():
            _stats.count_call("MaxPool2d")
        input = contiguous(input, "max_pool2d input")
        k = _pair(self.kernel_size)
        stride = k if self.stride is None else _pair(self.stride)
        out, indices = ops.max_pool2d(input, k, stride, _pair(self.padding), _pair(self.dilation),
                                      bool(self.ceil_mode))
        return (out, indices) if self.return_indices else out


class AvgPool2d(_PyconvModule, nn.AvgPool2d):
    """``torch.nn.AvgPool2d`` computed by pyconv."""


    def forward(self, input):
        reason = _pool_fallback(input)
        if reason is not None:
            if _counting():
                _stats.count_fallback("AvgPool2d", reason)
            return super().forward(input)
        if _counting():
            _stats.count_call("AvgPool2d")
        input = contiguous(input, "avg_pool2d input")
        k = _pair(self.kernel_size)
        stride = k if self.stride is None else _pair(self.stride)
        return ops.avg_pool2d(input, k, stride, _pair(self.padding), bool(self.ceil_mode),
                              bool(self.count_include_pad), self.divisor_override)


# The classes convert() derives for torch.nn subclasses; here, beside the modules, because
# unpickling a derived module derives its class again (_restore).
_TORCH_TO_PYCONV = {nn.Conv2d: Conv2d, nn.MaxPool2d: MaxPool2d, nn.AvgPool2d: AvgPool2d}
_METHODS = {nn.Conv2d: ("forward", "_conv_forward"), nn.MaxPool2d: ("forward",), nn.AvgPool2d: ("forward",)}
_derived = {}


def _torch_base(cls):
    for base in _TORCH_TO_PYCONV:
        if issubclass(cls, base):
            return base
    return None


def _unsafe(cls, base):
    """Why pyconv cannot stand in for ``cls`` (a subclass of the torch.nn module ``base``), or None."""
    for name in _METHODS[base]:
        if getattr(cls, name) is not getattr(base, name):
            return f"{cls.__name__} overrides {name}"
    return None


def pyconv_class(cls):
    """The pyconv module class standing in for the torch.nn class ``cls`` (derived and cached for
    subclasses that do not override the computation); raises TypeError if there is none."""
    if issubclass(cls, _PyconvModule):
        return cls
    if cls in _TORCH_TO_PYCONV:
        return _TORCH_TO_PYCONV[cls]
    base = _torch_base(cls)
    reason = "not a Conv2d, MaxPool2d or AvgPool2d" if base is None else _unsafe(cls, base)
    if reason is not None:
        raise TypeError(f"pyconv.torch: cannot convert {cls.__qualname__}: {reason}")
    derived = _derived.get(cls)
    if derived is None:
        derived = type(cls.__name__, (_TORCH_TO_PYCONV[base], cls),
                       {"_pyconv_base": cls, "__module__": cls.__module__, "__qualname__": cls.__qualname__})
        _derived[cls] = derived
    return derived
