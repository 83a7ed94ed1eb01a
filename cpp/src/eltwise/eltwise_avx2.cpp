#define PYCONV_ISA avx2
#include "eltwise/eltwise_impl.h"
