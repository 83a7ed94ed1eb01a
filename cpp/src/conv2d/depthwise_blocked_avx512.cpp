#define PYCONV_ISA avx512
#include "conv2d/depthwise_blocked_impl.h"
