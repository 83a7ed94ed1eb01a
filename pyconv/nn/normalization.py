"""Normalisation layers: ``LocalResponseNorm`` (torch's, which is also Caffe's and ConvNetJS's
formula), Caffe's ``BatchNorm`` (statistics only, its own moving average) and ``Scale``
(a learned per-channel multiplier and bias, what follows a Caffe BatchNorm)."""
import numbers

import numpy as np

from .. import functional as F
from .. import ops
from .layers import BatchNorm2d
from .module import Module, Parameter

_REGIONS = ("across_channels", "within_channel")


def _positive_int(cls, name, v):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{cls}: {name} must be a positive int, got {v!r}")
    return int(v)


class LocalResponseNorm(Module):
    """Local response normalisation, as ``torch.nn.LocalResponseNorm``:
    ``b_c = a_c / (k + alpha / size * sum_j a_j^2)^beta`` over the ``size`` channels around c
    (torch's window: ``size // 2`` before, ``(size - 1) // 2`` after; AlexNet's and Caffe's LRN
    with ACROSS_CHANNELS for odd sizes).

    ``region="within_channel"`` (keyword-only, pyconv's) is Caffe's WITHIN_CHANNEL form instead:
    the sum runs over a ``size x size`` spatial window of the channel itself (zero padding, stride
    1) and alpha is divided by ``size * size``: ``b = a / (k + alpha / size^2 * sum a^2)^beta``
    (Caffe fixes k at 1 there)."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0, *, region="across_channels"):
        super().__init__()
        self.size = _positive_int("LocalResponseNorm", "size", size)
        for name, v in (("alpha", alpha), ("beta", beta), ("k", k)):
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not np.isfinite(v):
                raise ValueError(f"LocalResponseNorm: {name} must be a finite number, got {v!r}")
        if region not in _REGIONS:
            raise ValueError(f"LocalResponseNorm: region must be one of {_REGIONS}, got {region!r}")
        if region == "within_channel" and self.size % 2 == 0:
            raise ValueError(f"LocalResponseNorm: region='within_channel' needs an odd size, got {size}")
        self.alpha, self.beta, self.k, self.region = float(alpha), float(beta), float(k), region

    def forward(self, input):
        if self.region == "across_channels":
            return ops.local_response_norm(input, self.size, self.alpha, self.beta, self.k)
        # k + alpha * mean of a^2 over the window (the divisor is always size^2 here: stride 1,
        # padding (size - 1) / 2), composed from recorded ops so that autograd follows it
        pad = (self.size - 1) // 2
        mean_sq = F.avg_pool2d(input * input, self.size, 1, pad)
        return input * (mean_sq * self.alpha + self.k) ** -self.beta

    def output_shape(self, shape):
        if len(shape) < 2:
            raise ValueError(f"LocalResponseNorm needs an input of (C, ...) with a spatial axis, got {tuple(shape)}")
        return tuple(shape)

    def flops(self, input_shapes, output_shape):
        window = self.size if self.region == "across_channels" else self.size * self.size
        return int(np.prod(output_shape)) * (window + 4)

    def extra_repr(self):
        s = f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
        return s + (f", region={self.region}" if self.region != "across_channels" else "")


class CaffeBatchNorm2d(BatchNorm2d):
    """Caffe's BatchNorm layer: normalisation by the batch's (training) or the stored (testing)
    mean and variance, with no learned scale or bias (a following :class:`Scale` supplies them).

    The stored statistics are Caffe's: a moving average in which each batch's weight decays by
    ``moving_average_fraction`` per step, normalised by the sum of the weights (so the first
    batches count fully instead of being pulled towards the initial 0 and 1); the variance gets
    the unbiased m / (m - 1) factor, as in torch. ``use_global_stats`` True uses the stored ones
    always, False the batch's always, None (Caffe's default) the batch's in training and the
    stored ones in eval mode. Buffers as :class:`BatchNorm2d` (``running_mean``, ``running_var``,
    ``num_batches_tracked``)."""

    def __init__(self, num_features, eps=1e-5, moving_average_fraction=0.999, use_global_stats=None, *,
                 dtype=np.float32):
        if not 0 < moving_average_fraction <= 1:
            raise ValueError(f"CaffeBatchNorm2d: moving_average_fraction must be in (0, 1], got "
                             f"{moving_average_fraction!r}")
        if use_global_stats not in (None, True, False):
            raise ValueError(f"CaffeBatchNorm2d: use_global_stats must be None, True or False, got "
                             f"{use_global_stats!r}")
        super().__init__(num_features, eps, 1 - moving_average_fraction, affine=False, dtype=dtype)
        self.moving_average_fraction = float(moving_average_fraction)
        self.use_global_stats = use_global_stats

    def forward(self, input):
        batch = self.training if self.use_global_stats is None else not self.use_global_stats
        momentum = 0.0
        if batch and self.training:
            t = int(self._buffers["num_batches_tracked"]) + 1
            self._buffers["num_batches_tracked"] = np.asarray(t, np.int64)
            f = self.moving_average_fraction
            momentum = 1.0 / t if f == 1 else (1 - f) / (1 - f ** t)
        rm, rv = self._buffers["running_mean"], self._buffers["running_var"]
        if batch and not self.training:  # batch statistics without touching the stored ones
            rm, rv = None, None
        return F.batch_norm(input, rm, rv, None, None, batch, momentum, self.eps)

    def extra_repr(self):
        s = f"{self.num_features}, eps={self.eps}, moving_average_fraction={self.moving_average_fraction}"
        return s + (f", use_global_stats={self.use_global_stats}" if self.use_global_stats is not None else "")


class Scale(Module):
    """``y = x * weight[c] (+ bias[c])`` along axis 1 (Caffe's Scale layer with one bottom):
    weight initialised to 1 and bias to 0, so it starts as the identity."""

    def __init__(self, num_features, bias=False, *, dtype=np.float32):
        super().__init__()
        self.num_features = _positive_int("Scale", "num_features", num_features)
        self.weight = Parameter(np.ones(self.num_features, dtype))
        if bias:
            self.bias = Parameter(np.zeros(self.num_features, dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, input):
        shape = (1, -1) + (1,) * (len(input.shape) - 2)
        out = input * self.weight.reshape(shape)
        return out + self.bias.reshape(shape) if self.bias is not None else out

    def output_shape(self, shape):
        if shape[0] != self.num_features:
            raise ValueError(f"Scale expects {self.num_features} channels, got an input of shape {tuple(shape)}")
        return tuple(shape)

    def flops(self, input_shapes, output_shape):
        return int(np.prod(output_shape)) * (2 if self.bias is not None else 1)

    def extra_repr(self):
        return f"{self.num_features}, bias={self.bias is not None}"
