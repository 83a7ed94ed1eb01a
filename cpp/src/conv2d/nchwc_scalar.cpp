#define PYCONV_ISA scalar
#include "conv2d/nchwc_impl.h"
