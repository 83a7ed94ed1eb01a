#define PYCONV_ISA avx512
#include "conv2d/conv2d_blocked_impl.h"
