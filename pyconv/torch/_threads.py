"""With pyconv.torch imported, pyconv computes on torch's own OpenMP threads.

torch's OpenMP workers spin for a while after each of its parallel calls (libgomp's default spin
count: milliseconds), so on a machine with few cores a pyconv call right after a torch op (a
BatchNorm, a ReLU, the optimizer) shared the cores with them and ran at half speed: converted
models trained slower than torch, and pyconv's numpy API next to torch calls in one process ran
its large layers at half speed. Every parallel pyconv call of the process (the ``pyconv::*`` ops,
``optimize``'s modules, the numpy API) therefore hands its work to the calling thread's torch team
(``_core.set_host_openmp``: the runtime torch loaded, never a second copy) instead of waking
pyconv's own workers. Chunking is pyconv's, so the results are the same bits either way.

``PYCONV_TORCH_THREADS=pyconv`` (or ``share_threads(False)``) keeps pyconv's own pool.
"""
import os

import torch

from .. import _core

_OPENMP_LIBS = ("libgomp", "libiomp5", "libomp")


def torch_openmp_runtime():
    """The path of the OpenMP runtime torch's parallel backend runs on, or None (another backend,
    or no /proc/self/maps to find it in)."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return None
    found = sorted(p for p in paths if os.path.basename(p).startswith(_OPENMP_LIBS))
    torch_dir = os.path.dirname(os.path.dirname(torch.__file__))  # torch's own copy first
    found.sort(key=lambda p: not os.path.realpath(p).startswith(os.path.realpath(torch_dir)))
    return found[0] if found else None


def share_threads(enabled=True):
    """Run pyconv's parallel work on torch's OpenMP threads (True, the default) or on pyconv's own
    pool (False). Returns whether torch's threads are in use afterwards (False when
    torch does not run on an OpenMP runtime pyconv can call)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    if not enabled:
        _core.set_host_openmp("")
        return False
    path = torch_openmp_runtime()
    return path is not None and _core.set_host_openmp(path) == ""


_mode = os.environ.get("PYCONV_TORCH_THREADS", "torch")
if _mode not in ("torch", "pyconv"):
    import warnings
    warnings.warn(f"pyconv: ignoring PYCONV_TORCH_THREADS={_mode!r} (expected 'torch' or 'pyconv')", stacklevel=2)
    _mode = "torch"
share_threads(_mode == "torch")
