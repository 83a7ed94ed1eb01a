#define PYCONV_ISA avx512
#include "conv2d/conv2d_winograd_impl.h"
