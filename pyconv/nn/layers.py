"""The layers: torch.nn's names, arguments, defaults and initialisation."""
from collections import OrderedDict

import numpy as np

from .. import functional as F
from .._utils import _pair
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


def _zeros(shape, dtype=np.float32):
    return Parameter(np.zeros(shape, dtype))


class Conv2d(Module):
    """2-D convolution layer: ``out_channels`` filters of ``kernel_size`` over ``in_channels / groups``.

    Weight ``(out_channels, in_channels // groups, kH, kW)`` and bias ``(out_channels,)`` are
    initialised as ``torch.nn.Conv2d``. ``algo`` (keyword-only) selects the pyconv algorithm.
    Parameters: ``(kH*kW*in_channels/groups + 1) * out_channels``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", *, algo="auto", dtype=np.float32):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Conv2d: {name} must be a positive int, got {v!r}")
        if in_channels % groups:
            raise ValueError(f"Conv2d: in_channels must be divisible by groups, got {in_channels} and {groups}")
        if out_channels % groups:
            raise ValueError(f"Conv2d: out_channels must be divisible by groups, got {out_channels} and {groups}")
        if padding_mode not in F.PADDING_MODES:
            raise ValueError(f"Conv2d: padding_mode must be one of {F.PADDING_MODES}, got {padding_mode!r}")
        if algo not in F.CONV_ALGORITHMS:
            raise ValueError(f"Conv2d: algo must be one of {F.CONV_ALGORITHMS}, got {algo!r}")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.dilation = _pair(dilation)
        self.padding_mode, self.algo = padding_mode, algo
        # Check the geometry once, at construction, with the functional layer's messages.
        F.conv2d_output_shape((self.in_channels, 10**6, 10**6), (out_channels, in_channels // groups) + self.kernel_size,
                              self.stride, self.padding, self.dilation)
        self.weight = _zeros((out_channels, in_channels // groups) + self.kernel_size, dtype)
        self.bias = _zeros((out_channels,), dtype) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, input):
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                        padding_mode=self.padding_mode, algo=self.algo)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        if self.algo != "auto":
            s += f", algo={self.algo}"
        return s


class Linear(Module):
    """Fully-connected layer ``y = x @ weight.T + bias`` over the last dimension."""

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Linear: {name} must be a positive int, got {v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = _zeros((out_features, in_features), dtype)
        self.bias = _zeros((out_features,), dtype) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode
        F.pool2d_output_shape((1, 10**6, 10**6), kernel_size, self.stride, padding, dilation, ceil_mode)

    def forward(self, input):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override
        F.pool2d_output_shape((1, 10**6, 10**6), kernel_size, self.stride, padding, 1, ceil_mode)

    def forward(self, input):
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class ReLU(Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace  # accepted for torch compatibility; pyconv never writes in place

    def forward(self, input):
        return F.relu(input)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        if isinstance(input, Tensor):
            return input.flatten(self.start_dim, self.end_dim)
        nd = input.ndim
        s, e = self.start_dim % nd, self.end_dim % nd
        return input.reshape(input.shape[:s] + (-1,) + input.shape[e + 1:])

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class BatchNorm2d(Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *,
                 dtype=np.float32):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))

    def forward(self, input):
        # Batch statistics in training (or when none are tracked); running ones in eval.
        momentum = self.momentum
        rm = rv = None
        if self.track_running_stats:
            rm, rv = self._buffers["running_mean"], self._buffers["running_var"]
            if self.training:
                self._buffers["num_batches_tracked"] = self._buffers["num_batches_tracked"] + 1
                if momentum is None:  # cumulative moving average
                    momentum = 1.0 / float(self._buffers["num_batches_tracked"])
        use_batch = self.training or not self.track_running_stats
        return F.batch_norm(input, rm, rv, self.weight, self.bias, use_batch, momentum or 0.0, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.affine}, track_running_stats={self.track_running_stats}")


def _fusable_pool(relu, pool):
    """ReLU then MaxPool2d run as one op (see autograd.ReLUMaxPool2d) when nothing observes the
    ReLU's output (no hooks) and every pooling window holds an input pixel."""
    return (type(pool) is MaxPool2d and not relu._forward_hooks and not pool._forward_hooks
            and not pool.return_indices and not pool.ceil_mode and pool.dilation in (1, (1, 1)))


class Sequential(Module):
    """Modules applied in order; indexable, iterable and sliceable like torch.nn.Sequential
    (``Sequential(m0, m1, ...)`` or ``Sequential(OrderedDict(name=module, ...))``)."""

    def __init__(self, *modules):
        super().__init__()
        items = modules[0].items() if len(modules) == 1 and isinstance(modules[0], OrderedDict) else \
            ((str(i), m) for i, m in enumerate(modules))
        for name, m in items:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: entry {name} is a {type(m).__name__}, not a Module")
            self._modules[str(name)] = m

    def forward(self, input):
        mods = list(self._modules.values())
        i = 0
        while i < len(mods):
            m = mods[i]
            if type(m) is ReLU and i + 1 < len(mods) and _fusable_pool(m, mods[i + 1]):
                p = mods[i + 1]
                input = F._relu_max_pool2d(input, p.kernel_size, p.stride, p.padding)
                i += 2
                continue
            input = m(input)
            i += 1
        return input

    def __getitem__(self, i):
        if isinstance(i, slice):  # keeps the original names, as torch does
            return Sequential(OrderedDict(list(self._modules.items())[i]))
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        self._modules[str(len(self._modules))] = module
        return self


class CrossEntropyLoss(Module):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__()
        self.weight, self.ignore_index = weight, ignore_index
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing)
