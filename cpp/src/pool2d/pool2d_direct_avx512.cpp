#define PYCONV_ISA avx512
#include "pool2d/pool2d_direct_impl.h"
