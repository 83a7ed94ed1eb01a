#define PYCONV_ISA scalar
#include "gemm/gemm_ukernel_impl.h"
