#define PYCONV_ISA avx2
#include "pool2d/pool2d_direct_impl.h"
