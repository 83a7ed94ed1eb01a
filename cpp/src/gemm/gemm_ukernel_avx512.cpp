#define PYCONV_ISA avx512
#include "gemm/gemm_ukernel_impl.h"
