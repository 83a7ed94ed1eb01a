#define PYCONV_ISA avx512
#include "conv2d/conv2d_im2col_impl.h"
