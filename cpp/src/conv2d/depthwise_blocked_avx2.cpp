#define PYCONV_ISA avx2
#include "conv2d/depthwise_blocked_impl.h"
