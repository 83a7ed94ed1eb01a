"""pyconv as a PyTorch CPU backend: ``torch.library`` ops, pyconv's torch.nn modules, convert().

    import torch, pyconv.torch as pt
    model = pt.convert(model)          # nn.Conv2d / MaxPool2d / AvgPool2d computed by pyconv
    fast = pt.optimize(model.eval())   # inference: the fused graph (BN folded, bias/act/residual fused)
    ...train as usual: optimizers, DDP, torch.compile, torch.export, state_dict unchanged...
    pt.stats()                         # calls and fallbacks to torch per module type
    pt.share_threads(False)            # pyconv's own threads for its work (default: torch's OpenMP threads)

``import pyconv`` never imports torch; this subpackage needs it (``pip install 'pyconv[torch]'``).
Importing it registers the ``torch.ops.pyconv.*`` operators (see :mod:`pyconv.torch.ops`).
"""
try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without torch
    raise ImportError("pyconv.torch needs PyTorch: pip install 'pyconv[torch]' (or torch>=2.4 itself)") from exc

from . import ops
from ._stats import reset_stats, stats
from ._convert import convert
from ._optimize import OptimizedModule, optimize
from ._threads import share_threads
from .modules import AvgPool2d, Conv2d, MaxPool2d

__all__ = ["convert", "optimize", "OptimizedModule", "Conv2d", "MaxPool2d", "AvgPool2d", "stats", "reset_stats", "ops",
           "share_threads"]
