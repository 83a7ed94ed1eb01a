"""Process-wide settings of the C++ core: threads, instruction-set cap, workspace budget."""
import numbers
import os
import warnings

from . import _core

ISAS = ("scalar", "avx2", "avx512")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


_forked_child = False


def _after_fork_in_child():
    # The OpenMP runtime's worker threads do not survive fork(): a parallel region in the child
    # would wait for them forever. A forked child (a DataLoader worker, multiprocessing with the
    # fork start method) therefore runs pyconv's kernels on one thread.
    global _forked_child
    _forked_child = True
    _core.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def set_num_threads(n):
    """Set the number of OpenMP threads pyconv's kernels use (default: OMP_NUM_THREADS or all cores).

    Results do not depend on the thread count. Without OpenMP the build is single-threaded and
    this is a no-op; in a process created by fork() after pyconv was imported it stays 1 (the
    OpenMP runtime cannot start threads there), with a warning.
    """
    n = _positive_int("num_threads", n)
    if _forked_child and n > 1:
        warnings.warn("pyconv: in a forked child process kernels run single-threaded "
                      "(OpenMP threads do not survive fork); use the 'spawn' start method for threads",
                      RuntimeWarning, stacklevel=2)
        n = 1
    _core.set_num_threads(n)


def get_num_threads():
    """Number of threads the next kernel call will use."""
    return _core.get_num_threads()


def cpu_isa():
    """Best instruction set this CPU supports among 'scalar', 'avx2' (AVX2+FMA), 'avx512'."""
    return _core.cpu_isa()


def compiled_isas():
    """Instruction sets this build has kernels for, lowest first."""
    return list(_core.compiled_isas())


def get_max_isa():
    """The instruction set the kernels run with now: min(CPU, cap, compiled)."""
    return _core.active_isa()


def set_max_isa(isa):
    """Cap the instruction set (like the PYCONV_MAX_ISA environment variable); returns the old cap.

    A cap above what the CPU supports just means "the CPU's best".
    """
    if not isinstance(isa, str):
        raise TypeError(f"isa must be a str, one of {ISAS}, got {type(isa).__name__} {isa!r}")
    if isa not in ISAS:
        raise ValueError(f"isa must be one of {ISAS}, got {isa!r}")
    old = _core.get_max_isa()
    _core.set_max_isa(isa)
    return old


def kernels():
    """Names of every compiled kernel, ``<family>_<isa>`` (GEMM micro-kernels carry their tile)."""
    return list(_core.kernels())


def get_workspace_limit():
    """Bytes the im2col column buffers of one call may use (default 64 MiB)."""
    return _core.get_workspace_limit()


def set_workspace_limit(nbytes):
    """Cap the im2col workspace of one call; larger layers are processed in tiles of output pixels."""
    _core.set_workspace_limit(_positive_int("nbytes", nbytes))
