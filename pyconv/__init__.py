"""pyconv: fast CPU convolution and pooling, forward and backward, with a numpy API.

The hot path is a C++17 core (direct and im2col+GEMM convolution, max/average pooling, SIMD per
instruction set, a worker pool of its own); ``pyconv.functional`` mirrors ``torch.nn.functional``.
"""
try:
    from . import _core
except ImportError as exc:  # pragma: no cover - only without a build (or the source tree shadowing it)
    from ._import_error import raise_for

    raise_for(exc, __path__[0])

from . import autograd, functional, nn, optim  # autograd: registers Tensor with functional
from ._runtime import (
    compiled_isas,
    cpu_isa,
    float32_precision,
    get_float32_precision,
    get_max_isa,
    get_num_threads,
    get_workspace_limit,
    kernels,
    set_float32_precision,
    set_max_isa,
    set_num_threads,
    set_workspace_limit,
    threads,
)

from .check import check
from .random import manual_seed
from .summary import summary
from .tensor import Tensor, enable_grad, no_grad, tensor

__version__ = _core.__version__

__all__ = [
    "functional",
    "nn",
    "optim",
    "Tensor",
    "tensor",
    "no_grad",
    "enable_grad",
    "manual_seed",
    "summary",
    "check",
    "compiled_isas",
    "cpu_isa",
    "float32_precision",
    "get_float32_precision",
    "get_max_isa",
    "get_num_threads",
    "get_workspace_limit",
    "kernels",
    "set_float32_precision",
    "set_max_isa",
    "set_num_threads",
    "set_workspace_limit",
    "threads",
    "__version__",
]
