"""Process-wide settings of the C++ core: threads, instruction-set cap, workspace budget."""
import numbers

from . import _core

ISAS = ("scalar", "avx2", "avx512")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def set_num_threads(n):
    """Set the number of OpenMP threads pyconv's kernels use (default: OMP_NUM_THREADS or all cores).

    Results do not depend on the thread count. Without OpenMP the build is single-threaded and
    this is a no-op.
    """
    _core.set_num_threads(_positive_int("num_threads", n))


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
