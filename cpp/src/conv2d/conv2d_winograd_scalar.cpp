#define PYCONV_ISA scalar
#include "conv2d/conv2d_winograd_impl.h"
