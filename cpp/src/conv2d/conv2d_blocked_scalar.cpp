#define PYCONV_ISA scalar
#include "conv2d/conv2d_blocked_impl.h"
