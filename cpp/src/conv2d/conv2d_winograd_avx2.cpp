#define PYCONV_ISA avx2
#include "conv2d/conv2d_winograd_impl.h"
