#define PYCONV_ISA avx2
#include "conv2d/nchwc_impl.h"
