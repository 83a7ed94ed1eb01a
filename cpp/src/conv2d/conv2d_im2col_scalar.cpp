#define PYCONV_ISA scalar
#include "conv2d/conv2d_im2col_impl.h"
