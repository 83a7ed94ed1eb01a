#define PYCONV_ISA scalar
#include "conv2d/depthwise_blocked_impl.h"
