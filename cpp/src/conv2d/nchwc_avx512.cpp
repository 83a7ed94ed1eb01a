#define PYCONV_ISA avx512
#include "conv2d/nchwc_impl.h"
