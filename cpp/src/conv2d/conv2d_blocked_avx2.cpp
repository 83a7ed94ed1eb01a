#define PYCONV_ISA avx2
#include "conv2d/conv2d_blocked_impl.h"
