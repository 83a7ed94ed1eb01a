#define PYCONV_ISA avx512
#include "conv2d/conv2d_direct_impl.h"
