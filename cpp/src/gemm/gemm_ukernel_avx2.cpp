#define PYCONV_ISA avx2
#include "gemm/gemm_ukernel_impl.h"
