#define PYCONV_ISA avx512
#include "eltwise/eltwise_impl.h"
