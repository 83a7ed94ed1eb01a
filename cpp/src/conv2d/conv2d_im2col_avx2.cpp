#define PYCONV_ISA avx2
#include "conv2d/conv2d_im2col_impl.h"
