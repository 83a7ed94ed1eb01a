"""Process-wide settings of the C++ core: threads, instruction-set cap, workspace budget."""
import contextlib
import numbers

from . import _core

ISAS = tuple(_core.isas())
#: The levels with precision="bfloat16" kernels only: "avx512_bf16" is avx512 plus vdpbf16ps, "amx"
#: that plus AMX tiles.
BF16_ISAS = ("avx512_bf16", "amx")
#: The levels with float32/float64 kernels.
FLOAT_ISAS = tuple(i for i in ISAS if i not in BF16_ISAS)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def set_num_threads(n):
    """Set the number of threads pyconv's kernels use (default: ``PYCONV_NUM_THREADS``, else
    ``OMP_NUM_THREADS``, else the CPUs this process may run on).

    Results do not depend on the thread count. Calls too small to gain from more threads use
    fewer. The setting is process-wide (``threads(n)`` sets it for a block); a process forked
    after pyconv was imported keeps it and starts its own worker threads.
    """
    _core.set_num_threads(_positive_int("num_threads", n))


@contextlib.contextmanager
def threads(n):
    """``with pyconv.threads(1): ...`` runs the block with ``n`` threads and restores the previous
    count afterwards, also when the block raises. Process-wide, like ``set_num_threads``."""
    n = _positive_int("num_threads", n)
    prev = _core.get_num_threads()
    _core.set_num_threads(n)
    try:
        yield n
    finally:
        _core.set_num_threads(prev)


def get_num_threads():
    """Number of threads the next kernel call will use."""
    return _core.get_num_threads()


def cpu_isa():
    """Best instruction set this CPU supports among 'scalar', 'avx2' (AVX2+FMA), 'avx512',
    'avx512_bf16' (AVX-512 plus the bfloat16 dot product vdpbf16ps) and 'amx' (that plus AMX
    bfloat16 tiles the OS lets this process use)."""
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


PRECISIONS = ("float32", "bfloat16")


def _precision(value):
    if not isinstance(value, str):
        raise TypeError(f"precision must be a str, one of {PRECISIONS}, got {type(value).__name__} {value!r}")
    if value not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {value!r}")
    return value


def set_float32_precision(precision):
    """Process default of ``conv2d``'s ``precision=`` for float32 arrays: ``"float32"`` (the
    start) or ``"bfloat16"`` (operands rounded to bfloat16, float32 accumulation; AMX tiles where
    the CPU has them). Recorded autograd tensors and float64 keep their own precision. Returns the
    old default; ``float32_precision(p)`` sets it for a block."""
    old = _core.get_float32_precision()
    _core.set_float32_precision(_precision(precision))
    return old


def get_float32_precision():
    """The process default of ``conv2d``'s ``precision=`` for float32 arrays."""
    return _core.get_float32_precision()


@contextlib.contextmanager
def float32_precision(precision):
    """``with pyconv.float32_precision("bfloat16"): ...`` sets the process default for a block and
    restores the previous one afterwards, also when the block raises."""
    old = set_float32_precision(precision)
    try:
        yield precision
    finally:
        _core.set_float32_precision(old)


def kernels():
    """Names of every compiled kernel, ``<family>_<isa>`` (GEMM micro-kernels carry their tile)."""
    return [k["name"] for k in _core.kernels()]


def get_workspace_limit():
    """Bytes the im2col column buffers of one call may use (default 64 MiB)."""
    return _core.get_workspace_limit()


def set_workspace_limit(nbytes):
    """Cap the im2col workspace of one call; larger layers are processed in tiles of output pixels."""
    _core.set_workspace_limit(_positive_int("nbytes", nbytes))


def _register_with_threadpoolctl():
    """Let threadpoolctl see and limit pyconv's pool like a BLAS or OpenMP runtime:
    ``threadpool_info()`` lists it (user_api "pyconv"), ``threadpool_limits(n)`` applies."""
    try:
        import threadpoolctl
    except ImportError:
        return
    if not hasattr(threadpoolctl, "register"):  # threadpoolctl < 3.5
        return

    class PyconvController(threadpoolctl.LibController):
        user_api = "pyconv"
        internal_api = "pyconv"
        filename_prefixes = ("_core",)
        check_symbols = ("pyconv_get_num_threads", "pyconv_set_num_threads")

        def get_num_threads(self):
            return self.dynlib.pyconv_get_num_threads()

        def set_num_threads(self, num_threads):
            self.dynlib.pyconv_set_num_threads(int(num_threads))

        def get_version(self):
            return _core.__version__

    threadpoolctl.register(PyconvController)


_register_with_threadpoolctl()
